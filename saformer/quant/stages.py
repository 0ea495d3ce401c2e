"""The quantization stages behind ``saformer quantize``, ``saformer export`` and ``saformer golden``."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from saformer.config import DATASET_DEFAULTS, GOLDEN_BACKENDS, INPUT_FRAC, ModelConfig, QuantConfig, TrainConfig
from saformer.data import Dataset, load_dataset
from saformer.errors import CheckpointError, ConfigError, SaformerError
from saformer.model.checkpoint import METRICS_FILE, read_run
from saformer.rundir import check_out_dir, is_nonempty_dir, partial_dir, publish, write_json
from saformer.model.saformer import SAFormer
from saformer.model.train import check_dataset_fits, evaluate, load_trained_model, resolve_device, train
from saformer.quant.export import build_export, load_export, write_export
from saformer.quant.fixed_point import quantize_input
from saformer.quant.fold import calibrate_bn, load_folded
from saformer.quant.golden import ATTENTION_PROBES, GoldenModel
from saformer.quant.qat import QuantSAFormer, check_quantizable, integer_traces, synapse_names

EXPORT_CHECK_FILE, GOLDEN_FILE = "export.json", "golden.json"


def quantize(out: Path, qcfg: QuantConfig, run_dir: Path | None = None, cfg: ModelConfig | None = None,
             dataset: str | None = None, data_dir: str | None = None, tcfg: TrainConfig | None = None,
             device: str = "auto", resume: bool = False, max_minutes: float | None = None,
             progress: bool = True, **train_overrides: Any) -> dict[str, Any]:
    """QAT fine-tuning from a float run (``run_dir``), or QAT from scratch (``cfg`` + ``dataset``).

    From scratch, every BN is calibrated on one training batch before folding, so the folded
    layers start out normalising their outputs.
    """
    if resume:
        return train(out, None, None, None, device=device, resume=True, max_minutes=max_minutes, progress=progress,
                     stage="qat")
    source: dict[str, Any] = {}
    dev = resolve_device(device)
    if run_dir is not None:
        run = read_run(run_dir)
        if run.get("stage", "float") != "float":
            raise CheckpointError(f"'{run_dir}' is a {run['stage']} run; quantize starts from a float run")
        float_model, _ = load_trained_model(Path(run_dir), dev)
        cfg, dataset, data_dir = float_model.cfg, run["dataset"], data_dir or run.get("data_dir")
        metrics_path = Path(run_dir) / METRICS_FILE
        if metrics_path.is_file():
            source["float_test_accuracy"] = json.loads(metrics_path.read_text()).get("test_accuracy")
        source_name = str(run_dir)
    else:
        if cfg is None or dataset is None:
            raise ConfigError("quantize needs a float run directory, or --from-scratch with a dataset")
        float_model, source_name = None, "scratch"
    check_quantizable(cfg)
    check_layer_bits(cfg, qcfg)
    defaults = DATASET_DEFAULTS[dataset]
    base = tcfg or (defaults.qat if run_dir is not None else defaults.train)
    tcfg = base.replace(**train_overrides)

    def init(model: QuantSAFormer, data: Dataset, dev: torch.device) -> dict[str, Any]:
        nonlocal float_model
        if float_model is None:  # from scratch: calibrate BN statistics on one batch, then fold
            float_model = SAFormer(cfg).to(dev)
            x, _ = next(data.train.batches(tcfg.batch_size, shuffle=True, augment=False, seed=tcfg.seed, device=dev))
            calibrate_bn(float_model, x)
        float_model.eval()
        load_folded(model, float_model)
        ptq = evaluate(model, data.test, tcfg.batch_size * 2, dev, amp=False, progress=progress, desc="PTQ eval")
        print(f"before QAT (BN folded, weights quantized): test accuracy {ptq['accuracy'] * 100:.2f}%")
        return {**source, "ptq_test_accuracy": ptq["accuracy"]}

    return train(out, cfg, tcfg, dataset, data_dir=data_dir, device=device, max_minutes=max_minutes,
                 progress=progress, stage="qat", init=init,
                 run_extra={"quant_config": qcfg.to_dict(), "source_run": source_name})


def check_layer_bits(cfg: ModelConfig, qcfg: QuantConfig) -> None:
    """Every per-layer bit width names a synaptic layer of this model (a typo would apply to nothing)."""
    if not qcfg.layer_weight_bits:
        return
    known = synapse_names(cfg)
    unknown = [name for name, _ in qcfg.layer_weight_bits if name not in known]
    if unknown:
        raise ConfigError(f"--layer-bits names {unknown}, which config '{cfg.name}' does not have; "
                          f"its synaptic layers are {known}")


def default_quant_config(dataset: str, **overrides: Any) -> QuantConfig:
    """The quant config for a data set: its input format, then the user's overrides."""
    base = {"input_frac": INPUT_FRAC[dataset]}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return QuantConfig(**base)


def integer_batches(ex_dataset: str, cfg: ModelConfig, qcfg: QuantConfig, data_dir: str | None,
                    batch_size: int, limit: int | None = None):
    """Test images as the hardware receives them: quantized to the input format, as integers,
    with the float batch alongside (for the QAT model)."""
    data = load_dataset(ex_dataset, data_dir, cfg.time_steps)
    check_dataset_fits(cfg, data)
    seen = 0
    for x, y in data.test.batches(batch_size, shuffle=False, augment=False, seed=0, device=torch.device("cpu")):
        if limit is not None and seen >= limit:
            return
        if limit is not None:
            x, y = x[: limit - seen], y[: limit - seen]
        seen += len(y)
        yield x, quantize_input(x.numpy(), qcfg.input_bits, qcfg.input_frac), y.numpy()


def compare_traces(golden: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, int]:
    """Per trace key, how many elements differ (0 everywhere means bit-exact); missing keys count -1."""
    result = {}
    for key, g in golden.items():
        o = other.get(key)
        result[key] = -1 if o is None or o.shape != g.shape else int(np.count_nonzero(o != g))
    for key in set(other) - set(golden):
        result[key] = -1
    return result


def check_export_target(qrun_dir: Path, out: Path, force: bool = False) -> dict[str, Any]:
    """Up-front checks of ``saformer export``: a QAT run in, an --out that is empty (or --force)."""
    run = read_run(qrun_dir)
    if run.get("stage") != "qat":
        raise CheckpointError(f"'{qrun_dir}' is a {run.get('stage', 'float')} run; export needs a QAT run "
                              "(saformer quantize)")
    out = check_out_dir(out)
    if Path(out).resolve() == Path(qrun_dir).resolve():
        raise ConfigError(f"--out '{out}' is the QAT run itself; choose another directory")
    if is_nonempty_dir(out):
        if not (out / "manifest.json").exists():  # --force replaces an export, never other files
            kind = "a run directory" if (out / "run.json").exists() else "a non-empty directory"
            raise ConfigError(f"--out '{out}' is {kind}, not an integer export; choose another directory")
        if not force:
            raise ConfigError(f"--out '{out}' already holds an integer export; choose another directory "
                              "or pass --force to replace it")
    return run


def export_run(qrun_dir: Path, out: Path, check_images: int = 64, qonnx: bool = True,
               data_dir: str | None = None, force: bool = False) -> dict[str, Any]:
    """``saformer export``: write the integer artifact of a QAT run, reload it, and check it.

    The check runs the golden model from the written files and the QAT model (float64) on real
    test images and compares every spike, membrane, score and logit. Everything is written into
    a hidden sibling directory first and renamed into place when done: ``--out`` holds either the
    old export or the whole new one, never a part.
    """
    if check_images < 1:
        raise ConfigError(f"--check-images must be at least 1, got {check_images}: an export is checked "
                          "against the QAT model on real test images")
    out = Path(out)
    run = check_export_target(qrun_dir, out, force)
    model, _ = load_trained_model(Path(qrun_dir), torch.device("cpu"))
    model = model.double().eval()
    qrun_metrics = Path(qrun_dir) / METRICS_FILE
    extra = {"source_run": str(qrun_dir)}
    if qrun_metrics.is_file():
        extra["qat_test_accuracy"] = json.loads(qrun_metrics.read_text()).get("test_accuracy")
    manifest, tensors = build_export(model, run["dataset"], extra)
    work = partial_dir(out)
    if work.exists():
        shutil.rmtree(work)
    try:
        report = _write_and_check(model, run, manifest, tensors, work, out, check_images, qonnx, data_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    publish(work, out)
    return report


def _write_and_check(model: QuantSAFormer, run: dict[str, Any], manifest: dict[str, Any],
                     tensors: dict[str, np.ndarray], work: Path, out: Path, check_images: int, qonnx: bool,
                     data_dir: str | None) -> dict[str, Any]:
    write_export(work, manifest, tensors)
    ex = load_export(work)  # what downstream stages will read
    golden = GoldenModel(ex)
    mismatches: dict[str, int] = {}
    checked = 0
    for x, x_int, _ in integer_batches(run["dataset"], ex.cfg, ex.qcfg, data_dir or run.get("data_dir"),
                                       batch_size=32, limit=check_images):
        _, g_tr = golden.forward(x_int, trace=True)
        q_tr = integer_traces(model, x.double())
        for k, v in compare_traces(g_tr, q_tr).items():  # -1 (missing / wrong shape) sticks
            mismatches[k] = -1 if v < 0 or mismatches.get(k, 0) < 0 else mismatches.get(k, 0) + v
        checked += len(x_int)
    if checked == 0:
        raise ConfigError("the export check compared no images: the test split is empty")
    report: dict[str, Any] = {
        "export_dir": str(out), "content_hash": manifest["content_hash"],
        "tensors": len(tensors), "weight_bytes": int(sum(a.nbytes for a in tensors.values())),
        "golden_vs_qat": {"images": checked, "traces": len(mismatches),
                          "bit_exact": all(v == 0 for v in mismatches.values()),
                          "mismatching": {k: v for k, v in mismatches.items() if v != 0}},
    }
    if qonnx:
        from saformer.quant.qonnx_export import export_qonnx_layers

        report["qonnx"] = export_qonnx_layers(model, ex, work / "qonnx")
    write_json(work / EXPORT_CHECK_FILE, report)
    return report


def golden_model(ex, backend: str = "numpy", device: str = "cpu", attention: str = "model") -> GoldenModel:
    """The golden model of an export on a backend: numpy (the definition) or torch (any device,
    bit-exact with it: saformer.quant.golden_torch). ``attention``: see GoldenModel."""
    if backend == "numpy":
        if device != "cpu":
            raise ConfigError(f"the numpy golden model runs on the CPU only, not on '{device}' (--backend torch)")
        return GoldenModel(ex, attention)
    if backend == "torch":
        from saformer.quant.golden_torch import TorchGoldenModel

        return TorchGoldenModel(ex, device, attention)
    raise ConfigError(f"golden backend {backend!r}: choose one of {list(GOLDEN_BACKENDS)}")


def golden_eval(export_dir: Path, out: Path | None = None, data_dir: str | None = None,
                batch_size: int = 64, limit: int | None = None, progress: bool = True,
                backend: str = "numpy", device: str = "cpu", probes: bool = True,
                crosscheck: int = 0) -> dict[str, Any]:
    """``saformer golden``: accuracy of the integer golden model on the test set; with ``probes``,
    the attention diagnostics too: accuracy with every SASA output zeroed and with the mask forced
    to all ones (two more passes), and the firing rates of each SASA core's LIF_a and LIF_o.

    ``crosscheck`` N (torch backend): the numpy model, the definition, also runs the first N images,
    and its logits must equal the torch backend's; a difference is written to golden.json, then
    raised. The tests hold the backends equal on a few exports; this holds them equal on the
    user's own trained weights, on the device the accuracy was computed on."""
    if crosscheck and backend == GOLDEN_BACKENDS[0]:
        raise ConfigError(f"crosscheck compares the torch backend with the numpy one; it needs backend "
                          f"'torch', not '{backend}'")
    ex = load_export(export_dir)
    cores = ex.graph.of_op("sasa")
    variants = ATTENTION_PROBES if probes and cores else ATTENTION_PROBES[:1]  # the model itself first
    models = {v: golden_model(ex, backend, device, v) for v in variants}
    definition = golden_model(ex, GOLDEN_BACKENDS[0], "cpu", "model") if crosscheck else None
    checked, differing = 0, []  # images compared with the numpy model; indices whose logits differ
    dataset = ex.manifest["dataset"]
    correct = dict.fromkeys(variants, 0)
    seen = 0
    start = time.perf_counter()
    total = None if limit is None else math.ceil(limit / batch_size)
    batches = integer_batches(dataset, ex.cfg, ex.qcfg, data_dir, batch_size, limit)
    for _, x_int, y in tqdm(batches, total=total, desc="golden", leave=False, disable=None if progress else True):
        for v, model in models.items():
            logits, _ = model.forward(x_int)
            correct[v] += int((logits.argmax(1) == y).sum())
            if v == "model" and definition is not None and checked < crosscheck:
                k = min(len(y), crosscheck - checked)
                want, _ = definition.forward(x_int[:k])
                differing += [seen + i for i in range(k) if not np.array_equal(logits[i], want[i])]
                checked += k
        seen += len(y)
    seconds = time.perf_counter() - start
    result = {"export_dir": str(export_dir), "dataset": dataset, "config": ex.cfg.label,
              "weight_bits": ex.qcfg.weight_bits, "images": seen, "test_accuracy": correct["model"] / seen,
              "images_per_s": seen * len(variants) / seconds, "qat_test_accuracy": ex.manifest.get("qat_test_accuracy"),
              "backend": backend, "device": device, "attention": None,
              "crosscheck": None if definition is None else {"images": checked, "differing_images": differing[:20],
                                                             "equal": not differing}}
    if len(variants) > 1:
        rates = models["model"].sasa_spikes
        result["attention"] = {
            "accuracy_model": correct["model"] / seen, "accuracy_sasa_output_zeroed": correct["zero_output"] / seen,
            "accuracy_mask_all_ones": correct["mask_ones"] / seen,
            "cores": [{"core": n.name, "lif_a_rate": rates[n.attrs["lif_a"]][0] / rates[n.attrs["lif_a"]][1],
                       "lif_o_rate": rates[n.attrs["lif_o"]][0] / rates[n.attrs["lif_o"]][1]} for n in cores]}
    target = Path(out) if out else Path(export_dir)
    target.mkdir(parents=True, exist_ok=True)
    write_json(target / GOLDEN_FILE, result)
    if differing:
        raise SaformerError(f"golden model of '{export_dir}': the torch backend's logits differ from the numpy "
                            f"model's on {len(differing)} of {checked} images (first: test image {differing[0]}); "
                            f"its accuracy is not the integer model's (details in {target / GOLDEN_FILE})")
    return result
