"""Speed of the integer golden model (numpy, and the bit-exact torch backend) next to float PyTorch
eval on the CPU, and the torch backend on the GPU where there is one (images/s).

    python benchmarks/golden_speed.py            # digits config and the CIFAR config saformer-4-384

Weights are random with BN statistics calibrated on random inputs (speed does not need a trained
model); the export is built in memory. Medians over --repeats runs after a warm-up; results are
printed and written to results/golden_speed.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from saformer.config import INPUT_FRAC, QuantConfig, get_config  # noqa: E402
from saformer.model.saformer import SAFormer  # noqa: E402
from saformer.quant.export import IntegerExport, build_export  # noqa: E402
from saformer.quant.fixed_point import quantize_input  # noqa: E402
from saformer.quant.fold import calibrate_bn, load_folded  # noqa: E402
from saformer.quant.golden import GoldenModel  # noqa: E402
from saformer.quant.golden_torch import TorchGoldenModel  # noqa: E402
from saformer.quant.qat import QuantSAFormer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(config: str, dataset: str, batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    cfg = get_config(config)
    x = torch.rand(batch, cfg.in_channels, cfg.height, cfg.width) * 2 - 0.5
    flt = SAFormer(cfg)
    calibrate_bn(flt, x)
    qat = QuantSAFormer(cfg, QuantConfig(input_frac=INPUT_FRAC[dataset]))
    load_folded(qat, flt)
    qat.eval()
    manifest, tensors = build_export(qat.double(), dataset)
    ex = IntegerExport(manifest, {k: v.astype(np.int64) for k, v in tensors.items()})
    golden, golden_torch = GoldenModel(ex), TorchGoldenModel(ex)
    x_int = quantize_input(x.numpy(), 8, INPUT_FRAC[dataset])
    want = golden.forward(x_int)[0]
    assert np.array_equal(golden_torch.forward(x_int)[0], want), "torch backend differs from numpy"
    qat = qat.float()
    with torch.no_grad():
        t_float = timed(lambda: flt(x), repeats)
        t_qat = timed(lambda: qat(x), repeats)
    t_golden = timed(lambda: golden.forward(x_int), repeats)
    t_torch = timed(lambda: golden_torch.forward(x_int), repeats)
    row = {"config": config, "batch": batch, "repeats": repeats,
           "float_eval_images_per_s": batch / t_float, "qat_eval_images_per_s": batch / t_qat,
           "golden_images_per_s": batch / t_golden, "golden_slowdown_vs_float": t_golden / t_float,
           "golden_torch_cpu_images_per_s": batch / t_torch, "torch_vs_numpy_speedup": t_golden / t_torch,
           "golden_torch_cuda_images_per_s": None}
    if torch.cuda.is_available():
        on_gpu = TorchGoldenModel(ex, "cuda")
        big = np.concatenate([x_int] * max(1, 256 // batch))  # a GPU wants a bigger batch
        assert np.array_equal(on_gpu.forward(x_int)[0], want), "torch backend on the GPU differs from numpy"

        def gpu():
            on_gpu.forward(big)
            torch.cuda.synchronize()
        row["golden_torch_cuda_images_per_s"] = len(big) / timed(gpu, repeats)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rows = [bench("saformer-2-64", "digits", 128, args.repeats),
            bench("saformer-4-384", "cifar10", 4, max(3, args.repeats // 2))]
    result = {"torch_threads": torch.get_num_threads(), "numpy": np.__version__, "rows": rows}
    print(f"{'config':<16}{'batch':>6}{'float img/s':>14}{'QAT img/s':>12}{'golden img/s':>14}{'golden/float time':>19}"
          f"{'torch golden img/s':>20}{'torch/numpy':>13}{'torch GPU img/s':>17}")
    for r in rows:
        gpu = r["golden_torch_cuda_images_per_s"]
        print(f"{r['config']:<16}{r['batch']:>6}{r['float_eval_images_per_s']:>14.1f}{r['qat_eval_images_per_s']:>12.1f}"
              f"{r['golden_images_per_s']:>14.2f}{r['golden_slowdown_vs_float']:>19.1f}x"
              f"{r['golden_torch_cpu_images_per_s']:>20.2f}{r['torch_vs_numpy_speedup']:>12.1f}x"
              f"{'-' if gpu is None else f'{gpu:.1f}':>17}")
    out = ROOT / "results" / "golden_speed.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
