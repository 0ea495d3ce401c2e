"""The attention probes (saformer.model.probes): the same three diagnostics on the float, QAT and
integer models. On a QAT model the hooks must reproduce the golden model's probed logits bit for
bit; on the float model they must change the network, report the schema `saformer golden` does,
and leave no hook behind."""

import json

import numpy as np
import pytest
import torch

from saformer.cli import main
from saformer.data import load_digits
from saformer.model.probes import attention_cores, attention_probe
from saformer.model.saformer import SAFormer
from saformer.model.train import attention_diagnostics, load_trained_model
from saformer.quant.export import load_export
from saformer.quant.fixed_point import quantize_input
from saformer.quant.golden import GoldenModel
from tests.model.test_attention import randomize_bn, small_config


@pytest.mark.parametrize("probe", ["zero_output", "mask_ones"])
def test_qat_hooks_equal_the_golden_probes_bit_for_bit(qat_runs, probe):
    """The float-side probe means exactly what the integer one means: a QAT model under the hook
    computes the golden model's probed logits, and they differ from the unprobed ones."""
    qrun, export = qat_runs[8]
    model, _ = load_trained_model(qrun, torch.device("cpu"))
    model = model.double().eval()
    x, _ = next(load_digits().test.batches(96, shuffle=False, augment=False, seed=0, device=torch.device("cpu")))
    x_int = quantize_input(x.numpy(), 8, 4)
    want, _ = GoldenModel(load_export(export), probe).forward(x_int)
    plain, _ = GoldenModel(load_export(export)).forward(x_int)
    with torch.no_grad():
        with attention_probe(model, probe):
            got = model.integer_logits(x.double())
        after = model.integer_logits(x.double())
    np.testing.assert_array_equal(got.numpy().astype(np.int64), want)
    assert not np.array_equal(want, plain)
    np.testing.assert_array_equal(after.numpy().astype(np.int64), plain)  # the hooks are gone


@pytest.mark.parametrize("attention", ["sasa", "ssa", "sdsa"])
def test_probes_silence_the_named_neurons_of_every_variant(attention):
    cfg = small_config(attention=attention, depth=2, heads=1)  # one head: SSA scores large enough to fire
    torch.manual_seed(0)
    model = SAFormer(cfg).eval()
    randomize_bn(model, torch.Generator().manual_seed(0))  # BN shifts and larger weights: the
    for name, m in model.named_modules():                  # attention neurons fire at random init
        if isinstance(m, torch.nn.Linear) and ".attn." in name:
            m.weight.data.mul_(4)
    x, _ = next(load_digits().test.batches(3, shuffle=False, augment=False, seed=0, device=torch.device("cpu")))
    cores = attention_cores(model)
    assert [n for n, _ in cores] == ["blocks.0.attn", "blocks.1.attn"]
    seen = {}

    def run(probe):
        """Run under the probe, recording each named neuron's output after the probe's hook."""
        with attention_probe(model, probe):
            handles = [getattr(core, n).register_forward_hook(
                           lambda _m, _i, out, key=f"{name}.{n}": seen.__setitem__(key, out.clone()))
                       for name, core in cores for n in {core.output_neuron, core.mask_neuron} - {None}]
            logits = model(x)
        for h in handles:
            h.remove()
        return logits

    with torch.no_grad():
        plain = run("model")
        for key, spikes in seen.items():  # not vacuous: the neurons fire, and do not all fire, unprobed
            assert 0 < spikes.mean() < 1, key
        assert not torch.equal(run("zero_output"), plain)
        for name, core in cores:
            assert not seen[f"{name}.{core.output_neuron}"].any()
        if attention == "ssa":
            with pytest.raises(ValueError, match="no channel mask"):
                with attention_probe(model, "mask_ones"):
                    pass
        else:
            run("mask_ones")
            assert all(seen[f"{name}.lif_a"].all() for name, _ in cores)
        assert torch.equal(run("model"), plain)  # nothing left behind
    with pytest.raises(ValueError, match="choose one of"):
        with attention_probe(model, "zeroed"):
            pass


def test_eval_reports_the_float_attention_diagnostics(digits_run, tmp_path, capsys):
    """`saformer eval` writes the diagnostics in the golden model's schema and prints them; the
    model's accuracy among them is the plain evaluation's, and --no-attention-probes drops them."""
    assert main(["eval", str(digits_run), "--out", str(tmp_path / "e"), "--no-progress"]) == 0
    assert "attention diagnostics: model" in capsys.readouterr().out
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    a = m["attention"]
    assert a["accuracy_model"] == m["test_accuracy"]
    assert set(a) == {"accuracy_model", "accuracy_sasa_output_zeroed", "accuracy_mask_all_ones", "cores"}
    assert [c["core"] for c in a["cores"]] == ["blocks.0.attn", "blocks.1.attn"]
    assert all(c["lif_a_rate"] == m["firing_rates"][f"{c['core']}.lif_a"] for c in a["cores"])
    assert all(0 <= a[k] <= 1 for k in ("accuracy_sasa_output_zeroed", "accuracy_mask_all_ones"))
    assert main(["eval", str(digits_run), "--out", str(tmp_path / "n"), "--no-progress", "--no-attention-probes"]) == 0
    assert json.loads((tmp_path / "n" / "metrics.json").read_text())["attention"] is None


def test_diagnostics_of_a_model_without_a_mask():
    """SSA has no channel mask: its mask-open accuracy and mask rate are None, not a made-up number."""
    cfg = small_config(attention="ssa", depth=1)
    torch.manual_seed(0)
    model = SAFormer(cfg)
    a = attention_diagnostics(model, load_digits().test, 128, torch.device("cpu"), amp=False, progress=False)
    assert a["accuracy_mask_all_ones"] is None and a["cores"][0]["lif_a_rate"] is None
    assert 0 <= a["cores"][0]["lif_o_rate"] <= 1 and a["cores"][0]["output_neuron"] == "lif_attn"  # named as it is
