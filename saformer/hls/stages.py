"""The hls4ml stages of a SAFormer: torch graphs built from the integer export alone, their
precisions (from the contract), and how each stage's inputs and traces map to the golden model.

The SASA core (score, LIF_a, mask, DWC, LIF_o) is the hand-written RTL, so every encoder block
splits around it into two stages:

    sps              image -> conv/pool/LIF x4 -> rpe + residual          -> U0
    blocks.i.qk      U -> LIF -> Q and K 1x1 convs -> LIF_q, LIF_k        -> [Q | K] spikes
    (RTL core)       Q, K -> O
    blocks.i.post    O, U -> proj + residual -> LIF -> fc1 -> LIF -> fc2 + residual -> U'
    head             U -> LIF -> spike counts over tokens and steps -> linear -> logits

Tokens stay on their grid (H, W, D), channels last, so the Q/K/proj/MLP linears are 1x1 convs
and a channels-last flat vector is exactly the golden model's row-major (N, D) token layout.
Weights enter hls4ml as their integers times the export's power-of-two scale; with
``ap_fixed<B, B - F>`` the stored bits are the export's B-bit integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from saformer.errors import SaformerError
from saformer.hls.extension import lif_module, spike_count_module
from saformer.quant.export import IntegerExport

SUPPORTED_KINDS = {"conv", "linear"}
MAX_EXACT_BITS = 53  # the C simulation returns doubles: every checked value must fit their mantissa


class HlsError(SaformerError):
    """A layer, precision or option the hls4ml flow cannot take."""


def fixed(width: int, frac: int, signed: bool = True, rounding: str | None = None, saturation: str | None = None) -> str:
    """An ap_fixed type string holding integers of ``width`` bits at scale 2^-frac."""
    args = [str(width), str(width - frac)] + [a for a in (rounding, saturation) if a]
    return f"ap_{'' if signed else 'u'}fixed<{','.join(args)}>"


@dataclass
class TraceCheck:
    """A traced hls4ml layer and the golden values it must equal, as integers (rows = B*T steps)."""

    layer: str
    golden: str  # a golden trace key, or a description for derived values
    frac: int  # hls value * 2^frac = golden integer
    expected: Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass
class Stage:
    name: str
    module: nn.Module
    inputs: list[str]  # forward() argument names = hls4ml input layer names
    input_shapes: list[tuple[int, ...]]  # channels first, no batch
    input_precisions: dict[str, str]
    precisions: dict[str, dict[str, str]]  # layer name -> {result/weight/bias/accum: type}
    input_values: Callable[[np.ndarray, dict[str, np.ndarray]], list[np.ndarray]]  # (x_int, traces) -> hls inputs
    checks: list[TraceCheck] = field(default_factory=list)
    output_check: TraceCheck | None = None
    synapses: dict[str, str] = field(default_factory=dict)  # hls layer -> export layer


def steps_first(x: np.ndarray, channels_first: bool = False) -> np.ndarray:
    """A golden trace (T, B, ...) -> (B*T, features) rows in the order the stage is called,
    channels last (a (C, H, W) trace is moved to (H, W, C) first)."""
    t, b = x.shape[:2]
    x = np.moveaxis(x, 0, 1)
    if channels_first:
        x = np.moveaxis(x, 2, -1)
    return x.reshape(b * t, -1)


def _conv(ex: IntegerExport, name: str, kernel: int) -> nn.Conv2d:
    w, b = ex.weight(name), ex.bias(name)
    spec = ex.layer(name)
    if w.ndim == 2:
        w = w[:, :, None, None]
    if w.shape[-1] != kernel:
        raise HlsError(f"layer '{name}': expected a {kernel}x{kernel} kernel, the export has {w.shape[-2:]}")
    conv = nn.Conv2d(w.shape[1], w.shape[0], kernel, padding=kernel // 2)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w.astype(np.float64) * 2.0 ** -spec["weight_frac"]))
        conv.bias.copy_(torch.from_numpy(b.astype(np.float64) * 2.0 ** -spec["acc_frac"]))
    return conv


class _Builder:
    """Precisions and checks for one export, shared by the stage constructors."""

    def __init__(self, ex: IntegerExport, allowed_layers: set[str] | None = None) -> None:
        self.ex, self.cfg, self.q = ex, ex.cfg, ex.qcfg
        self.mem_bits, self.mem_frac = self.q.membrane_bits, self.q.membrane_frac
        self.membrane = fixed(self.mem_bits, self.mem_frac)
        self.membrane_sat = fixed(self.mem_bits, self.mem_frac, rounding="AP_TRN", saturation="AP_SAT")
        self.spike = "ap_uint<1>"
        self.validate()

    def validate(self) -> None:
        cfg = self.cfg
        if cfg.attention != "sasa":
            raise HlsError(f"the hls4ml flow splits SASA blocks around the RTL core; this export's attention "
                           f"is '{cfg.attention}' (layer 'blocks.0.attn')")
        if not 2 <= self.mem_bits <= MAX_EXACT_BITS - 1:
            raise HlsError(f"membrane format of {self.mem_bits} bits: hls4ml's C simulation checks values "
                           f"up to {MAX_EXACT_BITS - 1} bits")
        for name, spec in self.ex.manifest["layers"].items():
            if name.endswith(".dwc"):
                continue  # inside the RTL core
            if spec["kind"] not in SUPPORTED_KINDS:
                raise HlsError(f"layer '{name}': kind '{spec['kind']}' has no hls4ml stage "
                               f"(supported: {sorted(SUPPORTED_KINDS)})")
            if spec["kind"] == "conv" and spec["groups"] != 1:
                raise HlsError(f"layer '{name}': grouped conv ({spec['groups']} groups) has no hls4ml stage")
            if not 2 <= spec["weight_bits"] <= 32:
                raise HlsError(f"layer '{name}': {spec['weight_bits']}-bit weights are outside what the "
                               "flow maps to ap_fixed (2..32 bits)")
            if spec["acc_bits_needed"] > MAX_EXACT_BITS:
                raise HlsError(f"layer '{name}': its accumulator needs {spec['acc_bits_needed']} bits; the C "
                               f"simulation's doubles hold {MAX_EXACT_BITS}")
        for neuron, spec in self.ex.manifest["neurons"].items():
            if ".attn.lif_a" in neuron or ".attn.lif_o" in neuron:
                continue
            if spec["frac"] != self.mem_frac:
                raise HlsError(f"neuron '{neuron}': threshold in 2^-{spec['frac']} units, but its hls4ml LIF "
                               f"works on the 2^-{self.mem_frac} membrane")

    def synapse(self, name: str, result: str | None = None) -> dict[str, str]:
        spec = self.ex.layer(name)
        acc_bits = spec["acc_bits_needed"]
        return {"weight": fixed(spec["weight_bits"], spec["weight_frac"]),
                "bias": fixed(self.q.accumulator_bits, spec["acc_frac"]),
                "accum": fixed(acc_bits, spec["acc_frac"]),
                "result": result or self.membrane_sat}

    def lif(self, neuron: str) -> nn.Module:
        return lif_module(self.ex.theta(neuron), self.mem_frac, self.cfg.time_steps)


# ---- the stages ---------------------------------------------------------------------------------
def sps_stage(b: _Builder) -> Stage:
    cfg = b.cfg
    pooled = [i + 1 in cfg.pool_layers for i in range(4)]

    class SPSStage(nn.Module):
        def __init__(self):
            super().__init__()
            for i in range(4):
                setattr(self, f"conv{i}", _conv(b.ex, f"sps.convs.{i}", 3))
                setattr(self, f"lif{i}", b.lif(f"sps.lifs.{i}"))
                if pooled[i]:
                    setattr(self, f"pool{i}", nn.MaxPool2d(3, 2, 1))
            self.rpe = _conv(b.ex, "sps.rpe", 3)

        def forward(self, image):
            s = image
            for i in range(4):
                y = getattr(self, f"conv{i}")(s)
                if pooled[i]:
                    y = getattr(self, f"pool{i}")(y)
                s = getattr(self, f"lif{i}")(y)
            return y + self.rpe(s)

    fmt = b.ex.manifest["formats"]["input"]
    precisions = {f"conv{i}": b.synapse(f"sps.convs.{i}") for i in range(4)}
    precisions.update({f"lif{i}": {"result": b.spike} for i in range(4)})
    precisions.update({f"pool{i}": {"result": b.membrane_sat} for i in range(4) if pooled[i]})
    precisions.update(rpe=b.synapse("sps.rpe"), add={"result": b.membrane_sat})
    checks = []
    for i in range(4):
        drive = f"pool{i}" if pooled[i] else f"conv{i}"
        checks.append(_trace(drive, f"sps.lifs.{i}.x", b.mem_frac, channels_first=True))
        checks.append(_trace(f"lif{i}", f"sps.lifs.{i}.s", 0, channels_first=True))

    def inputs(x_int: np.ndarray, traces: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = np.asarray(x_int, np.float64) * 2.0 ** -fmt["frac"]
        if x.ndim == 4:  # a static image: the same input at every step
            x = np.repeat(x[:, None], cfg.time_steps, axis=1)
        return [np.moveaxis(x, 2, -1).reshape(x.shape[0] * x.shape[1], -1)]  # (B*T, H*W*C)

    return Stage("sps", SPSStage(), ["image"], [(cfg.in_channels, cfg.height, cfg.width)],
                 {"image": fixed(fmt["bits"], fmt["frac"])}, precisions, inputs, checks,
                 output_check=_trace("add", "sps.u0", b.mem_frac),
                 synapses={**{f"conv{i}": f"sps.convs.{i}" for i in range(4)}, "rpe": "sps.rpe"})


def _stream_in(i: int) -> str:
    return "sps.u0" if i == 0 else f"blocks.{i - 1}.u_out"


def qk_stage(b: _Builder, i: int) -> Stage:
    cfg, p = b.cfg, f"blocks.{i}"

    class QKStage(nn.Module):
        def __init__(self):
            super().__init__()
            self.lif_in = b.lif(f"{p}.lif_attn_in")
            self.q, self.lif_q = _conv(b.ex, f"{p}.attn.q", 1), b.lif(f"{p}.attn.lif_q")
            self.k, self.lif_k = _conv(b.ex, f"{p}.attn.k", 1), b.lif(f"{p}.attn.lif_k")

        def forward(self, u):
            s = self.lif_in(u)
            return torch.cat([self.lif_q(self.q(s)), self.lif_k(self.k(s))], dim=1)

    precisions = {"lif_in": {"result": b.spike}, "q": b.synapse(f"{p}.attn.q"), "lif_q": {"result": b.spike},
                  "k": b.synapse(f"{p}.attn.k"), "lif_k": {"result": b.spike}, "cat": {"result": b.spike}}
    checks = [_trace("lif_in", f"{p}.lif_attn_in.s", 0), _trace("q", f"{p}.attn.lif_q.x", b.mem_frac),
              _trace("lif_q", f"{p}.attn.lif_q.s", 0), _trace("k", f"{p}.attn.lif_k.x", b.mem_frac),
              _trace("lif_k", f"{p}.attn.lif_k.s", 0)]

    def expected_qk(tr: dict[str, np.ndarray]) -> np.ndarray:
        qk = np.concatenate([tr[f"{p}.attn.lif_q.s"], tr[f"{p}.attn.lif_k.s"]], axis=-1)  # (T, B, N, 2D)
        return steps_first(qk)

    def inputs(x_int, traces):
        return [steps_first(traces[_stream_in(i)]) * 2.0 ** -b.mem_frac]

    return Stage(f"{p}.qk", QKStage(), ["u"], [(cfg.dim, cfg.grid_h, cfg.grid_w)], {"u": b.membrane},
                 precisions, inputs, checks,
                 output_check=TraceCheck("cat", f"{p}.attn.lif_q.s | {p}.attn.lif_k.s", 0, expected_qk),
                 synapses={"q": f"{p}.attn.q", "k": f"{p}.attn.k"})


def post_stage(b: _Builder, i: int) -> Stage:
    cfg, p = b.cfg, f"blocks.{i}"

    class PostStage(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = _conv(b.ex, f"{p}.attn.proj", 1)
            self.lif_in = b.lif(f"{p}.lif_mlp_in")
            self.fc1, self.lif_hidden = _conv(b.ex, f"{p}.mlp.fc1", 1), b.lif(f"{p}.mlp.lif")
            self.fc2 = _conv(b.ex, f"{p}.mlp.fc2", 1)

        def forward(self, o, u):
            u = u + self.proj(o)
            return u + self.fc2(self.lif_hidden(self.fc1(self.lif_in(u))))

    precisions = {"proj": b.synapse(f"{p}.attn.proj"), "add": {"result": b.membrane_sat},
                  "lif_in": {"result": b.spike}, "fc1": b.synapse(f"{p}.mlp.fc1"),
                  "lif_hidden": {"result": b.spike}, "fc2": b.synapse(f"{p}.mlp.fc2"),
                  "add_1": {"result": b.membrane_sat}}
    checks = [_trace("add", f"{p}.u_attn", b.mem_frac), _trace("lif_in", f"{p}.lif_mlp_in.s", 0),
              _trace("fc1", f"{p}.mlp.lif.x", b.mem_frac), _trace("lif_hidden", f"{p}.mlp.lif.s", 0)]

    def inputs(x_int, traces):
        return [steps_first(traces[f"{p}.attn.lif_o.s"]).astype(np.float64),
                steps_first(traces[_stream_in(i)]) * 2.0 ** -b.mem_frac]

    shape = (cfg.dim, cfg.grid_h, cfg.grid_w)
    return Stage(f"{p}.post", PostStage(), ["o", "u"], [shape, shape], {"o": b.spike, "u": b.membrane},
                 precisions, inputs, checks, output_check=_trace("add_1", f"{p}.u_out", b.mem_frac),
                 synapses={"proj": f"{p}.attn.proj", "fc1": f"{p}.mlp.fc1", "fc2": f"{p}.mlp.fc2"})


def head_stage(b: _Builder) -> Stage:
    cfg, ex = b.cfg, b.ex
    steps = cfg.time_steps * cfg.num_tokens
    spec = ex.layer("head")

    class HeadStage(nn.Module):
        def __init__(self):
            super().__init__()
            self.lif = b.lif("head_lif")
            self.count = spike_count_module(cfg.time_steps)
            self.head = nn.Linear(cfg.dim, cfg.num_classes)
            with torch.no_grad():  # the contract adds the bias once per token and step: T*N times
                self.head.weight.copy_(torch.from_numpy(ex.weight("head") * 2.0 ** -spec["weight_frac"]))
                self.head.bias.copy_(torch.from_numpy(ex.bias("head") * steps * 2.0 ** -spec["acc_frac"]))

        def forward(self, u):
            return self.head(self.count(self.lif(u)))

    acc = spec["acc_bits_needed"]
    head = b.synapse("head", result=fixed(acc, spec["acc_frac"]))
    head["bias"] = fixed(acc, spec["acc_frac"])

    def running_counts(tr):  # (T, B, N, D) spikes -> counts so far (B*T, D)
        return steps_first(np.cumsum(tr["head_lif.s"].sum(axis=2), axis=0))

    def running_logits(tr):
        return running_counts(tr) @ ex.weight("head").T + steps * ex.bias("head")

    def inputs(x_int, traces):
        return [steps_first(traces[f"blocks.{cfg.depth - 1}.u_out"]) * 2.0 ** -b.mem_frac]

    precisions = {"lif": {"result": b.spike}, "count": {"result": f"ap_uint<{(steps).bit_length()}>"}, "head": head}
    checks = [_trace("lif", "head_lif.s", 0), TraceCheck("count", "head_lif.s summed so far", 0, running_counts)]
    return Stage("head", HeadStage(), ["u"], [(cfg.dim, cfg.grid_h, cfg.grid_w)], {"u": b.membrane},
                 precisions, inputs, checks,
                 output_check=TraceCheck("head", "logits (and the running sums before the last step)",
                                         spec["acc_frac"], running_logits),
                 synapses={"head": "head"})


def _trace(layer: str, key: str, frac: int, channels_first: bool = False) -> TraceCheck:
    return TraceCheck(layer, key, frac, lambda tr: steps_first(tr[key], channels_first))


def build_stages(ex: IntegerExport) -> list[Stage]:
    """Every hls4ml stage of an export, in dataflow order."""
    b = _Builder(ex)
    stages = [sps_stage(b)]
    for i in range(ex.cfg.depth):
        stages += [qk_stage(b, i), post_stage(b, i)]
    return stages + [head_stage(b)]
