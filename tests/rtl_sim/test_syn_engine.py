"""The event-driven synaptic engine (hdl/syn_engine.sv) against the integer contract's synaptic
layer, value for value: linear and 3x3 geometries (one to eight lanes, one to four output chunks,
shifts right, left and none), spike rates from none to all, membranes saturating at both ends and
accumulators within a bit of their width, stall-free with the exact cycle model and with random
idles and back-pressure; the first conv (events carrying the image's values: it multiplies); then
every synaptic layer of two crafted exports, stimuli from the golden model's traces (the first
conv: the quantized input) and expected values from GoldenModel.synapse itself; the weight stream
port (weights from a model of external memory) against the ROM."""

import dataclasses
import math

import numpy as np
import pytest

from saformer.errors import ConfigError
from saformer.quant.fixed_point import int_range
from saformer.quant.golden import GoldenModel
from saformer.rtl_sim import blocks
from saformer.rtl_sim.blocks import SYN_ENGINE, engine_from_export, lint, simulate, spike_trace

GEOMETRIES = {
    "linear-16x16-L4": dict(IN=16, OUT=16, LANES=4, KERNEL=1, H=1, W=1, W_BITS=8, MEM_BITS=8, OUT_SHIFT=4),
    "linear-12x6-L6": dict(IN=12, OUT=6, LANES=6, KERNEL=1, H=1, W=1, W_BITS=5, MEM_BITS=10, OUT_SHIFT=-3),
    "conv-3to8-4x5-L8": dict(IN=3, OUT=8, LANES=8, KERNEL=3, H=4, W=5, W_BITS=6, MEM_BITS=8, OUT_SHIFT=-2),
    "conv-4to4-3x3-L1": dict(IN=4, OUT=4, LANES=1, KERNEL=3, H=3, W=3, W_BITS=8, MEM_BITS=8, OUT_SHIFT=1),
    "conv-2to6-1x4-L2": dict(IN=2, OUT=6, LANES=2, KERNEL=3, H=1, W=4, W_BITS=7, MEM_BITS=9, OUT_SHIFT=0),
    # a 10-bit accumulator under 16-bit membranes (an export's layer sized to its worst case): the
    # left shift takes it past the membrane range
    "linear-8x4-L2-narrow-acc": dict(IN=8, OUT=4, LANES=2, KERNEL=1, H=1, W=1, W_BITS=4, MEM_BITS=16, OUT_SHIFT=-7),
    # m_data straight from the output FIFO's LUT RAM (no head register): the same values and cycles
    "linear-16x16-L4-ram-out": dict(IN=16, OUT=16, LANES=4, KERNEL=1, H=1, W=1, W_BITS=8, MEM_BITS=8, OUT_SHIFT=4,
                                    OUT_REG=0),
    "conv-3to8-4x5-L8-ram-out": dict(IN=3, OUT=8, LANES=8, KERNEL=3, H=4, W=5, W_BITS=6, MEM_BITS=8, OUT_SHIFT=-2,
                                     OUT_REG=0),
}


def layer_data(p, rng):
    """Random weights over the whole W_BITS range, channel 0 all at the top and channel 1 all at the
    bottom (with biases to match), so that all spikes saturate both ways; ACC_BITS is the fewest
    bits that hold the worst case, so those channels reach within a bit of the accumulator's width."""
    lo, hi = int_range(p["W_BITS"])
    shape = (p["OUT"], p["IN"], 3, 3) if p["KERNEL"] == 3 else (p["OUT"], p["IN"])
    w = rng.integers(lo, hi + 1, shape)
    w[0], w[1] = hi, lo
    b = rng.integers(-200, 201, p["OUT"])
    b[0], b[1] = 300, -300
    rows = w.reshape(p["OUT"], -1)
    vlo, vhi = int_range(p["VALUE_BITS"]) if p.get("VALUE_BITS") else (0, 1)
    pos, neg = np.where(rows > 0, rows, 0), np.where(rows < 0, rows, 0)
    worst = max(int((b + (pos * vhi + neg * vlo).sum(1)).max()), -int((b + (pos * vlo + neg * vhi).sum(1)).min()) - 1)
    return {**p, "ACC_BITS": worst.bit_length() + 1}, {"weight": w, "bias": b}


def spikes(p, rng, t=2):
    """(samples, T, positions, IN): rates 0.05 .. 0.7, then no spikes and all spikes."""
    pos = p["H"] * p["W"] if p["KERNEL"] == 3 else 3
    rates = [np.full((t, pos, p["IN"]), r) for r in (0.05, 0.3, 0.7)]
    x = [(rng.random(r.shape) < r).astype(np.int8) for r in rates]
    return np.stack(x + [np.zeros((t, pos, p["IN"]), np.int8), np.ones((t, pos, p["IN"]), np.int8)])


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_syn_engine_equals_the_contract(name, tmp_path):
    rng = np.random.default_rng(len(name))
    p, data = layer_data(GEOMETRIES[name], rng)
    assert lint("syn_engine", p) == ""
    x = spikes(p, rng)
    y = SYN_ENGINE.golden(p, x, data)
    lo, hi = int_range(p["MEM_BITS"])
    assert (y == hi).any() and (y == lo).any() and ((y > lo) & (y < hi)).any()  # saturated both ways, and inside
    # the all-spike sample drives channels 0 and 1 to within a bit of the accumulator's two ends
    w = data["weight"].reshape(p["OUT"], -1)
    reach = [int(data["bias"][0] + w[0].sum()), int(data["bias"][1] + w[1].sum())]
    assert reach[0] >= 2 ** (p["ACC_BITS"] - 2) or -reach[1] > 2 ** (p["ACC_BITS"] - 2), (reach, p["ACC_BITS"])
    clean = simulate("syn_engine", p, x, tmp_path, run="stall_free", data=data)
    assert clean.bit_exact and clean.cycles_match, clean
    stalled = simulate("syn_engine", p, x, tmp_path, p_idle=0.3, p_backpressure=0.4, seed=3, run="stalls", data=data)
    assert stalled.bit_exact and stalled.total > clean.total, stalled


FIRST_CONV = dict(IN=2, OUT=6, LANES=3, KERNEL=3, H=4, W=4, W_BITS=6, MEM_BITS=10, OUT_SHIFT=3, VALUE_BITS=5)


def test_first_conv_multiplies_and_equals_the_contract(tmp_path):
    """VALUE_BITS > 0: events carry signed input values (zeros still skipped). Frames of random
    values at two densities, all at the top, all at the bottom, all zero; saturation both ways."""
    rng = np.random.default_rng(7)
    p, data = layer_data(FIRST_CONV, rng)
    assert lint("syn_engine", p) == ""
    lo, hi = int_range(p["VALUE_BITS"])
    shape = (1, p["H"] * p["W"], p["IN"])
    x = np.stack([rng.integers(lo, hi + 1, shape) * (rng.random(shape) < r) for r in (0.3, 1.0)]
                 + [np.full(shape, hi), np.full(shape, lo), np.zeros(shape, np.int64)])
    y = SYN_ENGINE.golden(p, x, data)
    mlo, mhi = int_range(p["MEM_BITS"])
    assert (y == mhi).any() and (y == mlo).any() and ((y > mlo) & (y < mhi)).any()
    clean = simulate("syn_engine", p, x, tmp_path, run="stall_free", data=data)
    assert clean.bit_exact and clean.cycles_match, clean
    stalled = simulate("syn_engine", p, x, tmp_path, p_idle=0.3, p_backpressure=0.4, seed=4, run="stalls", data=data)
    assert stalled.bit_exact and stalled.total > clean.total, stalled
    with pytest.raises(ConfigError, match="an input value of 16 does not fit VALUE_BITS=5"):
        SYN_ENGINE.pack_in(p, np.full(shape, 16)[None])


def test_an_accumulator_narrower_than_the_membrane_sign_extends(tmp_path):
    """ACC_BITS < MEM_BITS without a shift (what engine_from_export gives a small layer): no
    output can saturate, and every negative sum must come out sign-extended, not cut to ACC_BITS."""
    rng = np.random.default_rng(5)
    p, data = layer_data({**GEOMETRIES["linear-8x4-L2-narrow-acc"], "OUT_SHIFT": 0}, rng)
    assert p["ACC_BITS"] < p["MEM_BITS"]
    x = spikes(p, rng)
    y = SYN_ENGINE.golden(p, x, data)
    assert (y < -(2 ** (p["ACC_BITS"] - 2))).any() and (y > 0).any()  # negative beyond the accumulator's top bit
    res = simulate("syn_engine", p, x, tmp_path, run="narrow", data=data)
    assert res.bit_exact and res.cycles_match, res


@pytest.mark.parametrize("name", ["linear-8x4-L2-narrow-acc", "conv-3to8-4x5-L8"])
def test_the_weight_stream_port_equals_the_rom(name, tmp_path):
    """WEIGHT_PORT = 1 behind the external memory's model (syn_engine_streamed): the same outputs
    as the ROM engine, at a latency the look-ahead hides and at one it cannot (a burst here is 2 or
    9 words), cycle for cycle as the model predicts; and bit-exact when the input idles, the output
    back-pressures and the memory withholds 30% of its words."""
    rng = np.random.default_rng(len(name))
    p, data = layer_data(GEOMETRIES[name], rng)
    x = spikes(p, rng)
    rom = SYN_ENGINE.cycles(p, x)
    totals = {}
    for latency in (2, 40):
        q = {**p, "LATENCY": latency}
        assert lint("syn_engine_streamed", q) == ""
        res = simulate("syn_engine_streamed", q, x, tmp_path / str(latency), run="stall_free", data=data)
        assert res.bit_exact and res.cycles_match, (latency, res)
        totals[latency] = res.total
        # the model's latency term is read: one cycle more of latency predicts another total
        assert blocks.BLOCKS["syn_engine_streamed"].cycles({**q, "LATENCY": latency + 1}, x) != res.total
    assert rom <= totals[2] < totals[40]  # the request runs ahead; 40 cycles is more than one event's work
    stalled = simulate("syn_engine_streamed", {**p, "LATENCY": 7, "STALL_PERCENT": 30}, x, tmp_path / "stalls",
                       p_idle=0.3, p_backpressure=0.3, seed=2, run="stalls", data=data)
    assert stalled.bit_exact and stalled.total > totals[2], stalled


@pytest.mark.parametrize("change, message", [
    ({"LATENCY": 1}, r"LATENCY=1; the memory model takes 2\.\.4096 cycles"),
    ({"LATENCY": 8, "STALL_PERCENT": 95}, "STALL_PERCENT=95 is outside 0..90"),
    ({"LATENCY": 8, "KERNEL": 2}, "KERNEL=2 is not 1"),
])
def test_a_bad_weight_stream_is_refused(change, message, tmp_path):
    p, data = layer_data(GEOMETRIES["linear-16x16-L4"], np.random.default_rng(1))
    with pytest.raises(ConfigError, match=message):
        simulate("syn_engine_streamed", {**p, **change}, np.zeros((1, 1, 1, 16), np.int8), tmp_path, data=data)
    with pytest.raises(ConfigError, match="WEIGHT_PORT=2 is not 0"):
        lint("syn_engine", {**p, "WEIGHT_PORT": 2})


def test_cycles_follow_the_spike_count_not_the_fan_in():
    """The model itself: a spike costs TAPS * OUT/LANES cycles, a silent input nothing."""
    p = {**GEOMETRIES["conv-3to8-4x5-L8"], "ACC_BITS": 16}
    x = np.zeros((1, 1, 20, 3), np.int8)
    empty = SYN_ENGINE.cycles(p, x)
    x[0, 0, 7, 1] = x[0, 0, 19, 2] = 1
    assert SYN_ENGINE.cycles(p, x) - empty == 2 * 9 * 1
    assert empty == 1 + 20 * 1 + 2


def test_a_wrong_shift_on_the_golden_side_is_caught(tmp_path, monkeypatch):
    """Positive control: the same RTL against a golden engine that shifts one bit further."""
    rng = np.random.default_rng(0)
    p, data = layer_data(GEOMETRIES["conv-4to4-3x3-L1"], rng)
    off = dataclasses.replace(SYN_ENGINE, golden=lambda q, x, d: SYN_ENGINE.golden({**q, "OUT_SHIFT": q["OUT_SHIFT"] + 1}, x, d))
    monkeypatch.setitem(blocks.BLOCKS, "syn_engine", off)
    res = simulate("syn_engine", p, spikes(p, rng), tmp_path, data=data)
    assert not res.bit_exact and res.mismatches and res.waves is not None


@pytest.mark.parametrize("change, message", [
    (lambda p, d: ({**p, "KERNEL": 2}, d), "KERNEL=2 is not 1"),
    (lambda p, d: ({**p, "OUT": 6}, d), "OUT=6 is not a multiple of LANES=4"),
    (lambda p, d: ({**p, "H": 2}, d), "H, W must be 1"),
    (lambda p, d: ({**p, "OUT_REG": 2}, d), "OUT_REG=2 is not 0"),
    (lambda p, d: ({**p, "ACC_BITS": p["ACC_BITS"] - 1}, d), r"output channel 1 can reach -2348, outside the 12-bit accumulator \(-2048..2047\)"),
    (lambda p, d: (p, {**d, "weight": d["weight"][:, :3]}), r"do not match \(16, 16\)"),
    (lambda p, d: (p, {**d, "weight": d["weight"] * 2}), "a weight of -256 does not fit 8 bits"),
])
def test_bad_engines_are_refused_before_any_tool(change, message, tmp_path):
    p, data = layer_data(GEOMETRIES["linear-16x16-L4"], np.random.default_rng(1))
    p, data = change(p, data)
    with pytest.raises(ConfigError, match=message):
        simulate("syn_engine", p, np.zeros((1, 1, 1, 16), np.int8), tmp_path, data=data)


def test_input_that_is_not_spikes_is_refused(tmp_path):
    p, data = layer_data(GEOMETRIES["linear-16x16-L4"], np.random.default_rng(1))
    with pytest.raises(ConfigError, match="must be spikes"):
        simulate("syn_engine", p, np.full((1, 1, 1, 16), 2), tmp_path, data=data)
    with pytest.raises(ConfigError, match=r"must be \(samples, T, tokens, IN=16\)"):
        simulate("syn_engine", p, np.zeros((1, 1, 15), np.int8), tmp_path, data=data)


@pytest.mark.parametrize("spec_name", ["static", "frames"])
def test_every_synaptic_layer_of_an_export(spec_name, tmp_path):
    """Each synaptic node of the graph of a crafted export, on the engine: its weights, shift and
    widths from the export, its input spikes from the golden traces (the first conv: the quantized
    input), expected values from GoldenModel.synapse (the golden model as the testbench reference)."""
    from tests.crafted import FRAMES, STATIC, crafted_export, crafted_inputs

    spec = {"static": STATIC, "frames": FRAMES}[spec_name]
    _, ex = crafted_export(spec, tmp_path / "export")
    _, x_int = crafted_inputs(spec, 2)
    golden = GoldenModel(ex)
    _, traces = golden.forward(x_int, trace=True)
    nodes = [n for n in ex.graph.of_op("synapse") if ex.graph[n.inputs[0]].format in ("spikes", "input")]
    assert {n.name for n in nodes} >= {"sps.convs.0", "sps.convs.1", "sps.rpe", "blocks.0.attn.q", "blocks.0.attn.proj",
                                       "blocks.0.mlp.fc2"}
    shifts, via_lif = set(), 0
    for node in nodes:
        p, data = engine_from_export(ex, node.name, lanes=math.gcd(8, ex.weight(node.layer).shape[0]))
        shifts.add(p["OUT_SHIFT"])
        first = "VALUE_BITS" in p  # the first conv, on the quantized input itself
        if first:
            frames = x_int if x_int.ndim == 5 else x_int[:, None]  # (B, T or 1, C, H, W)
            x = frames.reshape(*frames.shape[:3], -1).transpose(0, 1, 3, 2)
        else:
            x = spike_trace(ex.graph, traces, node.name)
        # the golden model's own synaptic function, on its own layout, reordered to the engine's
        samples, steps = x.shape[:2]
        if p["KERNEL"] == 3:
            maps = x.reshape(samples * steps, p["H"], p["W"], p["IN"]).transpose(0, 3, 1, 2)
            want = golden.synapse(node.layer, maps, spikes=not first)
            want = want.transpose(0, 2, 3, 1).reshape(samples, steps, -1, p["OUT"])
        else:
            want = golden.synapse(node.layer, x)
        assert np.array_equal(SYN_ENGINE.golden(p, x, data), want), node.name
        users = ex.graph.consumers()[node.name]
        if len(users) == 1 and ex.graph[users[0]].op == "lif":  # a LIF reads the layer: its traced drive is the same value
            lif_x = traces[f"{ex.graph[users[0]].neuron}.x"]
            lif_x = lif_x.reshape(*lif_x.shape[:3], -1).transpose(1, 0, 3, 2) if lif_x.ndim == 5 else lif_x.transpose(1, 0, 2, 3)
            assert np.array_equal(np.broadcast_to(want, lif_x.shape), lif_x), node.name  # a static image: one step
            via_lif += 1
        assert 0 < x.mean() < 1 or first, node.name
        build = tmp_path / "_".join(f"{k}{v}" for k, v in p.items())
        res = simulate("syn_engine", p, x, build, run=node.name, data=data)
        assert res.bit_exact and res.cycles_match, (node.name, res)
    assert via_lif >= 4
    assert len(shifts) >= 1 and (min(shifts) < 0 if spec_name == "static" else max(shifts) > 0), shifts
