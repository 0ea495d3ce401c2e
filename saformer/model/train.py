"""Training and evaluation of the float model: ``saformer train`` and ``saformer eval``.

AdamW, linear warm-up then cosine decay (per step), label smoothing, seeded data order (seed +
epoch, so a resumed run sees the same batches), checkpoint after every epoch, bf16 autocast and
channels-last where CUDA is present, and per-layer firing rates on the evaluation set.
"""

from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from saformer.config import ModelConfig, TrainConfig
from saformer.data import Dataset, Split, load_dataset
from saformer.errors import CheckpointError, ConfigError, SaformerError
from saformer.model import distributed
from saformer.model.checkpoint import (CHECKPOINT_FILE, METRICS_FILE, RUN_FILE, RUN_SCHEMA, TIMING_FILE,
                                       check_compatible, load_checkpoint, read_run, save_checkpoint)
from saformer.model.monitor import FiringRateMonitor
from saformer.model.probes import attention_cores, attention_probe, has_mask
from saformer.model.saformer import SAFormer
from saformer.rundir import check_out_dir, write_json


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device '{name}' is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device '{name}': this project runs on cpu or cuda")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{name}' requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device '{name}': this machine has {torch.cuda.device_count()} CUDA devices")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_dataset_fits(cfg: ModelConfig, data: Dataset) -> None:
    """The data set's frame geometry must be the config's; raise a ConfigError naming both."""
    want = (cfg.in_channels, cfg.height, cfg.width)
    if tuple(data.shape) != want:
        raise ConfigError(f"dataset '{data.name}' gives {data.shape[0]}x{data.shape[1]}x{data.shape[2]} inputs; "
                          f"config '{cfg.label}' expects {want[0]}x{want[1]}x{want[2]} (channels x height x width)")
    if len(data.classes) != cfg.num_classes:
        raise ConfigError(f"dataset '{data.name}' has {len(data.classes)} classes; config '{cfg.label}' "
                          f"has num_classes={cfg.num_classes}")


def build_model(cfg: ModelConfig, device: torch.device) -> nn.Module:
    model = SAFormer(cfg).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


STAGES = ("float", "qat")


def model_for_run(run: dict[str, Any], cfg: ModelConfig, device: torch.device) -> nn.Module:
    """The model a run directory trains: float SAFormer ('float') or the QAT model ('qat')."""
    stage = run.get("stage", "float")
    if stage == "float":
        return build_model(cfg, device)
    if stage == "qat":
        from saformer.config import QuantConfig
        from saformer.quant.qat import QuantSAFormer

        return QuantSAFormer(cfg, QuantConfig.from_dict(run["quant_config"])).to(device)
    raise CheckpointError(f"run stage {stage!r} is unknown; known: {STAGES}")


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


POSTFIX_EVERY = 20  # training steps between the progress bar's loss / accuracy updates


def _progress(iterable, total: int, desc: str, enabled: bool):
    return tqdm(iterable, total=total, desc=desc, leave=False, disable=None if enabled else True,
                dynamic_ncols=True, file=sys.stderr)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int, device: torch.device, amp: bool = True,
             progress: bool = True, desc: str = "eval") -> dict[str, Any]:
    """Accuracy, mean cross-entropy, images/s and per-LIF firing rates over a whole split."""
    model.eval()
    monitor = FiringRateMonitor(model)
    correct, loss_sum, seen = 0, 0.0, 0
    start = time.perf_counter()
    with monitor.recording():
        batches = split.batches(batch_size, shuffle=False, augment=False, seed=0, device=device)
        for x, y in _progress(batches, math.ceil(len(split) / batch_size), desc, progress):
            with _autocast(device, amp):
                logits = model(x)
            loss_sum += float(nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"accuracy": correct / seen, "loss": loss_sum / seen, "images": seen, "seconds": seconds,
            "images_per_s": seen / seconds, "firing_rates": monitor.rates()}


def attention_diagnostics(model: nn.Module, split: Split, batch_size: int, device: torch.device,
                          amp: bool = True, progress: bool = True,
                          model_result: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Accuracy with every attention core's output zeroed and with its mask forced open, beside the
    model's own, and each core's mask / output firing rates (saformer.model.probes): two more passes
    over ``split`` (``model_result``, an :func:`evaluate` of the same model and split, saves the first).

    The same schema as the integer golden model's diagnostics (``saformer golden``): for SASA,
    lif_a_rate is LIF_a's and lif_o_rate LIF_o's; a variant without a mask (SSA) has None there,
    SDSA's output rate is None (its output is mask * V, no neuron). None for a model without attention.
    """
    cores = attention_cores(model)
    if not cores:
        return None
    base = model_result or evaluate(model, split, batch_size, device, amp, progress, "eval (model)")
    accuracy = {}
    for probe in ("zero_output", "mask_ones"):
        if probe == "mask_ones" and not has_mask(model):
            accuracy[probe] = None
            continue
        with attention_probe(model, probe):
            accuracy[probe] = evaluate(model, split, batch_size, device, amp, progress, f"eval ({probe})")["accuracy"]
    rates = base["firing_rates"]

    def rate(core: str, neuron: str | None) -> float | None:
        return None if neuron is None else rates[f"{core}.{neuron}"]

    return {"accuracy_model": base["accuracy"], "accuracy_sasa_output_zeroed": accuracy["zero_output"],
            "accuracy_mask_all_ones": accuracy["mask_ones"],
            "cores": [{"core": name, "lif_a_rate": rate(name, m.mask_neuron),
                       "lif_o_rate": rate(name, m.output_neuron if m.output_neuron != m.mask_neuron else None),
                       "mask_neuron": m.mask_neuron, "output_neuron": m.output_neuron}
                      for name, m in cores]}


def cosine_with_warmup(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def train(run_dir: Path, cfg: ModelConfig | None, tcfg: TrainConfig | None, dataset: str | None,
          data_dir: str | None = None, device: str = "auto", resume: bool = False,
          max_minutes: float | None = None, compile_model: bool = False, amp: bool = True,
          workers: int = 0, download: bool = False, progress: bool = True,
          stage: str = "float", run_extra: dict[str, Any] | None = None,
          init: Callable[[nn.Module, Dataset, torch.device], dict[str, Any]] | None = None,
          log=print) -> dict[str, Any]:
    """Train a model into ``run_dir`` (or continue one with ``resume``); returns metrics.json's content.

    With ``resume``, the config, training settings, stage and data set come from the run's
    run.json; a ``cfg`` passed alongside must equal it. ``stage`` 'qat' trains the quantized
    model (``run_extra`` must hold its quant_config); ``init`` prepares a fresh model (e.g. loads
    folded float weights) and returns metrics to keep (e.g. accuracy before fine-tuning).
    """
    run_dir = Path(run_dir)
    ranks = distributed.ranks_from_env()  # several processes under torchrun (saformer.model.distributed)
    dev = distributed.init(ranks, resolve_device(device))
    if not ranks.main:  # rank 0 alone logs and writes the run directory
        log, progress = (lambda *_: None), False
    state = None
    if resume:
        run = read_run(run_dir)
        if run.get("stage", "float") != stage:
            command = "saformer quantize --resume" if run.get("stage") == "qat" else "saformer train --resume"
            raise CheckpointError(f"'{run_dir}' is a {run.get('stage', 'float')} run, not a {stage} run; "
                                  f"continue it with '{command}'")
        saved_cfg = ModelConfig.from_dict(run["model_config"])
        if cfg is not None and cfg != saved_cfg:
            raise CheckpointError(f"--resume: run '{run_dir}' was trained with config '{saved_cfg.name}' "
                                  f"({saved_cfg.to_dict()}), which differs from the requested one")
        cfg, tcfg = saved_cfg, TrainConfig(**run["train_config"])
        dataset, data_dir = run["dataset"], data_dir or run.get("data_dir")
        state = load_checkpoint(run_dir, map_location=dev)
    else:
        if cfg is None or tcfg is None or dataset is None:
            raise ConfigError("train needs a model config, a training config and a dataset")
        refuse_existing_run(run_dir)
        check_out_dir(run_dir)

    if tcfg.batch_size % ranks.world:
        raise ConfigError(f"--batch-size {tcfg.batch_size} (the global batch) must be a multiple of the "
                          f"{ranks.world} processes")
    data = load_dataset(dataset, data_dir, cfg.time_steps, download=download, workers=workers)
    check_dataset_fits(cfg, data)  # both before the directory exists: a data error leaves nothing behind
    distributed.barrier(ranks)  # every rank has checked the directory before rank 0 writes to it
    if not resume:
        run = {"schema": RUN_SCHEMA, "stage": stage, "model_config": cfg.to_dict(),
               "train_config": tcfg.to_dict(), "dataset": dataset,
               "data_dir": None if data_dir is None else str(data_dir), **(run_extra or {})}
    if not resume and ranks.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / RUN_FILE, run)
    if run.get("stage", "float") == "qat":
        amp = False  # bf16 would take values off the fixed-point grid

    seed_everything(tcfg.seed)
    model = model_for_run(run, cfg, dev)
    init_metrics: dict[str, Any] = {}
    if state is None and init is not None:
        init_metrics = init(model, data, dev)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    steps_per_epoch = math.ceil(len(data.train) / tcfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, cosine_with_warmup(tcfg.epochs * steps_per_epoch, max(1, round(tcfg.warmup_epochs * steps_per_epoch))))
    history: list[dict[str, Any]] = []
    timing: list[dict[str, Any]] = []  # per epoch; kept apart so that metrics.json is reproducible
    first_epoch = 0
    if state is not None:
        check_compatible(state, cfg, model, f"checkpoint in '{run_dir}'")
        if "optimizer" not in state:  # tools/gpu_carry.py ships finished runs without it
            raise CheckpointError(f"--resume: the checkpoint in '{run_dir}' holds the weights only (no optimiser "
                                  "state), so its training cannot be continued")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        first_epoch, history, timing = state["epoch"], state["history"], state.get("timing", [])
        init_metrics = state.get("init_metrics", {})
        log(f"resuming '{run_dir}' after epoch {first_epoch}/{tcfg.epochs}")
    step_model = distributed.wrap(model, ranks, dev)
    step_model = torch.compile(step_model) if compile_model else step_model
    criterion = nn.CrossEntropyLoss(label_smoothing=tcfg.label_smoothing)

    start = time.perf_counter()
    stopped_early = False
    for epoch in range(first_epoch, tcfg.epochs):
        model.train()
        # Sums stay on the device: reading them every step would stall the GPU's queue once per step.
        loss_total = torch.zeros((), dtype=torch.float64, device=dev)
        correct_total = torch.zeros((), dtype=torch.int64, device=dev)
        seen = 0
        t0 = time.perf_counter()
        batches = data.train.batches(tcfg.batch_size, shuffle=True, augment=tcfg.augment,
                                     seed=tcfg.seed * 100_003 + epoch, device=dev, shard=ranks.shard)
        bar = _progress(batches, steps_per_epoch, f"epoch {epoch + 1}/{tcfg.epochs}", progress)
        for step, (x, y) in enumerate(bar):
            if dev.type == "cuda" and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(dev, amp):
                logits = step_model(x)
                loss = criterion(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_total += loss.detach().double() * len(y)
            correct_total += (logits.argmax(1) == y).sum()
            seen += len(y)
            if not bar.disable and step % POSTFIX_EVERY == 0:  # a host read: now and then, not every step
                bar.set_postfix(loss=f"{float(loss_total) / seen:.3f}", acc=f"{int(correct_total) / seen:.3f}")
        loss_sum, correct = float(loss_total), int(correct_total)  # waits for the epoch's last step
        train_seconds = time.perf_counter() - t0
        loss_sum, correct, seen = distributed.sum_over_ranks((loss_sum, correct, seen), ranks)  # the global batch's
        distributed.sync_buffers(model, ranks)
        test = evaluate(model, data.test, tcfg.batch_size * 2, dev, amp, progress, desc="test")
        entry = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": loss_sum / seen,
                 "train_accuracy": correct / seen, "test_loss": test["loss"], "test_accuracy": test["accuracy"]}
        history.append(entry)
        timing.append({"epoch": epoch + 1, "train_seconds": train_seconds,
                       "train_images_per_s": seen / train_seconds, "eval_images_per_s": test["images_per_s"]})
        if ranks.world > 1:  # the replicas must still be one model
            sums = distributed.replica_checksums(model, ranks)
            if len(set(sums)) > 1:
                raise SaformerError(f"after epoch {epoch + 1} the {ranks.world} replicas differ (parameter "
                                    f"checksums {sums}); stopping rather than training on")
            timing[-1]["replica_checksums"] = sums
        if ranks.main:
            save_checkpoint(run_dir, {"model_config": cfg.to_dict(), "model": model.state_dict(),
                                      "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                      "epoch": epoch + 1, "history": history, "timing": timing,
                                      "init_metrics": init_metrics})
        log(f"epoch {epoch + 1:3d}/{tcfg.epochs}  loss {entry['train_loss']:.4f}  train acc "
            f"{entry['train_accuracy']:.4f}  test acc {entry['test_accuracy']:.4f}  "
            f"{timing[-1]['train_images_per_s']:.0f} img/s")
        out_of_time = max_minutes is not None and (time.perf_counter() - start) / 60 >= max_minutes
        if distributed.agree(out_of_time, ranks) and epoch + 1 < tcfg.epochs:  # rank 0's clock decides for all
            log(f"time limit of {max_minutes} min reached after epoch {epoch + 1}; continue with --resume")
            stopped_early = True
            break

    final = evaluate(model, data.test, tcfg.batch_size * 2, dev, amp, progress, desc="final eval")
    # metrics.json: what the run computed, equal for equal commands on one machine (no clock in it)
    metrics = {
        "stage": run.get("stage", "float"), "dataset": dataset, "config": cfg.label,
        "model_config": cfg.to_dict(), **init_metrics,
        "train_config": tcfg.to_dict(), "device": str(dev), "environment": environment(dev),
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs_done": len(history), "complete": not stopped_early and len(history) == tcfg.epochs,
        "test_accuracy": final["accuracy"], "test_loss": final["loss"],
        "best_test_accuracy": max(h["test_accuracy"] for h in history) if history else None,
        "firing_rates": final["firing_rates"], "history": history,
    }
    # timing.json: how fast it ran (differs from run to run)
    train_rates = [t["train_images_per_s"] for t in timing]
    speed = {
        "train_images_per_s_median": float(np.median(train_rates)) if train_rates else None,
        "eval_images_per_s": final["images_per_s"],
        "train_minutes_total": sum(t["train_seconds"] for t in timing) / 60, "epochs": timing,
    }
    if ranks.world > 1:
        metrics["distributed"] = {"processes": ranks.world, "backend": "nccl" if dev.type == "cuda" else "gloo",
                                  "per_process_batch": tcfg.batch_size // ranks.world}
    if ranks.main:
        write_json(run_dir / TIMING_FILE, speed)
        write_json(run_dir / METRICS_FILE, metrics)
    distributed.finish(ranks)
    return {**metrics, **speed, "epochs": len(history), "run_dir": str(run_dir)}


def environment(dev: torch.device) -> dict[str, Any]:
    """What a training result depends on besides the command: the same command on the same
    machine, torch build and thread count gives the same metrics.json; another thread count or
    CPU changes the float reductions (and so the trained weights)."""
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cuda": torch.version.cuda if dev.type == "cuda" else None}


def refuse_existing_run(run_dir: Path) -> None:
    """A run that finished an epoch is continued (--resume), never overwritten; one stopped before
    its first checkpoint has nothing to keep and starts over."""
    if (Path(run_dir) / CHECKPOINT_FILE).exists():
        raise CheckpointError(f"'{run_dir}' already holds a run; pass --resume to continue it or choose another --out")


def load_trained_model(run_dir: Path, device: torch.device, cfg: ModelConfig | None = None
                       ) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a run directory with its weights; ``cfg``, when given, must be the run's."""
    run = read_run(run_dir)
    run_cfg = ModelConfig.from_dict(run["model_config"])
    state = load_checkpoint(run_dir, map_location=device)
    model = model_for_run(run, cfg or run_cfg, device)
    check_compatible(state, cfg or run_cfg, model, f"checkpoint in '{run_dir}'")
    model.load_state_dict(state["model"])
    return model, run


def evaluate_run(run_dir: Path, out_dir: Path | None = None, data_dir: str | None = None,
                 batch_size: int = 256, device: str = "auto", cfg: ModelConfig | None = None,
                 amp: bool = True, progress: bool = True, probes: bool = True) -> dict[str, Any]:
    """``saformer eval``: evaluate a run's checkpoint on its data set's test split; with ``probes``,
    the attention diagnostics too (:func:`attention_diagnostics`, two more passes)."""
    dev = resolve_device(device)
    model, run = load_trained_model(Path(run_dir), dev, cfg)
    run_cfg = ModelConfig.from_dict(run["model_config"])
    data = load_dataset(run["dataset"], data_dir or run.get("data_dir"), run_cfg.time_steps)
    check_dataset_fits(run_cfg, data)
    amp = amp and run.get("stage", "float") == "float"
    result = evaluate(model, data.test, batch_size, dev, amp, progress)
    metrics = {"run_dir": str(run_dir), "dataset": run["dataset"], "config": run_cfg.label, "device": str(dev),
               "test_accuracy": result["accuracy"], "test_loss": result["loss"], "images": result["images"],
               "eval_images_per_s": result["images_per_s"], "firing_rates": result["firing_rates"],
               "attention": (attention_diagnostics(model, data.test, batch_size, dev, amp, progress, result)
                             if probes else None)}
    out = Path(out_dir) if out_dir else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / ("eval.json" if out_dir is None else METRICS_FILE), metrics)
    return metrics

