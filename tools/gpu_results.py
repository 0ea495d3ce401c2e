"""The figures of a lent GPU session's runs (tools/gpu_cifar.sh), as one results table.

    python tools/gpu_results.py OUT/gpu_train.tar.gz OUT/gpu_quant.tar.gz [OUT/gpu_ablate.tar.gz]
    python tools/gpu_results.py build/gpu/results --out results/cifar10

Reads what the script's archives (or its WORK/results folder) hold: the float run's metrics and
timing, the throughput probe, each bit width's QAT metrics and integer-model golden.json, the
environment, and the ablation table where there is one. Writes results/<dataset>.{json,md}: the
accuracy at every level against issue 13's targets (91% float; integer within 0.5 pt of float at 8
bits and 1.5 pt at 4; 8,000 training images/s on one H100), each marked met or missed, the
cross-check of the torch backend against the numpy model, and the attention diagnostics. The
numbers are copied from the files named in the table, never retyped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a clone without the package installed

from saformer.config import ModelConfig  # noqa: E402
from saformer.errors import ConfigError  # noqa: E402

TARGETS = {"float_accuracy": 0.91, "train_images_per_s": 8000.0, "integer_minus_float_points": {8: -0.5, 4: -1.5}}


class ResultsError(Exception):
    pass


def gather(sources: list[Path], into: Path) -> Path:
    """Unpack the archives (or copy the folders) into one results/ folder; later sources win."""
    results = into / "results"
    results.mkdir(parents=True)
    for src in sources:
        if not src.exists():
            raise ResultsError(f"'{src}' does not exist")
        if src.is_dir():
            base = src if src.name == "results" or not (src / "results").is_dir() else src / "results"
            shutil.copytree(base, results, dirs_exist_ok=True)
        else:
            try:
                with tarfile.open(src) as tar:
                    members = [m for m in tar.getmembers() if m.name.startswith("results/") and not m.issym()
                               and ".." not in Path(m.name).parts]
                    tar.extractall(into, members=members, filter="data")
            except tarfile.TarError as exc:
                raise ResultsError(f"'{src}' is not a readable tar archive ({exc})") from None
    return results


def load(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ResultsError(f"'{path.name}' is not valid JSON ({exc})") from None


def model_label(flt: dict) -> str:
    """The float run's model as ModelConfig.label names it (an archive from before the label existed
    gave only the config's name, which hides overrides such as the CPU rehearsal's smaller model)."""
    try:
        return ModelConfig.from_dict(flt["model_config"]).label
    except (KeyError, TypeError, ConfigError):
        return flt["config"]


def collect(results: Path) -> dict:
    flt = load(results / "float_metrics.json")
    if flt is None:
        raise ResultsError("no float_metrics.json among the sources: pass the 'train' call's archive")
    timing = load(results / "float_timing.json") or {}
    probe = load(results / "throughput_probe.json") or {}
    env = (results / "environment.txt").read_text().strip() if (results / "environment.txt").is_file() else ""
    rate = timing.get("train_images_per_s_median")
    out = {"dataset": flt["dataset"], "config": model_label(flt), "device": flt["device"], "environment": env,
           "float": {"test_accuracy": flt["test_accuracy"], "best_epoch_test_accuracy": flt["best_test_accuracy"],
                     "epochs": flt["epochs_done"], "complete": flt["complete"],
                     "train_minutes": timing.get("train_minutes_total"), "train_images_per_s_median": rate,
                     "eval_images_per_s": timing.get("eval_images_per_s"),
                     "probe_train_images_per_s_uncompiled": probe.get("train_images_per_s_median"),
                     "batch_size": flt["train_config"]["batch_size"], "lr": flt["train_config"]["lr"]},
           "levels": [], "targets": {}}
    out["targets"]["float_accuracy"] = {"target": TARGETS["float_accuracy"], "value": flt["test_accuracy"],
                                        "met": flt["test_accuracy"] >= TARGETS["float_accuracy"]}
    out["targets"]["train_images_per_s"] = {"target": TARGETS["train_images_per_s"], "value": rate,
                                            "met": rate is not None and rate >= TARGETS["train_images_per_s"]}
    for bits in (8, 4):
        qat, golden = load(results / f"qat{bits}_metrics.json"), load(results / f"golden{bits}" / "golden.json")
        if qat is None and golden is None:
            continue
        row = {"weight_bits": bits, "qat": qat and qat["test_accuracy"], "ptq": qat and qat.get("ptq_test_accuracy"),
               "integer": golden and golden["test_accuracy"], "integer_images": golden and golden["images"],
               "integer_backend": golden and f"{golden['backend']} on {golden['device']}",
               "integer_images_per_s": golden and golden["images_per_s"],
               "crosscheck": golden and golden.get("crosscheck"), "attention": golden and golden.get("attention")}
        if golden is not None:
            delta = 100 * (golden["test_accuracy"] - flt["test_accuracy"])
            row["integer_minus_float_points"] = delta
            limit = TARGETS["integer_minus_float_points"][bits]
            whole = golden["images"] == len_test(flt["dataset"], golden["images"])
            out["targets"][f"integer_{bits}bit"] = {"target_points": limit, "value_points": delta,
                                                    "met": delta >= limit and whole, "whole_test_set": whole}
        out["levels"].append(row)
    ablation = next(iter(sorted(results.glob("ablation_*.json"))), None)
    out["ablation"] = load(ablation) if ablation else None
    return out


def len_test(dataset: str, images: int) -> int:
    """The test-set size the integer accuracy must cover to count against the target."""
    return {"cifar10": 10_000, "cifar100": 10_000, "digits": 360}.get(dataset, images)


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def verdict(t: dict | None) -> str:
    return "not run" if t is None else ("**met**" if t["met"] else "**missed**")


def markdown(r: dict, command: str) -> str:
    f, t = r["float"], r["targets"]
    rate = f["train_images_per_s_median"]
    probe = f["probe_train_images_per_s_uncompiled"]
    out = [f"# {r['config']} on {r['dataset']}: float, QAT and integer accuracy\n",
           f"Made by `{command}` from the archives of `tools/gpu_cifar.sh` (docs/gpu.md).\n",
           "```", r["environment"], "```\n",
           *([] if str(r["device"]).startswith("cuda") else
             [f"Trained on the {r['device']}, not a GPU: the targets are those of the GPU run, and this table "
              "checks the steps, not the issue's setting.\n"]),
           "| target (issue 13) | value | verdict |", "|---|---|---|",
           f"| float test accuracy >= {pct(TARGETS['float_accuracy'])} | {pct(f['test_accuracy'])} | "
           f"{verdict(t['float_accuracy'])} |",
           f"| training >= {TARGETS['train_images_per_s']:,.0f} images/s | "
           f"{'n/a' if rate is None else f'{rate:,.0f}'} | {verdict(t['train_images_per_s'])} |"]
    for bits in (8, 4):
        tb = t.get(f"integer_{bits}bit")
        value = "n/a" if tb is None else f"{tb['value_points']:+.2f} pt" + ("" if tb["whole_test_set"] else " (part of the test set)")
        out.append(f"| integer - float at {bits} bits >= {TARGETS['integer_minus_float_points'][bits]} pt | "
                   f"{value} | {verdict(tb)} |")
    minutes = "n/a" if f["train_minutes"] is None else f"{f['train_minutes']:.1f}"
    out += ["", f"Float: {f['epochs']} epochs{'' if f['complete'] else ' (not complete)'} at batch {f['batch_size']}, "
            f"lr {f['lr']:g}, {minutes} min of training; "
            f"final test accuracy {pct(f['test_accuracy'])} (best epoch {pct(f['best_epoch_test_accuracy'])})"
            f"{'' if probe is None else f'; uncompiled probe {probe:,.0f} images/s'}.\n",
            "| weight bits | float | BN folded + quantized | QAT | integer | integer - float | images | "
            "integer model | torch == numpy |", "|---|---|---|---|---|---|---|---|---|"]
    for row in r["levels"]:
        cc = row["crosscheck"]
        check = "n/a" if not cc else (f"equal on {cc['images']}" if cc["equal"] else f"**differ** on {cc['differing_images']}")
        delta = row.get("integer_minus_float_points")
        speed = "" if not row["integer_images_per_s"] else f", {row['integer_images_per_s']:.0f} img/s"
        out.append(f"| {row['weight_bits']} | {pct(f['test_accuracy'])} | {pct(row['ptq'])} | {pct(row['qat'])} | "
                   f"{pct(row['integer'])} | {'n/a' if delta is None else f'{delta:+.2f} pt'} | "
                   f"{row['integer_images'] or 'n/a'} | {row['integer_backend'] or 'n/a'}{speed} | {check} |")
    for row in r["levels"]:
        a = row["attention"]
        if not a:
            continue
        out += [f"\nAttention diagnostics, integer model, {row['weight_bits']} bits: the model {pct(a['accuracy_model'])}, "
                f"every SASA output zeroed {pct(a['accuracy_sasa_output_zeroed'])} "
                f"({100 * (a['accuracy_sasa_output_zeroed'] - a['accuracy_model']):+.2f} pt), mask forced open "
                f"{pct(a['accuracy_mask_all_ones'])}.\n", "| core | LIF_a rate | LIF_o rate |", "|---|---|---|",
                *(f"| {c['core']} | {c['lif_a_rate']:.4f} | {c['lif_o_rate']:.4f} |" for c in a["cores"])]
    if r["ablation"]:
        out += ["", f"The ablation's table: `{r['ablation']['command']}` (its own .md beside this file)."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sources", nargs="+", help="gpu_<stage>.tar.gz archives or WORK/results folders")
    ap.add_argument("--out", help="results prefix (default: results/<dataset>)")
    args = ap.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = gather([Path(s) for s in args.sources], Path(tmp))
            r = collect(results)
            ablation_md = next(iter(sorted(results.glob("ablation_*.md"))), None)
            out = Path(args.out or ROOT / "results" / r["dataset"])
            out.parent.mkdir(parents=True, exist_ok=True)
            if ablation_md is not None:
                for suffix in (".md", ".json", ".png"):
                    src = ablation_md.with_suffix(suffix)
                    if src.is_file():
                        shutil.copy(src, out.parent / src.name)
    except ResultsError as exc:
        print(f"gpu_results: error: {exc}", file=sys.stderr)
        return 2
    command = "python tools/gpu_results.py " + " ".join(args.sources)
    Path(f"{out}.json").write_text(json.dumps(r, indent=1) + "\n")
    Path(f"{out}.md").write_text(markdown(r, command))
    print(Path(f"{out}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
