"""The cycle model's memory on a long run: `model_top` over the images of an `accel.json`, with
`saformer accel`'s bound (MODEL_ENTRIES), its cycles against the simulation's, and the peak RSS.

    python benchmarks/cycle_model_memory.py EXPORT ACCEL_DIR --data-dir DATA --out results/NAME.json

ACCEL_DIR is a `saformer accel --out` directory whose cycle model covered every image (its cycles
then equal the Verilator run's). Prints and writes: images modelled, transfers, seconds, whether
the cycles equal the simulation's, and the peak RSS before and after the model.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from saformer.config import HardwareConfig  # noqa: E402
from saformer.quant.export import load_export  # noqa: E402
from saformer.quant.golden import GoldenModel  # noqa: E402
from saformer.quant.stages import integer_batches  # noqa: E402
from saformer.rtl_sim.accel import MODEL_ENTRIES, TRACE_BATCH, generate_top  # noqa: E402
from saformer.rtl_sim.cycle_model import encoder_counts, model_top  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export")
    ap.add_argument("accel_dir", type=Path)
    ap.add_argument("--data-dir")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    acc = json.loads((args.accel_dir / "accel.json").read_text())
    cm = acc["cycle_model"]
    if not cm["exact"] or cm["images"] != acc["images"]:
        print("cycle_model_memory: error: that run's cycle model did not cover every image exactly", file=sys.stderr)
        return 2
    simulated = np.asarray(cm["predicted_cycles_per_image"])  # equal to the simulation's (exact)
    ex = load_export(args.export)
    design = generate_top(ex, HardwareConfig.from_dict(acc["hardware"]), None)
    golden, parts = GoldenModel(ex), []
    for _, x, _ in integer_batches(ex.manifest["dataset"], ex.cfg, ex.qcfg, args.data_dir, TRACE_BATCH, acc["images"]):
        _, traces = golden.forward(x, trace=True)
        parts.append(encoder_counts(design, ex, x, traces))
        del traces
    counts = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    t0 = time.perf_counter()
    m = model_top(design, ex, counts, max_entries=MODEL_ENTRIES)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = len(m.cycles_per_image)
    out = {"config": acc["config"], "images_simulated": acc["images"], "images_modelled": n, "complete": m.complete,
           "max_entries": MODEL_ENTRIES, "transfers": m.transfers, "seconds": seconds,
           "equal_to_simulation": bool(np.array_equal(m.cycles_per_image, simulated[:n])),
           "peak_rss_gb_before_model": before / 1e6, "peak_rss_gb_after_model": after / 1e6}
    print(json.dumps(out, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0 if out["equal_to_simulation"] else 1


if __name__ == "__main__":
    sys.exit(main())
