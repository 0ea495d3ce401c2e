"""Spiking attention: SASA (SAFormer) and the SSA / SDSA baselines (DESIGN.md §1).

All three take input spikes S of shape (T, B, N, D) and return a real-valued (T, B, N, D) update
that the encoder block adds to its membrane stream U. Tokens are row-major over the
(grid_h, grid_w) grid that SPS produced.
"""

from __future__ import annotations

import torch
from torch import nn

from saformer.config import ModelConfig
from saformer.model.neuron import LIF


class LinearBN(nn.Module):
    """Linear (no bias) followed by BatchNorm over channels, on (T, B, N, C) tensors.

    No bias because BN's shift subsumes it; BN folds into the linear at export.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.bn = nn.BatchNorm1d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return self.bn(y.reshape(-1, y.shape[-1])).reshape(y.shape)


def make_lif(cfg: ModelConfig, v_threshold: float | None = None) -> LIF:
    return LIF(cfg.tau, cfg.v_threshold if v_threshold is None else v_threshold,
               cfg.surrogate, cfg.surrogate_alpha)


def aggregate_tokens(x: torch.Tensor, n_agg: int) -> torch.Tensor:
    """A(): average pooling over the token axis, N -> N' windows of w = N / N' tokens.

    (T, B, N, D) -> (T, B, N', D). Equals torch's AdaptiveAvgPool1d when N' divides N (the config
    requires it), written as a reshape so no pooling kernel is needed.
    """
    t, b, n, d = x.shape
    return x.reshape(t, b, n_agg, n // n_agg, d).mean(dim=3)


class SASA(nn.Module):
    """Spike Aggregated Self-Attention with its depthwise-conv branch.

        Q = LIF_q(BN(Linear_q(S)))          K = LIF_k(BN(Linear_k(S)))
        a = sum_n' A(Q)[n'] * A(K)[n']      per channel, (T, B, 1, D)
        M = LIF_a(a)                        channel mask, V_th = v_threshold_attn
        O = LIF_o(M * K + BN(DWConv3x3(K))) V_th = v_threshold_attn (see __init__)
        SASA(S) = BN(Linear_o(O))

    No V matrix, no softmax; cost linear in N.
    """

    output_neuron, mask_neuron = "lif_o", "lif_a"  # for the attention probes (saformer.model.probes)

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.n_agg, self.grid = cfg.n_agg, (cfg.grid_h, cfg.grid_w)
        self.q, self.k = LinearBN(d, d), LinearBN(d, d)
        self.lif_q, self.lif_k = make_lif(cfg), make_lif(cfg)
        self.lif_a = make_lif(cfg, cfg.v_threshold_attn)
        self.dwc = nn.Conv2d(d, d, 3, padding=1, groups=d, bias=False) if cfg.dwc else None
        self.dwc_bn = nn.BatchNorm2d(d) if cfg.dwc else None
        # LIF_o is an attention neuron (V_th = v_threshold_attn): without DWC its input M * K is
        # binary, and a tau = 2 neuron driven by 1 approaches H = 1 from below, never firing at 1.0.
        self.lif_o = make_lif(cfg, cfg.v_threshold_attn)
        self.proj = LinearBN(d, d)

    def attention_score(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """a[d] = sum over windows of A(Q) * A(K): (T, B, N, D) spikes -> (T, B, 1, D)."""
        return (aggregate_tokens(q, self.n_agg) * aggregate_tokens(k, self.n_agg)).sum(dim=2, keepdim=True)

    def depthwise_branch(self, k: torch.Tensor) -> torch.Tensor:
        """F = BN(DWConv3x3(K)) on the token grid, zero padding: (T, B, N, D) -> (T, B, N, D)."""
        t, b, n, d = k.shape
        grid = k.reshape(t * b, *self.grid, d).permute(0, 3, 1, 2)
        f = self.dwc_bn(self.dwc(grid))
        return f.permute(0, 2, 3, 1).reshape(t, b, n, d)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        q = self.lif_q(self.q(s))
        k = self.lif_k(self.k(s))
        mask = self.lif_a(self.attention_score(q, k))
        y = mask * k
        if self.dwc is not None:
            y = y + self.depthwise_branch(k)
        return self.proj(self.lif_o(y))


class SSA(nn.Module):
    """Spikformer's Spiking Self-Attention: LIF(Q K^T V * scale), quadratic in N."""

    output_neuron, mask_neuron = "lif_attn", None  # no channel mask

    def __init__(self, cfg: ModelConfig, scale: float = 0.125) -> None:
        super().__init__()
        d = cfg.dim
        self.heads, self.scale = cfg.heads, scale
        self.q, self.k, self.v = LinearBN(d, d), LinearBN(d, d), LinearBN(d, d)
        self.lif_q, self.lif_k, self.lif_v = make_lif(cfg), make_lif(cfg), make_lif(cfg)
        self.lif_attn = make_lif(cfg, cfg.v_threshold_attn)
        self.proj = LinearBN(d, d)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        t, b, n, d = s.shape
        h = self.heads

        def split(x: torch.Tensor) -> torch.Tensor:  # (T, B, N, D) -> (T, B, h, N, D/h)
            return x.reshape(t, b, n, h, d // h).transpose(2, 3)

        q = split(self.lif_q(self.q(s)))
        k = split(self.lif_k(self.k(s)))
        v = split(self.lif_v(self.v(s)))
        x = (q @ k.transpose(-2, -1)) @ v * self.scale
        x = x.transpose(2, 3).reshape(t, b, n, d)
        return self.proj(self.lif_attn(x))


class SDSA(nn.Module):
    """Spike-Driven Self-Attention (Spike-driven Transformer): SN(SUM_tokens(Q * K)) * V."""

    output_neuron, mask_neuron = "lif_a", "lif_a"  # its output is mask * V: a zero mask zeroes it

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.q, self.k, self.v = LinearBN(d, d), LinearBN(d, d), LinearBN(d, d)
        self.lif_q, self.lif_k, self.lif_v = make_lif(cfg), make_lif(cfg), make_lif(cfg)
        self.lif_a = make_lif(cfg, cfg.v_threshold_attn)
        self.proj = LinearBN(d, d)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        q = self.lif_q(self.q(s))
        k = self.lif_k(self.k(s))
        v = self.lif_v(self.v(s))
        mask = self.lif_a((q * k).sum(dim=2, keepdim=True))
        return self.proj(mask * v)


ATTENTION_CLASSES = {"sasa": SASA, "ssa": SSA, "sdsa": SDSA}


def build_attention(cfg: ModelConfig) -> nn.Module:
    return ATTENTION_CLASSES[cfg.attention](cfg)
