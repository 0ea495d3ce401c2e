"""The hls4ml flow: every stage's C simulation equals the golden model, step for step and spike for
spike, on the exported digits model; the stateful layers follow the contract; errors name the layer."""

import copy
import json

import numpy as np
import pytest
import torch

from saformer.cli import main
from saformer.errors import ConfigError
from saformer.hls.extension import LIFStep, SpikeCountStep
from saformer.hls.flow import HLS_FILE, HlsOptions, LayerOptions, run_stage, sample_inputs
from saformer.hls.stages import HlsError, build_stages, fixed
from saformer.quant.export import IntegerExport, load_export
from saformer.quant.fixed_point import lif_int
from saformer.quant.golden import GoldenModel


@pytest.fixture(scope="module")
def hls_report(qat_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("hls8")
    _, export = qat_runs[8]
    assert main(["hls", str(export), "--out", str(out), "--images", "4", "--no-progress"]) == 0
    return out, json.loads((out / HLS_FILE).read_text())


def test_every_stage_is_bit_exact_in_c_simulation(hls_report):
    out, report = hls_report
    names = [s["stage"] for s in report["stages"]]
    assert names == ["sps", "blocks.0.qk", "blocks.0.post", "blocks.1.qk", "blocks.1.post", "head"]
    for stage in report["stages"]:
        assert stage["calls"] == 4 * 4  # 4 images, T = 4 calls each
        assert stage["checks"] and all(c["values"] > 0 for c in stage["checks"])
        assert all(c["mismatches"] == 0 for c in stage["checks"]), stage["checks"]
        assert stage["bit_exact"]
        assert (out / stage["stage"] / "build.sh").is_file()
        assert (out / stage["stage"] / "build_prj.tcl").is_file()
    assert report["all_bit_exact"]
    # every synaptic layer of the export is converted, except the DWCs (inside the RTL core)
    ex = load_export(report["export_dir"])
    converted = {e["export_layer"] for s in report["stages"] for e in s["resources"]["layers"]}
    assert converted == {n for n in ex.manifest["layers"] if not n.endswith(".dwc")}


def test_precisions_follow_the_contract(hls_report):
    _, report = hls_report
    sps = report["stages"][0]["layers"]
    assert sps["image"]["result"] == "fixed<8,4,TRN,WRAP,0>"  # int8 image, 4 fractional bits
    assert sps["lifs_0"]["result"] == "uint<1>"
    assert "TRN,SAT" in sps["convs_1"]["result"]  # floor and saturate into the Q8.8 membrane
    qk = report["stages"][1]["layers"]
    assert qk["attn_q"]["weight"].startswith("fixed<8,")  # 8-bit weights, power-of-two scale


def test_mixed_hls_qk_into_rtl_core(hls_report):
    _, report = hls_report
    mixed = report["mixed_hls_rtl"]
    assert [m["layer"] for m in mixed] == ["blocks.0.attn", "blocks.1.attn"]
    assert all(m["bit_exact"] for m in mixed) and report["mixed_bit_exact"]
    assert all(m["cycles"] == m["predicted_cycles"] for m in mixed)


def test_a_narrower_membrane_is_caught(qat_runs, tmp_path):
    """Q6.10 + floor instead of the contract's Q8.8 at one projection's output: the check must fail there
    and nowhere upstream. (The digits export's spike layers shift left into the membrane, so a
    rounding-mode change alone would be exact; dropping fractional bits is not.)"""
    _, export = qat_runs[8]
    ex = load_export(export)
    stage = next(s for s in build_stages(ex) if s.name == "blocks.0.qk")
    stage.precisions["attn_q"]["result"] = fixed(16, 6, rounding="AP_TRN", saturation="AP_SAT")
    x_int = sample_inputs(ex, 2, None)
    _, traces = GoldenModel(ex).forward(x_int, trace=True)
    record, _ = run_stage(stage, HlsOptions(), tmp_path / "qk", ex, x_int, traces)
    by_layer = {c["layer"]: c["mismatches"] for c in record["checks"]}
    assert not record["bit_exact"]
    assert by_layer["attn_q"] > 0 and by_layer["attn_k"] == 0 and by_layer["lif_attn_in"] == 0


def test_lif_step_reference_keeps_state_and_resets_every_t_calls():
    rng = np.random.default_rng(0)
    t, frac, theta = 4, 8, 256
    x = rng.integers(-600, 900, size=(2 * t, 3, 5))  # two samples back to back
    lif = LIFStep(theta, frac, t)
    got = np.stack([lif(torch.from_numpy(row * 2.0 ** -frac)).numpy() for row in x])
    for sample in range(2):
        expected, _ = lif_int(x[sample * t:(sample + 1) * t], theta)
        np.testing.assert_array_equal(got[sample * t:(sample + 1) * t], expected)
    counter = SpikeCountStep(2)
    s = torch.ones(1, 3, 2, 2)
    assert counter(s).tolist() == [[4, 4, 4]] and counter(s).tolist() == [[8, 8, 8]]
    assert counter(s).tolist() == [[4, 4, 4]]  # a new sample


def _export_with(ex: IntegerExport, edit) -> IntegerExport:
    manifest = copy.deepcopy(ex.manifest)
    edit(manifest)
    return IntegerExport(manifest, ex.tensors)


def test_layers_and_precisions_hls4ml_cannot_take_are_named(qat_runs):
    ex = load_export(qat_runs[8][1])

    def kind(m):
        m["layers"]["blocks.0.mlp.fc1"]["kind"] = "conv1d"

    def bits(m):
        m["layers"]["blocks.1.attn.k"]["weight_bits"] = 40

    def acc(m):
        m["layers"]["head"]["acc_bits_needed"] = 60

    def attention(m):
        m["model_config"]["attention"] = "ssa"

    for edit, where in [(kind, "blocks.0.mlp.fc1"), (bits, "blocks.1.attn.k"), (acc, "head"),
                        (attention, "blocks.0.attn")]:
        with pytest.raises(HlsError, match=where.replace(".", r"\.")):
            build_stages(_export_with(ex, edit))


def test_options_defaults_patterns_and_bad_values(tmp_path):
    opts = HlsOptions(layers={"blocks.*.post/mlp_fc*": LayerOptions(4, "Resource"), "blocks.1.post/mlp_fc2": LayerOptions(8)})
    assert opts.for_layer("sps", "convs_0") == LayerOptions(1, "Latency")
    assert opts.for_layer("blocks.0.post", "mlp_fc1") == LayerOptions(4, "Resource")
    assert opts.for_layer("blocks.1.post", "mlp_fc2") == LayerOptions(8, "Latency")  # the last match wins
    cfg = tmp_path / "hls.yml"
    cfg.write_text("clock_period: 4\ndefaults: {reuse_factor: 2}\nlayers:\n  head/head: {strategy: Resource}\n")
    loaded = HlsOptions.from_file(cfg, backend="Vivado")
    assert (loaded.clock_period, loaded.backend, loaded.defaults.reuse_factor) == (4, "Vivado", 2)
    assert loaded.for_layer("head", "head").strategy == "Resource"
    with pytest.raises(ConfigError, match="io_stream"):
        HlsOptions(io_type="io_stream")
    with pytest.raises(ConfigError, match="reuse factor"):
        HlsOptions(defaults=LayerOptions(0))
    cfg.write_text("reuse: 2\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        HlsOptions.from_file(cfg)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["hls", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
