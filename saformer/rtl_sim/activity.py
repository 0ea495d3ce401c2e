"""What the generated accelerator does for an image, counted block by block: additions by width,
multiplications, and bits read from and written to on-chip memories (saformer.report.energy turns
them into energy with the 45 nm table).

The counts follow each block's SystemVerilog and the spikes the RTL computes, which are the golden
model's (``saformer accel`` holds them equal at every checkpoint and in the logits):

- syn_engine (event-driven): per input event, KERNEL^2 x OUT/LANES tap slots; an in-range slot
  reads a weight word and an accumulator word, adds (LANES x ACC_BITS-bit adds; the first conv
  multiplies W_BITS x VALUE_BITS) and writes the accumulator back; a border tap outside the frame
  is a no-op (no read either: the weight ROM is enabled only for in-range slots). Per group (a token, a frame, the head's sample), every output
  word is drained: accumulator and bias read, LANES adds of ACC_BITS+1 bits, the word cleared.
  An engine on its weight stream port (WEIGHT_PORT = 1) reads no weight ROM: it takes every word
  of each event's burst from external memory, border taps included (external_read_bits).
- lif_unit: per neuron and step, a membrane read and write (WIDTH bits), an add and a compare.
- sasa_core (not event-driven: a fixed schedule of N*D/P beats a step): per channel and token,
  the window counters and the score (3 adds), the K buffer written and its 9 neighbours read, the
  DWC adder tree (9 weight reads and adds, one bias add), the mask add, LIF_o; per channel and step,
  LIF_a.
- sat_add, maxpool (8 compares per output; its column memory read and written once per input value,
  its row memory once per odd-column value), frame_repeat (the frame written once, read T times), stream_fifo (a write and a
  read per beat). Forks, joins, skid buffers and event encoders hold registers only: not counted,
  like every flip-flop and the control logic (the table has no figures for them).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from saformer.rtl_sim.blocks import spike_trace


@dataclass
class Activity:
    adds: Counter = field(default_factory=Counter)  # width in bits -> additions (compares counted as adds)
    mults: Counter = field(default_factory=Counter)  # (bits, bits) -> multiplications
    read_bits: int = 0
    write_bits: int = 0
    weight_read_bits: int = 0  # the share of read_bits that reads weights (what a weight stream would carry)
    external_read_bits: int = 0  # weights taken from external memory (engines on their weight stream port)

    def add(self, other: "Activity") -> None:
        self.adds.update(other.adds)
        self.mults.update(other.mults)
        self.read_bits += other.read_bits
        self.write_bits += other.write_bits
        self.weight_read_bits += other.weight_read_bits
        self.external_read_bits += other.external_read_bits

    def scaled(self, f: float) -> dict[str, Any]:
        return {"adds": {int(k): v * f for k, v in sorted(self.adds.items())},
                "mults": {f"{a}x{b}": v * f for (a, b), v in sorted(self.mults.items())},
                "read_bits": self.read_bits * f, "write_bits": self.write_bits * f,
                "weight_read_bits": self.weight_read_bits * f, "external_read_bits": self.external_read_bits * f}


def _border_taps(n: int) -> np.ndarray:
    """In-range taps of a 3-tap window along an axis of n positions (zero padding outside)."""
    t = np.full(n, 3)
    if n > 1:
        t[0] -= 1
        t[-1] -= 1
    else:
        t[0] = 1
    return t


def _engine(p: dict[str, int], x: np.ndarray, groups: int) -> Activity:
    """x: the engine's input as (samples, T', positions, IN), non-zero = an event."""
    a = Activity()
    lanes, chunks = p["LANES"], p["OUT"] // p["LANES"]
    events = x != 0
    n_events = int(events.sum())
    if p["KERNEL"] == 3:
        taps = np.outer(_border_taps(p["H"]), _border_taps(p["W"])).reshape(-1)  # per position
        in_range = int((events.sum(axis=(0, 1, 3)) * taps).sum()) * chunks
        positions = p["H"] * p["W"]
    else:
        in_range = n_events * chunks
        positions = 1
    drains = groups * positions * chunks
    acc_word, w_word = lanes * p["ACC_BITS"], lanes * p["W_BITS"]
    a.adds[p["ACC_BITS"]] += in_range * lanes
    if p.get("VALUE_BITS", 0):
        a.mults[(p["W_BITS"], p["VALUE_BITS"])] += in_range * lanes
    a.adds[p["ACC_BITS"] + 1] += drains * lanes
    a.read_bits += (in_range + drains) * acc_word + drains * acc_word  # accumulators, biases
    if p.get("WEIGHT_PORT", 0):  # the whole burst, out-of-range taps too, from off chip
        a.external_read_bits += n_events * p["KERNEL"] ** 2 * chunks * w_word
    else:
        a.read_bits += in_range * w_word
        a.weight_read_bits += in_range * w_word
    a.write_bits += (in_range + drains) * acc_word
    return a


def _lif(neurons_per_step: int, width: int, steps: int) -> Activity:
    a = Activity()
    n = neurons_per_step * steps
    a.adds[width + 1] += n
    a.adds[width] += n  # the threshold compare
    a.read_bits += n * width
    a.write_bits += n * width
    return a


def _sasa(hdl: dict[str, Any], samples: int) -> Activity:
    n, d, t = hdl["N"], hdl["D"], hdl["T"]
    win = n // hdl["N_AGG"]
    cnt, score = int(win).bit_length(), int(n * win).bit_length() + 1
    mem, wide = hdl["MEM_BITS"], hdl["ACC_BITS"]
    tokens = samples * t * n * d  # one lane-slot per channel and token
    a = Activity()
    a.adds[cnt] += 2 * tokens  # Q and K window counters
    a.adds[score] += tokens  # the score's per-token growth
    a.write_bits += tokens  # the K buffer
    a.read_bits += 10 * tokens + tokens  # K and its 9 neighbours; the mask
    if hdl["DWC"]:
        a.adds[wide + 1] += 10 * tokens  # 9 taps and the bias
        a.read_bits += tokens * (9 * hdl["W_BITS"] + wide)
        a.weight_read_bits += tokens * 9 * hdl["W_BITS"]
    a.adds[mem + 1] += tokens  # masked K + DWC
    a.add(_lif(d, score + 1, samples * t))  # LIF_a: one neuron per channel
    a.add(_lif(n * d, mem, samples * t))  # LIF_o
    return a


def image_activity(design, ex, x_int: np.ndarray, traces: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per-image activity of every block of ``design`` (a top of ``ex``) on the images ``x_int``
    with their golden ``traces``: {"blocks": [{instance, block, node, ...counts}], "total": counts}."""
    graph, t = ex.graph, ex.cfg.time_steps
    samples = len(x_int)
    names = [n.name for n in graph]
    static = set(names[:next(i for i, n in enumerate(graph) if n.op == "lif")])
    rows, total = [], Activity()
    for b in design.blocks:
        p, kind, node = b["params"], b["block"], graph[b["node"]] if b["node"] else None
        a = Activity()
        if kind == "syn_engine":
            if node.op == "head":
                src = graph[node.inputs[0]]
                x = traces[f"{src.neuron}.s"].transpose(1, 0, 2, 3).reshape(samples, 1, 1, -1)  # one group per sample
                a = _engine(p, x.reshape(samples, 1, -1, p["IN"]), samples)
            elif graph[node.inputs[0]].op == "input":  # the first conv of a static image: once per image
                x = np.asarray(x_int).reshape(samples, 1, p["IN"], -1).transpose(0, 1, 3, 2)
                a = _engine(p, x, samples)
            else:
                x = spike_trace(graph, traces, node.name)
                groups = samples * x.shape[1] * (1 if p["KERNEL"] == 3 else x.shape[2])
                a = _engine(p, x, groups)
        elif kind == "lif_unit":
            a = _lif(p["NEURONS"], p["WIDTH"], samples * p["T"])
        elif kind == "sasa_core":
            a = _sasa(p, samples)
        elif kind == "sat_add":
            a.adds[p["WIDTH"] + 1] += samples * t * int(np.prod(node.shape))
        elif kind == "maxpool":  # before the first LIF a static image's values pass once, not T times
            values = samples * (1 if b["node"] in static else t) * p["C"] * p["H"] * p["W"]
            a.adds[p["WIDTH"]] += 8 * values // 4
            a.read_bits += (values + values // 2) * p["WIDTH"]  # the column memory per value, the row
            a.write_bits += (values + values // 2) * p["WIDTH"]  # memory per odd-column value (W even)
        elif kind == "frame_repeat":
            a.write_bits += samples * p["BEATS"] * p["WIDTH"]
            a.read_bits += samples * p["TIMES"] * p["BEATS"] * p["WIDTH"]
        elif kind == "lane_gearbox":
            pass  # flip-flops only, which the energy table does not price (as no block's registers)
        elif kind == "stream_fifo":
            beats = samples * t * b["beats_per_step"]  # every beat of its stream passes once
            a.write_bits += beats * p["WIDTH"]
            a.read_bits += beats * p["WIDTH"]
        total.add(a)
        rows.append({"instance": b["instance"], "block": kind, "node": b["node"], **a.scaled(1 / samples)})
    return {"images": samples, "blocks": rows, "total": total.scaled(1 / samples)}
