"""Data-parallel training on several processes with torch's own engine: ``torchrun
--nproc_per_node=N -m saformer.cli train ...`` (one process per GPU, NCCL; or CPU processes, gloo).

What a run does differently under torchrun (``train`` reads the launcher's environment):
- every rank sees a disjoint share of each global batch (``--batch-size`` stays the global batch,
  so the learning-rate schedule and the results mean the same as in one process);
- gradients are averaged by DistributedDataParallel; BatchNorm is synchronized across GPUs
  (SyncBatchNorm; CPU gloo has none, and DDP's buffer broadcast keeps rank 0's statistics);
- rank 0 alone writes the run directory (run.json, checkpoints, metrics) and logs; every rank
  resumes from the same checkpoint;
- after every epoch the ranks compare checksums of their parameters and buffers: replicas that
  drifted apart stop the run with an error instead of training on silently.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from saformer.errors import ConfigError


@dataclass(frozen=True)
class Ranks:
    rank: int
    local_rank: int
    world: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world


SINGLE = Ranks(0, 0, 1)


def ranks_from_env() -> Ranks:
    """The launcher's ranks (torchrun sets WORLD_SIZE, RANK, LOCAL_RANK); one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Ranks(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"])), world)


def init(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU); returns this rank's device."""
    if ranks.world == 1:
        return device
    if device.type == "cuda":
        if ranks.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"rank {ranks.rank}: local rank {ranks.local_rank} but {torch.cuda.device_count()} GPUs")
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def wrap(model: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """The model a training step calls: DDP around it (SyncBatchNorm first on CUDA) under torchrun."""
    if ranks.world == 1:
        return model
    # depthwise convolutions hand back gradients in another memory layout than DDP's buckets: a
    # copy per step, no error; the warning would repeat in every process
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    return nn.parallel.DistributedDataParallel(model)


def barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        dist.barrier()


@torch.no_grad()
def sync_buffers(model: nn.Module, ranks: Ranks) -> None:
    """Rank 0's buffers (BatchNorm statistics) to every rank: what DDP does before each training
    forward, done after the epoch's last step so that evaluation and the checksums see one model."""
    if ranks.world > 1:
        for b in model.buffers():
            dist.broadcast(b, src=0)


@torch.no_grad()
def replica_checksums(model: nn.Module, ranks: Ranks) -> list[float]:
    """Every rank's sum of its parameters and floating buffers (float64), gathered: equal replicas
    give equal sums bit for bit, since DDP keeps the tensors themselves identical."""
    total = sum(float(t.double().sum()) for t in [*model.parameters(), *model.buffers()] if t.is_floating_point())
    if ranks.world == 1:
        return [total]
    out: list[float] = [0.0] * ranks.world
    dist.all_gather_object(out, total)
    return out


def agree(flag: bool, ranks: Ranks) -> bool:
    """Rank 0's decision for every rank (e.g. a time limit: clocks differ, the ranks must not)."""
    if ranks.world == 1:
        return flag
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def sum_over_ranks(values: tuple, ranks: Ranks) -> tuple:
    """Per-rank tallies (loss sums, counts) summed over the ranks; ints stay ints."""
    if ranks.world == 1:
        return values
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(t)
    return tuple(type(v)(x) for v, x in zip(values, t.tolist()))


def finish(ranks: Ranks) -> None:
    if ranks.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
