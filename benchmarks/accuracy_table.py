"""Accuracy at every level (float, QAT, integer golden) for 8- and 4-bit weights, from the CLI.

    python benchmarks/accuracy_table.py                          # digits, into runs/accuracy
    python benchmarks/accuracy_table.py --dataset cifar10 --data-dir DATA --work runs/acc-c10 --float-run RUN

Runs `saformer train` (unless --float-run is given), `saformer quantize` per bit width,
`saformer export` and `saformer golden`, then writes results/accuracy_<dataset>.{json,md} built
from the metrics files those commands wrote.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from saformer.cli import main as saformer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str]) -> None:
    print("$ saformer " + " ".join(argv), flush=True)
    code = saformer(argv)
    if code != 0:
        raise SystemExit(f"saformer {argv[0]} failed with status {code}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-dir")
    ap.add_argument("--work", default=str(ROOT / "runs" / "accuracy"))
    ap.add_argument("--float-run", help="reuse a trained float run instead of training one")
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 4])
    args = ap.parse_args()
    work = Path(args.work)
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    float_run = Path(args.float_run) if args.float_run else work / "float"
    if not (float_run / "metrics.json").is_file():
        run(["train", "--dataset", args.dataset, *data, "--out", str(float_run), "--no-progress"])
    flt = json.loads((float_run / "metrics.json").read_text())
    rows = []
    for bits in args.bits:
        qrun, export = work / f"qat{bits}", work / f"export{bits}"
        if not (qrun / "metrics.json").is_file():
            run(["quantize", str(float_run), "--out", str(qrun), "--weight-bits", str(bits), "--no-progress"])
        run(["export", str(qrun), "--out", str(export), "--check-images", "256"])
        run(["golden", str(export), "--no-progress"])
        qat = json.loads((qrun / "metrics.json").read_text())
        golden = json.loads((export / "golden.json").read_text())
        check = json.loads((export / "export.json").read_text())
        rows.append({"weight_bits": bits, "float": flt["test_accuracy"], "ptq": qat["ptq_test_accuracy"],
                     "qat": qat["test_accuracy"], "integer": golden["test_accuracy"],
                     "integer_minus_float_points": 100 * (golden["test_accuracy"] - flt["test_accuracy"]),
                     "qat_equals_integer": qat["test_accuracy"] == golden["test_accuracy"],
                     "bit_exact_traces": check["golden_vs_qat"]["bit_exact"],
                     "bit_exact_images": check["golden_vs_qat"]["images"],
                     "qat_epochs": qat["epochs_done"], "test_images": golden["images"]})
    result = {"dataset": args.dataset, "config": flt["config"], "float_epochs": flt["epochs_done"], "rows": rows}
    out = ROOT / "results" / f"accuracy_{args.dataset}"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Accuracy at every level: {flt['config']} on {args.dataset} ({rows[0]['test_images']} test images)", "",
             "| weight bits | float | BN folded + quantized, before QAT | QAT | integer (golden) | integer - float | golden == QAT traces |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['weight_bits']} | {100 * r['float']:.2f}% | {100 * r['ptq']:.2f}% | {100 * r['qat']:.2f}% | "
                     f"{100 * r['integer']:.2f}% | {r['integer_minus_float_points']:+.2f} pt | "
                     f"{'bit-exact' if r['bit_exact_traces'] else 'MISMATCH'} ({r['bit_exact_images']} images) |")
    lines += ["", f"Float: {flt['epochs_done']} epochs from scratch; QAT: {rows[0]['qat_epochs']} epochs of fine-tuning.",
              f"Made by `python benchmarks/accuracy_table.py --dataset {args.dataset}`."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
