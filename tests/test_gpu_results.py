"""tools/gpu_results.py: the verdicts against issue 13's targets are computed, not typed, and bad
input is refused in one line. (The slow digits dry run in test_gpu_script.py feeds it real archives.)"""

import json
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import gpu_results  # noqa: E402


def write_results(root: Path, float_acc=0.9105, rate=8123.0, integer=None, images=10_000, device="cuda", model=None):
    res = root / "results"
    res.mkdir(parents=True)
    (res / "float_metrics.json").write_text(json.dumps({
        "dataset": "cifar10", "config": "saformer-4-384", "device": device, "test_accuracy": float_acc,
        "best_test_accuracy": float_acc + 0.001, "epochs_done": 30, "complete": True,
        "train_config": {"batch_size": 256, "lr": 2e-3}, **({"model_config": model} if model else {})}))
    (res / "float_timing.json").write_text(json.dumps({"train_images_per_s_median": rate, "train_minutes_total": 5.1}))
    (res / "environment.txt").write_text("python 3.12 torch 2.x gpu H100")
    for bits, acc in (integer or {}).items():
        (res / f"qat{bits}_metrics.json").write_text(json.dumps({"test_accuracy": acc, "ptq_test_accuracy": acc - 0.01}))
        (res / f"golden{bits}").mkdir()
        (res / f"golden{bits}" / "golden.json").write_text(json.dumps({
            "test_accuracy": acc, "images": images, "backend": "torch", "device": "cuda", "images_per_s": 900.0,
            "crosscheck": {"images": 64, "differing_images": [], "equal": True}, "attention": None}))
    return res


def test_verdicts_follow_the_numbers(tmp_path):
    r = gpu_results.collect(write_results(tmp_path / "a", integer={8: 0.9045, 4: 0.8966}))
    t = r["targets"]
    assert t["float_accuracy"]["met"] and t["train_images_per_s"]["met"]
    assert not t["integer_8bit"]["met"] and round(t["integer_8bit"]["value_points"], 2) == -0.60
    assert t["integer_4bit"]["met"] and round(t["integer_4bit"]["value_points"], 2) == -1.39
    r = gpu_results.collect(write_results(tmp_path / "b", float_acc=0.9099, rate=7999.0, integer={8: 0.91}, images=2000))
    t = r["targets"]
    assert not t["float_accuracy"]["met"] and not t["train_images_per_s"]["met"]
    assert not t["integer_8bit"]["met"] and not t["integer_8bit"]["whole_test_set"]  # 2,000 of 10,000 images
    assert "integer_4bit" not in t
    md = gpu_results.markdown(r, "cmd")
    assert "| float test accuracy >= 91.00% | 90.99% | **missed** |" in md and "(part of the test set)" in md


def test_archives_and_folders_give_the_same_table(tmp_path, capsys):
    res = write_results(tmp_path / "w", integer={8: 0.91})
    with tarfile.open(tmp_path / "gpu_train.tar.gz", "w:gz") as tar:
        tar.add(res, arcname="results")
    assert gpu_results.main([str(tmp_path / "gpu_train.tar.gz"), "--out", str(tmp_path / "x" / "c10")]) == 0
    assert gpu_results.main([str(tmp_path / "w"), "--out", str(tmp_path / "y" / "c10")]) == 0
    strip = lambda p: json.loads(p.read_text())  # noqa: E731
    assert strip(tmp_path / "x" / "c10.json") == strip(tmp_path / "y" / "c10.json")


def test_bad_sources_are_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    assert gpu_results.main([str(tmp_path / "junk.tar.gz"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "is not a readable tar archive" in err and "Traceback" not in err
    assert gpu_results.main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty" / "results").mkdir(parents=True)
    assert gpu_results.main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no float_metrics.json" in capsys.readouterr().err


def test_a_cpu_rehearsal_of_a_smaller_model_says_so(tmp_path):
    """An archive of the rehearsal (docs/gpu.md) names the overridden model and says it ran on the CPU."""
    from saformer.config import get_config
    model = get_config("saformer-4-384").replace(depth=2, dim=64).to_dict()
    r = gpu_results.collect(write_results(tmp_path / "a", device="cpu", model=model))
    md = gpu_results.markdown(r, "cmd")
    assert r["config"] == "saformer-4-384 (depth=2, dim=64)"
    assert md.startswith("# saformer-4-384 (depth=2, dim=64) on cifar10") and "Trained on the cpu, not a GPU" in md
    r = gpu_results.collect(write_results(tmp_path / "b"))  # a GPU run of the named config: neither
    md = gpu_results.markdown(r, "cmd")
    assert r["config"] == "saformer-4-384" and "not a GPU" not in md
