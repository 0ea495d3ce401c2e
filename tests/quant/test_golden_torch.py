"""The golden model's torch backend equals the numpy model: logits and every trace, on the trained
digits exports, on crafted exports that saturate every value and take event frames, and on a
random saformer-4-384 (CIFAR geometry) export; a changed weight shows the comparison can fail."""

import json

import numpy as np
import pytest
import torch

from saformer.cli import main
from saformer.config import INPUT_FRAC, QuantConfig, get_config
from saformer.errors import ConfigError
from saformer.quant.export import build_export, load_export, write_export
from saformer.quant.fixed_point import (lif_int, lif_int_torch, saturate, saturate_torch, shift_to_membrane,
                                        shift_to_membrane_torch)
from saformer.quant.golden import GoldenModel
from saformer.quant.golden_torch import TorchGoldenModel
from saformer.quant.stages import GOLDEN_FILE, golden_eval, golden_model, integer_batches
from tests.crafted import FRAMES, STATIC, Crafted, crafted_export, crafted_inputs


def assert_same(ex, x_int):
    want, want_tr = GoldenModel(ex).forward(x_int, trace=True)
    got, got_tr = TorchGoldenModel(ex).forward(x_int, trace=True)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    assert sorted(got_tr) == sorted(want_tr)
    for k in want_tr:
        assert got_tr[k].dtype == want_tr[k].dtype and np.array_equal(got_tr[k], want_tr[k]), k
    return want


def test_primitives_equal_their_numpy_definitions():
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 20), 1 << 20, (6, 5, 7))
    for shift in (-3, 0, 2, 7):
        assert np.array_equal(shift_to_membrane_torch(torch.from_numpy(x), shift, 16).numpy(),
                              shift_to_membrane(x, shift, 16))
    assert np.array_equal(saturate_torch(torch.from_numpy(x), 12).numpy(), saturate(x, 12))
    drive = rng.integers(-600, 1400, (6, 3, 9))
    drive[:, 0, 0] = [512, 0, 511, 511, -1, -1]  # H lands on theta exactly (fires), then just below
    assert np.array_equal(lif_int_torch(torch.from_numpy(drive), 256).numpy(), lif_int(drive, 256)[0])


@pytest.mark.parametrize("bits", [8, 4])
def test_torch_equals_numpy_on_the_trained_digits_exports(qat_runs, bits):
    ex = load_export(qat_runs[bits][1])
    _, x_int, _ = next(integer_batches("digits", ex.cfg, ex.qcfg, None, 96, 96))
    assert_same(ex, x_int)


@pytest.mark.parametrize("spec", [STATIC, FRAMES], ids=["static-saturating", "event-frames"])
def test_torch_equals_numpy_where_every_value_saturates(spec, tmp_path):
    _, ex = crafted_export(spec, tmp_path / "export")
    assert_same(ex, crafted_inputs(spec, 6)[1])


def test_torch_equals_numpy_at_cifar_geometry(tmp_path):
    cifar = Crafted(get_config("saformer-4-384"), QuantConfig(input_frac=INPUT_FRAC["cifar10"]), "cifar10", 6)
    _, ex = crafted_export(cifar, tmp_path / "export")
    x_int = np.random.default_rng(3).integers(-128, 128, (2, 3, 32, 32))
    logits = assert_same(ex, x_int)
    assert len(np.unique(logits)) > 2  # the network is alive: not a constant output


def test_the_comparison_can_fail(qat_runs):
    ex = load_export(qat_runs[8][1])
    _, x_int, _ = next(integer_batches("digits", ex.cfg, ex.qcfg, None, 32, 32))
    torch_model = TorchGoldenModel(ex)
    w, b = torch_model._params("head")
    torch_model._weights["head"] = (w + torch.eye(*w.shape, dtype=w.dtype), b)  # one more unit on some weights
    assert not np.array_equal(torch_model.forward(x_int)[0], GoldenModel(ex).forward(x_int)[0])


def test_backend_choice_and_refusals(qat_runs, tmp_path, capsys):
    ex = load_export(qat_runs[8][1])
    assert type(golden_model(ex, "torch")) is TorchGoldenModel
    with pytest.raises(ConfigError, match="numpy golden model runs on the CPU only"):
        golden_model(ex, "numpy", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device 'cuda' is not available"):
            golden_model(ex, "torch", "cuda")
    assert main(["golden", str(qat_runs[8][1]), "--out", str(tmp_path / "g"), "--backend", "torch", "--limit", "64",
                 "--no-progress"]) == 0
    assert "(torch on cpu)" in capsys.readouterr().out
    assert main(["golden", str(qat_runs[8][1]), "--backend", "torch", "--device", "nodevice"]) == 2
    err = capsys.readouterr().err
    assert "device 'nodevice' is not available" in err and "Traceback" not in err


def test_attention_probes(qat_runs, tmp_path):
    """Zeroing the SASA output and forcing the mask open change the network (both backends alike);
    golden_eval reports their accuracies and each core's LIF_a / LIF_o rates, the same on both."""
    ex = load_export(qat_runs[8][1])
    _, x_int, _ = next(integer_batches("digits", ex.cfg, ex.qcfg, None, 64, 64))
    model = GoldenModel(ex).forward(x_int)[0]
    for probe in ("zero_output", "mask_ones"):
        logits, tr = GoldenModel(ex, probe).forward(x_int, trace=True)
        assert not np.array_equal(logits, model), probe
        assert np.array_equal(TorchGoldenModel(ex, attention=probe).forward(x_int)[0], logits), probe
        for core in ex.graph.of_op("sasa"):
            if probe == "zero_output":
                assert not tr[f"{core.attrs['lif_o']}.s"].any()
            else:
                assert tr[f"{core.attrs['lif_a']}.s"].all()
    with pytest.raises(ValueError, match="attention probe"):
        GoldenModel(ex, "zeroed")
    results = [golden_eval(qat_runs[8][1], tmp_path / b, limit=128, progress=False, backend=b) for b in ("numpy", "torch")]
    a = results[0]["attention"]
    assert a == results[1]["attention"] and a["accuracy_model"] == results[0]["test_accuracy"]
    assert [c["core"] for c in a["cores"]] == ["blocks.0.attn", "blocks.1.attn"]
    assert all(0 < c["lif_a_rate"] < 1 and 0 < c["lif_o_rate"] < 1 for c in a["cores"])
    assert golden_eval(qat_runs[8][1], tmp_path / "none", limit=64, progress=False, probes=False)["attention"] is None


def test_crosscheck_holds_the_backends_equal_on_the_users_export(qat_runs, tmp_path, capsys, monkeypatch):
    """``saformer golden --backend torch --crosscheck N`` runs the numpy definition on the first N
    images beside it (over a batch boundary here: 70 images at batch 64); a torch backend that
    drifts on one image is reported with that image and exits 2, and numpy alone is refused."""
    export = str(qat_runs[8][1])
    args = ["golden", export, "--backend", "torch", "--limit", "96", "--no-progress", "--no-attention-probes"]
    assert main([*args, "--crosscheck", "70", "--out", str(tmp_path / "ok")]) == 0
    assert "on the first 70 images: logits equal" in capsys.readouterr().out
    r = json.loads((tmp_path / "ok" / GOLDEN_FILE).read_text())
    assert r["crosscheck"] == {"images": 70, "differing_images": [], "equal": True} and r["images"] == 96

    forward = TorchGoldenModel.forward

    def drifted(self, x_int, trace=False):  # the second batch's image 1 (test image 65) one unit off
        logits, traces = forward(self, x_int, trace)
        if len(x_int) == 32:
            logits = logits.copy()
            logits[1, 0] += 1
        return logits, traces

    monkeypatch.setattr(TorchGoldenModel, "forward", drifted)
    assert main([*args, "--crosscheck", "70", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "differ from the numpy model's on 1 of 70 images (first: test image 65)" in err and "Traceback" not in err
    assert json.loads((tmp_path / "bad" / GOLDEN_FILE).read_text())["crosscheck"]["differing_images"] == [65]
    assert main([*args, "--crosscheck", "60", "--out", str(tmp_path / "before")]) == 0  # the drift lies past 60

    assert main(["golden", export, "--crosscheck", "8"]) == 2
    assert "--crosscheck compares the torch backend with the numpy model" in capsys.readouterr().err
