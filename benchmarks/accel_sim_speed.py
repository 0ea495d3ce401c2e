"""Simulation speed of the whole accelerator: simulated cycles per second of the compiled Verilator
harness streaming real test images through the top (every run checked bit-exact against the
golden model), one harness process and several side by side (run_top's shards).

    python benchmarks/accel_sim_speed.py EXPORT [--lanes 2 8] [--jobs 1 2] [--images 100]
        [--repeats 3] [--data-dir DIR] [--out results/accel_sim_speed]

Per design and jobs: the median of ``--repeats`` runs of cycles/s (all processes' cycles over the
wall time), and per process (its cycles over its own cycle loop's time). Builds are not timed.
Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from saformer.config import HardwareConfig  # noqa: E402
from saformer.quant.export import load_export  # noqa: E402
from saformer.quant.golden import GoldenModel  # noqa: E402
from saformer.quant.stages import integer_batches  # noqa: E402
from saformer.rtl_sim.accel import build_top, run_top  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export")
    ap.add_argument("--lanes", type=int, nargs="*", default=[2, 8])
    ap.add_argument("--jobs", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-dir")
    ap.add_argument("--work", default="build/accel_sim_speed")
    ap.add_argument("--out", default="results/accel_sim_speed")
    args = ap.parse_args()
    ex = load_export(args.export)
    _, x, _ = next(integer_batches(ex.manifest["dataset"], ex.cfg, ex.qcfg, args.data_dir, args.images, args.images))
    gold = GoldenModel(ex).forward(x)[0]
    rows = []
    for lanes in args.lanes:
        design, harness, build_s = build_top(ex, HardwareConfig(lanes=lanes), Path(args.work).resolve() / f"lanes{lanes}")
        for jobs in args.jobs:
            wall, per_process, exact = [], [], True
            for _ in range(args.repeats):
                r = run_top(design, harness, x, jobs=jobs)
                exact &= bool(np.array_equal(r.logits, gold))
                wall.append(r.simulated / r.seconds)
                per_process.append(r.simulated / r.process_seconds)
            row = {"lanes": lanes, "jobs": jobs, "images": len(x), "bit_exact": exact, "cycles": r.simulated,
                   "median_cycles_per_image": float(np.median(r.steady_cycles())),
                   "cycles_per_second": float(np.median(wall)), "cycles_per_second_per_process": float(np.median(per_process)),
                   "runs": wall, "build_seconds": build_s}
            rows.append(row)
            print(f"lanes {lanes}, jobs {jobs}: {row['cycles_per_second'] / 1e6:.2f} M cycles/s "
                  f"({row['cycles_per_second_per_process'] / 1e6:.2f} M per process), bit-exact {exact}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"export": str(args.export), "config": ex.cfg.label, "cores": os.cpu_count(), "machine": platform.machine(),
            "repeats": args.repeats}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [f"# Simulation speed of the whole accelerator ({ex.cfg.label})", "",
             f"The compiled Verilator harness streaming {len(x)} test images through the top, every run's logits "
             f"equal to the golden model's; medians of {args.repeats} runs on this machine ({os.cpu_count()} cores, "
             "noisy: read the ratios). Cycles/s: all processes' cycles over the wall time; per process: its "
             "cycles over its own cycle loop's time.", "",
             "| lanes | harness processes | cycles simulated | cycles/image (median) | M cycles/s | M cycles/s per process | bit-exact |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['lanes']} | {r['jobs']} | {r['cycles']:,} | {r['median_cycles_per_image']:,.0f} | "
                     f"{r['cycles_per_second'] / 1e6:.2f} | {r['cycles_per_second_per_process'] / 1e6:.2f} | "
                     f"{'yes' if r['bit_exact'] else 'NO'} |")
    lines += ["", f"Made by `python benchmarks/accel_sim_speed.py EXPORT --lanes {' '.join(map(str, args.lanes))} "
                  f"--jobs {' '.join(map(str, args.jobs))} --images {args.images}`.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
