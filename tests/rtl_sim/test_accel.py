"""The whole accelerator (saformer.rtl_sim.accel): the top generated from a trained digits export's
graph, simulated end to end by the compiled harness, logits equal to the golden model's on real test
images (and so the classes); one flipped weight bit in a memory the RTL reads is caught; engines
on their weight stream ports behind a model of external memory give the same logits; and the
`saformer accel` command writes its report."""

import json

import numpy as np
import pytest

from saformer.cli import main
from saformer.config import HardwareConfig
from saformer.quant.export import load_export
from saformer.quant.golden import GoldenModel
from saformer.quant.stages import integer_batches
from saformer.rtl_sim.accel import (_cycle_model_markdown, build_top, cycle_model_check, generate_top, golden_stream,
                                    run_top)
from saformer.rtl_sim.cycle_model import encoder_counts, model_top


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
    # two shards side by side: the same logits; the first shard's images are the stream's first
    # images with the same history, so the same cycles (a pipeline in order: later images cannot
    # delay earlier ones); every shard's first image is left out of the steady distribution
    sharded = run_top(design, harness, x, jobs=2)
    assert np.array_equal(sharded.logits, gold) and sharded.shard_starts == (0, 3)
    assert np.array_equal(sharded.cycles_per_image[:3], r.cycles_per_image[:3])
    assert sharded.steady_cycles().size == len(x) - 2 and sharded.simulated > r.simulated
    # the cycle model, from the golden spikes alone: every output beat's cycle, so every image's
    # cycles, equal to the simulation's; shard by shard for the sharded run
    counts = encoder_counts(design, ex, x, traces)
    model = model_top(design, ex, counts)
    assert np.array_equal(model.cycles_per_image, r.cycles_per_image), (model.cycles_per_image, r.cycles_per_image)
    assert model.out_cycles[-1] + 1 == r.total
    assert cycle_model_check(design, ex, counts, sharded)["exact"]
    # the comparison can fail: image 4 with every input of every engine non-zero takes longer
    dense = {k: v.copy() for k, v in counts.items()}
    for b in design.blocks:
        if b["block"] == "event_encoder":
            dense[b["node"]][4] = b["params"]["LANES"]
    wrong = cycle_model_check(design, ex, dense, r)
    assert not wrong["exact"] and wrong["mismatching_images"][0] == 4, wrong
    wrong = cycle_model_check(design, ex, dense, sharded)  # image 4 is the second shard's second
    assert not wrong["exact"] and wrong["mismatching_images"][0] == 4, wrong
    # the model's memory bound: stopped short of the run (here at about a third of what the whole
    # run keeps), it gives the first images, exact too, and the report says which
    part = model_top(design, ex, counts, max_entries=model.transfers)
    done = len(part.cycles_per_image)
    assert not part.complete and 0 < done < len(x), done
    assert np.array_equal(part.cycles_per_image, r.cycles_per_image[:done])
    bounded = cycle_model_check(design, ex, counts, r, max_entries=model.transfers)
    assert bounded["exact"] and (bounded["images"], bounded["images_simulated"]) == (done, len(x)), bounded
    assert f"the first {done} of {len(x)} images" in _cycle_model_markdown(bounded)[0]
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


def test_a_top_with_streamed_weights_equals_the_golden_model(digits, tmp_path):
    """Three engines on their weight stream ports (the first conv, which multiplies; an MLP fc1; the
    head), a model of external memory on each at 24 cycles of latency: the same logits, every
    image's cycles as the exact cycle model predicts, no ROM left for those engines, the port's
    traffic a burst per event; and a flipped bit in what the memory serves is caught."""
    from saformer.rtl_sim.accel import memory_and_weight_stream, top_memories
    from saformer.rtl_sim.activity import image_activity

    ex, x, _, gold, traces = digits
    streamed = ("sps.convs.0", "blocks.1.mlp.fc1", "logits")
    hw = HardwareConfig(weight_stream=streamed, weight_stream_latency=24)
    design, harness, _ = build_top(ex, hw, tmp_path)
    assert [w["node"] for w in design.weight_ports] == list(streamed) and design.sim_top == "saformer_top_sim"
    assert design.sv.count("WEIGHT_PORT(1)") == 3 and "head_w_data" in design.sv.split("module saformer_top (")[1].split(");")[0]  # top ports
    r = run_top(design, harness, x)
    assert np.array_equal(r.logits, gold), np.argwhere(r.logits != gold)[:5]
    counts = encoder_counts(design, ex, x, traces)
    assert np.array_equal(model_top(design, ex, counts).cycles_per_image, r.cycles_per_image)
    rom = generate_top(ex, HardwareConfig(), None)
    slower = model_top(rom, ex, counts).cycles_per_image  # the ROM top's
    assert (np.cumsum(r.cycles_per_image) >= np.cumsum(slower)).all()  # no image leaves earlier (max-plus: monotone)
    kinds = {(kind, name) for kind, name, _, _ in top_memories(design)}
    assert ("external weights", "u_head") in kinds and ("weights", "u_head") not in kinds
    act = image_activity(design, ex, x, traces)["total"]
    head = next(b["params"] for b in design.blocks if b["instance"] == "u_head")
    assert act["external_read_bits"] > 0
    m = memory_and_weight_stream(design, hw, float(np.median(r.cycles_per_image)), act["weight_read_bits"],
                                 act["external_read_bits"])
    assert m["streamed_engines"] == list(streamed) and m["external_weight_bits"] > 0
    assert m["weight_stream"]["streamed_peak_gbit_per_s"] == pytest.approx(
        sum(w["width"] for w in design.weight_ports) * 100 / 1e3)
    # the head's most active input channel: class 0's weight gains 64 in the external memory's file
    channel = int(np.argmax(traces["head_lif.s"].sum(axis=(0, 1, 2))))
    word = channel * head["OUT"] // head["LANES"]
    f = tmp_path / "mem" / "head" / "weight.hex"
    lines = f.read_text().split()
    lines[word] = f"{int(lines[word], 16) ^ (1 << 6):0{len(lines[word])}x}"
    f.write_text("\n".join(lines) + "\n")
    flipped = run_top(design, harness, x)
    assert not np.array_equal(flipped.logits, gold) and np.array_equal(flipped.logits[:, 1:], gold[:, 1:])


def test_a_weight_stream_of_unknown_layers_is_refused(digits):
    from saformer.errors import ConfigError

    ex = digits[0]
    with pytest.raises(ConfigError, match=r"weight_stream names \['blocks.9.mlp.fc1'\], not synaptic layers"):
        generate_top(ex, HardwareConfig(weight_stream=("blocks.9.mlp.fc1",)), None)
    with pytest.raises(ConfigError, match=r"weight_stream_latency must be an integer in \[2, 4096\]"):
        HardwareConfig(weight_stream=("logits",), weight_stream_latency=1)
    everything = generate_top(ex, HardwareConfig(weight_stream=("all",)), None)
    assert len(everything.weight_ports) == sum(b["block"] == "syn_engine" for b in everything.blocks)


def test_the_accel_command_writes_its_report(qat_runs, tmp_path):
    out = tmp_path / "accel"
    assert main(["accel", str(qat_runs[8][1]), "--out", str(out), "--images", "3", "--layer-images", "0",
                 "--jobs", "2", "--no-engine-output-register"]) == 0
    r = json.loads((out / "accel.json").read_text())
    assert r["bit_exact"] and r["images"] == 3 and r["accuracy_rtl"] == r["accuracy_golden"] and r["layers"] == []
    # the engines without their output register (m_data from LUT RAM): the same values and cycles
    assert r["hardware"]["engine_output_register"] is False and r["cycle_model"]["exact"], r["cycle_model"]
    assert ".OUT_REG(0)" in (out / "build" / "saformer_top.sv").read_text()
    assert r["simulation_jobs"] == 2
    m, w = r["memory"], r["memory"]["weight_stream"]
    assert m["total_bits"] == sum(m["bits_by_kind"].values()) and m["bits_by_kind"]["weights"] > 0
    assert w["images_per_second"] == pytest.approx(100e6 / r["cycles_per_image"]["median"])
    assert w["once_per_image_gbit_per_s"] == pytest.approx(m["bits_by_kind"]["weights"] * w["images_per_second"] / 1e9)
    assert w["weight_read_bits_per_image"] == r["energy"]["activity"]["weight_read_bits"] > 0
    e = r["energy"]
    assert e["images"] == 3 and e["hardware"]["total_pj"] > 0 and e["sop_model"]["energy_pj"] > 0
    assert sum(e["hardware_pj_by_block"].values()) == pytest.approx(e["hardware"]["total_pj"])
    md = (out / "accel.md").read_text()
    assert "bit-exact" in md and "the paper's SOP model" in md and "weight stream port" in md


def test_a_top_cut_after_a_sasa_core_emits_the_golden_spikes(digits, tmp_path):
    """Inside the network: the top cut after the first SASA core streams out its O spikes, every step
    of every image, equal to the golden model's trace."""
    ex, x, _, _, traces = digits
    design, harness, _ = build_top(ex, HardwareConfig(), tmp_path, output="blocks.0.attn")
    r = run_top(design, harness, x[:2])
    got, want = r.logits, golden_stream(ex, traces, "blocks.0.attn")[:2]
    assert 0 < want.mean() < 1 and np.array_equal(got, want)
    # every spike beat leaves at the cycle the model predicts
    model = model_top(design, ex, {k: v[:2] for k, v in encoder_counts(design, ex, x, traces).items()})
    assert np.array_equal(model.cycles_per_image, r.cycles_per_image)


@pytest.mark.slow
def test_the_top_synthesizes_with_the_first_convs_multipliers_only(qat_runs, tmp_path):
    """Yosys on the whole top (xc7, about 4 minutes): the only $mul cells are the first conv's lanes,
    and the design fits an Artix-7 100T (63,400 LUT, 135 BRAM36); and block by block (about 20
    more minutes) the same counts within 5%."""
    from saformer.rtl_sim.synth import synthesize_top, synthesize_top_by_block

    ex = load_export(qat_runs[8][1])
    r = synthesize_top(ex, HardwareConfig(), tmp_path, "xc7")
    assert r["mul_cells_before_mapping"] == r["resources"]["DSP"] == 8  # conv0: 8 output channels, 8 lanes
    assert r["resources"]["LUT"] < 63_400 and r["resources"]["BRAM36"] + r["resources"]["BRAM18"] / 2 <= 135
    # block by block (how a CIFAR-size top is counted): the same block RAMs and DSPs, LUTs and FFs
    # within 5% (measured: +1.4% LUT, +0.1% FF; nothing is optimized across the blocks' ports)
    by_block = synthesize_top_by_block(ex, HardwareConfig(), tmp_path / "by_block", "xc7", progress=False)["resources"]
    for k in ("BRAM36", "BRAM18", "DSP"):
        assert by_block[k] == r["resources"][k], (k, by_block, r["resources"])
    for k in ("LUT", "FF"):
        assert abs(by_block[k] - r["resources"][k]) <= 0.05 * r["resources"][k], (k, by_block, r["resources"])


def test_activity_counts_follow_the_spikes_and_the_table():
    """The engine's counts by hand (a corner event reaches 4 of its 9 taps, a centre event all 9),
    and the 45 nm table's anchor points."""
    from saformer.report.energy import add_pj, hardware_energy, mult_pj
    from saformer.rtl_sim.activity import Activity, _engine

    p = {"IN": 2, "OUT": 8, "LANES": 4, "KERNEL": 3, "H": 3, "W": 3, "W_BITS": 8, "ACC_BITS": 20, "MEM_BITS": 16}
    x = np.zeros((1, 1, 9, 2), np.int8)
    x[0, 0, 0, 1] = x[0, 0, 4, 0] = 1  # corner (0, 0) and centre (1, 1)
    a = _engine(p, x, groups=1)
    chunks = 2
    assert a.adds[20] == (4 + 9) * chunks * 4  # in-range updates x lanes
    assert a.adds[21] == 9 * chunks * 4  # the drain: every position's words, bias added
    # weights only for in-range slots (the ROM's read is enabled by the update), acc, bias
    assert a.read_bits == (4 + 9) * chunks * 4 * 8 + ((4 + 9) * chunks + 9 * chunks) * 80 + 9 * chunks * 80
    assert a.write_bits == ((4 + 9) * chunks + 9 * chunks) * 80
    assert (add_pj(8), add_pj(32), mult_pj(8, 8)) == (0.03, 0.1, 0.2)
    e = hardware_energy(Activity(adds={8: 10}, mults={(8, 8): 2}, read_bits=64, write_bits=0).scaled(1.0))
    assert e["total_pj"] == pytest.approx(10 * 0.03 + 2 * 0.2 + 10.0)


def test_engine_updates_equal_the_synaptic_operations_of_the_golden_spikes(digits, tmp_path):
    """Summed over the generated top's engines, the accumulator updates equal the synaptic
    operations counted straight from the golden spikes (each spike reaches the in-range positions of
    its 3x3 window: a ones-kernel over a ones map, read at the spike)."""
    from scipy.signal import convolve2d

    from saformer.rtl_sim.activity import image_activity

    ex, x, _, _, traces = digits
    design = generate_top(ex, HardwareConfig(lanes=4), tmp_path / "mem")
    act = image_activity(design, ex, x, traces)
    want = 0
    for node in ex.graph.of_op("synapse"):
        src = ex.graph[node.inputs[0]]
        if src.op == "input":
            continue
        s = traces[f"{src.neuron}.s" if src.op == "lif" else f"{src.attrs['lif_o']}.s"]
        out = node.shape[0] if len(node.shape) == 3 else node.shape[-1]
        if s.ndim == 5:  # (T, B, C, H, W) maps: each spike reaches its in-range taps
            reach = sum(convolve2d(np.ones_like(m), np.ones((3, 3)), mode="same").astype(int)[m > 0].sum()
                        for m in s.reshape(-1, *s.shape[-2:]))
            want += int(reach) * out
        else:
            want += int(s.sum()) * out
    acc_bits = {b["instance"]: b["params"]["ACC_BITS"] for b in design.blocks if b["block"] == "syn_engine"}  # its own width
    assert len({acc_bits[r["instance"]] for r in act["blocks"] if r["block"] == "syn_engine"}) > 1
    got = sum(r["adds"].get(acc_bits[r["instance"]], 0) for r in act["blocks"]
              if r["block"] == "syn_engine" and r["node"] not in ("logits", "sps.convs.0"))
    assert got * len(x) == pytest.approx(want, rel=0, abs=1e-6)


def test_two_images_through_the_cocotb_bench_with_random_stalls(digits, tmp_path):
    """The whole top on the cocotb bench (every output beat asserted), input idles and output
    back-pressure at 20% each; and the harness's seeded stalls give the same logits."""
    from saformer.rtl_sim.accel import TOP, cocotb_top

    ex, x, _, gold, _ = digits
    design = generate_top(ex, HardwareConfig(), tmp_path / "mem")
    (tmp_path / f"{TOP}.sv").write_text(design.sv)
    r = cocotb_top(design, tmp_path / f"{TOP}.sv", x[:2], gold[:2], tmp_path / "cocotb")
    assert r["mismatching_beats"] == 0 and r["beats_out"] == 2 * design.out_beats_per_image
    d, h, _ = build_top(ex, HardwareConfig(), tmp_path / "harness")
    clean, stalled = run_top(d, h, x[:2]), run_top(d, h, x[:2], p_idle=0.3, p_backpressure=0.3, seed=5)
    assert np.array_equal(stalled.logits, gold[:2]) and np.array_equal(clean.logits, gold[:2])
