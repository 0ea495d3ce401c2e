"""Training and evaluation through the command line: accuracy, resume, metrics, and user errors."""

import json

import pytest

from saformer.cli import main

FAST = ["--dim", "32", "--depth", "1", "--no-progress"]


def test_digits_from_scratch_reaches_95_percent(digits_run):
    m = json.loads((digits_run / "metrics.json").read_text())
    assert m["config"] == "saformer-2-64" and m["complete"]
    assert m["test_accuracy"] >= 0.95, f"digits test accuracy {m['test_accuracy']:.4f} < 0.95"
    speed = json.loads((digits_run / "timing.json").read_text())
    assert speed["train_images_per_s_median"] > 0 and speed["eval_images_per_s"] > 0
    assert len(speed["epochs"]) == m["epochs_done"] == 20
    rates = m["firing_rates"]
    assert "blocks.0.attn.lif_q" in rates and "sps.lifs.0" in rates and "head_lif" in rates
    assert all(0.0 <= r <= 1.0 for r in rates.values()) and any(r > 0 for r in rates.values())


def test_eval_reproduces_training_accuracy(digits_run, tmp_path):
    assert main(["eval", str(digits_run), "--out", str(tmp_path), "--no-progress"]) == 0
    train_m = json.loads((digits_run / "metrics.json").read_text())
    eval_m = json.loads((tmp_path / "metrics.json").read_text())
    assert eval_m["test_accuracy"] == train_m["test_accuracy"]
    assert eval_m["firing_rates"] == pytest.approx(train_m["firing_rates"], rel=1e-9)


def test_checkpoint_from_another_config_is_refused(digits_run, capsys):
    assert main(["eval", str(digits_run), "--config", "saformer-4-384", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is from config 'saformer-2-64', not 'saformer-4-384'" in err and "Traceback" not in err


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    common = ["train", "--dataset", "digits", "--epochs", "3", *FAST]
    assert main([*common, "--out", str(whole)]) == 0
    assert main([*common, "--out", str(split), "--max-minutes", "0"]) == 0  # stops after epoch 1
    first = json.loads((split / "metrics.json").read_text())
    assert first["epochs_done"] == 1 and not first["complete"]
    assert main(["train", "--resume", "--out", str(split), "--no-progress"]) == 0
    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((split / "metrics.json").read_text())
    assert b["complete"] and b["epochs_done"] == 3
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert ha["train_loss"] == hb["train_loss"] and ha["test_accuracy"] == hb["test_accuracy"]


def test_the_same_command_twice_gives_the_same_metrics(tmp_path):
    """metrics.json holds what the run computed and no clock: equal commands, equal files."""
    for name in ("a", "b"):
        assert main(["train", "--dataset", "digits", "--epochs", "2", *FAST, "--out", str(tmp_path / name)]) == 0
    a, b = ((tmp_path / n / "metrics.json").read_text() for n in ("a", "b"))
    assert a == b
    assert json.loads(a)["environment"]["threads"] >= 1


def test_refuses_to_overwrite_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", *FAST, "--out", str(out)]) == 0
    # an overridden model is named with its overrides, in the summary line and in metrics.json
    assert "saformer-2-64 (depth=1, dim=32) on digits: test accuracy" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["config"] == "saformer-2-64 (depth=1, dim=32)"
    assert main(["train", "--epochs", "1", *FAST, "--out", str(out)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "--config", "saformer-9-9"], "unknown config 'saformer-9-9'"),
    (["train", "--n-agg", "3"], "N'=3 must divide the token count N=16"),
    (["train", "--config", "saformer-4-384"], "dataset 'digits' gives 1x8x8 inputs; config 'saformer-4-384' expects 3x32x32"),
    (["train", "--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "'/nonexistent/cifar' does not exist"),
    (["eval", "/nonexistent/run"], "run directory '/nonexistent/run' does not exist"),
    (["train", "--resume"], "does not exist"),
])
def test_user_errors_print_one_line(argv, message, tmp_path, capsys):
    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "r"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.startswith("saformer: error:")


def test_unknown_dataset_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "mnist", "--out", "x"])
    assert exc.value.code == 2 and "invalid choice: 'mnist'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("variant", [["--attention", "ssa"], ["--attention", "sdsa"], ["--no-dwc"], ["--no-agg"]])
def test_every_variant_learns_digits(variant, tmp_path):
    """The ablation sweep: each attention variant trained with the digits defaults (about 2 min each)."""
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", *variant, "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "metrics.json").read_text())["test_accuracy"] >= 0.9


@pytest.mark.slow
def test_compiled_training_follows_eager_training(tmp_path):
    """`--compile` (what the GPU runs use) on the CPU's inductor backend: one epoch of digits
    (about 4 min, mostly compilation) tracks the eager epoch up to float reordering."""
    runs = {}
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        out = tmp_path / name
        assert main(["train", "--dataset", "digits", "--epochs", "1", "--out", str(out), "--no-progress", *extra]) == 0
        runs[name] = json.loads((out / "metrics.json").read_text())["history"][-1]
    assert runs["compiled"]["train_loss"] == pytest.approx(runs["eager"]["train_loss"], rel=1e-2)
    assert abs(runs["compiled"]["test_accuracy"] - runs["eager"]["test_accuracy"]) <= 0.03
