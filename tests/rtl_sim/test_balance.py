"""Per-layer lanes (saformer.rtl_sim.balance): which engines' streams meet, the gearboxes between an
engine and a stream of other lanes, the stage loads as the blocks' own cycle models, a balancer
that meets its target, and a balanced top that is bit-exact and runs at its slowest stage (the
engines' input FIFOs decouple the pipeline)."""

import numpy as np
import pytest

from saformer.config import HardwareConfig
from saformer.errors import ConfigError
from saformer.graph import SYNAPTIC_OPS
from saformer.quant.export import load_export
from saformer.quant.golden import GoldenModel
from saformer.quant.stages import integer_batches
from saformer.rtl_sim.accel import build_top, generate_top, run_top
from saformer.rtl_sim.balance import _engine_input, balance_lanes, balance_to_cycles, lane_groups, stage_loads
from saformer.rtl_sim.blocks import BLOCKS
from saformer.rtl_sim.cycle_model import encoder_counts, model_top


@pytest.fixture(scope="module")
def digits(qat_runs):
    ex = load_export(qat_runs[8][1])
    _, x, _ = next(integer_batches(ex.manifest["dataset"], ex.cfg, ex.qcfg, None, 8, 8))
    logits, traces = GoldenModel(ex).forward(x, trace=True)
    return ex, x, logits, traces


def test_engines_whose_streams_meet_form_groups(digits):
    ex = digits[0]
    groups = lane_groups(ex.graph)
    residual = {"sps.convs.3", "sps.rpe", *(f"blocks.{i}.{m}" for i in range(2) for m in ("attn.proj", "mlp.fc2"))}
    assert set(groups["sps.convs.3"]) == residual
    assert groups["blocks.0.attn.q"] == ["blocks.0.attn.q", "blocks.0.attn.k"]
    assert groups["blocks.1.mlp.fc1"] == ["blocks.1.mlp.fc1"] and groups["logits"] == ["logits"]
    assert sorted(m for g in groups.values() for m in g) == sorted(
        n.name for n in ex.graph if n.op in SYNAPTIC_OPS)


def test_stage_loads_are_the_blocks_cycle_models(digits):
    ex, x, _, traces = digits
    design = generate_top(ex, HardwareConfig(lanes=4), None)
    loads = stage_loads(design, ex, x, traces)
    checked = 0
    for b in design.blocks:
        node = ex.graph[b["node"]]
        if b["block"] != "syn_engine" or node.op == "head":
            continue
        # the library's model over all images at once: their total, plus the header's 2
        want = BLOCKS["syn_engine"].cycles(b["params"], _engine_input(ex, traces, x, node))
        assert loads[b["instance"]].sum() + 2 == want, b["instance"]
        checked += 1
    assert checked == 15
    assert all(v.shape == (len(x),) and (v > 0).all() for v in loads.values())


def test_stage_loads_of_streamed_engines_follow_the_port_latency(digits):
    """With the weights streamed in, an engine's stage load is the streamed block's cycle model at
    the port's latency, image by image: at least the ROM engine's, and longer at a latency past a
    burst (the balancer then sees the port, not only the exact model of its final check)."""
    ex, x, _, traces = digits
    rom = stage_loads(generate_top(ex, HardwareConfig(lanes=4), None), ex, x, traces)
    loads = {}
    for latency in (2, 64):
        design = generate_top(ex, HardwareConfig(lanes=4, weight_stream=("all",), weight_stream_latency=latency), None)
        loads[latency] = stage_loads(design, ex, x, traces)
        for b in design.blocks:
            node = ex.graph[b["node"]]
            if b["block"] != "syn_engine":
                continue
            load = loads[latency][b["instance"]]
            assert b["weight_latency"] == latency and (load >= rom[b["instance"]]).all(), b["instance"]
            if node.op != "head":
                spikes = _engine_input(ex, traces, x, node)
                want = [BLOCKS["syn_engine_streamed"].cycles({**b["params"], "LATENCY": latency}, spikes[i:i + 1]) - 2
                        for i in range(len(x))]
                assert load.tolist() == want, b["instance"]
    slower = [k for k in loads[2] if k in rom and (loads[64][k] > loads[2][k]).all()]
    assert "u_blocks_0_attn_q" in slower and len(slower) >= 10, slower


def test_the_balancer_meets_its_target_with_the_fewest_lanes_first(digits):
    ex, x, _, traces = digits
    loose, tight = balance_lanes(ex, x, traces, 60_000), balance_lanes(ex, x, traces, 20_000)
    for b in (loose, tight):
        assert b.met and max(b.loads.values()) <= b.target and b.slowest_cycles == max(b.loads.values())
    # engines whose streams meet are chosen apart: the residual stream's engines differ
    assert len({tight.engine_lanes[m] for m in tight.groups["sps.convs.3"]}) > 1
    assert all(tight.engine_lanes[k] >= v for k, v in loose.engine_lanes.items())
    assert sum(tight.engine_lanes.values()) > sum(loose.engine_lanes.values())
    unreachable = balance_lanes(ex, x, traces, 1, max_lanes=4)
    assert not unreachable.met and unreachable.slowest_cycles > 1
    with pytest.raises(ConfigError, match="positive number of cycles"):
        balance_lanes(ex, x, traces, 0)


def test_engine_lanes_that_do_not_divide_or_name_no_layer_are_refused(digits, tmp_path):
    ex = digits[0]
    with pytest.raises(ConfigError, match=r"gives 'sps.rpe' 5 lanes, which do not divide its 64 outputs"):
        generate_top(ex, HardwareConfig(engine_lanes=(("sps.rpe", 5),)), None)
    with pytest.raises(ConfigError, match=r"names \['nope'\], not synaptic layers"):
        generate_top(ex, HardwareConfig(engine_lanes=(("nope", 2),)), None)


def test_an_engine_reaches_a_stream_of_other_lanes_through_a_gearbox(digits):
    """The residual stream runs at its narrowest engine's lanes; wider engines drain into it through
    a lane_gearbox, whose pace their stage load takes."""
    ex, x, _, traces = digits
    gears = lambda d: {b["node"]: (b["params"]["IN_LANES"], b["params"]["OUT_LANES"])  # noqa: E731
                       for b in d.blocks if b["block"] == "lane_gearbox"}
    assert gears(generate_top(ex, HardwareConfig(lanes=8), None)) == {}
    wide = generate_top(ex, HardwareConfig(lanes=8, engine_lanes=(("blocks.0.attn.proj", 16),)), None)
    assert gears(wide) == {"blocks.0.attn.proj": (16, 8)}
    narrow = generate_top(ex, HardwareConfig(lanes=8, engine_lanes=(("blocks.0.attn.proj", 2),)), None)
    residual = lane_groups(ex.graph)["sps.convs.3"]
    assert gears(narrow) == {m: (8, 2) for m in residual if m != "blocks.0.attn.proj"}
    # a dense block of the residual stream now moves 2 values a cycle; an engine drains at that pace
    sat = next(b for b in narrow.blocks if b["block"] == "sat_add")
    assert sat["params"]["LANES"] == 2
    loads, base = stage_loads(narrow, ex, x, traces), stage_loads(generate_top(ex, HardwareConfig(lanes=8), None), ex, x, traces)
    fc2 = "u_blocks_1_mlp_fc2"  # 16 tokens x 4 steps x 64 outputs: 8 drain cycles a token at 8 lanes, 32 at 2
    assert (loads[fc2] - base[fc2] == 4 * 16 * (64 // 2 - 64 // 8)).all()


def test_a_balanced_top_is_bit_exact_and_runs_at_its_slowest_stage(digits, tmp_path):
    ex, x, gold, traces = digits
    exact = balance_to_cycles(ex, x, traces, 30_000)  # the stage bound, checked by the exact cycle model
    b = exact.balance
    assert exact.met and exact.mean_cycles <= 30_000 and b.image_bound <= exact.bound <= 30_000
    design, harness, _ = build_top(ex, b.hardware(HardwareConfig()), tmp_path)
    assert {d["node"]: d["params"]["LANES"] for d in design.blocks if d["block"] == "syn_engine"} == b.engine_lanes
    assert any(d["block"] == "lane_gearbox" for d in design.blocks)  # engines of other lanes than their streams
    r = run_top(design, harness, x)
    assert np.array_equal(r.logits, gold)
    # the exact cycle model holds through the gearboxes
    model = model_top(design, ex, encoder_counts(design, ex, x, traces))
    assert np.array_equal(model.cycles_per_image, r.cycles_per_image), (model.cycles_per_image, r.cycles_per_image)
    assert np.array_equal(exact.model_cycles, r.cycles_per_image)
    # back to back (the first image holds the fill) the simulated pipeline meets the target, and runs
    # within 10% of its slowest stage's mean (the FIFOs decouple the stages). No lower bound: an image
    # behind a slow one can finish sooner than its own slowest stage takes (measured 0.98x on CI)
    per_image = r.cycles_per_image[1:].mean()
    assert per_image <= 30_000 and per_image <= 1.10 * b.slowest_cycles, (per_image, b.slowest_cycles)
