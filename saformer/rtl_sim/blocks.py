"""The library of RTL blocks: one SystemVerilog module per file, each registered here with its
parameter checks, sources, top, exact stall-free cycle model, and its golden function (the numpy
integer contract it must equal) with the beat packing of its streams. One runner builds, lints
and simulates any of them (Verilator through cocotb, the generic bench tb/block_tb.py).

    lif_unit   the LIF neuron (tau = 2), LANES neurons a cycle, membranes in memory across steps
    sat_add    the saturating residual add, LANES values a cycle
    sasa_core  the SASA datapath (its own bench and cycle model: saformer.rtl_sim.core / sim)
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from saformer.errors import ConfigError
from saformer.quant.fixed_point import int_range, lif_int, saturate
from saformer.rtl_sim.beats import concat_beats, pack, pack_words
from saformer.rtl_sim.core import HDL_DIR
from saformer.rtl_sim.sim import build_hdl, run_bench, verilator_env


@dataclass(frozen=True)
class Block:
    name: str
    top: str
    sources: tuple[Path, ...]
    check: Callable[[dict[str, int]], None]  # raises ConfigError naming the parameter
    cycles: Callable[[dict[str, int], int], int]  # (params, input beats) -> stall-free total cycles
    golden: Callable[[dict[str, int], np.ndarray], np.ndarray]  # the contract's function of the inputs
    pack_in: Callable[[dict[str, int], np.ndarray], list[int]]
    pack_out: Callable[[dict[str, int], np.ndarray], list[int]]


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


def _lif_golden(p: dict[str, int], x: np.ndarray) -> np.ndarray:
    """x: (samples, T, NEURONS) drives -> spikes of the same shape (lif_int per sample)."""
    return np.stack([lif_int(sample, p["THETA"])[0] for sample in x])


LIF_UNIT = Block("lif_unit", "lif_unit", (HDL_DIR / "lif_unit.sv",), _lif_check, lambda p, beats: beats + 1,
                 _lif_golden, lambda p, x: pack_words(x, p["WIDTH"], p["LANES"]), lambda p, s: pack(s, p["LANES"]))


# ---- sat_add -------------------------------------------------------------------------------------
def _add_check(p: dict[str, int]) -> None:
    _positive("sat_add", p, "WIDTH", "LANES")
    _width("sat_add", p)


def _add_pack_in(p: dict[str, int], ab: np.ndarray) -> list[int]:
    """ab: (2, ..., LANES-multiple): A and B side by side in a beat, A in the low bits."""
    a, b = (pack_words(v, p["WIDTH"], p["LANES"]) for v in ab)
    return concat_beats(a, b, p["WIDTH"] * p["LANES"])


SAT_ADD = Block("sat_add", "sat_add", (HDL_DIR / "sat_add.sv",), _add_check, lambda p, beats: beats + 1,
                lambda p, ab: saturate(ab[0] + ab[1], p["WIDTH"]), _add_pack_in,
                lambda p, y: pack_words(y, p["WIDTH"], p["LANES"]))

BLOCKS: dict[str, Block] = {b.name: b for b in (LIF_UNIT, SAT_ADD)}


def get_block(name: str) -> Block:
    if name not in BLOCKS:
        raise ConfigError(f"unknown RTL block {name!r}; the library has {sorted(BLOCKS)}")
    return BLOCKS[name]


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
    args = [str(Path(env["VERILATOR_ROOT"]) / "bin" / "verilator"), "--lint-only", "-Wall", "--top-module", block.top,
            *[f"-G{k}={v}" for k, v in params.items()], *map(str, block.sources)]
    proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **env})
    return "" if proc.returncode == 0 else (proc.stdout + proc.stderr)


def build(name: str, params: dict[str, int], build_dir: Path, trace: bool = False):
    block = get_block(name)
    block.check(params)
    return build_hdl(block.sources, block.top, dict(params), build_dir, trace)


def simulate(name: str, params: dict[str, int], inputs: np.ndarray, build_dir: Path, p_idle: float = 0.0,
             p_backpressure: float = 0.0, seed: int = 0, run: str = "run") -> BlockResult:
    """Stream ``inputs`` through the block and compare every output beat with its golden function.
    On a mismatch the run is repeated on a tracing build and the waveform's path returned."""
    block = get_block(name)
    block.check(params)
    beats_in = block.pack_in(params, inputs)
    beats_out = block.pack_out(params, block.golden(params, inputs))
    build_dir = Path(build_dir).resolve()
    runner, obj_dir = build(name, params, build_dir)
    test_dir = build_dir / run
    test_dir.mkdir(parents=True, exist_ok=True)
    predicted = block.cycles(params, len(beats_in))
    timeout = int(10 * predicted / max(0.05, (1 - p_idle) * (1 - p_backpressure))) + 1000
    (test_dir / "stim.json").write_text(json.dumps({"in": [f"{b:x}" for b in beats_in], "out": [f"{b:x}" for b in beats_out],
                                                    "p_idle": p_idle, "p_backpressure": p_backpressure,
                                                    "seed": seed, "timeout": timeout}))
    result_file = test_dir / "result.json"
    env = {"BLOCK_STIM": str(test_dir / "stim.json"), "BLOCK_RESULT": str(result_file)}
    r, waves = run_bench(runner, obj_dir, lambda: build(name, params, build_dir, trace=True), "saformer.rtl_sim.tb.block_tb",
                         block.top, test_dir, result_file, env, run)
    return BlockResult(r["mismatching_beats"] == 0, r["mismatching_beats"], r["mismatches"], r["total"], predicted, waves)
