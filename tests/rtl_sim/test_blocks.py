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
from saformer.rtl_sim.blocks import BLOCKS, LIF_UNIT, lint, simulate

LIF_GEOMETRIES = [
    {"WIDTH": 16, "LANES": 4, "NEURONS": 16, "T": 4, "THETA": 256},
    {"WIDTH": 12, "LANES": 8, "NEURONS": 64, "T": 3, "THETA": 40},
    {"WIDTH": 8, "LANES": 1, "NEURONS": 3, "T": 2, "THETA": 1},
]
ADD_GEOMETRIES = [{"WIDTH": 16, "LANES": 4}, {"WIDTH": 8, "LANES": 3}]


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


def test_a_wrong_golden_side_is_caught_with_a_waveform(tmp_path, monkeypatch):
    """Positive control: the same RTL against a golden LIF that fires at H > theta instead of >=."""
    p = LIF_GEOMETRIES[0]
    off = dataclasses.replace(LIF_UNIT, golden=lambda q, x: LIF_UNIT.golden({**q, "THETA": q["THETA"] + 1}, x))
    monkeypatch.setitem(blocks.BLOCKS, "lif_unit", off)
    x = lif_stimulus(p, np.random.default_rng(0))
    res = simulate("lif_unit", p, x, tmp_path)
    assert not res.bit_exact and res.mismatching_beats > 0 and res.mismatches
    assert res.waves is not None and res.waves.stat().st_size > 0


@pytest.mark.parametrize("name, params, message", [
    ("lif_unit", {"WIDTH": 16, "LANES": 3, "NEURONS": 16, "T": 4, "THETA": 1}, "NEURONS=16 is not a multiple of LANES=3"),
    ("lif_unit", {"WIDTH": 8, "LANES": 1, "NEURONS": 1, "T": 1, "THETA": 200}, "THETA=200 does not fit the 8-bit membrane"),
    ("sat_add", {"WIDTH": 1, "LANES": 1}, "WIDTH=1 is outside 2..48"),
    ("fifo", {}, "unknown RTL block 'fifo'"),
])
def test_bad_parameters_are_refused_before_any_tool(name, params, message, tmp_path):
    from saformer.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        simulate(name, params, np.zeros((1, 1, 1), np.int64), tmp_path)
