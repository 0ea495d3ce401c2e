"""The paper's ablation with equal budgets: SASA vs SSA vs SDSA, SASA without DWC, N' swept.

    python benchmarks/ablation.py                                   # digits, 20 epochs each, into runs/ablation_digits
    python benchmarks/ablation.py --dataset cifar10 --data-dir DATA --epochs 12 --compile   # on a GPU
    python benchmarks/ablation.py --variants sasa,ssa --epochs 5    # a subset

Every variant is trained by `saformer train` with the same epochs, batch, learning rate and seed
(the data set's defaults unless given), then evaluated by `saformer eval` with the attention
diagnostics: accuracy with every attention core's output zeroed and with its mask forced open, and
the mask / output firing rates. A variant whose N' does not divide the token count is listed as
not applicable; one whose N' is the config's own is the `sasa` run itself, not trained twice.
Resumable: a finished run is kept, a cut-off one (`--max-minutes`) is resumed by the next call.
Writes results/ablation_<dataset>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from saformer.cli import main as saformer  # noqa: E402
from saformer.config import DATASET_DEFAULTS, divisors, get_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N_AGG_SWEEP = (1, 4, 16, 64)  # the paper's N' values
VARIANTS = {  # name -> (what it is, `saformer train` flags); n<K> rows are added per N' below
    "sasa": ("SASA (the model)", []),
    "ssa": ("SSA (Spikformer)", ["--attention", "ssa"]),
    "sdsa": ("SDSA (Spike-driven Transformer)", ["--attention", "sdsa"]),
    "sasa-no-dwc": ("SASA without DWC", ["--no-dwc"]),
    **{f"sasa-n{k}": (f"SASA, N' = {k}", ["--n-agg", str(k)]) for k in N_AGG_SWEEP},
}


def call(argv: list[str]) -> None:
    print("$ saformer " + " ".join(argv), flush=True)
    code = saformer(argv)
    if code != 0:
        raise SystemExit(f"ablation: saformer {argv[0]} failed with status {code} (command above)")


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def finished(run: Path) -> bool:
    return (run / "metrics.json").is_file() and read(run / "metrics.json").get("complete", False)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="digits", choices=sorted(DATASET_DEFAULTS))
    ap.add_argument("--data-dir")
    ap.add_argument("--config", help="model config (default: the data set's)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    ap.add_argument("--epochs", type=int, help="per variant (default: the data set's)")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--warmup-epochs", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-minutes", type=float, help="per call of each variant's training (resumable)")
    ap.add_argument("--compile", action="store_true", help="torch.compile each model (GPU runs)")
    ap.add_argument("--runs", help="run directories (default: runs/ablation_<dataset>)")
    ap.add_argument("--out", help="results prefix (default: results/ablation_<dataset>)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.variants.split(",")) - set(VARIANTS))
    if unknown:
        ap.error(f"--variants: unknown {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    return args


def plan(args: argparse.Namespace) -> list[dict]:
    """Each requested variant with its run directory, or the reason it is not run."""
    cfg = get_config(args.config or DATASET_DEFAULTS[args.dataset].config)
    runs = Path(args.runs or ROOT / "runs" / f"ablation_{args.dataset}")
    rows = []
    for name in args.variants.split(","):
        label, flags = VARIANTS[name]
        row = {"variant": name, "label": label, "flags": flags, "run": str(runs / name), "skipped": None}
        if name.removeprefix("sasa-n").isdigit():
            k = int(name.removeprefix("sasa-n"))
            if cfg.num_tokens % k:
                row["skipped"] = f"N' = {k} does not divide N = {cfg.num_tokens} (N' in {divisors(cfg.num_tokens)})"
            elif k == cfg.n_agg:  # the model's own N': the sasa run
                row.update(run=str(runs / "sasa"), flags=[], same_as="sasa")
        rows.append(row)
    return rows


def train_and_probe(row: dict, args: argparse.Namespace) -> None:
    run = Path(row["run"])
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    common = [*data, "--out", str(run), *(["--no-progress"] if args.no_progress else []),
              *(["--max-minutes", str(args.max_minutes)] if args.max_minutes else []),
              *(["--compile"] if args.compile else [])]
    if not finished(run):
        if (run / "run.json").is_file():
            call(["train", "--resume", *common])
        else:
            budget = [f for opt, val in (("--epochs", args.epochs), ("--batch-size", args.batch_size),
                                         ("--lr", args.lr), ("--warmup-epochs", args.warmup_epochs))
                      if val is not None for f in (opt, str(val))]
            call(["train", "--dataset", args.dataset, *(["--config", args.config] if args.config else []),
                  *row["flags"], *budget, "--seed", str(args.seed), *common])
    if not finished(run):
        return  # stopped by --max-minutes: the next call resumes it
    probes = run / "ablation_eval"
    if not (probes / "metrics.json").is_file() or \
            (probes / "metrics.json").stat().st_mtime < (run / "metrics.json").stat().st_mtime:
        call(["eval", str(run), "--out", str(probes), *data, *(["--no-progress"] if args.no_progress else [])])


def summarize(row: dict) -> dict:
    run = Path(row["run"])
    if row["skipped"] or not finished(run):
        return {**row, "done": False}
    m, e = read(run / "metrics.json"), read(run / "ablation_eval" / "metrics.json")
    timing = read(run / "timing.json") if (run / "timing.json").is_file() else {}
    att = e["attention"]

    def mean_rate(key: str) -> float | None:
        rates = [c[key] for c in att["cores"] if c[key] is not None]
        return statistics.fmean(rates) if rates else None

    return {**row, "done": True, "config": m["model_config"]["name"], "attention": m["model_config"]["attention"],
            "dwc": m["model_config"]["dwc"], "n_agg": m["model_config"]["n_agg"], "parameters": m["parameters"],
            "epochs": m["epochs_done"], "test_accuracy": e["test_accuracy"],
            "best_epoch_test_accuracy": m["best_test_accuracy"],
            "accuracy_output_zeroed": att["accuracy_sasa_output_zeroed"],
            "accuracy_mask_all_ones": att["accuracy_mask_all_ones"],
            "drop_when_zeroed_points": 100 * (e["test_accuracy"] - att["accuracy_sasa_output_zeroed"]),
            "mask_rate_mean": mean_rate("lif_a_rate"), "output_rate_mean": mean_rate("lif_o_rate"),
            "cores": att["cores"], "train_images_per_s_median": timing.get("train_images_per_s_median"),
            "train_minutes": timing.get("train_minutes_total"), "device": m["device"]}


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def rate(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def markdown(rows: list[dict], command: str) -> str:
    done = [r for r in rows if r["done"]]
    first = done[0] if done else {}
    epochs = sorted({r["epochs"] for r in done})
    budget = (f"Equal budgets: every variant {epochs[0]} epoch{'s' if epochs[0] != 1 else ''}, the same "
              "batch, learning rate and seed." if len(epochs) == 1 else
              f"**Unequal budgets**: the runs have {', '.join(map(str, epochs))} epochs (a run directory "
              "kept from a call with other settings); the rows are not comparable.")
    out = [f"# Ablation on {first.get('config', '?')} ({rows[0].get('dataset', '')})\n",
           f"Made by `{command}`. {budget} Accuracy is the final epoch's on the whole test set; the "
           "attention diagnostics run the same checkpoint with every attention core's output spikes "
           "zeroed (its projection adds only its bias) and with its channel mask forced open.\n",
           "| variant | parameters | test accuracy | output zeroed | drop | mask all ones | mask rate | output rate "
           "| train img/s | train min |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["skipped"]:
            out.append(f"| {r['label']} | not applicable: {r['skipped']} |||||||||")
        elif not r["done"]:
            out.append(f"| {r['label']} | not finished (run the command again to resume) |||||||||")
        else:
            same = " (the model's own N')" if r.get("same_as") else ""
            ips, minutes = r["train_images_per_s_median"], r["train_minutes"]
            ips = "n/a" if ips is None else f"{ips:.0f}"
            minutes = "n/a" if minutes is None else f"{minutes:.1f}"
            out.append(f"| {r['label']}{same} | {r['parameters']:,} | {pct(r['test_accuracy'])} | "
                       f"{pct(r['accuracy_output_zeroed'])} | {r['drop_when_zeroed_points']:+.2f} pt | "
                       f"{pct(r['accuracy_mask_all_ones'])} | {rate(r['mask_rate_mean'])} | "
                       f"{rate(r['output_rate_mean'])} | {ips} | {minutes} |")
    out += ["", "Rates are means over the blocks: the mask is LIF_a (SASA, SDSA), the output is LIF_o "
            "(SASA) or SSA's attention neuron; SDSA's output is mask x V, no neuron. n/a where a variant "
            "has no such neuron. A drop near zero when the output is zeroed means the attention carries "
            "little on this data set."]
    return "\n".join(out) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["done"]]
    if not done:
        return
    labels = [r["variant"] for r in done]
    xs = range(len(done))
    fig, ax = plt.subplots(figsize=(1.1 * len(done) + 3.5, 3.6))
    bars = (("test_accuracy", "the model"), ("accuracy_output_zeroed", "attention output zeroed"),
            ("accuracy_mask_all_ones", "mask forced open"))
    for i, (key, label) in enumerate(bars):  # no bar where a variant has no mask (SSA)
        shown = [(x, 100 * r[key]) for x, r in zip(xs, done) if r[key] is not None]
        ax.bar([x + (i - 1) * 0.27 for x, _ in shown], [v for _, v in shown], 0.27, label=label)
    lo = min(100 * r[k] for r in done for k, _ in bars if r[k] is not None)
    ax.set_ylim(max(0, lo - 5), 100)
    ax.set_xticks(list(xs), labels, rotation=30, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"ablation, {done[0]['config']}, {done[0]['epochs']} epochs each")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = plan(args)
    for row in rows:
        if not row["skipped"]:  # a same_as row finds its run trained already (or trains it, once)
            train_and_probe(row, args)
    summary = [{**summarize(r), "dataset": args.dataset} for r in rows]
    for r in summary:  # paths inside the repository are written relative to it (the results are committed)
        if Path(r["run"]).resolve().is_relative_to(ROOT):
            r["run"] = str(Path(r["run"]).resolve().relative_to(ROOT))
    command = "python benchmarks/ablation.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out or ROOT / "results" / f"ablation_{args.dataset}")
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps({"command": command.strip(), "rows": summary}, indent=1) + "\n")
    Path(f"{out}.md").write_text(markdown(summary, command.strip()))
    plot(summary, Path(f"{out}.png"))
    print(Path(f"{out}.md").read_text())
    return 0 if all(r["done"] or r["skipped"] for r in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
