"""lane_gearbox: a dense stream re-beaten between lane counts. Every value compared in order (signed,
full-range), the exact stall-free cycle model whether the input side or the output side is the slow
one, random idles and back-pressure, lint clean, and the refusals."""

import dataclasses

import numpy as np
import pytest

from saformer.errors import ConfigError
from saformer.rtl_sim.blocks import BLOCKS, gearbox_cycles, gearbox_group, lint, simulate, simulate_bulk

# narrowing (12 -> 4), widening (2 -> 6), neither divides the other (4 -> 6, lcm 12), equal (a
# 2-entry register slice), one value a beat each way, and wide beats
CASES = [{"WIDTH": 16, "IN_LANES": 12, "OUT_LANES": 4}, {"WIDTH": 5, "IN_LANES": 2, "OUT_LANES": 6},
         {"WIDTH": 9, "IN_LANES": 4, "OUT_LANES": 6}, {"WIDTH": 7, "IN_LANES": 6, "OUT_LANES": 4},
         {"WIDTH": 8, "IN_LANES": 3, "OUT_LANES": 3}, {"WIDTH": 16, "IN_LANES": 1, "OUT_LANES": 8},
         {"WIDTH": 16, "IN_LANES": 8, "OUT_LANES": 1}]


def values(p, groups, rng):
    lo, hi = -(1 << (p["WIDTH"] - 1)), (1 << (p["WIDTH"] - 1)) - 1
    v = rng.integers(lo, hi + 1, groups * gearbox_group(p)[0])
    v[:2] = lo, hi  # the extremes go through unchanged
    return v


@pytest.mark.parametrize("p", CASES, ids=lambda p: f"w{p['WIDTH']}-{p['IN_LANES']}to{p['OUT_LANES']}")
def test_the_gearbox_keeps_every_value_in_order_with_its_cycle_model(p, tmp_path):
    assert lint("lane_gearbox", p) == ""
    x = values(p, 9, np.random.default_rng(p["WIDTH"] + p["IN_LANES"]))
    clean = simulate("lane_gearbox", p, x, tmp_path, run="stall_free")
    assert clean.bit_exact and clean.cycles_match, clean
    stalled = simulate("lane_gearbox", p, x, tmp_path, p_idle=0.3, p_backpressure=0.5, seed=3, run="stalls")
    assert stalled.bit_exact and stalled.total > clean.total, stalled


def test_the_cycle_model_follows_the_slower_side():
    # 12 -> 4: 1 beat in, 3 out per group: output-bound; 2 -> 6: 3 in, 1 out: input-bound
    assert gearbox_cycles({"WIDTH": 8, "IN_LANES": 12, "OUT_LANES": 4}, 12 * 10) == 1 + 3 + 9 * 3
    assert gearbox_cycles({"WIDTH": 8, "IN_LANES": 2, "OUT_LANES": 6}, 6 * 10) == 3 + 1 + 9 * 3


def test_the_compiled_harness_agrees_under_stalls(tmp_path):
    p = {"WIDTH": 12, "IN_LANES": 4, "OUT_LANES": 6}
    x = values(p, 30, np.random.default_rng(5))
    clean = simulate_bulk("lane_gearbox", p, x, tmp_path)
    assert clean.bit_exact and clean.cycles_match
    assert simulate_bulk("lane_gearbox", p, x, tmp_path, p_idle=0.4, p_backpressure=0.4, seed=2).bit_exact


def test_a_swapped_value_is_caught(tmp_path, monkeypatch):
    """The comparison can fail: against a reference that swaps two values of one output beat's
    neighbours, the same RTL run reports the beats that differ."""
    p = {"WIDTH": 8, "IN_LANES": 4, "OUT_LANES": 2}
    x = values(p, 4, np.random.default_rng(0))
    x[[3, 4]] = 5, -5  # values 3 and 4 straddle output beats 1 and 2

    def swapped(p, x, data=None):
        y = np.asarray(x).copy()
        y[[3, 4]] = y[[4, 3]]
        return y

    assert simulate_bulk("lane_gearbox", p, x, tmp_path / "right").bit_exact
    monkeypatch.setitem(BLOCKS, "lane_gearbox", dataclasses.replace(BLOCKS["lane_gearbox"], golden=swapped))
    wrong = simulate_bulk("lane_gearbox", p, x, tmp_path / "wrong")
    assert not wrong.bit_exact and wrong.mismatching_beats == 2, wrong


@pytest.mark.parametrize("p, x, message", [
    ({"WIDTH": 8, "IN_LANES": 0, "OUT_LANES": 2}, [0, 0], "IN_LANES must be a positive integer"),
    ({"WIDTH": 8, "IN_LANES": 4, "OUT_LANES": 6}, list(range(18)), r"18 values are not whole groups of lcm.* = 12"),
    ({"WIDTH": 4, "IN_LANES": 2, "OUT_LANES": 1}, [8, 0], "a value of 8 does not fit WIDTH=4"),
])
def test_bad_gearbox_input_is_refused(p, x, message):
    with pytest.raises(ConfigError, match=message):
        BLOCKS["lane_gearbox"].check(p)
        BLOCKS["lane_gearbox"].golden(p, np.array(x))
