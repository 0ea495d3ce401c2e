"""Simulated cycles per second of the compiled Verilator harness against the cocotb bench, on the
same blocks, inputs and (stall-free) schedule; every run is checked bit-exact against the golden
model before its speed counts.

    python benchmarks/harness_speed.py [--repeats 3]

Writes results/harness.json and results/harness.md: per case the median over the repeats of the
harness's cycle loop (wall time of the loop, the model's start and file reading excluded) and of
the cocotb run (the whole `simulate` call minus nothing: what a user waits for), and their ratio.
The cocotb bench runs the first samples of the same stimulus, at least 20,000 cycles of them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from saformer.rtl_sim import blocks  # noqa: E402
from saformer.rtl_sim.blocks import BLOCKS  # noqa: E402
from saformer.rtl_sim.harness import StreamHarness  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 40  # samples of the harness runs


def cases(rng):
    """(label, block, params, make_inputs(samples), data): the digits fc1 engine, a LIF unit, the SASA
    core at the digits and at the CIFAR geometry (saformer-4-384: 64 tokens, D = 384)."""
    eng = BLOCKS["syn_engine"].examples[0]
    eng_data = BLOCKS["syn_engine"].synthesis_data(eng)
    lif = BLOCKS["lif_unit"].examples[0]
    sasa = BLOCKS["sasa_core"].examples[0]
    cifar = {**sasa, "N": 64, "N_AGG": 4, "GRID_H": 8, "GRID_W": 8, "D": 384, "P": 8}

    def engine_in(n):  # (samples, T = 4 steps, 16 tokens, IN)
        return (rng.random((n, 4, 16, eng["IN"])) < 0.2).astype(np.int8)

    def qk(p):
        return lambda n: (rng.random((2, n * p["T"], p["N"], p["D"])) < 0.2).astype(np.int8)

    def dwc(p):
        return rng.integers(-128, 128, (p["D"], 1, 3, 3)), rng.integers(-1000, 1001, p["D"])
    return [("syn_engine: fc1 of the digits model, 20% spikes", "syn_engine", eng, engine_in, eng_data),
            ("lif_unit: 1,024 neurons, 8 lanes", "lif_unit", lif,
             lambda n: rng.integers(-600, 600, (n, lif["T"], lif["NEURONS"])), None),
            ("sasa_core: digits geometry (N=16, D=64, P=8)", "sasa_core", sasa, qk(sasa), dwc(sasa)),
            ("sasa_core: CIFAR geometry (N=64, D=384, P=8)", "sasa_core", cifar, qk(cifar), dwc(cifar))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, name, params, make, data in cases(rng):
            block = BLOCKS[name]
            work = Path(tmp) / label.split(":")[0] / str(len(rows))
            bulk = make(SAMPLES)
            result = blocks.simulate_bulk(name, params, bulk, work / "h", data)
            assert result.bit_exact and result.cycles_match, (label, result)
            samples = min(SAMPLES, max(1, -(-20_000 * SAMPLES // result.total)))  # >= 20k cycles: start-up is minor
            small = bulk[:, :samples * params["T"]] if name == "sasa_core" else bulk[:samples]
            if block.write_memories is not None:
                block.write_memories(params, data, work / "h" / "mem")
            h = StreamHarness(block.sources, block.top, {**params, **block.file_params((work / "h").resolve() / "mem")},
                              work / "h")
            beats = block.pack_in(params, bulk)
            n_out = len(block.pack_out(params, block.golden(params, bulk, data)))
            harness = [h.run(beats, n_out).cycles_per_second for _ in range(args.repeats)]
            cocotb = []
            for i in range(args.repeats):
                t0 = time.perf_counter()
                r = blocks.simulate(name, params, small, work / "c", run=f"r{i}", data=data)
                if i == 0:  # the first call builds; time the runs that reuse the build
                    t0 = time.perf_counter()
                    r = blocks.simulate(name, params, small, work / "c", run="r0b", data=data)
                assert r.bit_exact, (label, r)
                cocotb.append(r.total / (time.perf_counter() - t0))
            row = {"case": label, "block": name, "params": params, "cycles_harness_run": result.total,
                   "harness_cycles_per_s": statistics.median(harness), "cocotb_cycles_per_s": statistics.median(cocotb)}
            row["ratio"] = row["harness_cycles_per_s"] / row["cocotb_cycles_per_s"]
            rows.append(row)
            print(f"{label}: harness {row['harness_cycles_per_s']:,.0f} cycles/s, cocotb "
                  f"{row['cocotb_cycles_per_s']:,.0f} cycles/s, x{row['ratio']:,.0f}", flush=True)
    (ROOT / "results" / "harness.json").write_text(json.dumps({"repeats": args.repeats, "rows": rows}, indent=2) + "\n")
    lines = ["# Simulation speed: the compiled Verilator harness against the cocotb bench", "",
             f"Stall-free, bit-exact against the golden model; medians of {args.repeats} runs on this machine "
             "(2 cores, noisy: read the ratios). Harness: the C++ cycle loop's own time; cocotb: the "
             "whole `blocks.simulate` call on a built model (start-up included, as a user waits for it).", "",
             "| case | cycles (harness run) | harness cycles/s | cocotb cycles/s | ratio |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['cycles_harness_run']:,} | {r['harness_cycles_per_s']:,.0f} | "
                     f"{r['cocotb_cycles_per_s']:,.0f} | {r['ratio']:,.0f}x |")
    lines += ["", "Made by `python benchmarks/harness_speed.py`."]
    (ROOT / "results" / "harness.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
