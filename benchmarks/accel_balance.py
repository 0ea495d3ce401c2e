"""Per-layer lanes against one lanes setting for all, and what the engines' input FIFOs buy: the
whole accelerator simulated on real test images (every design bit-exact with the golden model),
its cycles per image beside its slowest stage's model (saformer.rtl_sim.balance.stage_loads).

    python benchmarks/accel_balance.py EXPORT [--lanes 2 4 8] [--targets 60000 30000 15000]
        [--images 100] [--data-dir DIR] [--out results/accel_balance]

Rows: each uniform lanes setting, each balancer target, each with the FIFOs on (one step, the
default) and, for the first of each kind, off. Synthesis is not run here (benchmarks/accel_lanes.py
does it); the total engine lanes stand for the adders (each lane is one accumulator adder).
Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from saformer.config import HardwareConfig  # noqa: E402
from saformer.quant.export import load_export  # noqa: E402
from saformer.quant.golden import GoldenModel  # noqa: E402
from saformer.quant.stages import integer_batches  # noqa: E402
from saformer.rtl_sim.accel import build_top, run_top  # noqa: E402
from saformer.rtl_sim.balance import balance_lanes, stage_loads  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export")
    ap.add_argument("--lanes", type=int, nargs="*", default=[2, 4, 8])
    ap.add_argument("--targets", type=int, nargs="*", default=[60000, 30000, 15000])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--data-dir")
    ap.add_argument("--work", default="build/accel_balance")
    ap.add_argument("--out", default="results/accel_balance")
    ap.add_argument("--model-only", action="store_true",
                    help="no builds: the balancer's lanes and the slowest stage's model per design (large geometries)")
    args = ap.parse_args()
    ex = load_export(args.export)
    _, x, _ = next(integer_batches(ex.manifest["dataset"], ex.cfg, ex.qcfg, args.data_dir, args.images, args.images))
    gold, traces = GoldenModel(ex).forward(x, trace=True)
    work = Path(args.work).resolve()
    designs = []
    for i, lanes in enumerate(args.lanes):
        for fifo in ((1, 0) if i == 0 else (1,)):
            designs.append((f"uniform {lanes}", HardwareConfig(lanes=lanes, engine_fifo_steps=fifo), None))
    for i, target in enumerate(args.targets):
        b = balance_lanes(ex, x, traces, target)
        for fifo in ((1, 0) if i == 0 else (1,)):
            designs.append((f"balanced {target:,}", b.hardware(HardwareConfig(engine_fifo_steps=fifo)), b.met))
    if args.model_only:
        return model_only(ex, x, traces, designs, args)
    rows = []
    for name, hw, met in designs:
        t0 = time.perf_counter()
        design, harness, _ = build_top(ex, hw, work / f"{name.replace(' ', '_').replace(',', '')}_f{hw.engine_fifo_steps}")
        r = run_top(design, harness, x)
        assert np.array_equal(r.logits, gold), f"{name}: the RTL's logits differ from the golden model's"
        loads = {k: float(v.mean()) for k, v in stage_loads(design, ex, x, traces).items()}
        slowest = max(loads, key=loads.get)
        lanes = {d["node"]: d["params"]["LANES"] for d in design.blocks if d["block"] == "syn_engine"}
        cyc = r.cycles_per_image[1:]
        rows.append({"design": name, "fifo_steps": hw.engine_fifo_steps, "target_met": met,
                     "engine_lanes": lanes, "total_engine_lanes": sum(lanes.values()), "bit_exact_images": len(x),
                     "cycles_per_image_mean": float(cyc.mean()), "cycles_per_image_median": float(np.median(cyc)),
                     "slowest_stage": slowest, "slowest_stage_cycles": loads[slowest],
                     "pipeline_over_slowest": float(cyc.mean()) / loads[slowest],
                     "seconds": time.perf_counter() - t0})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "engine_lanes"}), flush=True)
    out = Path(args.out)
    result = {"export": str(args.export), "config": ex.cfg.label, "images": len(x), "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Per-layer lanes and the engines' input FIFOs ({ex.cfg.label}, {len(x)} test images, all bit-exact)", "",
             "Command: `python benchmarks/accel_balance.py EXPORT " + " ".join(sys.argv[2:]) + "`", "",
             "Cycles per image: images streamed back to back (the first, which holds the pipeline's fill, left "
             "out). The slowest stage: its block's stall-free cycle model, mean over the same images.", "",
             "| design | FIFO steps | engine lanes (sum) | cycles/image (mean) | (median) | slowest stage | its model "
             "| pipeline / slowest |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['design']}{'' if r['target_met'] in (None, True) else ' (not met)'} | {r['fifo_steps']} | "
                     f"{r['total_engine_lanes']} | {r['cycles_per_image_mean']:,.0f} | {r['cycles_per_image_median']:,.0f} | "
                     f"{r['slowest_stage']} | {r['slowest_stage_cycles']:,.0f} | {r['pipeline_over_slowest']:.2f}x |")
    lines += ["", "Lanes per engine of the balanced designs:", ""]
    for r in rows:
        if r["design"].startswith("balanced") and r["fifo_steps"]:
            lines.append(f"- {r['design']}: " + ", ".join(f"{k} {v}" for k, v in r["engine_lanes"].items()))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}.json / .md")


def model_only(ex, x, traces, designs, args) -> None:
    """The stage model alone: lanes and the slowest stage per design, nothing built or simulated."""
    from saformer.rtl_sim.accel import generate_top

    rows = []
    for name, hw, met in designs:
        if not hw.engine_fifo_steps:
            continue
        design = generate_top(ex, hw, None)
        loads = {k: float(v.mean()) for k, v in stage_loads(design, ex, x, traces).items()}
        slowest = max(loads, key=loads.get)
        lanes = {d["node"]: d["params"]["LANES"] for d in design.blocks if d["block"] == "syn_engine"}
        rows.append({"design": name, "target_met": met, "engine_lanes": lanes, "total_engine_lanes": sum(lanes.values()),
                     "slowest_stage": slowest, "slowest_stage_cycles": loads[slowest]})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "engine_lanes"}), flush=True)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"export": str(args.export), "config": ex.cfg.label,
                                                    "images": len(x), "model_only": True, "rows": rows}, indent=2) + "\n")
    lines = [f"# Per-layer lanes at {ex.cfg.label}: the stage model only ({len(x)} test images, nothing simulated)", "",
             "Command: `python benchmarks/accel_balance.py EXPORT " + " ".join(sys.argv[2:]) + "`", "",
             "The slowest stage's stall-free cycles per image (mean), each block's own cycle model over the golden "
             "spikes. With the engines' input FIFOs the simulated pipeline ran within 1.01x of it on the digits "
             "model (results/accel_balance.md); here it is a prediction.", "",
             "| design | engine lanes (sum) | slowest stage | its model (cycles/image) |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['design']}{'' if r['target_met'] in (None, True) else ' (not met)'} | "
                     f"{r['total_engine_lanes']} | {r['slowest_stage']} | {r['slowest_stage_cycles']:,.0f} |")
    lines += ["", "Lanes per engine of the balanced designs:", ""]
    lines += [f"- {r['design']}: " + ", ".join(f"{k} {v}" for k, v in r["engine_lanes"].items())
              for r in rows if r["design"].startswith("balanced")]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}.json / .md")


if __name__ == "__main__":
    main()
