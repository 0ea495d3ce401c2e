"""Resources of the SASA core per lane count (Yosys) and RTL simulation speed (cocotb + Verilator).

    python benchmarks/rtl_report.py                    # digits geometry, P = 1, 8, 32; xc7
    python benchmarks/rtl_report.py --family xcup --lanes 8 16

Writes results/rtl.json and results/rtl.md. Synthesis uses random DWC integers of the right width
(resources do not depend on their values as long as none is constant zero).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from saformer.quant.golden import sasa_core  # noqa: E402
from saformer.rtl_sim.core import SasaCoreParams, cycle_model  # noqa: E402
from saformer.rtl_sim.fast import FastCore  # noqa: E402
from saformer.rtl_sim.sim import simulate  # noqa: E402
from saformer.rtl_sim.synth import synthesize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DIGITS = dict(N=16, N_AGG=4, GRID_H=4, GRID_W=4, D=64, T=4, THETA_A=8, THETA_O=128, DWC_SHIFT=-2)


def sim_speed(params: SasaCoreParams, samples: int, work: Path) -> dict:
    rng = np.random.default_rng(0)
    shape = (samples * params.T, params.N, params.D)
    q, k = (rng.random(shape) < 0.2).astype(np.int64), (rng.random(shape) < 0.2).astype(np.int64)
    w, b = rng.integers(-60, 61, (params.D, 1, 3, 3)), rng.integers(-100, 101, params.D)
    to_g = lambda x: x.reshape(samples, params.T, params.N, params.D).transpose(1, 0, 2, 3)  # noqa: E731
    o = sasa_core(to_g(q), to_g(k), params.N_AGG, (params.GRID_H, params.GRID_W), params.THETA_A, params.THETA_O,
                  params.MEM_FRAC, params.MEM_BITS, dwc=(w, b, params.DWC_SHIFT))["o"]
    o = o.transpose(1, 0, 2, 3).reshape(shape)
    first = simulate(params, q[:params.T], k[:params.T], o[:params.T], (w, b), work / "cocotb", samples=1, name="build")
    t1 = time.perf_counter()
    r = simulate(params, q, k, o, (w, b), work / "cocotb", samples=samples, name="speed")
    t2 = time.perf_counter()
    assert first.bit_exact and r.bit_exact and r.cycles_match
    cocotb = {"cycles": r.total, "seconds": t2 - t1, "cycles_per_s": r.total / (t2 - t1),
              "note": "includes starting the simulator process (about 1 s)"}
    fast_core = FastCore(params, work / "pyverilator", (w, b))
    times = []
    for _ in range(3):
        t3 = time.perf_counter()
        f = fast_core.run(q, k, samples=samples)
        times.append(time.perf_counter() - t3)
        assert np.array_equal(f.o, o) and f.total == r.predicted.total
    fast = {"cycles": f.total, "seconds_median": float(np.median(times)), "cycles_per_s": f.total / float(np.median(times))}
    return {"lanes": params.P, "samples": samples, "cocotb_verilator": cocotb, "pyverilator": fast,
            "speedup": fast["cycles_per_s"] / cocotb["cycles_per_s"], "bit_exact": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", default="xc7")
    ap.add_argument("--lanes", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--samples", type=int, default=32, help="samples streamed in the speed run")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for p in args.lanes:
            params = SasaCoreParams(P=p, **DIGITS)
            t0 = time.perf_counter()
            syn = synthesize(params, Path(tmp) / f"synth_p{p}", family=args.family)
            c = cycle_model(params)
            rows.append({"lanes": p, **syn["resources"], "mul_cells": syn["mul_cells_before_mapping"],
                         "cycles_per_sample": c.total, "beats_per_step": params.beats_per_step,
                         "synth_seconds": time.perf_counter() - t0})
            print(rows[-1], flush=True)
        speed = sim_speed(SasaCoreParams(P=8, **DIGITS), args.samples, Path(tmp) / "sim")
    result = {"geometry": DIGITS, "family": args.family, "rows": rows, "simulation": speed}
    (ROOT / "results" / "rtl.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# SASA core: resources per lane count ({args.family}, Yosys synth_xilinx)", "",
             f"Geometry: N={DIGITS['N']} tokens (4x4), N'={DIGITS['N_AGG']}, D={DIGITS['D']}, T={DIGITS['T']}, "
             "16-bit membranes, 32-bit DWC accumulators (the digits config saformer-2-64).", "",
             "| P | LUT | FF | CARRY | LUTRAM | BRAM18 | BRAM36 | DSP | $mul | cycles / sample (stall-free) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['lanes']} | {r['LUT']} | {r['FF']} | {r['CARRY']} | {r['LUTRAM']} | {r['BRAM18']} | "
                     f"{r['BRAM36']} | {r['DSP']} | {r['mul_cells']} | {r['cycles_per_sample']} |")
    c, f = speed["cocotb_verilator"], speed["pyverilator"]
    lines += ["", f"Simulation speed, P=8, {speed['samples']} samples stall-free ({c['cycles']} cycles, every "
              "cycle driven from Python, output checked against the golden model):", "",
              "| driver | cycles/s |", "|---|---|",
              f"| cocotb 2.1 + Verilator 5.48 (scheduler, one simulator process per run) | {c['cycles_per_s']:.0f} |",
              f"| pyverilator-mm (ctypes, median of 3) | {f['cycles_per_s']:.0f} |", "",
              f"pyverilator / cocotb: {speed['speedup']:.1f}x.", "", "Made by `python benchmarks/rtl_report.py`."]
    (ROOT / "results" / "rtl.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
