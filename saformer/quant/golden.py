"""The integer golden model: what the hardware must compute, in numpy integers only.

It reads nothing but an integer export. Functions are named after the hardware blocks they
check; the forward pass uses int64 arrays throughout (no floats), vectorized over batch, tokens
and channels, with a loop only over time steps where the LIF membrane carries state.

The network is the export's graph (saformer.graph), walked node by node. Traces
(``trace=True``) use the QAT model's module names: ``<lif>.x`` is a neuron's input drive
and ``<lif>.s`` its spikes (T, B, ...), ``sps.u0`` / ``blocks.i.u_attn`` / ``blocks.i.u_out`` the
residual stream, ``blocks.i.attn.score`` the SASA count sum w^2 * a, and ``logits`` the head
accumulator. Each value is an integer in the units of its format (docs/integer_contract.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse
from numpy.lib.stride_tricks import sliding_window_view

from saformer.errors import ShapeError
from saformer.model.probes import ATTENTION_PROBES
from saformer.model.saformer import is_static_input
from saformer.quant.export import IntegerExport
from saformer.quant.fixed_point import lif_int, saturate, shift_to_membrane

INT_MIN = np.iinfo(np.int64).min


# ---- blocks -------------------------------------------------------------------------------------
def matmul(x: np.ndarray, w_t: np.ndarray, spikes: bool, acc_dtype) -> np.ndarray:
    """x @ w_t in integers. With ``spikes`` (x is 0/1) it is computed as the hardware does it,
    summing the weight rows of the active inputs only (a sparse product), which is also ~10x
    faster than numpy's dense integer matmul at the firing rates of a trained model."""
    if spikes:
        return np.asarray(scipy.sparse.csr_matrix(x.astype(acc_dtype, copy=False)) @ w_t.astype(acc_dtype))
    return x.astype(acc_dtype, copy=False) @ w_t.astype(acc_dtype)


def conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray, groups: int = 1, acc_dtype=np.int64,
            spikes: bool = False) -> np.ndarray:
    """3x3 convolution, zero padding 1, stride 1: (M, C, H, W) -> (M, O, H, W) accumulators.

    On spikes this is the sum of the weights under every spike plus the bias (additions only);
    only the first layer (the image) multiplies. ``acc_dtype`` int32 is exact when the export's
    accumulator check guarantees 32 bits (no partial sum exceeds the worst case) and faster.
    """
    x, w = x.astype(acc_dtype, copy=False), w.astype(acc_dtype, copy=False)
    m, c, h, wd = x.shape
    patches = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
    if groups == 1:  # im2col: (M*H*W, C*9) @ (C*9, O)
        cols = patches.transpose(0, 2, 3, 1, 4, 5).reshape(m * h * wd, c * 9)
        acc = matmul(cols, w.reshape(w.shape[0], -1).T, spikes, acc_dtype).reshape(m, h, wd, -1).transpose(0, 3, 1, 2)
    elif groups == c == w.shape[0]:  # depthwise: (M, C, H, W, 3, 3) x (C, 1, 3, 3)
        acc = (patches * w[None, :, 0, None, None]).sum(axis=(-1, -2))
    else:
        raise ValueError(f"grouped conv with {groups} groups is not part of the contract")
    return acc.astype(np.int64) + b[None, :, None, None]


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray, acc_dtype=np.int64, spikes: bool = False) -> np.ndarray:
    """(..., in) -> (..., out): on spikes, the sum of the weight rows of the active inputs + bias."""
    flat = matmul(x.reshape(-1, x.shape[-1]), w.T, spikes, acc_dtype)
    return flat.reshape(*x.shape[:-1], -1).astype(np.int64) + b


def maxpool3x3s2(x: np.ndarray) -> np.ndarray:
    """MaxPool(3, stride 2, padding 1) on integers: comparisons only. (M, C, H, W) -> (M, C, H/2, W/2)."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=INT_MIN)
    return sliding_window_view(padded, (3, 3), axis=(2, 3))[:, :, ::2, ::2].max(axis=(-1, -2))


def window_counts(spikes: np.ndarray, n_agg: int) -> np.ndarray:
    """Spike counts per aggregation window: (T, B, N, D) -> (T, B, N', D)."""
    t, b, n, d = spikes.shape
    return spikes.reshape(t, b, n_agg, n // n_agg, d).sum(axis=3)


def sasa_score(q: np.ndarray, k: np.ndarray, n_agg: int) -> np.ndarray:
    """w^2 * a = sum over windows of qcount * kcount (= each Q spike adds its window's K count)."""
    return (window_counts(q, n_agg) * window_counts(k, n_agg)).sum(axis=2, keepdims=True)


def sasa_core(q: np.ndarray, k: np.ndarray, n_agg: int, grid: tuple[int, int], theta_a: int, theta_o: int,
              mem_frac: int, mem_bits: int, dwc: tuple[np.ndarray, np.ndarray, int] | None = None,
              acc_dtype=np.int64, force_mask: bool = False) -> dict[str, np.ndarray]:
    """The part of SASA the RTL core computes: Q, K spikes (T, B, N, D) -> O spikes (T, B, N, D).

    ``dwc`` is (weights (D, 1, 3, 3), biases (D,), out_shift) or None: the export's integers and
    the shift that takes the DWC accumulator to the membrane format (the RTL's DWC_SHIFT). Returns the score, the mask,
    LIF_o's drive and O: what the hand-written datapath must reproduce bit for bit. ``force_mask``
    (a diagnostic, not the contract) lets every K spike through, as if LIF_a always fired.
    """
    t, b, n, d = q.shape
    score = sasa_score(q, k, n_agg)
    mask, _ = lif_int(score, theta_a)
    if force_mask:
        mask = np.ones_like(mask)
    y = (mask.astype(np.int64) * k) << mem_frac  # a masked K spike is 1.0 in membrane format
    if dwc is not None:
        w, bias, out_shift = dwc
        grid_k = k.reshape(t * b, grid[0], grid[1], d).transpose(0, 3, 1, 2)
        acc = conv3x3(grid_k, w, bias, groups=d, acc_dtype=acc_dtype, spikes=True)
        f = shift_to_membrane(acc, out_shift, mem_bits).transpose(0, 2, 3, 1).reshape(t, b, n, d)
        y = saturate(y + f, mem_bits)
    o, _ = lif_int(y, theta_o)
    return {"score": score, "mask": mask, "drive": y, "o": o}


# ---- the network ------------------------------------------------------------------------------


class GoldenModel:
    """The integer SAFormer of an export: its graph (saformer.graph), node by node.

    A value is (array, temporal): temporal arrays are (T, B, *shape); a static image and what
    is computed from it before the first neuron have no time axis, so the first conv of a static
    image runs once, not T times (a LIF broadcasts its static drive over the T steps).

    ``attention`` other than "model" is a diagnostic that leaves the contract: "zero_output" drops
    every SASA output spike, "mask_ones" lets every K spike through (LIF_a always firing). Every
    forward adds the spikes and neurons of each SASA core's LIF_a and LIF_o to ``sasa_spikes``.
    """

    def __init__(self, export: IntegerExport, attention: str = "model") -> None:
        if attention not in ATTENTION_PROBES:
            raise ValueError(f"attention probe {attention!r}: choose one of {ATTENTION_PROBES}")
        self.attention = attention
        self.sasa_spikes: dict[str, list[int]] = {}  # neuron -> [spikes, neuron-steps]
        self.ex = export
        self.cfg, self.qcfg = export.cfg, export.qcfg
        self.graph = export.graph
        self.mem = (self.qcfg.membrane_frac, self.qcfg.membrane_bits)
        # The export proved every accumulator fits accumulator_bits: int32 sums are then exact.
        self.acc_dtype = np.int32 if self.qcfg.accumulator_bits <= 32 else np.int64

    # one synaptic layer, its output in membrane format (by the export's out_shift, as the RTL reads it)
    def synapse(self, name: str, x: np.ndarray, spikes: bool = True) -> np.ndarray:
        spec = self.ex.layer(name)
        w, b = self.ex.weight(name), self.ex.bias(name)
        if spec["kind"] in ("conv", "dwconv"):
            acc = conv3x3(x, w, b, spec["groups"], self.acc_dtype, spikes)
        else:
            acc = linear(x, w, b, self.acc_dtype, spikes)
        return shift_to_membrane(acc, spec["out_shift"], self.qcfg.membrane_bits)

    def sasa(self, node, q: np.ndarray, k: np.ndarray) -> dict[str, np.ndarray]:
        a = node.attrs
        dwc = None
        if node.layer is not None:
            dwc = (self.ex.weight(node.layer), self.ex.bias(node.layer), self.ex.layer(node.layer)["out_shift"])
        return sasa_core(q, k, a["n_agg"], tuple(a["grid"]), self.ex.theta(a["lif_a"]), self.ex.theta(a["lif_o"]),
                         *self.mem, dwc=dwc, acc_dtype=self.acc_dtype, force_mask=self.attention == "mask_ones")

    def head(self, node, s: np.ndarray) -> np.ndarray:
        """The head accumulates its weight column for every spike, plus T*N times the bias."""
        counts = s.sum(axis=(0, 2))  # (B, D): over steps and tokens
        steps = s.shape[0] * s.shape[2]
        return counts @ self.ex.weight(node.layer).T + steps * self.ex.bias(node.layer)

    def _node(self, node, ins: list[tuple[np.ndarray, bool]], tr: dict | None) -> tuple[np.ndarray, bool]:
        op = node.op
        if op in ("synapse", "maxpool", "tokens"):
            (x, temporal), = ins
            if op == "synapse":
                spikes = self.graph[node.inputs[0]].format == "spikes"
                fn = lambda f: self.synapse(node.layer, f, spikes)  # noqa: E731
            elif op == "maxpool":
                fn = self.maxpool
            else:  # (M, D, H, W) -> (M, N, D), row-major tokens
                fn = self.tokens
            if not temporal:
                return fn(x), False
            y = fn(x.reshape(-1, *x.shape[2:]))
            return y.reshape(x.shape[0], x.shape[1], *y.shape[1:]), True
        if op == "lif":
            (x, temporal), = ins
            if not temporal:
                x = self.steps(x)
            s = self.lif(x, self.ex.theta(node.neuron))
            if tr is not None:
                tr[f"{node.neuron}.x"], tr[f"{node.neuron}.s"] = x, s
            return s, True
        if op == "add":
            (a, ta), (b, tb) = ins
            if ta != tb:  # a static value meets a temporal one: the static is the same at every step
                a, b = (a, b[None]) if ta else (a[None], b)
            return self.saturate(a + b, self.qcfg.membrane_bits), ta or tb
        if op == "sasa":
            (q, _), (k, _) = ins
            core = self.sasa(node, q, k)
            for neuron, s in ((node.attrs["lif_a"], core["mask"]), (node.attrs["lif_o"], core["o"])):
                tally = self.sasa_spikes.setdefault(neuron, [0, 0])
                tally[0] += int(s.sum())
                tally[1] += int(np.prod(s.shape))
            if self.attention == "zero_output":
                core["o"] = core["o"] * 0
            if tr is not None:
                tr[f"{node.name}.score"] = core["score"]
                tr[f"{node.attrs['lif_a']}.x"], tr[f"{node.attrs['lif_a']}.s"] = core["score"], core["mask"]
                tr[f"{node.attrs['lif_o']}.x"], tr[f"{node.attrs['lif_o']}.s"] = core["drive"], core["o"]
            return core["o"], True
        if op == "head":
            (s, _), = ins
            return self.head(node, s), False
        raise ShapeError(f"graph node '{node.name}': the golden model has no op '{op}'")

    def forward(self, x: np.ndarray, trace: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
        """Integer logits (B, classes) in units of 2^-head.acc_frac, and the traces if asked."""
        if not np.issubdtype(np.asarray(x).dtype, np.integer):
            raise ShapeError(f"the golden model takes integer inputs (quantize_input first); got {np.asarray(x).dtype}")
        static = is_static_input(self.cfg, x.shape, " (golden model)")
        tr: dict[str, np.ndarray] | None = {} if trace else None
        x = self.asarray(x)
        values: dict[str, tuple[np.ndarray, bool]] = {}
        last_use = self.graph.last_use()
        for idx, node in enumerate(self.graph):
            if node.op == "input":
                values[node.name] = (x, False) if static else (self.time_first(x), True)
                continue
            values[node.name] = self._node(node, [values[i] for i in node.inputs], tr)
            if tr is not None and node.trace:
                tr[node.name] = values[node.name][0]
            for i in node.inputs:  # free what no later node reads
                if last_use[i] == idx:
                    del values[i]
        return self.numpy(values[self.graph.output.name][0]), {k: self.numpy(v) for k, v in (tr or {}).items()}

    # the primitives the graph walk uses: numpy here, torch in saformer.quant.golden_torch
    def asarray(self, x):
        return np.asarray(x).astype(np.int64)

    @staticmethod
    def numpy(x) -> np.ndarray:
        return x

    @staticmethod
    def time_first(x):  # (B, T, ...) -> (T, B, ...)
        return x.swapaxes(0, 1)

    def steps(self, x):  # a static drive, the same at every step: (T, ...)
        return np.broadcast_to(x, (self.cfg.time_steps, *x.shape))

    @staticmethod
    def tokens(f):  # (M, D, H, W) -> (M, N, D), row-major tokens
        return f.reshape(f.shape[0], f.shape[1], -1).swapaxes(1, 2)

    @staticmethod
    def lif(x, theta: int):
        return lif_int(x, theta)[0]  # int8 spikes: every reader widens them

    @staticmethod
    def maxpool(x):
        return maxpool3x3s2(x)

    @staticmethod
    def saturate(x, bits: int):
        return saturate(x, bits)
