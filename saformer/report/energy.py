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

import math
from dataclasses import dataclass
from typing import Any

from saformer.config import ModelConfig
from saformer.graph import SYNAPTIC_OPS, Graph, network_graph

E_MAC_PJ = 4.6
E_AC_PJ = 0.9

# 45 nm energies per operation (M. Horowitz, "Computing's energy problem", ISSCC 2014, as
# transcribed in ../shared/ACCEL_NOTES.md): integer add 0.03 pJ at 8 bits and 0.1 pJ at 32 bits,
# integer multiply 0.2 pJ at 8 bits and 3.1 pJ at 32 bits, a 64-bit read of an 8 KB SRAM 10 pJ.
# Other widths: adds linear between the two points, multiplies by the product of the widths
# (array multipliers), memory per bit at the 8 KB figure (on-chip memories here are 2-4 KB blocks),
# writes costed as reads (the table gives reads only).
ADD_PJ = {8: 0.03, 32: 0.1}
MULT_8X8_PJ = 0.2
SRAM_PJ_PER_BIT = 10.0 / 64
# a 64-bit DRAM access 1.3-2.6 nJ (same table): weights an engine streams from external memory, at
# the low end (a lower bound on what streaming costs)
DRAM_PJ_PER_BIT = 1300.0 / 64


def add_pj(bits: int) -> float:
    (b0, e0), (b1, e1) = sorted(ADD_PJ.items())
    return e0 + (bits - b0) * (e1 - e0) / (b1 - b0)


def mult_pj(a_bits: int, b_bits: int) -> float:
    return MULT_8X8_PJ * a_bits * b_bits / 64


def hardware_energy(activity: dict[str, Any]) -> dict[str, Any]:
    """Energy per image (pJ) of counted activity (saformer.rtl_sim.activity, ``Activity.scaled``):
    additions, multiplications, memory reads and writes, each at the 45 nm figures above."""
    adds = sum(n * add_pj(int(b)) for b, n in activity["adds"].items())
    mults = sum(n * mult_pj(*map(int, k.split("x"))) for k, n in activity["mults"].items())
    reads, writes = activity["read_bits"] * SRAM_PJ_PER_BIT, activity["write_bits"] * SRAM_PJ_PER_BIT
    external = activity.get("external_read_bits", 0) * DRAM_PJ_PER_BIT
    return {"adds_pj": adds, "mults_pj": mults, "memory_read_pj": reads, "memory_write_pj": writes,
            "external_read_pj": external,
            "total_pj": adds + mults + reads + writes + external, "add_ops": sum(activity["adds"].values()),
            "mult_ops": sum(activity["mults"].values())}


@dataclass(frozen=True)
class LayerOps:
    name: str
    kind: str  # "mac" (first layer) or "ac"
    flops: int  # dense ops per time step (or per image for a static first layer)
    rate_from: str | None  # the LIF whose spikes feed it (None: the image)


def _spike_source(graph: Graph, name: str) -> str | None:
    """The neuron whose firing rate measures the spikes of node ``name`` (None: the image)."""
    node = graph[name]
    if node.op == "lif":
        return node.neuron
    if node.op == "sasa":
        return node.attrs["lif_o"]
    if node.op == "input":
        return None
    raise ValueError(f"node {name!r} ({node.op}) carries no spikes")


def layer_ops(cfg: ModelConfig, attention: str | None = None) -> list[LayerOps]:
    """Every operation group of the model, in dataflow order, for ``attention`` (default: the config's).

    Walks the network graph: a 3x3 conv reads 9 x C_in inputs per output, a token layer D_in, the
    head every token's spike count; each SASA node is costed as the chosen attention.
    """
    attention = attention or cfg.attention
    if attention not in ("sasa", "ssa", "sdsa"):
        raise ValueError(f"unknown attention {attention!r}")
    graph = network_graph(cfg)
    ops = []
    for node in graph:
        if node.op in SYNAPTIC_OPS:
            x = graph[node.inputs[0]]
            outputs = math.prod(node.shape)
            if node.op == "head":
                flops = math.prod(x.shape) * outputs
            elif len(x.shape) == 3:
                flops = 9 * x.shape[0] * outputs
            else:
                flops = x.shape[-1] * outputs
            source = _spike_source(graph, x.name)
            ops.append(LayerOps(node.layer, "ac" if source else "mac", flops, source))
        elif node.op == "sasa":
            (n, d), p = node.shape, node.name
            q, k = (_spike_source(graph, i) for i in node.inputs)
            q_layer = graph[graph[node.inputs[0]].inputs[0]]  # SSA / SDSA add a V layer reading its input
            s_in = _spike_source(graph, q_layer.inputs[0])
            if attention == "sasa":
                ops += [LayerOps(f"{p}.count_q", "ac", n * d, q), LayerOps(f"{p}.count_k", "ac", n * d, k),
                        LayerOps(f"{p}.score", "ac", n * d, q)]
                if node.layer is not None:
                    ops.append(LayerOps(node.layer, "ac", 9 * n * d, k))
            elif attention == "ssa":
                ops += [LayerOps(f"{p}.v", "ac", n * d * d, s_in), LayerOps(f"{p}.qk", "ac", n * n * d, q),
                        LayerOps(f"{p}.av", "ac", n * n * d, k)]
            else:
                ops += [LayerOps(f"{p}.v", "ac", n * d * d, s_in), LayerOps(f"{p}.qk_sum", "ac", n * d, q)]
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
