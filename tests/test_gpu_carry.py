"""tools/gpu_carry.py: a finished float run packed into parts on the device and unpacked in a later
session (docs/gpu.md), every part checked, and what the stages read kept."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from saformer.cli import main
from saformer.model.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_carry", ROOT / "tools" / "gpu_carry.py")
gpu_carry = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_carry)


@pytest.fixture
def packed(digits_run, tmp_path, monkeypatch):
    """The digits run packed in parts of 60 kB, so that there are several."""
    monkeypatch.setattr(gpu_carry, "PART_BYTES", 60_000)
    carry = tmp_path / "carry"
    manifest = gpu_carry.pack(digits_run, carry)
    assert len(manifest["parts"]) >= 3
    assert all(p["bytes"] <= 60_000 for p in manifest["parts"])
    return carry


def test_unpacked_run_has_the_weights_and_not_the_optimiser(digits_run, packed, tmp_path):
    run = tmp_path / "w" / "float"
    assert gpu_carry.main(["unpack", str(packed), str(run)]) == 0
    original, carried = load_checkpoint(digits_run), load_checkpoint(run)
    assert "optimizer" in original and "optimizer" not in carried and "scheduler" not in carried
    assert original["model"].keys() == carried["model"].keys()
    assert all(torch.equal(original["model"][k], carried["model"][k]) for k in original["model"])
    for name in ("run.json", "metrics.json"):
        assert (run / name).read_bytes() == (digits_run / name).read_bytes()


def test_a_carried_run_quantizes_and_refuses_to_resume(packed, tmp_path, capsys):
    run = tmp_path / "float"
    assert gpu_carry.main(["unpack", str(packed), str(run)]) == 0
    assert main(["quantize", str(run), "--out", str(tmp_path / "q"), "--epochs", "1", "--no-progress"]) == 0
    assert json.loads((tmp_path / "q" / "metrics.json").read_text())["complete"]
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 2
    assert "holds the weights only" in capsys.readouterr().err


def corrupt_part(carry):
    part = sorted(carry.glob("float.tar.*"))[1]
    data = bytearray(part.read_bytes())
    data[100] ^= 1
    part.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, message", [
    (lambda c: sorted(c.glob("float.tar.*"))[-1].unlink(), "lacks part"),
    (corrupt_part, "is not the one packed"),
    (lambda c: (c / "float.tar.99").write_bytes(b"x"), "parts the manifest does not list"),
    (lambda c: (c / "float.json").write_text("{"), "is not a valid manifest"),
    (lambda c: (c / "float.json").unlink(), "holds no float.json"),
])
def test_damaged_parts_are_refused_before_anything_is_written(packed, tmp_path, capsys, damage, message):
    damage(packed)
    run = tmp_path / "w" / "float"
    assert gpu_carry.main(["unpack", str(packed), str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpu_carry: error:") and message in err and err.count("\n") == 1, err
    assert not run.exists()


def test_an_unfinished_run_is_not_packed(tmp_path, capsys):
    run = tmp_path / "float"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"complete": False}))
    assert gpu_carry.main(["pack", str(run), str(tmp_path / "out")]) == 2
    assert "not a finished training run" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_script_refuses_a_damaged_carry(tmp_path):
    """`gpu_cifar.sh quant` with FLOAT_CARRY: the unpack's refusal stops the call (exit 2)."""
    carry = tmp_path / "carry"
    carry.mkdir()
    (carry / "float.json").write_text("not json")
    env = {**os.environ, "DATASET": "digits", "WORK": str(tmp_path / "w"), "PY": sys.executable,
           "WHEELS": str(tmp_path / "no-wheels"), "FLOAT_CARRY": str(carry)}
    r = subprocess.run(["bash", str(ROOT / "tools" / "gpu_cifar.sh"), "quant", "2"], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "is not a valid manifest" in r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
    assert not (tmp_path / "w" / "qat8").exists()
