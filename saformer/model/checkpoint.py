"""Run directories: what a training run writes and what later stages read.

    RUN_DIR/run.json        model config, training config, data set (written at start)
    RUN_DIR/checkpoint.pt   model + optimiser + schedule state after the last finished epoch
    RUN_DIR/metrics.json    what training computed (history, accuracy, firing rates): reproducible
    RUN_DIR/timing.json     how fast it ran (images/s, seconds per epoch): differs run to run

Loading checks that the checkpoint belongs to the config it is loaded for, tensor by tensor.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from saformer.config import ModelConfig
from saformer.errors import CheckpointError

RUN_SCHEMA = 1
RUN_FILE, CHECKPOINT_FILE, METRICS_FILE, TIMING_FILE = "run.json", "checkpoint.pt", "metrics.json", "timing.json"


def read_run(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory '{run_dir}' does not exist")
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise CheckpointError(f"'{run_dir}' is not a training run: it has no {RUN_FILE}")
    try:
        run = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"'{path}' is not valid JSON ({exc})") from None
    if not isinstance(run, dict):
        raise CheckpointError(f"'{path}' must hold a JSON object, found {type(run).__name__}")
    if run.get("schema") != RUN_SCHEMA:
        raise CheckpointError(f"'{path}' has run schema {run.get('schema')!r}; this version reads {RUN_SCHEMA}")
    for key, kind in (("model_config", dict), ("train_config", dict), ("dataset", str), ("stage", str)):
        if not isinstance(run.get(key), kind):
            raise CheckpointError(f"'{path}': '{key}' is missing or not a {kind.__name__}")
    try:
        ModelConfig.from_dict(run["model_config"])
    except (CheckpointError, ValueError, TypeError) as exc:
        raise CheckpointError(f"'{path}': model_config: {exc}") from None
    return run


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    path = Path(run_dir) / CHECKPOINT_FILE
    tmp = path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(run_dir: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"'{run_dir}' has no {CHECKPOINT_FILE} (did training finish an epoch?)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"'{path}' cannot be read as a checkpoint ({exc})") from None
    for key in ("model_config", "model"):
        if key not in state:
            raise CheckpointError(f"'{path}' lacks '{key}': not a saformer checkpoint")
    return state


def check_compatible(state: dict[str, Any], cfg: ModelConfig, model: torch.nn.Module, source: str) -> None:
    """Raise if a checkpoint was made for another config or does not fit ``model`` tensor by tensor."""
    saved = ModelConfig.from_dict(state["model_config"])
    if saved != cfg:
        diff = {k: (v, getattr(cfg, k)) for k, v in saved.to_dict().items() if v != cfg.to_dict()[k]}
        details = ", ".join(f"{k}: checkpoint {a!r} vs requested {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(f"{source} is from config '{saved.name}', not '{cfg.name}' ({details})")
    expected = model.state_dict()
    weights = state["model"]
    for name, tensor in expected.items():
        if name not in weights:
            raise CheckpointError(f"{source} lacks tensor '{name}' of config '{cfg.name}'")
        if tuple(weights[name].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{source}: tensor '{name}' has shape {tuple(weights[name].shape)}, "
                                  f"config '{cfg.name}' needs {tuple(tensor.shape)}")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise CheckpointError(f"{source} has tensors config '{cfg.name}' does not: {extra[:5]}")
