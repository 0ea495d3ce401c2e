"""`saformer flow` end to end on a reduced setting (a few epochs, one image per hardware check),
then `saformer report`: every level runs, the report says bit-exact only where a check ran and
passed, and an unchanged rerun redoes nothing but the report."""

import json
import os
import shutil

import pytest

from saformer.cli import main
from saformer.config import HardwareConfig
from saformer.report.report import build_report


OPTIONS = ["--epochs", "2", "--qat-epochs", "1", "--check-images", "8", "--hls-images", "1", "--rtl-images", "1",
           "--accel-images", "6", "--no-progress"]


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    """The flow as `make flow` runs it: a relative --out, from the directory that holds it (the
    simulators run in directories of their own, so every path they get must survive that)."""
    base = tmp_path_factory.mktemp("flow")
    cwd = os.getcwd()
    os.chdir(base)
    try:
        assert main(["flow", "--out", "run", *OPTIONS]) == 0
    finally:
        os.chdir(cwd)
    out = base / "run"
    return out, ["flow", "--out", str(out), *OPTIONS]  # the same run, spelled absolute


def test_flow_runs_every_stage_and_reports(flow_run):
    out, _ = flow_run
    state = json.loads((out / "flow.json").read_text())
    assert list(state["stages"]) == ["train", "quantize", "export", "golden", "accel", "hls", "rtl", "synth", "sweep",
                                     "report"]
    report = json.loads((out / "report.json").read_text())
    assert [a["level"].split(" ")[0] for a in report["accuracy"]] == ["float", "QAT", "integer", "HLS", "RTL"]
    verdicts = {b["comparison"]: b["verdict"] for b in report["bit_exact"]}
    assert all(v == "bit-exact" for v in verdicts.values()), verdicts
    assert any(k.startswith("hls4ml Q/K -> RTL") for k in verdicts)
    # figures come from the stage files, not typed in
    golden = json.loads((out / "golden" / "golden.json").read_text())
    assert next(a for a in report["accuracy"] if a["level"].startswith("integer"))["accuracy"] == golden["test_accuracy"]
    synth = json.loads((out / "synth" / "synth.json").read_text())
    assert synth["yosys"]["resources"]["DSP"] == 0 and synth["pnr"]["fmax_mhz"] > 0
    hw = json.loads((out / "hardware.json").read_text())  # the run's hardware config, read by every stage
    assert HardwareConfig.from_dict(hw) == HardwareConfig()
    assert synth["hardware"] == hw == json.loads((out / "rtl" / "rtl.json").read_text())["hardware"]
    assert synth["pnr"]["part"]["device"] == hw["ecp5_device"] and synth["pnr"]["target_mhz"] == hw["clock_mhz"]
    assert report["timing"]["clock_mhz"] == synth["pnr"]["fmax_mhz"]
    assert all(x["simulation_matches_model"] for x in report["timing"]["layers"])
    for x in report["timing"]["layers"]:  # the report's one-image and streaming figures add up to what was simulated
        assert x["cycles_single_image"] + (x["simulated_images"] - 1) * x["cycles_per_image_streaming"] == x["simulated_cycles"]
    assert set(report["energy"]["tables"]) == {"sasa", "ssa", "sdsa"}
    assert all(m["values"] > 0 for m in json.loads((out / "hls" / "hls.json").read_text())["mixed_hls_rtl"])
    accel = json.loads((out / "accel" / "accel.json").read_text())
    assert accel["images"] == 6 and accel["bit_exact"] and accel["hardware"] == hw
    assert [x["node"] for x in accel["layers"]] == ["sps.lifs.3", "blocks.0.attn", "blocks.1.attn", "head_lif"]
    assert all(x["images"] == 1 and x["bit_exact"] for x in accel["layers"])
    assert verdicts["RTL accelerator vs golden: logits of every image"] == "bit-exact"
    assert not list((out / "accel").rglob("harness_*"))  # the Verilator objects (150 MB a build) are not kept
    md = (out / "report.md").read_text()
    assert "bit-exact" in md and "MISMATCH" not in md and "fmax" in md
    assert md.index("## The whole accelerator") < md.index("## Accuracy")  # its results come first
    assert golden["attention"]["accuracy_model"] == golden["test_accuracy"] and "## Attention diagnostics" in md
    for png in ("firing_rates.png", "energy.png"):
        assert (out / png).stat().st_size > 1000


def test_an_unchanged_rerun_only_rebuilds_the_report(flow_run, capsys):
    out, args = flow_run
    before = json.loads((out / "flow.json").read_text())["stages"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    after = json.loads((out / "flow.json").read_text())["stages"]
    for name in ("train", "quantize", "export", "golden", "accel", "hls", "rtl", "synth", "sweep"):
        assert f"{name}: up to date" in printed
        assert after[name] == before[name]


def test_report_says_not_run_where_a_check_did_not_run(flow_run, tmp_path):
    out, _ = flow_run
    partial = tmp_path / "partial"
    for sub in ("float", "qat", "export", "golden"):
        (partial / sub).mkdir(parents=True)
        for f in (out / sub).glob("*.json"):
            (partial / sub / f.name).write_text(f.read_text())
    report = build_report(partial)
    verdicts = {b["comparison"]: b["verdict"] for b in report["bit_exact"]}
    assert verdicts["hls4ml C sim vs golden"] == "not run"
    assert verdicts["RTL SASA core vs golden"] == "not run"
    assert verdicts["RTL accelerator vs golden: logits of every image"] == "not run"
    assert verdicts["golden model vs QAT model (every trace)"] == "bit-exact"
    assert report["timing"] is None
    check = json.loads((partial / "export" / "export.json").read_text())
    check["golden_vs_qat"]["images"] = 0  # an all() over nothing is no verdict
    (partial / "export" / "export.json").write_text(json.dumps(check))
    verdicts = {b["comparison"]: b["verdict"] for b in build_report(partial)["bit_exact"]}
    assert verdicts["golden model vs QAT model (every trace)"] == "not checked (0 compared)"


def test_report_of_a_directory_without_results_is_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no flow results" in capsys.readouterr().err


def test_report_says_mismatch_where_a_check_found_one(flow_run, tmp_path, capsys):
    """The positive control of every verdict: each stage file edited to record a difference."""
    out, _ = flow_run
    run = tmp_path / "run"
    shutil.copytree(out, run)

    def edit(rel, fn):
        data = json.loads((run / rel).read_text())
        fn(data)
        (run / rel).write_text(json.dumps(data))

    def export_differs(d):
        d["golden_vs_qat"].update(bit_exact=False, mismatching={"blocks.0.attn.lif_o.s": 1})

    def hls_differs(d):
        d["stages"][2]["checks"][0]["mismatches"] = 3
        d["stages"][2]["bit_exact"] = False
        d["mixed_hls_rtl"][1]["bit_exact"] = False

    edit("export/export.json", export_differs)
    edit("hls/hls.json", hls_differs)
    edit("rtl/rtl.json", lambda d: d["layers"][0].update(bit_exact_with_stalls=False))

    def accel_differs(d):
        d.update(bit_exact=False, mismatching_count=1, mismatching_images=[3], layers_bit_exact=False)
        d["layers"][1].update(bit_exact=False, differing=2)

    edit("accel/accel.json", accel_differs)
    assert main(["report", str(run)]) == 1
    captured = capsys.readouterr()
    assert "MISMATCH in 6 comparison(s)" in captured.err
    verdicts = {b["comparison"]: b["verdict"] for b in json.loads((run / "report.json").read_text())["bit_exact"]}
    bad = sorted(k for k, v in verdicts.items() if v == "MISMATCH")
    assert bad == ["RTL SASA core vs golden: layer blocks.0.attn (stall-free / with stalls)",
                   "RTL accelerator vs golden: logits of every image",
                   "RTL accelerator vs golden: spikes after blocks.0.attn",
                   "golden model vs QAT model (every trace)",
                   "hls4ml C sim vs golden: blocks.0.post",
                   "hls4ml Q/K -> RTL core vs golden: SASA layer blocks.1.attn"]
    assert all(v == "bit-exact" for k, v in verdicts.items() if k not in bad)
    md = (run / "report.md").read_text()
    assert md.count("**MISMATCH**") == 8  # the six table rows, and the accelerator's summary twice
    assert "**MISMATCH** on 1 of 6 images" in md and "**MISMATCH** after blocks.0.attn" in md
