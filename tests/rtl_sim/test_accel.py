"""The whole accelerator (saformer.rtl_sim.accel): the top generated from a trained digits export's
graph, simulated end to end by the compiled harness, logits equal to the golden model's on real test
images (and so the classes); one flipped weight bit in a memory the RTL reads is caught; and the
`saformer accel` command writes its report."""

import json

import numpy as np
import pytest

from saformer.cli import main
from saformer.config import HardwareConfig
from saformer.quant.export import load_export
from saformer.quant.golden import GoldenModel
from saformer.quant.stages import integer_batches
from saformer.rtl_sim.accel import build_top, golden_stream, run_top


@pytest.fixture(scope="module")
def digits(qat_runs):
    ex = load_export(qat_runs[8][1])
    _, x, y = next(integer_batches(ex.manifest["dataset"], ex.cfg, ex.qcfg, None, 6, 6))
    logits, traces = GoldenModel(ex).forward(x, trace=True)
    return ex, x, np.asarray(y), logits, traces


def test_the_top_equals_the_golden_model_and_a_flipped_weight_bit_is_caught(digits, tmp_path):
    ex, x, _, gold, traces = digits
    design, harness, _ = build_top(ex, HardwareConfig(), tmp_path)
    r = run_top(design, harness, x)
    assert np.array_equal(r.logits, gold), np.argwhere(r.logits != gold)[:5]
    assert (r.cycles_per_image > 0).all() and r.total == r.cycles_per_image.sum()
    # the head's input channel that spikes most: its weight to class 0 gains 64 in the RTL's memory
    counts = traces["head_lif.s"].sum(axis=(0, 1, 2))
    channel = int(np.argmax(counts))
    head = next(b["params"] for b in design.blocks if b["instance"] == "u_head")
    word = channel * head["OUT"] // head["LANES"]  # (channel, chunk 0): lane 0 is class 0 (syn_engine.sv's layout)
    lines = (tmp_path / "mem" / "head" / "weight.hex").read_text().split()
    lines[word] = f"{int(lines[word], 16) ^ (1 << 6):0{len(lines[word])}x}"
    (tmp_path / "mem" / "head" / "weight.hex").write_text("\n".join(lines) + "\n")
    flipped = run_top(design, harness, x)
    assert not np.array_equal(flipped.logits, gold)
    assert np.array_equal(flipped.logits[:, 1:], gold[:, 1:])  # only class 0 moves, by 64 per spike
    assert ((np.abs(flipped.logits[:, 0] - gold[:, 0]) % 64) == 0).all()


def test_the_accel_command_writes_its_report(qat_runs, tmp_path):
    out = tmp_path / "accel"
    assert main(["accel", str(qat_runs[8][1]), "--out", str(out), "--images", "3", "--layer-images", "0"]) == 0
    r = json.loads((out / "accel.json").read_text())
    assert r["bit_exact"] and r["images"] == 3 and r["accuracy_rtl"] == r["accuracy_golden"] and r["layers"] == []
    assert "bit-exact" in (out / "accel.md").read_text()


def test_a_top_cut_after_a_sasa_core_emits_the_golden_spikes(digits, tmp_path):
    """Inside the network: the top cut after the first SASA core streams out its O spikes, every step
    of every image, equal to the golden model's trace."""
    ex, x, _, _, traces = digits
    design, harness, _ = build_top(ex, HardwareConfig(), tmp_path, output="blocks.0.attn")
    got, want = run_top(design, harness, x[:2]).logits, golden_stream(ex, traces, "blocks.0.attn")[:2]
    assert 0 < want.mean() < 1 and np.array_equal(got, want)


@pytest.mark.slow
def test_the_top_synthesizes_with_the_first_convs_multipliers_only(qat_runs, tmp_path):
    """Yosys on the whole top (xc7, about 4 minutes): the only $mul cells are the first conv's lanes,
    and the design fits an Artix-7 100T (63,400 LUT, 135 BRAM36)."""
    from saformer.rtl_sim.synth import synthesize_top

    ex = load_export(qat_runs[8][1])
    r = synthesize_top(ex, HardwareConfig(), tmp_path, "xc7")
    assert r["mul_cells_before_mapping"] == r["resources"]["DSP"] == 8  # conv0: 8 output channels, 8 lanes
    assert r["resources"]["LUT"] < 63_400 and r["resources"]["BRAM36"] + r["resources"]["BRAM18"] / 2 <= 135
