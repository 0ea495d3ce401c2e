"""The block library (saformer.rtl_sim.blocks): every block against its golden function, value for
value, at several geometries, over a range of spike rates and at the corners (no spikes, all
spikes, ties at theta, floors of negative sums, saturation at both ends), stall-free with the exact
cycle model and with random idles and back-pressure; lint clean at every parameter set; and a
positive control showing the comparison fails when the golden side is off."""

import dataclasses

import numpy as np
import pytest

from saformer.quant.fixed_point import int_range
from saformer.rtl_sim import blocks
from saformer.rtl_sim.blocks import BLOCKS, LIF_UNIT, MAXPOOL, lint, simulate

LIF_GEOMETRIES = [
    {"WIDTH": 16, "LANES": 4, "NEURONS": 16, "T": 4, "THETA": 256},
    {"WIDTH": 12, "LANES": 8, "NEURONS": 64, "T": 3, "THETA": 40},
    {"WIDTH": 8, "LANES": 1, "NEURONS": 3, "T": 2, "THETA": 1},
    # the membrane read-ahead's edges: one sample step (every beat starts a sample), and the two
    # memories too shallow to read ahead (2 words, 1 word: read in the cycle of use)
    {"WIDTH": 8, "LANES": 2, "NEURONS": 10, "T": 1, "THETA": 3},
    {"WIDTH": 8, "LANES": 4, "NEURONS": 8, "T": 3, "THETA": 5},
    {"WIDTH": 10, "LANES": 4, "NEURONS": 4, "T": 4, "THETA": 7},
]
ADD_GEOMETRIES = [{"WIDTH": 16, "LANES": 4}, {"WIDTH": 8, "LANES": 3}]
# the last two have one chunk a position (the read-ahead forwards the column word), the last one also
# one row word (it forwards the row word)
POOL_GEOMETRIES = [{"WIDTH": 16, "LANES": 4, "C": 8, "H": 4, "W": 6}, {"WIDTH": 8, "LANES": 1, "C": 3, "H": 2, "W": 2},
                   {"WIDTH": 12, "LANES": 8, "C": 16, "H": 8, "W": 8}, {"WIDTH": 10, "LANES": 4, "C": 4, "H": 4, "W": 6},
                   {"WIDTH": 8, "LANES": 2, "C": 2, "H": 4, "W": 2}]


def lif_stimulus(p, rng):
    """(samples, T, NEURONS) drives: random at several rates, then the corners."""
    lo, hi = int_range(p["WIDTH"])
    theta, shape = p["THETA"], (p["T"], p["NEURONS"])
    samples = [rng.integers(-2 * theta - 3, scale * theta + 1, shape).clip(lo, hi) for scale in (1, 2, 4, 8)]
    samples += [np.full(shape, lo), np.full(shape, hi),  # no spikes; every step fires
                np.full(shape, min(2 * theta, hi)), np.full(shape, min(2 * theta - 1, hi)),  # tie at theta; one below
                rng.choice([-3, -1, 1, 3], shape)]  # floors of odd (negative) sums
    return np.stack(samples)


@pytest.mark.parametrize("p", LIF_GEOMETRIES, ids=lambda p: f"W{p['WIDTH']}-L{p['LANES']}-N{p['NEURONS']}-T{p['T']}")
def test_lif_unit_equals_the_contract(p, tmp_path):
    assert lint("lif_unit", p) == ""
    x = lif_stimulus(p, np.random.default_rng(p["NEURONS"]))
    spikes = LIF_UNIT.golden(p, x)
    assert 0 < spikes.mean() < 1 and spikes[4].sum() == 0 and spikes[5].all()  # the corners are what they say
    clean = simulate("lif_unit", p, x, tmp_path, run="stall_free")
    assert clean.bit_exact and clean.cycles_match, clean
    stalled = simulate("lif_unit", p, x, tmp_path, p_idle=0.3, p_backpressure=0.3, seed=2, run="stalls")
    assert stalled.bit_exact and stalled.total > clean.total, stalled


@pytest.mark.parametrize("p", ADD_GEOMETRIES, ids=lambda p: f"W{p['WIDTH']}-L{p['LANES']}")
def test_sat_add_equals_the_contract(p, tmp_path):
    assert lint("sat_add", p) == ""
    lo, hi = int_range(p["WIDTH"])
    rng = np.random.default_rng(p["WIDTH"])
    a, b = rng.integers(lo, hi + 1, (2, 40, p["LANES"]))
    corners = np.array([[hi, hi], [lo, lo], [hi, lo], [hi, 1], [lo, -1], [hi, 0], [-1, 1], [lo, hi]])
    a = np.concatenate([a, np.repeat(corners[:, :1], p["LANES"], 1)])
    b = np.concatenate([b, np.repeat(corners[:, 1:], p["LANES"], 1)])
    y = BLOCKS["sat_add"].golden(p, np.stack([a, b]))
    assert (y == hi).any() and (y == lo).any() and ((y > lo) & (y < hi)).any()
    clean = simulate("sat_add", p, np.stack([a, b]), tmp_path, run="stall_free")
    assert clean.bit_exact and clean.cycles_match, clean
    stalled = simulate("sat_add", p, np.stack([a, b]), tmp_path, p_idle=0.4, p_backpressure=0.4, seed=1, run="stalls")
    assert stalled.bit_exact and stalled.total > clean.total


@pytest.mark.parametrize("p", POOL_GEOMETRIES, ids=lambda p: f"W{p['WIDTH']}-L{p['LANES']}-C{p['C']}-{p['H']}x{p['W']}")
def test_maxpool_equals_the_contract(p, tmp_path):
    """Random membranes over the whole range, then frames that catch a wrong padding (all at the
    bottom: a zero pad would win), all at the top, and ties."""
    assert lint("maxpool", p) == ""
    lo, hi = int_range(p["WIDTH"])
    rng = np.random.default_rng(p["C"])
    shape = (p["H"] * p["W"], p["C"])
    x = np.stack([rng.integers(lo, hi + 1, shape), rng.integers(lo, 0, shape), np.full(shape, lo), np.full(shape, hi),
                  rng.choice([lo, -1, 0, hi], shape)])
    y = MAXPOOL.golden(p, x)
    assert (y[2] == lo).all() and (y[1] < 0).all()  # the pad is never a value
    clean = simulate("maxpool", p, x, tmp_path, run="stall_free")
    assert clean.bit_exact and clean.cycles_match, clean
    stalled = simulate("maxpool", p, x, tmp_path, p_idle=0.3, p_backpressure=0.4, seed=5, run="stalls")
    assert stalled.bit_exact and stalled.total > clean.total


def test_maxpool_of_an_export_reproduces_the_golden_trace(tmp_path):
    """The SPS pool of a crafted export (membranes saturating both ways): its input from
    GoldenModel.synapse on the traced spikes, the pooled output checked against the LIF drive the
    golden model traced."""
    from saformer.quant.golden import GoldenModel
    from tests.crafted import STATIC, crafted_export, crafted_inputs

    _, ex = crafted_export(STATIC, tmp_path / "export")
    golden = GoldenModel(ex)
    _, traces = golden.forward(crafted_inputs(STATIC, 2)[1], trace=True)
    pool = ex.graph.of_op("maxpool")[-1]
    conv = ex.graph[pool.inputs[0]]
    lif_in = ex.graph[conv.inputs[0]].neuron
    s = traces[f"{lif_in}.s"]
    acc = golden.synapse(conv.layer, s.reshape(-1, *s.shape[2:]))  # (T*B, C, H, W) membranes
    c, h, w = acc.shape[1:]
    x = acc.transpose(0, 2, 3, 1).reshape(-1, h * w, c)
    want = traces[f"{ex.graph.consumers()[pool.name][0]}.x"]  # the LIF that reads the pool
    p = {"WIDTH": ex.qcfg.membrane_bits, "LANES": 8, "C": c, "H": h, "W": w}
    assert np.array_equal(MAXPOOL.golden(p, x), want.reshape(-1, c, h * w // 4).transpose(0, 2, 1))
    lo, hi = int_range(p["WIDTH"])
    assert (x == lo).any() and (x == hi).any()
    res = simulate("maxpool", p, x, tmp_path / "sim")
    assert res.bit_exact and res.cycles_match, res


@pytest.mark.parametrize("p_idle, p_backpressure", [(0.0, 0.0), (0.3, 0.5), (0.0, 0.8), (0.8, 0.0)])
def test_skid_buffer_passes_every_beat_in_order(p_idle, p_backpressure, tmp_path):
    p = {"WIDTH": 20}
    assert lint("skid_buffer", p) == ""
    x = np.random.default_rng(1).integers(0, 2 ** 20, 300)
    res = simulate("skid_buffer", p, x, tmp_path / "skid", run=f"r{p_idle}-{p_backpressure}", p_idle=p_idle,
                   p_backpressure=p_backpressure)
    assert res.bit_exact and (res.cycles_match or p_idle or p_backpressure), res


def test_sasa_core_through_the_block_runner(tmp_path):
    """The SASA core as a registered block: lint, the generic bench, its cycle model, its DWC memories."""
    p = BLOCKS["sasa_core"].examples[0]
    assert lint("sasa_core", p) == ""
    rng = np.random.default_rng(5)
    qk = (rng.random((2, 2 * p["T"], p["N"], p["D"])) < 0.3).astype(np.int8)
    dwc = (rng.integers(-128, 128, (p["D"], 1, 3, 3)), rng.integers(-1000, 1001, p["D"]))
    assert BLOCKS["sasa_core"].golden(p, qk, dwc).any()
    clean = simulate("sasa_core", p, qk, tmp_path, run="stall_free", data=dwc)
    assert clean.bit_exact and clean.cycles_match, clean
    stalled = simulate("sasa_core", p, qk, tmp_path, p_idle=0.3, p_backpressure=0.4, seed=6, run="stalls", data=dwc)
    assert stalled.bit_exact and stalled.total > clean.total


def test_a_wrong_golden_side_is_caught_with_a_waveform(tmp_path, monkeypatch):
    """Positive control: the same RTL against a golden LIF that fires at H > theta instead of >=."""
    p = LIF_GEOMETRIES[0]
    off = dataclasses.replace(LIF_UNIT, golden=lambda q, x, d: LIF_UNIT.golden({**q, "THETA": q["THETA"] + 1}, x, d))
    monkeypatch.setitem(blocks.BLOCKS, "lif_unit", off)
    x = lif_stimulus(p, np.random.default_rng(0))
    res = simulate("lif_unit", p, x, tmp_path)
    assert not res.bit_exact and res.mismatching_beats > 0 and res.mismatches
    assert res.waves is not None and res.waves.stat().st_size > 0


@pytest.mark.parametrize("name, params, message", [
    ("lif_unit", {"WIDTH": 16, "LANES": 3, "NEURONS": 16, "T": 4, "THETA": 1}, "NEURONS=16 is not a multiple of LANES=3"),
    ("lif_unit", {"WIDTH": 8, "LANES": 1, "NEURONS": 1, "T": 1, "THETA": 200}, "THETA=200 does not fit the 8-bit membrane"),
    ("sat_add", {"WIDTH": 1, "LANES": 1}, "WIDTH=1 is outside 2..48"),
    ("maxpool", {"WIDTH": 8, "LANES": 2, "C": 4, "H": 4, "W": 5}, "frame 4x5 must have an even height and width"),
    ("maxpool", {"WIDTH": 8, "LANES": 3, "C": 4, "H": 4, "W": 4}, "C=4 is not a multiple of LANES=3"),
    ("fifo", {}, "unknown RTL block 'fifo'"),
])
def test_bad_parameters_are_refused_before_any_tool(name, params, message, tmp_path):
    from saformer.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        simulate(name, params, np.zeros((1, 1, 1), np.int64), tmp_path)
