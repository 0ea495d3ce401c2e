"""tools/gpu_cifar.sh, the prepared GPU runs of issue 13 (docs/gpu.md): its refusals, and (slow) the
whole two-call sequence on the digits data on the CPU, as a lent session would run it on CIFAR-10."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_cifar.sh"


def run_script(*args, work: Path, **env):
    env = {**os.environ, "DATASET": "digits", "WORK": str(work), "PY": sys.executable,
           "WHEELS": str(work / "no-wheels"), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    ((), "usage: gpu_cifar.sh train|quant|ablate MINUTES"),
    (("fit", "3"), "usage: gpu_cifar.sh train|quant|ablate MINUTES"),
    (("train", "soon"), "MINUTES must be a whole number, got 'soon'"),
    (("quant", "3"), "is not finished; run 'train' first"),
])
def test_refusals(tmp_path, args, message):
    r = run_script(*args, work=tmp_path / "w")
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_model_overrides_without_epochs_are_refused(tmp_path):
    """The probe measures the named config, so it cannot size the epochs of an overridden model."""
    r = run_script("train", "3", work=tmp_path / "w", MODEL_ARGS="--depth 1")
    assert r.returncode == 2 and "MODEL_ARGS needs EPOCHS" in r.stderr, r.stderr
    assert not (tmp_path / "w" / "float").exists()


def test_model_overrides_reach_the_float_run(tmp_path):
    """The CPU rehearsal on CIFAR-10 trains a smaller model through MODEL_ARGS (docs/gpu.md)."""
    work = tmp_path / "w"
    r = run_script("train", "2", work=work, MODEL_ARGS="--depth 1 --n-agg 16", EPOCHS="1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    model = json.loads((work / "float" / "run.json").read_text())["model_config"]
    assert (model["depth"], model["n_agg"], model["dim"]) == (1, 16, 64)  # the rest stays the config's


def test_a_cifar_run_without_archives_is_refused(tmp_path):
    r = run_script("train", "3", work=tmp_path / "w", DATASET="cifar10", ARCHIVES=str(tmp_path / "none"))
    assert r.returncode == 2 and "no archives in" in r.stderr


@pytest.mark.slow
def test_the_two_calls_on_digits(tmp_path):
    work, out = tmp_path / "w", tmp_path / "out"
    r = run_script("train", "2", work=work, OUT=str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    metrics = json.loads((work / "float" / "metrics.json").read_text())
    assert metrics["complete"] and metrics["epochs_done"] >= 1  # the schedule sized to the time ran to its end
    assert json.loads((out / "float.json").read_text())["parts"]  # the weights, for a later session
    r = run_script("train", "2", work=work, OUT=str(out))  # a second call finds the run finished
    assert r.returncode == 0 and "float: done already" in r.stdout
    r = run_script("quant", "2", work=work, OUT=str(out), SAMPLE="40")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with tarfile.open(out / "gpu_quant.tar.gz") as tar:
        for bits in (8, 4):
            golden = json.load(tar.extractfile(f"results/golden{bits}/golden.json"))
            assert golden["crosscheck"] == {"images": 40, "differing_images": [], "equal": True}
            assert golden["images"] == 360 and golden["attention"] is not None
    for bits in (8, 4):
        with tarfile.open(out / f"export{bits}.tar.gz") as tar:
            assert f"export{bits}/manifest.json" in tar.getnames()
    # what a session does after the calls: the table from the two archives
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_results.py"), str(out / "gpu_train.tar.gz"),
                        str(out / "gpu_quant.tar.gz"), "--out", str(tmp_path / "res" / "digits")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    table = json.loads((tmp_path / "res" / "digits.json").read_text())
    assert table["float"]["test_accuracy"] == metrics["test_accuracy"]
    assert [row["weight_bits"] for row in table["levels"]] == [8, 4]
    assert all(row["integer_images"] == 360 and row["crosscheck"]["equal"] for row in table["levels"])
    # a later session: a bare machine, the float run carried back in its parts, 'quant' without training
    carry = tmp_path / "carry"
    carry.mkdir()
    for part in out.glob("float.*"):
        shutil.copy(part, carry / part.name)
    r = run_script("quant", "2", work=tmp_path / "w2", OUT=str(tmp_path / "out2"), FLOAT_CARRY=str(carry),
                   SAMPLE="8", GOLDEN_LIMIT="40", PROBES="off")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "unpacked the float run" in r.stdout and "== float" not in r.stdout  # no training in this session
    with tarfile.open(tmp_path / "out2" / "gpu_quant.tar.gz") as tar:
        assert json.load(tar.extractfile("results/float_metrics.json")) == metrics
        for bits in (8, 4):
            assert json.load(tar.extractfile(f"results/golden{bits}/golden.json"))["crosscheck"]["equal"]


@pytest.mark.slow
def test_the_ablation_call_on_digits(tmp_path):
    """`ablate` sizes the epochs once, keeps that budget on a rerun, and brings the table back."""
    work, out = tmp_path / "w", tmp_path / "out"
    r = run_script("ablate", "2", work=work, OUT=str(out), VARIANTS="sasa,sdsa,sasa-n64")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    epochs = int((work / "results" / "ablation_epochs").read_text())
    r = run_script("ablate", "9", work=work, OUT=str(out), VARIANTS="sasa,sdsa,sasa-n64")
    assert r.returncode == 0 and f"{epochs} epochs each" in r.stdout
    with tarfile.open(out / "gpu_ablate.tar.gz") as tar:
        rows = {row["variant"]: row for row in json.load(tar.extractfile("results/ablation_digits.json"))["rows"]}
        assert "results/ablation_digits.png" in tar.getnames()
    assert rows["sasa"]["done"] and rows["sdsa"]["done"] and rows["sasa-n64"]["skipped"]
    assert rows["sasa"]["epochs"] == rows["sdsa"]["epochs"] == epochs
