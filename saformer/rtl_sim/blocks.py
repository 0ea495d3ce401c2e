"""The library of RTL blocks: one SystemVerilog module per file, each registered here with its
parameter checks, sources, top, exact stall-free cycle model, and its golden function (the numpy
integer contract it must equal) with the beat packing of its streams. One runner builds, lints
and simulates any of them (Verilator through cocotb, the generic bench tb/block_tb.py).

    lif_unit    the LIF neuron (tau = 2), LANES neurons a cycle, membranes in memory across steps
    sat_add     the saturating residual add, LANES values a cycle
    maxpool     MaxPool(3, stride 2, pad 1) on membranes, streaming, LANES channels a cycle
    skid_buffer a two-entry register slice: cuts the combinational ready path between blocks
    sasa_core   the SASA datapath (score, LIF_a, mask, DWC; LIF_o is a lif_unit, the output a skid_buffer);
                also has its own bench and cycle model (saformer.rtl_sim.core / sim), which the flow uses
    syn_engine  the event-driven synaptic layer (linear / 1x1, 3x3 on spike maps): a spike adds its
                weight rows, LANES outputs a cycle; weights and accumulators in on-chip memories.
                With VALUE_BITS > 0, the first conv (events carry the image's values: it multiplies).
                With WEIGHT_PORT = 1 its weights stream in from external memory instead of a ROM
    syn_engine_streamed  a syn_engine on its weight stream port behind weight_stream_mem (the
                external memory's model: a burst per spike, a fixed latency): the port's test
    event_encoder  a dense stream (a lif_unit's spikes, the image's values) -> syn_engine's events,
                one per non-zero element, with the engine's group ends
    lane_gearbox   a dense stream re-beaten from IN_LANES to OUT_LANES values a beat (an engine's lanes
                into its stream's)
    stream_fifo, stream_fork, stream_join (tested together as fork_join), frame_repeat: the plumbing
                of the accelerator's top (residual buffers, one stream to two engines, {K, Q}, a static
                image's first-conv frame replayed at every step)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from saformer.config import WEIGHT_LATENCY_RANGE
from saformer.errors import ConfigError
from saformer.quant.fixed_point import int_range, lif_int, saturate, shift_to_membrane
from saformer.quant.golden import conv3x3, linear, maxpool3x3s2, sasa_core
from saformer.rtl_sim.beats import concat_beats, pack, pack_words
from saformer.rtl_sim.core import HDL_DIR, SOURCES, TOP, SasaCoreParams, cycle_model, dwc_bias_file, write_dwc_file
from saformer.rtl_sim.sim import build_hdl, run_bench, verilator_env


@dataclass(frozen=True)
class Block:
    name: str
    top: str
    sources: tuple[Path, ...]
    check: Callable[[dict[str, int]], None]  # raises ConfigError naming the parameter
    cycles: Callable[[dict[str, int], np.ndarray], int]  # (params, inputs) -> stall-free total cycles
    golden: Callable[[dict[str, int], np.ndarray, Any], np.ndarray]  # (params, inputs, data): the contract
    pack_in: Callable[[dict[str, int], np.ndarray], list[int]]
    pack_out: Callable[[dict[str, int], np.ndarray], list[int]]
    # blocks with memories: their file parameters (-> file names in the memory directory), and the
    # writer that checks the data and writes those files
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    write_memories: Callable[[dict[str, int], Any, Path], None] | None = None
    # non-zero memory contents that pass the checks, for synthesis without an export (a zero ROM
    # would let Yosys remove the adders and under-report the block)
    synthesis_data: Callable[[dict[str, int]], Any] | None = None
    # parameter sets at the digits model's geometry (saformer-2-64: D = 64, 16 tokens, 8x8 SPS maps,
    # 16-bit membranes, 8-bit weights, 32-bit accumulators): what the resource benchmark synthesizes
    # and the multiplier check covers
    examples: tuple[dict[str, int], ...] = ()
    multipliers: Callable[[dict[str, int]], int] = lambda p: 0  # what the design may multiply ($mul cells)
    # a bench wrapper around a model of something off chip (not hardware): simulated, never synthesized
    simulation_only: bool = False

    def file_params(self, directory: Path | None) -> dict[str, str]:
        """The HDL's file parameters as Verilator / Yosys literals ('""' when there is no directory)."""
        return {f: (f'"{Path(directory) / name}"' if directory else '""') for f, name in self.files.items()}


def _positive(block: str, p: dict[str, int], *keys: str) -> None:
    for k in keys:
        if not isinstance(p.get(k), int) or p[k] < 1:
            raise ConfigError(f"{block}: parameter {k} must be a positive integer, got {p.get(k)!r}")


def _width(block: str, p: dict[str, int]) -> None:
    if not 2 <= p["WIDTH"] <= 48:
        raise ConfigError(f"{block}: WIDTH={p['WIDTH']} is outside 2..48")


# ---- lif_unit ------------------------------------------------------------------------------------
def _lif_check(p: dict[str, int]) -> None:
    _positive("lif_unit", p, "WIDTH", "LANES", "NEURONS", "T")
    _width("lif_unit", p)
    if p["NEURONS"] % p["LANES"]:
        raise ConfigError(f"lif_unit: NEURONS={p['NEURONS']} is not a multiple of LANES={p['LANES']}")
    lo, hi = int_range(p["WIDTH"])
    if not lo <= p["THETA"] <= hi:
        raise ConfigError(f"lif_unit: THETA={p['THETA']} does not fit the {p['WIDTH']}-bit membrane")


def _lif_golden(p: dict[str, int], x: np.ndarray, data: Any = None) -> np.ndarray:
    """x: (samples, T, NEURONS) drives -> spikes of the same shape (lif_int per sample)."""
    return np.stack([lif_int(sample, p["THETA"])[0] for sample in x])


LIF_UNIT = Block("lif_unit", "lif_unit", (HDL_DIR / "lif_unit.sv",), _lif_check, lambda p, x: x.size // p["LANES"] + 1,
                 _lif_golden, lambda p, x: pack_words(x, p["WIDTH"], p["LANES"]), lambda p, s: pack(s, p["LANES"]),
                 examples=({"WIDTH": 16, "LANES": 8, "NEURONS": 16 * 64, "T": 4, "THETA": 256},))


# ---- sat_add -------------------------------------------------------------------------------------
def _add_check(p: dict[str, int]) -> None:
    _positive("sat_add", p, "WIDTH", "LANES")
    _width("sat_add", p)


def _add_pack_in(p: dict[str, int], ab: np.ndarray) -> list[int]:
    """ab: (2, ..., LANES-multiple): A and B side by side in a beat, A in the low bits."""
    a, b = (pack_words(v, p["WIDTH"], p["LANES"]) for v in ab)
    return concat_beats(a, b, p["WIDTH"] * p["LANES"])


SAT_ADD = Block("sat_add", "sat_add", (HDL_DIR / "sat_add.sv",), _add_check, lambda p, ab: ab[0].size // p["LANES"] + 1,
                lambda p, ab, data=None: saturate(ab[0] + ab[1], p["WIDTH"]), _add_pack_in,
                lambda p, y: pack_words(y, p["WIDTH"], p["LANES"]), examples=({"WIDTH": 16, "LANES": 8},))

# ---- maxpool -------------------------------------------------------------------------------------
def _pool_check(p: dict[str, int]) -> None:
    _positive("maxpool", p, "WIDTH", "LANES", "C", "H", "W")
    _width("maxpool", p)
    if p["C"] % p["LANES"]:
        raise ConfigError(f"maxpool: C={p['C']} is not a multiple of LANES={p['LANES']}")
    if p["H"] % 2 or p["W"] % 2:
        raise ConfigError(f"maxpool: the frame {p['H']}x{p['W']} must have an even height and width")


def _pool_golden(p: dict[str, int], x: np.ndarray, data: Any = None) -> np.ndarray:
    """x: (frames, H*W, C) membranes, positions row-major -> (frames, H/2*W/2, C) (golden.maxpool3x3s2)."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1:] != (p["H"] * p["W"], p["C"]):
        raise ConfigError(f"maxpool: input must be (frames, H*W={p['H'] * p['W']}, C={p['C']}), got {x.shape}")
    maps = x.reshape(-1, p["H"], p["W"], p["C"]).transpose(0, 3, 1, 2)
    return maxpool3x3s2(maps).transpose(0, 2, 3, 1).reshape(x.shape[0], -1, p["C"])


MAXPOOL = Block("maxpool", "maxpool", (HDL_DIR / "maxpool.sv",), _pool_check, lambda p, x: x.size // p["LANES"] + 1,
                _pool_golden, lambda p, x: pack_words(x, p["WIDTH"], p["LANES"]),
                lambda p, y: pack_words(y, p["WIDTH"], p["LANES"]),
                examples=({"WIDTH": 16, "LANES": 8, "C": 64, "H": 8, "W": 8},))


# ---- skid_buffer ---------------------------------------------------------------------------------
def _skid_check(p: dict[str, int]) -> None:
    _positive("skid_buffer", p, "WIDTH")


SKID_BUFFER = Block("skid_buffer", "skid_buffer", (HDL_DIR / "skid_buffer.sv",), _skid_check,
                    lambda p, x: len(x) + 1, lambda p, x, data=None: x,
                    lambda p, x: [int(v) for v in x], lambda p, y: [int(v) for v in y],
                    examples=({"WIDTH": 8 * 16},))


# ---- syn_engine ----------------------------------------------------------------------------------
def _engine_check(p: dict[str, int]) -> None:
    _positive("syn_engine", p, "IN", "OUT", "LANES", "KERNEL", "H", "W", "W_BITS", "ACC_BITS", "MEM_BITS")
    if p["KERNEL"] not in (1, 3):
        raise ConfigError(f"syn_engine: KERNEL={p['KERNEL']} is not 1 (linear) or 3 (3x3 conv)")
    if p["KERNEL"] == 1 and (p["H"], p["W"]) != (1, 1):
        raise ConfigError(f"syn_engine: a KERNEL 1 layer works one position at a time; H, W must be 1, got {p['H']}, {p['W']}")
    if p["OUT"] % p["LANES"]:
        raise ConfigError(f"syn_engine: OUT={p['OUT']} is not a multiple of LANES={p['LANES']}")
    if not 2 <= p["W_BITS"] <= p["ACC_BITS"] <= 48:
        raise ConfigError(f"syn_engine: need 2 <= W_BITS <= ACC_BITS <= 48, got {p['W_BITS']}, {p['ACC_BITS']}")
    if not 2 <= p["MEM_BITS"] <= 32:
        raise ConfigError(f"syn_engine: MEM_BITS={p['MEM_BITS']} must be within 2..32")
    if not isinstance(p.get("OUT_SHIFT"), int) or abs(p["OUT_SHIFT"]) > 32:
        raise ConfigError(f"syn_engine: OUT_SHIFT must be an integer within -32..32, got {p.get('OUT_SHIFT')!r}")
    if not isinstance(p.get("VALUE_BITS", 0), int) or not 0 <= p.get("VALUE_BITS", 0) <= 24:
        raise ConfigError(f"syn_engine: VALUE_BITS must be 0 (spikes) or an input width up to 24, got {p.get('VALUE_BITS')!r}")
    if p.get("WEIGHT_PORT", 0) not in (0, 1):
        raise ConfigError(f"syn_engine: WEIGHT_PORT={p.get('WEIGHT_PORT')!r} is not 0 (a weight ROM) or 1 (a weight stream port)")
    if p.get("OUT_REG", 1) not in (0, 1):
        raise ConfigError(f"syn_engine: OUT_REG={p.get('OUT_REG')!r} is not 0 (m_data from the FIFO's LUT RAM) or 1 (from a register)")


def _value_range(p: dict[str, int]) -> tuple[int, int]:
    """What one input event can carry: a spike is 1; the first conv's input a signed VALUE_BITS value."""
    return int_range(p["VALUE_BITS"]) if p.get("VALUE_BITS", 0) else (0, 1)


def _positions(p: dict[str, int]) -> int:
    return p["H"] * p["W"] if p["KERNEL"] == 3 else 1


def _engine_groups(p: dict[str, int], x: np.ndarray) -> np.ndarray:
    """Spikes (samples, T, positions, IN) -> (groups, positions per group, IN): a group is one
    position of a linear layer, one step's frame of a 3x3 conv."""
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[-1] != p["IN"] or (p["KERNEL"] == 3 and x.shape[2] != p["H"] * p["W"]):
        want = "H*W" if p["KERNEL"] == 3 else "tokens"
        raise ConfigError(f"syn_engine: spikes must be (samples, T, {want}, IN={p['IN']}), got {x.shape}")
    lo, hi = _value_range(p)
    if p.get("VALUE_BITS", 0) and (x.min() < lo or x.max() > hi):
        raise ConfigError(f"syn_engine: an input value of {x.min() if x.min() < lo else x.max()} does not fit "
                          f"VALUE_BITS={p['VALUE_BITS']}")
    if not p.get("VALUE_BITS", 0) and not np.isin(x, (0, 1)).all():
        raise ConfigError("syn_engine: the input must be spikes (0/1)")
    return x.reshape(-1, _positions(p), p["IN"])


def _engine_golden(p: dict[str, int], x: np.ndarray, data: dict[str, np.ndarray]) -> np.ndarray:
    """The contract's synaptic layer (golden.linear / golden.conv3x3, then shift_to_membrane), in the
    engine's output order: (samples, T, positions, OUT)."""
    w, b = np.asarray(data["weight"]), np.asarray(data["bias"])
    if p["KERNEL"] == 3:
        frames = x.reshape(-1, p["H"], p["W"], p["IN"]).transpose(0, 3, 1, 2)
        acc = conv3x3(frames, w, b, spikes=not p.get("VALUE_BITS", 0)).transpose(0, 2, 3, 1)
    else:
        acc = linear(x, w, b, spikes=not p.get("VALUE_BITS", 0))
    return shift_to_membrane(acc, p["OUT_SHIFT"], p["MEM_BITS"]).reshape(*x.shape[:-1], p["OUT"])


def _engine_pack_in(p: dict[str, int], x: np.ndarray) -> list[int]:
    return _events(p, _engine_groups(p, x))


def event_fields(p: dict[str, int]) -> tuple[int, int, int, int]:
    """The bits of an event beat's channel, x, y and value fields (syn_engine.sv's CW, XW, YW,
    VALUE_BITS), from the engine's or the event encoder's parameters; the beat is these plus the
    `empty` and `last` flags, 2 bits."""
    cw = max(1, (p["IN"] - 1).bit_length())
    xw = max(1, (p["W"] - 1).bit_length()) if p["KERNEL"] == 3 else 1
    yw = max(1, (p["H"] - 1).bit_length()) if p["KERNEL"] == 3 else 1
    return cw, xw, yw, p.get("VALUE_BITS", 0)


def _events(p: dict[str, int], groups: np.ndarray) -> list[int]:
    """(groups, positions, IN) -> syn_engine's input beats: one per spike (per non-zero value),
    {last, empty, [value,] y, x, c}; an empty group is one beat with `empty` set."""
    cw, xw, yw, vb = event_fields(p)
    top = cw + xw + yw + vb
    last_bit, empty_bit = 1 << (top + 1), 1 << top
    beats: list[int] = []
    for group in groups:
        pos, chan = np.nonzero(group)  # position-major, then channel
        if pos.size == 0:
            beats.append(last_bit | empty_bit)
            continue
        ys, xs = np.divmod(pos, p["W"]) if p["KERNEL"] == 3 else (0 * pos, 0 * pos)
        values = [(int(v) & ((1 << vb) - 1)) << (cw + xw + yw) for v in group[pos, chan]] if vb else [0] * pos.size
        beats += [v | (int(y) << (cw + xw)) | (int(xx) << cw) | int(c) for v, y, xx, c in zip(values, ys, xs, chan)]
        beats[-1] |= last_bit
    return beats


def engine_group_cycles(p: dict[str, int], events, drain_lanes: int | None = None) -> np.ndarray:
    """Stall-free cycles of engine groups of ``events`` input events each: 1 + e*TAPS*CH + POS*CH
    (syn_engine.sv's header; a whole top adds 2 per engine for its pipeline, once). ``drain_lanes``:
    the engine drains into a lane_gearbox to that many lanes; when fewer than its own, the drain
    takes POS*OUT/drain_lanes cycles (the gearbox's pace), not POS*CH."""
    chunks = p["OUT"] // p["LANES"]
    drain = p["OUT"] // min(p["LANES"], drain_lanes or p["LANES"])
    return 1 + np.asarray(events, dtype=np.int64) * p["KERNEL"] ** 2 * chunks + _positions(p) * drain


def _engine_cycles(p: dict[str, int], x: np.ndarray) -> int:
    return int(engine_group_cycles(p, (_engine_groups(p, x) != 0).sum(axis=(1, 2))).sum()) + 2


def _engine_write_memories(p: dict[str, int], data: dict[str, np.ndarray], directory: Path) -> None:
    """Check the integers against the widths (and the worst-case accumulator), then write the
    weight ROM ((c*TAPS + tap)*CH + chunk words) and the bias ROM as $readmemh files."""
    if data is None:
        raise ConfigError("syn_engine: this block has weight and bias memories; pass their data")
    w, b = np.asarray(data["weight"]), np.asarray(data["bias"])
    taps = p["KERNEL"] ** 2
    want = (p["OUT"], p["IN"], 3, 3) if p["KERNEL"] == 3 else (p["OUT"], p["IN"])
    if w.shape != want or b.shape != (p["OUT"],):
        raise ConfigError(f"syn_engine: weights {w.shape} and bias {b.shape} do not match {want} and ({p['OUT']},)")
    for name, v, bits in (("weight", w, p["W_BITS"]), ("bias", b, p["ACC_BITS"])):
        lo, hi = int_range(bits)
        if v.min() < lo or v.max() > hi:
            raise ConfigError(f"syn_engine: a {name} of {v.min() if v.min() < lo else v.max()} does not fit {bits} bits")
    rows = w.reshape(p["OUT"], -1).astype(np.int64)
    vlo, vhi = _value_range(p)  # the worst case over what the inputs can carry
    pos, neg = np.where(rows > 0, rows, 0), np.where(rows < 0, rows, 0)
    top, bottom = b + (pos * vhi + neg * vlo).sum(1), b + (pos * vlo + neg * vhi).sum(1)
    lo, hi = int_range(p["ACC_BITS"])
    if top.max() > hi or bottom.min() < lo:
        o = int(np.argmax(np.maximum(top - hi, lo - bottom)))
        extreme = int(top[o]) if top[o] > hi else int(bottom[o])
        raise ConfigError(f"syn_engine: output channel {o} can reach {extreme}, outside the {p['ACC_BITS']}-bit "
                          f"accumulator ({lo}..{hi})")
    order = w.transpose(1, 2, 3, 0) if p["KERNEL"] == 3 else w.T  # (IN, [ky, kx,] OUT)
    words = pack_words(order.reshape(p["IN"] * taps, p["OUT"]), p["W_BITS"], p["LANES"])
    directory.mkdir(parents=True, exist_ok=True)
    digits = (p["LANES"] * p["W_BITS"] + 3) // 4
    (directory / SYN_ENGINE.files["WEIGHT_FILE"]).write_text("".join(f"{v:0{digits}x}\n" for v in words))
    digits = (p["LANES"] * p["ACC_BITS"] + 3) // 4
    (directory / SYN_ENGINE.files["BIAS_FILE"]).write_text(
        "".join(f"{v:0{digits}x}\n" for v in pack_words(b, p["ACC_BITS"], p["LANES"])))


def _engine_synthesis_data(p: dict[str, int]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    fan_in = p["IN"] * p["KERNEL"] ** 2 * max(abs(v) for v in _value_range(p))  # the worst input at every tap
    top = max(1, min((1 << (p["W_BITS"] - 1)) - 1, (1 << (p["ACC_BITS"] - 2)) // fan_in))
    shape = (p["OUT"], p["IN"], 3, 3) if p["KERNEL"] == 3 else (p["OUT"], p["IN"])
    return {"weight": rng.integers(-top, top + 1, shape), "bias": rng.integers(-top, top + 1, p["OUT"])}


SYN_ENGINE = Block("syn_engine", "syn_engine", (HDL_DIR / "syn_engine.sv",), _engine_check, _engine_cycles,
                   _engine_golden, _engine_pack_in, lambda p, y: pack_words(y, p["MEM_BITS"], p["LANES"]),
                   files={"WEIGHT_FILE": "weight.hex", "BIAS_FILE": "bias.hex"}, write_memories=_engine_write_memories,
                   synthesis_data=_engine_synthesis_data,
                   examples=(dict(IN=64, OUT=256, LANES=8, KERNEL=1, H=1, W=1, W_BITS=8, ACC_BITS=32, MEM_BITS=16,
                                  OUT_SHIFT=-2),  # an MLP fc1
                             dict(IN=32, OUT=64, LANES=8, KERNEL=3, H=8, W=8, W_BITS=8, ACC_BITS=32, MEM_BITS=16,
                                  OUT_SHIFT=-2),  # the last SPS conv
                             dict(IN=1, OUT=8, LANES=8, KERNEL=3, H=8, W=8, W_BITS=8, ACC_BITS=32, MEM_BITS=16,
                                  OUT_SHIFT=-2, VALUE_BITS=8)),  # the first conv, on the 8-bit image
                   multipliers=lambda p: p["LANES"] if p.get("VALUE_BITS", 0) else 0)

# ---- syn_engine_streamed: the engine on its weight stream port, with the memory model -----------


def _streamed_check(p: dict[str, int]) -> None:
    _engine_check({k: v for k, v in p.items() if k not in ("LATENCY", "STALL_PERCENT")})
    lo, hi = WEIGHT_LATENCY_RANGE
    if not isinstance(p.get("LATENCY"), int) or not lo <= p["LATENCY"] <= hi:
        raise ConfigError(f"syn_engine_streamed: LATENCY={p.get('LATENCY')!r}; the memory model takes {lo}..{hi} cycles")
    if not 0 <= p.get("STALL_PERCENT", 0) <= 90:
        raise ConfigError(f"syn_engine_streamed: STALL_PERCENT={p.get('STALL_PERCENT')} is outside 0..90")


def streamed_engine_cycles(p: dict[str, int], events, latency: int, drain_lanes: int | None = None) -> int:
    """Stall-free cycles (source and sink never wait, the memory never withholds a word) of a
    WEIGHT_PORT engine over groups of ``events`` input events each, from its first input beat to
    its last drain read: syn_engine's equations with the weight port's terms (syn_engine.sv's
    header; the top's cycle model, cycle_model._engine_take, is the general form). An event shown
    at cycle o is taken at a = max(o + 1, ready) and its words move from max(a + 1, o + 1 + latency)
    on, a burst a cycle each. No closed form per group: a latency longer than a burst paces
    consecutive events. ``drain_lanes`` as in engine_group_cycles."""
    burst = p["KERNEL"] ** 2 * (p["OUT"] // p["LANES"])
    drain = _positions(p) * (p["OUT"] // min(p["LANES"], drain_lanes or p["LANES"]))
    offer, ready, first, drained = 0, 0, None, 0
    for e in np.asarray(events, dtype=np.int64).ravel():
        for i in range(max(int(e), 1)):  # an empty group is one empty beat
            shown = offer
            a = max(shown + 1, ready)
            first = a if first is None else first
            offer = a + 1
            if e == 0:
                start = a + 1
            else:
                last = max(a + 1, shown + 1 + latency) + burst - 1
                if i < e - 1:
                    ready = last
                    continue
                start = last + 1
            drained = start + drain - 1
            ready = drained + 1
    return 0 if first is None else drained - first + 1


def _streamed_cycles(p: dict[str, int], x: np.ndarray) -> int:
    return streamed_engine_cycles(p, (_engine_groups(p, x) != 0).sum(axis=(1, 2)), p["LATENCY"]) + 2


SYN_ENGINE_STREAMED = Block("syn_engine_streamed", "syn_engine_streamed",
                            tuple(HDL_DIR / f for f in ("syn_engine_streamed.sv", "syn_engine.sv", "weight_stream_mem.sv")),
                            _streamed_check, _streamed_cycles, _engine_golden, _engine_pack_in,
                            lambda p, y: pack_words(y, p["MEM_BITS"], p["LANES"]),
                            files={"WEIGHT_FILE": "weight.hex", "BIAS_FILE": "bias.hex"},
                            write_memories=_engine_write_memories,
                            simulation_only=True)

# ---- event_encoder -------------------------------------------------------------------------------
def _encoder_check(p: dict[str, int]) -> None:
    _positive("event_encoder", p, "IN", "LANES", "KERNEL", "H", "W", "GROUP")
    if p["IN"] % p["LANES"]:
        raise ConfigError(f"event_encoder: IN={p['IN']} is not a multiple of LANES={p['LANES']}")
    if p["KERNEL"] not in (1, 3):
        raise ConfigError(f"event_encoder: KERNEL={p['KERNEL']} (1 or 3)")
    if not 0 <= p.get("VALUE_BITS", 0) <= 16:
        raise ConfigError(f"event_encoder: VALUE_BITS={p.get('VALUE_BITS')} is outside 0..16")


def _encoder_params(p: dict[str, int]) -> dict[str, int]:
    return {"H": 1, "W": 1, "GROUP": 1, "VALUE_BITS": 0, **p}


def _encoder_groups(p: dict[str, int], x: np.ndarray) -> np.ndarray:
    """x: (..., positions, IN) spikes or values -> (groups, positions per group, IN)."""
    pos = p["H"] * p["W"] if p["KERNEL"] == 3 else p["GROUP"]
    x = np.asarray(x)
    if x.shape[-1] != p["IN"] or (x.size // p["IN"]) % pos:
        raise ConfigError(f"event_encoder: input must be (..., positions, IN={p['IN']}) with whole groups of "
                          f"{pos} positions, got {x.shape}")
    lo, hi = _value_range(p)
    if x.min() < lo or x.max() > hi:
        raise ConfigError(f"event_encoder: an element of {x.min() if x.min() < lo else x.max()} does not fit "
                          + (f"VALUE_BITS={p['VALUE_BITS']}" if p["VALUE_BITS"] else "a spike (0/1)"))
    return x.reshape(-1, pos, p["IN"])


def _encoder_cycles(p: dict[str, int], x: np.ndarray) -> int:
    """Stall-free: a beat with e events costs max(e, 1), plus 1 when it ends a group and e > 0; plus 2."""
    p = _encoder_params(p)
    e = (_encoder_groups(p, x) != 0).reshape(-1, p["IN"] // p["LANES"], p["LANES"]).sum(-1)  # per beat
    e = e.reshape(_encoder_groups(p, x).shape[0], -1)  # (groups, beats per group)
    cost = np.maximum(e, 1)
    cost[:, -1] = np.where(e[:, -1] > 0, e[:, -1] + 1, 1)
    return int(cost.sum()) + 2


def _encoder_pack_in(p: dict[str, int], x: np.ndarray) -> list[int]:
    p = _encoder_params(p)
    x = _encoder_groups(p, x)
    return pack_words(x, p["VALUE_BITS"], p["LANES"]) if p["VALUE_BITS"] else pack(x, p["LANES"])


EVENT_ENCODER = Block("event_encoder", "event_encoder", (HDL_DIR / "event_encoder.sv", HDL_DIR / "skid_buffer.sv"),
                      lambda p: _encoder_check(_encoder_params(p)), _encoder_cycles,
                      lambda p, x, data=None: np.array(_events(_encoder_params(p), _encoder_groups(_encoder_params(p), x)),
                                                       dtype=object),
                      _encoder_pack_in, lambda p, y: [int(v) for v in y],
                      examples=(dict(IN=64, LANES=8, KERNEL=1, GROUP=1),  # before fc1 / Q, K
                                dict(IN=32, LANES=8, KERNEL=3, H=8, W=8),  # before the last SPS conv
                                dict(IN=1, LANES=1, KERNEL=3, H=8, W=8, VALUE_BITS=8)))  # the image, into the first conv


# ---- stream plumbing: FIFO, fork + join, frame repeat --------------------------------------------
def _ints(block: str, p: dict[str, int], x) -> list[int]:
    """Beats as non-negative integers that fit WIDTH bits."""
    beats = [int(v) for v in np.asarray(x, dtype=object).reshape(-1)]
    if any(b < 0 or b >> p["WIDTH"] for b in beats):
        raise ConfigError(f"{block}: a beat does not fit WIDTH={p['WIDTH']} bits")
    return beats


def _fifo_check(block: str, p: dict[str, int]) -> None:
    _positive(block, p, "WIDTH", "DEPTH")
    if p["DEPTH"] < 2:
        raise ConfigError(f"{block}: DEPTH={p['DEPTH']}; at least 2 (one beat of memory would halve the throughput)")


STREAM_FIFO = Block("stream_fifo", "stream_fifo", (HDL_DIR / "stream_fifo.sv",),
                    lambda p: _fifo_check("stream_fifo", p), lambda p, x: len(x) + 2,
                    lambda p, x, data=None: x, lambda p, x: _ints("stream_fifo", p, x), lambda p, y: [int(v) for v in y],
                    examples=({"WIDTH": 8 * 16, "DEPTH": 256},))  # two steps of the digits residual stream

FORK_JOIN = Block("fork_join", "fork_join_check",
                  tuple(HDL_DIR / f for f in ("fork_join_check.sv", "stream_fork.sv", "stream_fifo.sv", "stream_join.sv",
                                              "skid_buffer.sv")),
                  lambda p: _fifo_check("fork_join", p), lambda p, x: len(x) + 4,
                  lambda p, x, data=None: [(int(v) << p["WIDTH"]) | int(v) for v in x],
                  lambda p, x: _ints("fork_join", p, x), lambda p, y: [int(v) for v in y],
                  examples=({"WIDTH": 8 * 16, "DEPTH": 4},))


def _repeat_golden(p: dict[str, int], x, data=None) -> list[int]:
    beats = _ints("frame_repeat", p, x)
    if len(beats) % p["BEATS"]:
        raise ConfigError(f"frame_repeat: {len(beats)} beats are not whole frames of BEATS={p['BEATS']}")
    frames = [beats[i:i + p["BEATS"]] for i in range(0, len(beats), p["BEATS"])]
    return [b for f in frames for _ in range(p["TIMES"]) for b in f]


def _repeat_cycles(p: dict[str, int], x) -> int:
    frames = len(x) // p["BEATS"]
    return frames * (p["TIMES"] * p["BEATS"] + 1) + 1 - (frames if p["TIMES"] == 1 else 0)


FRAME_REPEAT = Block("frame_repeat", "frame_repeat", (HDL_DIR / "frame_repeat.sv", HDL_DIR / "skid_buffer.sv"),
                     lambda p: _positive("frame_repeat", p, "WIDTH", "BEATS", "TIMES"), _repeat_cycles, _repeat_golden,
                     lambda p, x: _ints("frame_repeat", p, x), lambda p, y: [int(v) for v in y],
                     examples=({"WIDTH": 8 * 16, "BEATS": 64, "TIMES": 4},))  # the digits first conv's frame


# ---- lane_gearbox --------------------------------------------------------------------------------
def gearbox_group(p: dict[str, int]) -> tuple[int, int, int]:
    """lane_gearbox.sv's group: (values L = lcm(IN_LANES, OUT_LANES), input beats, output beats) per group."""
    lcm = math.lcm(p["IN_LANES"], p["OUT_LANES"])
    return lcm, lcm // p["IN_LANES"], lcm // p["OUT_LANES"]


def _gearbox_check(p: dict[str, int]) -> None:
    _positive("lane_gearbox", p, "WIDTH", "IN_LANES", "OUT_LANES")
    if p["WIDTH"] > 48:
        raise ConfigError(f"lane_gearbox: WIDTH={p['WIDTH']} is over 48")


def _gearbox_values(p: dict[str, int], x: np.ndarray) -> np.ndarray:
    x = np.asarray(x).reshape(-1)
    if x.size % gearbox_group(p)[0]:
        raise ConfigError(f"lane_gearbox: {x.size} values are not whole groups of lcm(IN_LANES={p['IN_LANES']}, "
                          f"OUT_LANES={p['OUT_LANES']}) = {gearbox_group(p)[0]}")
    lo, hi = int_range(p["WIDTH"])
    if x.size and (x.min() < lo or x.max() > hi):
        raise ConfigError(f"lane_gearbox: a value of {x.min() if x.min() < lo else x.max()} does not fit WIDTH={p['WIDTH']}")
    return x


def gearbox_cycles(p: dict[str, int], values: int) -> int:
    """Stall-free cycles of ``values`` values (whole groups): K_IN + K_OUT + (G - 1) * max(K_IN, K_OUT)."""
    lcm, k_in, k_out = gearbox_group(p)
    groups = values // lcm
    return k_in + k_out + (groups - 1) * max(k_in, k_out) if groups else 0


LANE_GEARBOX = Block("lane_gearbox", "lane_gearbox", (HDL_DIR / "lane_gearbox.sv",), _gearbox_check,
                     lambda p, x: gearbox_cycles(p, _gearbox_values(p, x).size),
                     lambda p, x, data=None: _gearbox_values(p, x),
                     lambda p, x: pack_words(_gearbox_values(p, x), p["WIDTH"], p["IN_LANES"]),
                     lambda p, y: pack_words(np.asarray(y).reshape(-1), p["WIDTH"], p["OUT_LANES"]),
                     examples=({"WIDTH": 16, "IN_LANES": 16, "OUT_LANES": 8},))  # a wide engine into an 8-lane stream


# ---- sasa_core -----------------------------------------------------------------------------------
def _sasa_check(p: dict[str, int]) -> None:
    try:
        SasaCoreParams(**p)
    except TypeError as e:
        raise ConfigError(f"sasa_core: {e}") from None


def _sasa_split(p: dict[str, int], qk: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """qk: (2, samples*T, N, D) Q and K spikes -> q, k as (T, samples, N, D), and the sample count."""
    qk = np.asarray(qk)
    if qk.ndim != 4 or qk.shape[0] != 2 or qk.shape[2:] != (p["N"], p["D"]) or qk.shape[1] % p["T"]:
        raise ConfigError(f"sasa_core: Q and K must be (2, samples*T, N={p['N']}, D={p['D']}), got {qk.shape}")
    samples = qk.shape[1] // p["T"]
    q, k = (x.reshape(samples, p["T"], p["N"], p["D"]).transpose(1, 0, 2, 3) for x in qk)
    return q, k, samples


def _sasa_golden(p: dict[str, int], qk: np.ndarray, data) -> np.ndarray:
    """golden.sasa_core: O spikes (samples*T, N, D); ``data`` the DWC (weights, biases) or None."""
    q, k, _ = _sasa_split(p, qk)
    dwc = (*data, p["DWC_SHIFT"]) if p["DWC"] else None
    o = sasa_core(q, k, p["N_AGG"], (p["GRID_H"], p["GRID_W"]), p["THETA_A"], p["THETA_O"], p["MEM_FRAC"],
                  p["MEM_BITS"], dwc=dwc)["o"]
    return o.transpose(1, 0, 2, 3).reshape(-1, p["N"], p["D"])


def _sasa_write_memories(p: dict[str, int], data, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if not p["DWC"]:
        for name in SASA_CORE.files.values():
            (directory / name).write_text("")
        return
    if data is None:
        raise ConfigError("sasa_core: the core has a DWC branch; pass its (weights, biases)")
    write_dwc_file(directory / SASA_CORE.files["DWC_FILE"], SasaCoreParams(**p), *data)


def _sasa_synthesis_data(p: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    top = (1 << (p["W_BITS"] - 1)) - 1
    return rng.integers(-top, top + 1, (p["D"], 1, 3, 3)), rng.integers(-1000, 1001, p["D"])


SASA_CORE = Block("sasa_core", TOP, tuple(SOURCES), _sasa_check,
                  lambda p, qk: cycle_model(SasaCoreParams(**p), _sasa_split(p, qk)[2]).total, _sasa_golden,
                  lambda p, qk: concat_beats(pack(qk[0], p["P"]), pack(qk[1], p["P"]), p["P"]),
                  lambda p, o: pack(o, p["P"]),
                  files={"DWC_FILE": "dwc.hex", "DWC_BIAS_FILE": dwc_bias_file(Path("dwc.hex")).name},
                  write_memories=_sasa_write_memories,
                  synthesis_data=_sasa_synthesis_data,
                  examples=(dict(N=16, N_AGG=4, GRID_H=4, GRID_W=4, D=64, T=4, P=8, MEM_BITS=16, MEM_FRAC=8, THETA_A=8,
                                 THETA_O=128, DWC=1, ACC_BITS=32, W_BITS=8, DWC_SHIFT=-2),))

BLOCKS: dict[str, Block] = {b.name: b for b in (LIF_UNIT, SAT_ADD, MAXPOOL, SKID_BUFFER, SYN_ENGINE, SYN_ENGINE_STREAMED,
                                                EVENT_ENCODER,
                                                STREAM_FIFO, FORK_JOIN, FRAME_REPEAT, LANE_GEARBOX,
                                                SASA_CORE)}


def get_block(name: str) -> Block:
    if name not in BLOCKS:
        raise ConfigError(f"unknown RTL block {name!r}; the library has {sorted(BLOCKS)}")
    return BLOCKS[name]


def engine_from_export(ex, node_name: str, lanes: int) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """The syn_engine parameters and memory data of one synaptic node of an IntegerExport's graph: a
    layer on spikes, or the first conv (on the input: VALUE_BITS = the input width, it multiplies).
    The accumulators are as wide as the layer's worst case (the export's validated acc_bits_needed),
    not the contract's accumulator_bits: no sum can overflow either, so the outputs are the same,
    and a CIFAR-geometry layer needs 16 to 19 bits of the 32 (adders, forwarding and block RAM)."""
    graph = ex.graph
    node = graph.by_name.get(node_name)
    if node is None or node.op != "synapse":
        raise ConfigError(f"syn_engine: '{node_name}' is not a synaptic node of the graph; "
                          f"those are {[n.name for n in graph.of_op('synapse')]}")
    reads = graph[node.inputs[0]].format
    if reads not in ("spikes", "input"):
        raise ConfigError(f"syn_engine: '{node_name}' reads {reads}; the engine takes spikes or the input")
    spec, w = ex.layer(node.layer), ex.weight(node.layer)
    if spec["kind"] not in ("conv", "linear") or spec.get("groups", 1) != 1:
        raise ConfigError(f"syn_engine: layer '{node.layer}' is a {spec['kind']} (groups {spec.get('groups', 1)}); "
                          f"the engine runs dense linear and 3x3 layers")
    conv = spec["kind"] == "conv"
    q = ex.qcfg
    params = {"IN": int(w.shape[1]), "OUT": int(w.shape[0]), "LANES": lanes, "KERNEL": 3 if conv else 1,
              "H": int(node.shape[1]) if conv else 1, "W": int(node.shape[2]) if conv else 1,
              "W_BITS": q.weight_bits, "ACC_BITS": max(int(spec["acc_bits_needed"]), q.weight_bits),
              "MEM_BITS": q.membrane_bits,
              "OUT_SHIFT": int(spec["out_shift"])}
    if reads == "input":  # the first conv: events carry the quantized input's values
        params["VALUE_BITS"] = q.input_bits
    SYN_ENGINE.check(params)
    return params, {"weight": w, "bias": ex.bias(node.layer)}


def spike_trace(graph, traces: dict[str, np.ndarray], node_name: str) -> np.ndarray:
    """The golden traces' spikes that a synaptic node reads, in the engine's input layout
    (samples, T, positions, channels): from (T, B, C, H, W) maps or (T, B, N, D) tokens."""
    src = graph[graph[node_name].inputs[0]]
    key = f"{src.neuron}.s" if src.op == "lif" else f"{src.attrs['lif_o']}.s"  # a SASA core's output is LIF_o's
    s = traces[key]
    if s.ndim == 5:
        s = s.reshape(*s.shape[:3], -1).transpose(0, 1, 3, 2)
    return s.transpose(1, 0, 2, 3)


# ---- one runner for every block ------------------------------------------------------------------
@dataclass
class BlockResult:
    bit_exact: bool
    mismatching_beats: int
    mismatches: list[str]
    total: int
    predicted_total: int
    waves: Path | None

    @property
    def cycles_match(self) -> bool:
        return self.total == self.predicted_total


def lint(name: str, params: dict[str, int]) -> str:
    """``verilator --lint-only -Wall`` at these parameters: returns the warnings ('' when clean)."""
    block = get_block(name)
    block.check(params)
    env = verilator_env()
    hdl = {**params, **block.file_params(None)}
    args = [str(Path(env["VERILATOR_ROOT"]) / "bin" / "verilator"), "--lint-only", "-Wall", "--top-module", block.top,
            *[f"-G{k}={v}" for k, v in hdl.items()], *map(str, block.sources)]
    proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **env})
    return "" if proc.returncode == 0 else (proc.stdout + proc.stderr)


def build(name: str, params: dict[str, int], build_dir: Path, trace: bool = False):
    """One Verilator build per parameter set; memory files live in the build directory and are read
    when simulation starts, so runs that change only the data reuse the build."""
    block = get_block(name)
    block.check(params)
    build_dir = Path(build_dir).resolve()
    return build_hdl(block.sources, block.top, {**params, **block.file_params(build_dir / "mem")}, build_dir, trace)


def _stimulus(name: str, params: dict[str, int], inputs: np.ndarray, build_dir: Path, data: Any, p_idle: float,
              p_backpressure: float):
    """What every run of a block needs: its memories written, the input and the expected output beats,
    the stall-free cycle model's total, and a timeout that allows for the stalls."""
    block = get_block(name)
    block.check(params)
    build_dir = Path(build_dir).resolve()
    if block.write_memories is not None:
        block.write_memories(params, data, build_dir / "mem")
    beats_in = block.pack_in(params, inputs)
    beats_out = block.pack_out(params, block.golden(params, inputs, data))
    predicted = block.cycles(params, inputs)
    timeout = int(10 * predicted / max(0.05, (1 - p_idle) * (1 - p_backpressure))) + 1000
    return block, build_dir, beats_in, beats_out, predicted, timeout


def simulate(name: str, params: dict[str, int], inputs: np.ndarray, build_dir: Path, p_idle: float = 0.0,
             p_backpressure: float = 0.0, seed: int = 0, run: str = "run", data: Any = None) -> BlockResult:
    """Stream ``inputs`` through the block and compare every output beat with its golden function
    (``data``: the block's memory contents, e.g. a layer's weights and bias). On a mismatch the run is
    repeated on a tracing build and the waveform's path returned."""
    block, build_dir, beats_in, beats_out, predicted, timeout = _stimulus(name, params, inputs, build_dir, data,
                                                                          p_idle, p_backpressure)
    runner, obj_dir = build(name, params, build_dir)
    test_dir = build_dir / run
    test_dir.mkdir(parents=True, exist_ok=True)
    (test_dir / "stim.json").write_text(json.dumps({"in": [f"{b:x}" for b in beats_in], "out": [f"{b:x}" for b in beats_out],
                                                    "p_idle": p_idle, "p_backpressure": p_backpressure,
                                                    "seed": seed, "timeout": timeout}))
    result_file = test_dir / "result.json"
    env = {"BLOCK_STIM": str(test_dir / "stim.json"), "BLOCK_RESULT": str(result_file)}
    r, waves = run_bench(runner, obj_dir, lambda: build(name, params, build_dir, trace=True), "saformer.rtl_sim.tb.block_tb",
                         block.top, test_dir, result_file, env, run)
    return BlockResult(r["mismatching_beats"] == 0, r["mismatching_beats"], r["mismatches"], r["total"], predicted, waves)


def simulate_bulk(name: str, params: dict[str, int], inputs: np.ndarray, build_dir: Path, data: Any = None,
                  p_idle: float = 0.0, p_backpressure: float = 0.0, seed: int = 0) -> BlockResult:
    """As :func:`simulate`, through the compiled harness (saformer.rtl_sim.harness): no Python in the
    cycle loop, for bulk runs. Its cycle counts are the cocotb bench's; it writes no waveform
    (rerun a failing case with :func:`simulate` for one)."""
    from saformer.rtl_sim.harness import StreamHarness

    block, build_dir, beats_in, expected, predicted, timeout = _stimulus(name, params, inputs, build_dir, data,
                                                                         p_idle, p_backpressure)
    harness = StreamHarness(block.sources, block.top, {**params, **block.file_params(build_dir / "mem")}, build_dir)
    run = harness.run(beats_in, len(expected), p_idle, p_backpressure, seed, timeout=timeout)
    wrong = [i for i, (got, want) in enumerate(zip(run.beats, expected)) if got != want]
    mismatches = [f"beat {i}: got {run.beats[i]:#x}, want {expected[i]:#x}" for i in wrong[:10]]
    return BlockResult(not wrong, len(wrong), mismatches, run.total, predicted, None)
