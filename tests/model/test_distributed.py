"""Data-parallel training through torchrun with the gloo backend on the CPU: two processes train a
small model for a few steps, their replicas agree after every epoch (checksums recorded), rank 0
alone writes the run, a run stopped by its time limit resumes under torchrun; the checksum check
can fail; each rank sees a disjoint share of every batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from saformer.data import Preprocess, TensorSplit
from saformer.model import distributed

REPO = Path(__file__).resolve().parents[2]
TINY = ["--dataset", "digits", "--dim", "16", "--depth", "1", "--no-progress"]


def torchrun(args: list[str], procs: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}",
                           "--master_port", str(free_port()), "-m", "saformer.cli", "train", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_train_agree_and_resume(tmp_path):
    out = tmp_path / "run"
    first = torchrun(["--out", str(out), "--epochs", "2", "--max-minutes", "0", *TINY])
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert first.stdout.count("time limit") == 1  # rank 0 alone logs
    assert not (out / "metrics.json").exists() or not json.loads((out / "metrics.json").read_text())["complete"]
    second = torchrun(["--out", str(out), "--resume", "--no-progress"])
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["complete"] and m["epochs_done"] == 2
    assert m["distributed"] == {"processes": 2, "backend": "gloo", "per_process_batch": 16}
    timing = json.loads((out / "timing.json").read_text())["epochs"]
    for epoch in timing:  # both ranks' parameter and buffer sums, equal bit for bit
        a, b = epoch["replica_checksums"]
        assert a == b and a != 0
    assert timing[0]["replica_checksums"] != timing[1]["replica_checksums"]  # and the model did move


def test_the_global_batch_must_split_evenly(tmp_path):
    r = torchrun(["--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "33", *TINY])
    assert r.returncode != 0
    # every rank stops with saformer's one-line error (torchrun then prints its own failure summary)
    assert r.stderr.count("saformer: error: --batch-size 33 (the global batch) must be a multiple of the 2 "
                          "processes") == 2


def _perturbed_rank(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    ranks = distributed.Ranks(rank, rank, 2)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    same = distributed.replica_checksums(model, ranks)
    if rank == 1:
        with torch.no_grad():
            model[0].weight[0, 0] += 2.0 ** -20  # one replica drifts by one small step
    drifted = distributed.replica_checksums(model, ranks)
    model[1].running_mean += rank  # buffers too: rank 0's, broadcast, make them one again
    distributed.sync_buffers(model, ranks)
    results[rank] = (same, drifted, float(model[1].running_mean.sum()))
    dist.destroy_process_group()


def test_the_replica_check_can_fail():
    results = mp.Manager().dict()
    mp.spawn(_perturbed_rank, args=(free_port(), results), nprocs=2)
    for rank in (0, 1):
        same, drifted, buffer_sum = results[rank]
        assert same[0] == same[1] and drifted[0] != drifted[1]
        assert buffer_sum == results[0][2]


def _labels(split, shard=(0, 1)):
    return [y.tolist() for _, y in split.batches(10, True, False, 7, torch.device("cpu"), shard=shard)]


def test_each_rank_gets_a_disjoint_share_of_every_batch():
    def split(n):
        return TensorSplit(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.arange(n), Preprocess(scale=1.0))

    whole, shares = _labels(split(103)), [_labels(split(103), (r, 2)) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == len(whole) == 11
    for batch, a, b in zip(whole, *shares):
        assert sorted(a + b) == sorted(batch) and not set(a) & set(b)
    assert np.array_equal(sorted(sum(whole, [])), np.arange(103))
    # a last batch of one image cannot be shared by two ranks: both skip it (never one rank alone)
    assert [len(_labels(split(101), (r, 2))) for r in (0, 1)] == [10, 10] and len(_labels(split(101))) == 11
