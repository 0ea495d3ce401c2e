"""Per-layer lanes for the accelerator's pipeline: every stage's cycles per image from the spikes it
sees, and lanes chosen engine by engine so that no stage is slower than a target.

The top is a pipeline (docs/accelerator.md), so it runs at about its slowest stage, and an
event-driven stage's cycles follow its input spikes: at CIFAR geometry the last SPS conv does 16x
the work of most engines. One lanes setting for every engine gives the light stages adders they
never use and the heavy ones too few; ``balance_lanes`` spends lanes where the cycles are.

Stage loads (``stage_loads``) are each block's own stall-free cycle model, per image: a syn_engine
``1 + e*TAPS*CH + POS*CH`` per group of e events (``blocks.engine_group_cycles``; with its weights
streamed in, ``blocks.streamed_engine_cycles`` at the port's latency), an event encoder
``max(e, 1)`` per beat (``blocks.EVENT_ENCODER.cycles``), a dense block (LIF, pool, residual add,
SASA core) one beat a cycle. A stage's load is a lower bound on the pipeline's cycles per image;
how far the whole top is from its slowest stage (the engines' drains, which stall their
producers) is what ``saformer accel`` reports beside it as the pipeline's efficiency.

Streams that meet: an engine's output keeps its lanes through pools, LIFs, residual adds and the
SASA core up to the next event encoder (events carry no lanes), and two streams that meet (a
residual add, SASA's {K, Q}) must have the same lanes. The engines feeding one such web form a
group (``lane_groups``): in SAFormer, the last SPS conv, the RPE and every block's proj and fc2 feed
the residual stream; each block's Q and K feed theirs. The stream runs at the group's fewest lanes,
and an engine with more reaches it through a lane_gearbox (``saformer.rtl_sim.accel.stream_lanes``),
so every engine's lanes are chosen on its own load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from saformer.config import HardwareConfig, divisors
from saformer.errors import ConfigError
from saformer.graph import SYNAPTIC_OPS
from saformer.rtl_sim.blocks import BLOCKS, engine_group_cycles, spike_trace, streamed_engine_cycles


def lane_roots(graph) -> dict[str, str]:
    """Per graph node, the group (named by its first engine in dataflow order) whose lanes its
    stream carries: engines start a stream, every other op carries (and merges) its inputs'."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    order = {n.name: i for i, n in enumerate(graph)}
    root: dict[str, str] = {}
    for n in graph:
        if n.op in SYNAPTIC_OPS or n.op == "input":
            parent[n.name] = n.name
            root[n.name] = n.name
            continue
        rs = [find(root[i]) for i in n.inputs]
        for r in rs[1:]:
            a, b = sorted((find(rs[0]), find(r)), key=order.get)
            parent[b] = a  # the earlier engine names the group
        root[n.name] = rs[0]
    return {name: find(r) for name, r in root.items()}


def lane_groups(graph) -> dict[str, list[str]]:
    """Engines whose output streams meet (one stream's lanes, which each reaches through a gearbox
    when its own differ), as {group name: [engines]} (the group's first engine names it)."""
    roots = lane_roots(graph)
    groups: dict[str, list[str]] = {}
    for n in graph:
        if n.op in SYNAPTIC_OPS:
            groups.setdefault(roots[n.name], []).append(n.name)
    return groups


def _engine_input(ex, traces: dict[str, np.ndarray], x_int: np.ndarray, node) -> np.ndarray:
    """What an engine reads, per image: (images, frames or steps, positions, channels)."""
    src = ex.graph[node.inputs[0]]
    if src.op == "input":  # a static image: one frame of values, positions row-major
        return x_int.reshape(*x_int.shape[:2], -1).transpose(0, 2, 1)[:, None]
    return spike_trace(ex.graph, traces, node.name)


def stage_loads(design, ex, x_int: np.ndarray, traces: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per block instance of a generated top, its stall-free cycles for each of the images
    ``x_int`` (whose golden ``traces`` are given): {instance: (images,) int64}. Forks, joins and
    FIFOs pass a beat a cycle and are left out (their load is their producer's)."""
    graph, t = ex.graph, ex.cfg.time_steps
    images = len(x_int)
    inputs = {}
    loads: dict[str, np.ndarray] = {}
    for b in design.blocks:
        p, kind = b["params"], b["block"]
        node = graph[b["node"]]
        if kind in ("syn_engine", "event_encoder"):
            if node.name not in inputs:
                inputs[node.name] = _engine_input(ex, traces, x_int, node)
            x = inputs[node.name]
        if kind == "syn_engine":
            drain = b.get("drain_lanes")  # through a narrowing gearbox: it drains at the stream's pace
            if node.op == "head":  # one group per sample: every spike of its T x N tokens
                per_group = (x != 0).sum(axis=(1, 2, 3)).reshape(images, 1)
            else:
                per_group = ((x != 0).sum(axis=(2, 3)) if p["KERNEL"] == 3 else (x != 0).sum(axis=3)).reshape(images, -1)
            latency = b.get("weight_latency")  # weights streamed in: a latency over a burst paces the events
            loads[b["instance"]] = (engine_group_cycles(p, per_group, drain).sum(axis=1) if latency is None else
                                    np.array([streamed_engine_cycles(p, g, latency, drain) for g in per_group], dtype=np.int64))
        elif kind == "lane_gearbox":  # one group of lcm values per max(K_IN, K_OUT) cycles
            loads[b["instance"]] = np.full(images, t * b["values_per_step"] // min(p["IN_LANES"], p["OUT_LANES"]),
                                           dtype=np.int64)
        elif kind == "event_encoder":
            block = BLOCKS["event_encoder"]
            loads[b["instance"]] = np.array([block.cycles(p, x[i]) - 2 for i in range(images)], dtype=np.int64)
        elif kind == "lif_unit":
            loads[b["instance"]] = np.full(images, t * p["NEURONS"] // p["LANES"], dtype=np.int64)
        elif kind == "frame_repeat":
            loads[b["instance"]] = np.full(images, p["TIMES"] * p["BEATS"], dtype=np.int64)
        elif kind == "maxpool":
            loads[b["instance"]] = np.full(images, t * p["C"] * p["H"] * p["W"] // p["LANES"], dtype=np.int64)
        elif kind == "sat_add":
            loads[b["instance"]] = np.full(images, t * int(np.prod(node.shape)) // p["LANES"], dtype=np.int64)
        elif kind == "sasa_core":
            loads[b["instance"]] = np.full(images, t * p["N"] * p["D"] // p["P"], dtype=np.int64)
    return loads


@dataclass
class Balance:
    """What balance_lanes chose: lanes per engine, and the stage loads (mean cycles per image over
    the sample) of the design at those lanes."""
    engine_lanes: dict[str, int]
    groups: dict[str, list[str]]
    loads: dict[str, float]  # instance -> mean cycles per image
    slowest: str
    target: int
    met: bool
    image_bound: float = 0.0  # mean over the images of each image's slowest stage (image_bound)

    @property
    def slowest_cycles(self) -> float:
        return self.loads[self.slowest]

    def hardware(self, hw: HardwareConfig) -> HardwareConfig:
        return hw.replace(engine_lanes=tuple(sorted(self.engine_lanes.items())))


def image_bound(loads: dict[str, np.ndarray]) -> float:
    """Mean over the images of each image's slowest stage: the stage that bounds an image differs
    from image to image (the SPS convs follow the image, the blocks their spikes), so this is the
    tighter bound on a pipeline's mean cycles per image than the slowest stage's mean."""
    return float(np.stack(list(loads.values())).max(axis=0).mean())


def _group_of(ex, roots: dict[str, str], block: dict) -> str | None:
    """The group whose lanes set a block's load: an engine's own, an encoder's producer's, a dense
    block's stream's."""
    node = ex.graph[block["node"]]
    if block["block"] == "event_encoder":
        node = ex.graph[node.inputs[0]]
    r = roots[node.name]
    return None if ex.graph[r].op == "input" else r


def balance_lanes(ex, x_int: np.ndarray, traces: dict[str, np.ndarray], target: int,
                  max_lanes: int = 512, hw: HardwareConfig | None = None) -> Balance:
    """Lanes per engine, fewest first, raised one divisor of its outputs at a time on the engine
    of the stage furthest over the target (summed over the images of the sample ``x_int``, with
    its golden ``traces``; for a dense block or an encoder: the narrowest engines of the stream it
    is on, which set that stream's lanes) until the mean over the images of each image's slowest
    stage (``image_bound``) is at most ``target``, or that stage has no more lanes to take (then
    ``met`` is False). Engines
    whose streams meet need not match: the generator puts a lane_gearbox between an engine and a
    narrower stream."""
    from saformer.rtl_sim.accel import generate_top

    if not isinstance(target, int) or target < 1:
        raise ConfigError(f"balance: the target must be a positive number of cycles per image, got {target!r}")
    hw = hw or HardwareConfig()
    graph = ex.graph
    groups = lane_groups(graph)
    roots = lane_roots(graph)
    engines = [e for members in groups.values() for e in members]
    choices = {e: [d for d in divisors(int(graph[e].channels)) if d <= max_lanes] or [1] for e in engines}
    pick = dict.fromkeys(engines, 0)

    def loads_at(pick: dict[str, int]) -> tuple[dict[str, int], Any, dict[str, np.ndarray]]:
        lanes = {e: choices[e][pick[e]] for e in engines}
        design = generate_top(ex, hw.replace(engine_lanes=tuple(sorted(lanes.items()))), None)
        return lanes, design, stage_loads(design, ex, x_int, traces)

    def excess(load: np.ndarray) -> float:  # cycles over the target, summed over the images
        return float(np.maximum(load - target, 0).sum())

    def narrowest(group: str | None, lanes: dict[str, int]) -> list[str]:
        members = groups.get(group, []) if group is not None else []
        least = min((lanes[m] for m in members), default=0)
        return [m for m in members if lanes[m] == least]

    def result(lanes, raw, slowest, met) -> Balance:
        means = {k: float(v.mean()) for k, v in raw.items()}
        return Balance(lanes, groups, means, slowest or max(means, key=means.get), target, met, image_bound(raw))

    lanes, design, raw = loads_at(pick)
    while True:
        if image_bound(raw) <= target:
            return result(lanes, raw, None, True)
        slowest = max(raw, key=lambda k: excess(raw[k]))
        block = {b["instance"]: b for b in design.blocks}[slowest]
        stream = narrowest(_group_of(ex, roots, block), lanes)
        # the engine itself, or (a dense block's load, or an engine draining into a narrower stream)
        # the stream's narrowest engines: whichever cuts this stage's excess the most per lane added
        moves = [[block["node"]]] if block["block"] == "syn_engine" else []
        if block["block"] != "syn_engine" or block.get("drain_lanes"):
            moves.append(stream)
        best = None
        for move in moves:
            if not move or any(pick[e] + 1 >= len(choices[e]) for e in move):
                continue
            trial = {**pick, **{e: pick[e] + 1 for e in move}}
            t_lanes, t_design, t_raw = loads_at(trial)
            gain = (excess(raw[slowest]) - excess(t_raw[slowest])) / sum(t_lanes[e] - lanes[e] for e in move)
            if best is None or gain > best[0]:
                best = (gain, trial, t_lanes, t_design, t_raw)
        if best is None:
            return result(lanes, raw, slowest, False)
        _, pick, lanes, design, raw = best


@dataclass
class ExactBalance:
    """balance_to_cycles' result: the balance it settled on, the bound it balanced for, and the
    exact cycle model's cycles per image of that top on the sample (the first holds the fill)."""
    balance: Balance
    target: int
    bound: int
    model_cycles: np.ndarray
    rounds: int

    @property
    def met(self) -> bool:
        return self.balance.met and self.mean_cycles <= self.target

    @property
    def mean_cycles(self) -> float:
        c = self.model_cycles[1:] if len(self.model_cycles) > 1 else self.model_cycles
        return float(c.mean())


def balance_to_cycles(ex, x_int: np.ndarray, traces: dict[str, np.ndarray], target: int, max_lanes: int = 512,
                      hw: HardwareConfig | None = None, max_rounds: int = 8, model_images: int = 32) -> ExactBalance:
    """Lanes for a pipeline whose mean cycles per image, as the exact cycle model computes them on
    the sample (the images behind the first), are at most ``target``. The stage bound balance_lanes
    meets is a lower bound (stages still wait on each other), so each round tightens the bound by
    the ratio the model found and balances again, up to ``max_rounds`` rounds; ``met`` says whether
    the last round met the target. The model runs on the sample's first ``model_images`` images (its
    cost follows the beats: about 0.15 s per digits image, 6 s per CIFAR image)."""
    from saformer.rtl_sim.accel import generate_top
    from saformer.rtl_sim.cycle_model import encoder_counts, model_top

    hw = hw or HardwareConfig()
    bound = target
    for rounds in range(1, max_rounds + 1):
        b = balance_lanes(ex, x_int, traces, bound, max_lanes, hw)
        design = generate_top(ex, b.hardware(hw), None)
        counts = encoder_counts(design, ex, x_int, traces)  # beats follow the lanes: every round anew
        model = model_top(design, ex, {k: v[:model_images] for k, v in counts.items()})
        exact = ExactBalance(b, target, bound, model.cycles_per_image, rounds)
        if exact.mean_cycles <= target or not b.met:
            break
        bound = min(bound - 1, int(bound * target / exact.mean_cycles))
    return exact
