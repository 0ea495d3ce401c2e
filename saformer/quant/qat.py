"""The quantization-aware SAFormer: BN folded, Brevitas fixed-point weights, integer-exact eval.

Same module names as the float model (``sps.convs.0``, ``blocks.0.attn.q``, ...) so that the
float checkpoint maps onto it after BN folding. Every value it computes in eval mode is a small
integer times a power of two, so float arithmetic is exact and the outputs equal the golden
model's integers (run it in float64 to keep every sum exact; float32 is exact while sums stay
below 2^24 units). The arithmetic is that of docs/integer_contract.md, through the primitives of
:mod:`saformer.quant.fixed_point`.
"""

from __future__ import annotations

import math

import brevitas.nn as qnn
import torch
from brevitas.quant import Int8WeightPerTensorFixedPoint
from torch import nn

from saformer.config import ModelConfig, QuantConfig
from saformer.errors import ConfigError
from saformer.model.neuron import LIF
from saformer.model.saformer import SPS, is_static_input
from saformer.quant.fixed_point import emulate_quantize_input, emulate_saturate, emulate_to_membrane, round_ste


def check_quantizable(cfg: ModelConfig) -> None:
    """The integer contract covers SASA SAFormers with tau = 2 and power-of-two windows."""
    if cfg.attention != "sasa":
        raise ConfigError(f"config '{cfg.name}': the integer contract covers SASA only, not {cfg.attention!r} "
                          "(the SSA/SDSA baselines stay float)")
    if cfg.tau != 2.0:
        raise ConfigError(f"config '{cfg.name}': the integer LIF is H = (V + X) >> 1, which needs tau = 2, got {cfg.tau}")
    w = cfg.window
    if w & (w - 1):
        raise ConfigError(f"config '{cfg.name}': SASA window w = N/N' = {w} must be a power of two "
                          "(1/w^2 is a shift in LIF_a)")


def score_frac(cfg: ModelConfig) -> int:
    """LIF_a works in units of 1/w^2 (the window-count product): 2 log2(w) fractional bits."""
    return 2 * int(math.log2(cfg.window))


class QuantSynapse(nn.Module):
    """A folded conv or linear layer: Brevitas fixed-point weight, bias at the accumulator scale,
    output floored and saturated to the membrane format.

    ``in_frac`` is the input's fractional bits (0 for spikes), so the accumulator's scale is
    2^-(weight_frac + in_frac) and the bias is quantized (round to nearest) to that scale.
    """

    def __init__(self, kind: str, c_in: int, c_out: int, weight_bits: int, qcfg: QuantConfig,
                 in_frac: int = 0, groups: int = 1, to_membrane: bool = True) -> None:
        super().__init__()
        common = dict(bias=False, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=weight_bits)
        if kind == "conv":
            self.layer = qnn.QuantConv2d(c_in, c_out, 3, padding=1, groups=groups, **common)
        elif kind == "linear":
            self.layer = qnn.QuantLinear(c_in, c_out, **common)
        else:
            raise ValueError(kind)
        self.kind, self.in_frac, self.qcfg, self.weight_bits = kind, in_frac, qcfg, weight_bits
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.to_membrane = to_membrane

    def weight_frac(self) -> int:
        """Fractional bits of the weight: its power-of-two scale is 2^-weight_frac."""
        return int(round(-math.log2(float(self.layer.quant_weight().scale.detach()))))

    @property
    def acc_frac(self) -> int:
        return self.weight_frac() + self.in_frac

    def quant_bias(self) -> torch.Tensor:
        """The bias on the accumulator grid, saturated to the accumulator width."""
        scale = 2.0 ** self.acc_frac
        return emulate_saturate(round_ste(self.bias * scale) / scale, self.qcfg.accumulator_bits, self.acc_frac)

    def accumulate(self, x: torch.Tensor) -> torch.Tensor:
        """The accumulator as a real value: weights summed over the input, plus the bias."""
        y = self.layer(x)
        b = self.quant_bias().to(y.dtype)
        return y + (b.view(1, -1, 1, 1) if self.kind == "conv" else b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acc = self.accumulate(x)
        if not self.to_membrane:
            return acc
        return emulate_to_membrane(acc, self.qcfg.membrane_frac, self.qcfg.membrane_bits)


class Probe(nn.Identity):
    """Marks a tensor the hardware must match (residual streams, SASA scores); hooks read it.

    ``frac``: the tensor holds integers times 2^-frac.
    """

    def __init__(self, frac: int) -> None:
        super().__init__()
        self.frac = frac


def _lif(cfg: ModelConfig, qcfg: QuantConfig, v_threshold: float | None = None, frac: int | None = None) -> LIF:
    return LIF(cfg.tau, cfg.v_threshold if v_threshold is None else v_threshold, cfg.surrogate,
               cfg.surrogate_alpha, qcfg.membrane_frac if frac is None else frac)


class QuantSPS(SPS):
    """SPS on the integer contract: the float SPS's loop with quantized layers and a saturating merge."""

    def __init__(self, cfg: ModelConfig, qcfg: QuantConfig) -> None:
        super().__init__(
            cfg,
            conv=lambda name, c_in, c_out: QuantSynapse(
                "conv", c_in, c_out, qcfg.bits_for(name), qcfg,
                in_frac=qcfg.input_frac if name == "sps.convs.0" else 0),
            lif=lambda: _lif(cfg, qcfg))
        self.u0 = Probe(qcfg.membrane_frac)
        self.qcfg = qcfg

    def merge(self, membrane: torch.Tensor, rpe: torch.Tensor) -> torch.Tensor:
        return emulate_saturate(membrane + rpe, self.qcfg.membrane_bits, self.qcfg.membrane_frac)

    def forward(self, x: torch.Tensor, static: bool) -> torch.Tensor:
        return self.u0(super().forward(x, static))


class QuantSASA(nn.Module):
    """SASA on the integer contract: counts, LIF_a in units of 1/w^2, saturating sums."""

    output_neuron, mask_neuron = "lif_o", "lif_a"  # for the attention probes (saformer.model.probes)

    def __init__(self, cfg: ModelConfig, qcfg: QuantConfig, prefix: str) -> None:
        super().__init__()
        d = cfg.dim
        self.n_agg, self.grid, self.qcfg, self.window = cfg.n_agg, (cfg.grid_h, cfg.grid_w), qcfg, cfg.window
        self.q = QuantSynapse("linear", d, d, qcfg.bits_for(f"{prefix}.q"), qcfg)
        self.k = QuantSynapse("linear", d, d, qcfg.bits_for(f"{prefix}.k"), qcfg)
        self.lif_q, self.lif_k = _lif(cfg, qcfg), _lif(cfg, qcfg)
        self.score = Probe(0)  # the count sum w^2 * a
        self.lif_a = _lif(cfg, qcfg, cfg.v_threshold_attn, frac=score_frac(cfg))
        self.dwc = (QuantSynapse("conv", d, d, qcfg.bits_for(f"{prefix}.dwc"), qcfg, groups=d)
                    if cfg.dwc else None)
        self.lif_o = _lif(cfg, qcfg, cfg.v_threshold_attn)
        self.proj = QuantSynapse("linear", d, d, qcfg.bits_for(f"{prefix}.proj"), qcfg)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        t, b, n, d = s.shape
        q = self.lif_q(self.q(s))
        k = self.lif_k(self.k(s))
        qc = q.reshape(t, b, self.n_agg, self.window, d).sum(3)
        kc = k.reshape(t, b, self.n_agg, self.window, d).sum(3)
        a = self.score((qc * kc).sum(2, keepdim=True)) / self.window ** 2  # exact: w is a power of two
        y = self.lif_a(a) * k
        if self.dwc is not None:
            grid = k.reshape(t * b, *self.grid, d).permute(0, 3, 1, 2)
            f = self.dwc(grid).permute(0, 2, 3, 1).reshape(t, b, n, d)
            y = emulate_saturate(y + f, self.qcfg.membrane_bits, self.qcfg.membrane_frac)
        return self.proj(self.lif_o(y))


class QuantMLP(nn.Module):
    def __init__(self, cfg: ModelConfig, qcfg: QuantConfig, prefix: str) -> None:
        super().__init__()
        hidden = cfg.dim * cfg.mlp_ratio
        self.fc1 = QuantSynapse("linear", cfg.dim, hidden, qcfg.bits_for(f"{prefix}.fc1"), qcfg)
        self.lif = _lif(cfg, qcfg)
        self.fc2 = QuantSynapse("linear", hidden, cfg.dim, qcfg.bits_for(f"{prefix}.fc2"), qcfg)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.lif(self.fc1(s)))


class QuantEncoderBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, qcfg: QuantConfig, prefix: str) -> None:
        super().__init__()
        self.lif_attn_in, self.attn = _lif(cfg, qcfg), QuantSASA(cfg, qcfg, f"{prefix}.attn")
        self.lif_mlp_in, self.mlp = _lif(cfg, qcfg), QuantMLP(cfg, qcfg, f"{prefix}.mlp")
        self.u_attn, self.u_out = Probe(qcfg.membrane_frac), Probe(qcfg.membrane_frac)
        self.qcfg = qcfg

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        bits, frac = self.qcfg.membrane_bits, self.qcfg.membrane_frac
        u = self.u_attn(emulate_saturate(u + self.attn(self.lif_attn_in(u)), bits, frac))
        return self.u_out(emulate_saturate(u + self.mlp(self.lif_mlp_in(u)), bits, frac))


class QuantSAFormer(nn.Module):
    """SAFormer on the integer contract. ``forward`` gives logits for training;
    :meth:`integer_logits` gives the head's accumulator, the integer the hardware produces.
    """

    def __init__(self, cfg: ModelConfig, qcfg: QuantConfig) -> None:
        super().__init__()
        check_quantizable(cfg)
        self.cfg, self.qcfg = cfg, qcfg
        self.sps = QuantSPS(cfg, qcfg)
        self.blocks = nn.ModuleList(QuantEncoderBlock(cfg, qcfg, f"blocks.{i}") for i in range(cfg.depth))
        self.head_lif = _lif(cfg, qcfg)
        self.head = QuantSynapse("linear", cfg.dim, cfg.num_classes, qcfg.bits_for("head"), qcfg, to_membrane=False)

    def spike_counts(self, x: torch.Tensor) -> torch.Tensor:
        """Head-LIF spikes summed over time steps and tokens: (B, D) integers."""
        static = is_static_input(self.cfg, x.shape)
        x = emulate_quantize_input(x, self.qcfg.input_bits, self.qcfg.input_frac)
        u = self.sps(x if static else x.transpose(0, 1), static=static)
        for block in self.blocks:
            u = block(u)
        return self.head_lif(u).sum(dim=(0, 2))

    def integer_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The head accumulator in units of 2^-head_frac: sum of the weights of every head spike
        plus T*N times the bias. Integers (held in x's float dtype)."""
        counts = self.spike_counts(x)
        steps = self.cfg.time_steps * self.cfg.num_tokens
        acc = self.head.layer(counts) + steps * self.head.quant_bias().to(counts.dtype)
        return acc * 2.0 ** self.head.acc_frac

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        counts = self.spike_counts(x)
        return self.head(counts / (self.cfg.time_steps * self.cfg.num_tokens))


def synapse_layers(model: nn.Module) -> dict[str, QuantSynapse]:
    """Every synaptic layer by module name, in forward order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, QuantSynapse)}


def synapse_names(cfg: ModelConfig) -> list[str]:
    """The synaptic layer names of a config, read off the QAT model itself (no second copy of the
    topology): the names ``--layer-bits`` and the export use."""
    with torch.device("meta"):
        model = QuantSAFormer(cfg, QuantConfig())
    return list(synapse_layers(model))


@torch.no_grad()
def integer_traces(model: QuantSAFormer, x: torch.Tensor) -> dict[str, "np.ndarray"]:
    """Run the QAT model and return every neuron's drive and spikes, every probe and the logits as
    int64 arrays in the golden model's units and names (see saformer.quant.golden)."""
    import numpy as np

    traces: dict[str, np.ndarray] = {}

    def to_int(t: torch.Tensor, frac: int) -> np.ndarray:
        scaled = t.detach().double() * 2.0 ** frac
        ints = torch.round(scaled)
        if not torch.equal(ints, scaled):
            raise AssertionError("a QAT value is off its fixed-point grid: float emulation lost exactness")
        return ints.cpu().numpy().astype(np.int64)

    def lif_hook(name, m):
        def hook(_m, inputs, output):
            traces[f"{name}.x"] = to_int(inputs[0], m.frac)
            traces[f"{name}.s"] = to_int(output, 0)
        return hook

    def probe_hook(name, m):
        def hook(_m, _inputs, output):
            traces[name] = to_int(output, m.frac)
        return hook

    handles = []
    for name, m in model.named_modules():
        if isinstance(m, LIF):
            handles.append(m.register_forward_hook(lif_hook(name, m)))
        elif isinstance(m, Probe):
            handles.append(m.register_forward_hook(probe_hook(name, m)))
    try:
        model.eval()
        traces["logits"] = to_int(model.integer_logits(x), 0)
    finally:
        for h in handles:
            h.remove()
    return traces
