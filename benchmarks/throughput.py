"""Training and evaluation throughput (images/s), printed and written to results/.

    python benchmarks/throughput.py                       # digits config on the CPU
    python benchmarks/throughput.py --config saformer-4-384 --device cuda --compile

Synthetic inputs of the config's geometry (throughput does not depend on pixel values beyond
firing rates, and synthetic data needs no download); medians over --repeats timed runs after a
warm-up. Also times SASA against SSA over growing token counts (the linear-cost claim).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from saformer.config import get_config  # noqa: E402
from saformer.model.attention import SASA, SSA  # noqa: E402
from saformer.model.train import build_model, resolve_device  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(fn, repeats: int, device: torch.device) -> list[float]:
    fn()  # warm-up (and compilation)
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def model_throughput(cfg, device, batch, steps, repeats, compile_model, amp):
    torch.manual_seed(0)
    model = build_model(cfg, device)
    step_model = torch.compile(model) if compile_model else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, cfg.in_channels, cfg.height, cfg.width, device=device)
    y = torch.randint(0, cfg.num_classes, (batch,), device=device)
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")  # noqa: E731

    def train_steps():
        model.train()
        for _ in range(steps):
            with autocast():
                loss = torch.nn.functional.cross_entropy(step_model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    @torch.no_grad()
    def eval_steps():
        model.eval()
        for _ in range(steps):
            with autocast():
                step_model(x)

    t_train = time_steps(train_steps, repeats, device)
    t_eval = time_steps(eval_steps, repeats, device)
    n = batch * steps
    return {"train_images_per_s_median": n / statistics.median(t_train),
            "eval_images_per_s_median": n / statistics.median(t_eval),
            "train_images_per_s_runs": [n / t for t in t_train], "eval_images_per_s_runs": [n / t for t in t_eval]}


def attention_scaling(device, repeats):
    """Forward time of SASA vs SSA at D=64 over N = 64, 256, 1024 tokens."""
    rows = []
    for grid in (8, 16, 32):
        cfg = get_config("saformer-2-64").replace(height=grid * 2, width=grid * 2, n_agg=grid * grid // 4,
                                                  dim=64, heads=4)
        s = (torch.rand(cfg.time_steps, 8, cfg.num_tokens, cfg.dim, device=device) < 0.2).float()
        row = {"tokens": cfg.num_tokens}
        for cls in (SASA, SSA):
            m = cls(cfg).to(device).eval()
            with torch.no_grad():
                t = time_steps(lambda: m(s), repeats, device)
            row[f"{cls.__name__.lower()}_ms_median"] = 1000 * statistics.median(t)
        row["ssa_over_sasa"] = row["ssa_ms_median"] / row["sasa_ms_median"]
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="saformer-2-64")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=None, help="default: 64 on CPU, 256 on CUDA")
    ap.add_argument("--steps", type=int, default=5, help="optimizer steps per timed run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument("--out", default=None, help="default: results/throughput_<config>_<device>.json")
    args = ap.parse_args()

    device = resolve_device(args.device)
    cfg = get_config(args.config)
    batch = args.batch_size or (256 if device.type == "cuda" else 64)
    result = {"config": cfg.name, "device": str(device), "batch_size": batch, "steps": args.steps,
              "repeats": args.repeats, "compile": args.compile, "amp": not args.no_amp and device.type == "cuda",
              "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
              "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None}
    result.update(model_throughput(cfg, device, batch, args.steps, args.repeats, args.compile, not args.no_amp))
    result["attention_scaling"] = attention_scaling(device, args.repeats)

    print(f"{cfg.name} on {device} (batch {batch}, {torch.get_num_threads()} threads):")
    print(f"  train  {result['train_images_per_s_median']:10.1f} images/s (median of {args.repeats})")
    print(f"  eval   {result['eval_images_per_s_median']:10.1f} images/s (median of {args.repeats})")
    print("\n  tokens   SASA ms    SSA ms   SSA/SASA")
    for r in result["attention_scaling"]:
        print(f"  {r['tokens']:6d} {r['sasa_ms_median']:9.2f} {r['ssa_ms_median']:9.2f} {r['ssa_over_sasa']:9.2f}")
    out = Path(args.out or Path(__file__).resolve().parents[1] / "results" / f"throughput_{cfg.name}_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
