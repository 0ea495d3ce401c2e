"""Energy per image by the paper's accounting (45 nm figures of Horowitz, as in Spikformer / SDT):

    E = E_MAC * MACs(first layer) + E_AC * sum over the other layers of SOPs,
    SOPs(layer) = firing rate of its input spikes * T * FLOPs(layer)

FLOPs are the dense operation counts of a layer (out positions x out channels x fan-in). The first
layer sees the real image: its MACs count once per image for a static image (the model computes it
once and repeats it over T) and T times for event frames. Firing rates are measured on the
evaluation set (metrics.json, keyed by the LIF that feeds the layer).

Attention is counted per variant on the same config (ops per time step; N tokens, D channels):

- SASA:  N*D*(r_q + r_k) window counting, N*D*r_q score (each Q spike adds its window's K count),
         9*N*D*r_k DWC (weights added where K spikes; with DWC). No V projection.
- SSA:   V projection (N*D*D), Q K^T: N*N*D*r_q, (Q K^T) V: N*N*D*r_v.
- SDSA:  V projection (N*D*D), Q (.) K column sums: N*D*r_q.

SSA and SDSA are costed with the SASA run's measured rates (their Q/K/V rates stand in as the
SASA Q/K rates, V taking K's): no trained SSA/SDSA run is needed to put them side by side, and the
report says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from saformer.config import ModelConfig

E_MAC_PJ = 4.6
E_AC_PJ = 0.9


@dataclass(frozen=True)
class LayerOps:
    name: str
    kind: str  # "mac" (first layer) or "ac"
    flops: int  # dense ops per time step (or per image for a static first layer)
    rate_from: str | None  # the LIF whose spikes feed it (None: the image)


def sps_grids(cfg: ModelConfig) -> list[tuple[int, int]]:
    """Spatial size each SPS conv runs at (its pool, if any, comes after it)."""
    h, w, grids = cfg.height, cfg.width, []
    for i in range(4):
        grids.append((h, w))
        if i + 1 in cfg.pool_layers:
            h, w = -(-h // 2), -(-w // 2)
    return grids


def layer_ops(cfg: ModelConfig, attention: str | None = None) -> list[LayerOps]:
    """Every operation group of the model, in order, for ``attention`` (default: the config's)."""
    attention = attention or cfg.attention
    n, d = cfg.num_tokens, cfg.dim
    widths = (cfg.in_channels, *cfg.sps_channels)
    ops = []
    for i, (h, w) in enumerate(sps_grids(cfg)):
        flops = 9 * widths[i] * widths[i + 1] * h * w
        ops.append(LayerOps(f"sps.convs.{i}", "mac" if i == 0 else "ac", flops, None if i == 0 else f"sps.lifs.{i - 1}"))
    ops.append(LayerOps("sps.rpe", "ac", 9 * d * d * n, "sps.lifs.3"))
    for b in range(cfg.depth):
        p = f"blocks.{b}"
        s_in, q, k = f"{p}.lif_attn_in", f"{p}.attn.lif_q", f"{p}.attn.lif_k"
        ops += [LayerOps(f"{p}.attn.q", "ac", n * d * d, s_in), LayerOps(f"{p}.attn.k", "ac", n * d * d, s_in)]
        if attention == "sasa":
            ops += [LayerOps(f"{p}.attn.count_q", "ac", n * d, q), LayerOps(f"{p}.attn.count_k", "ac", n * d, k),
                    LayerOps(f"{p}.attn.score", "ac", n * d, q)]
            if cfg.dwc:
                ops.append(LayerOps(f"{p}.attn.dwc", "ac", 9 * n * d, k))
            out_rate = f"{p}.attn.lif_o"
        elif attention == "ssa":
            ops += [LayerOps(f"{p}.attn.v", "ac", n * d * d, s_in), LayerOps(f"{p}.attn.qk", "ac", n * n * d, q),
                    LayerOps(f"{p}.attn.av", "ac", n * n * d, k)]
            out_rate = f"{p}.attn.lif_o"
        elif attention == "sdsa":
            ops += [LayerOps(f"{p}.attn.v", "ac", n * d * d, s_in), LayerOps(f"{p}.attn.qk_sum", "ac", n * d, q)]
            out_rate = f"{p}.attn.lif_o"
        else:
            raise ValueError(f"unknown attention {attention!r}")
        hidden = cfg.mlp_ratio * d
        ops += [LayerOps(f"{p}.attn.proj", "ac", n * d * d, out_rate),
                LayerOps(f"{p}.mlp.fc1", "ac", n * d * hidden, f"{p}.lif_mlp_in"),
                LayerOps(f"{p}.mlp.fc2", "ac", n * hidden * d, f"{p}.mlp.lif")]
    ops.append(LayerOps("head", "ac", n * d * cfg.num_classes, "head_lif"))
    return ops


def energy_table(cfg: ModelConfig, rates: dict[str, float], attention: str | None = None,
                 static_input: bool = True) -> dict[str, Any]:
    """Per-layer SOPs and energy (pJ) per image, with totals. ``rates`` maps LIF names to firing rates.

    Where a baseline's attention output neuron has no measured rate (it is costed on the SASA run),
    the SASA LIF_o rate of the same block is used: same name, so nothing to map.
    """
    t = cfg.time_steps
    rows, total_sops, total_macs = [], 0.0, 0.0
    for op in layer_ops(cfg, attention):
        if op.kind == "mac":
            macs = op.flops * (1 if static_input else t)
            energy = macs * E_MAC_PJ
            rows.append({"layer": op.name, "kind": "MAC", "flops": op.flops, "rate": None, "ops": macs, "energy_pj": energy})
            total_macs += macs
            continue
        if op.rate_from not in rates:
            raise KeyError(f"no firing rate for '{op.rate_from}' (feeding {op.name})")
        sops = rates[op.rate_from] * t * op.flops
        rows.append({"layer": op.name, "kind": "AC", "flops": op.flops, "rate": rates[op.rate_from],
                     "rate_from": op.rate_from, "ops": sops, "energy_pj": sops * E_AC_PJ})
        total_sops += sops
    energy = total_macs * E_MAC_PJ + total_sops * E_AC_PJ
    return {"attention": attention or cfg.attention, "time_steps": t, "e_mac_pj": E_MAC_PJ, "e_ac_pj": E_AC_PJ,
            "layers": rows, "macs": total_macs, "sops": total_sops, "energy_pj": energy, "energy_uj": energy / 1e6}
