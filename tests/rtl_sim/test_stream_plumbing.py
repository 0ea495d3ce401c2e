"""The accelerator's stream plumbing: stream_fifo, stream_fork + stream_join (one-in, one-out through
the fork_join_check wrapper: fork, two FIFOs of unequal depth, join), and frame_repeat; every beat
compared, the exact cycle model stall-free, random idles and back-pressure, beats wider than 64 bits,
lint clean, and the refusals."""

import numpy as np
import pytest

from saformer.errors import ConfigError
from saformer.rtl_sim.blocks import BLOCKS, lint, simulate, simulate_bulk

CASES = [("stream_fifo", {"WIDTH": 20, "DEPTH": 5}), ("stream_fifo", {"WIDTH": 70, "DEPTH": 2}),
         ("fork_join", {"WIDTH": 12, "DEPTH": 3}), ("fork_join", {"WIDTH": 70, "DEPTH": 2}),
         ("frame_repeat", {"WIDTH": 9, "BEATS": 5, "TIMES": 3}), ("frame_repeat", {"WIDTH": 9, "BEATS": 1, "TIMES": 4}),
         ("frame_repeat", {"WIDTH": 70, "BEATS": 4, "TIMES": 1})]


def beats(p, n, rng):
    return [int.from_bytes(rng.bytes(9), "little") % (1 << p["WIDTH"]) for _ in range(n)] + [(1 << p["WIDTH"]) - 1, 0]


@pytest.mark.parametrize("name, p", CASES, ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}{x}" for k, x in v.items()))
def test_plumbing_passes_every_beat_with_its_cycle_model(name, p, tmp_path):
    assert lint(name, p) == ""
    rng = np.random.default_rng(p["WIDTH"])
    n = 10 * p.get("BEATS", 1) - 2 if name == "frame_repeat" else 60
    x = beats(p, n, rng)
    clean = simulate(name, p, x, tmp_path, run="stall_free")  # cocotb: a waveform on a mismatch
    assert clean.bit_exact and clean.cycles_match, clean
    stalled = simulate(name, p, x, tmp_path, p_idle=0.3, p_backpressure=0.5, seed=7, run="stalls")
    assert stalled.bit_exact and stalled.total > clean.total, stalled


def test_the_compiled_harness_agrees_on_fork_join_under_stalls(tmp_path):
    p = {"WIDTH": 16, "DEPTH": 3}
    x = beats(p, 40, np.random.default_rng(1))
    clean = simulate_bulk("fork_join", p, x, tmp_path)
    assert clean.bit_exact and clean.cycles_match
    assert simulate_bulk("fork_join", p, x, tmp_path, p_idle=0.4, p_backpressure=0.4, seed=2).bit_exact


@pytest.mark.parametrize("name, p, message", [
    ("stream_fifo", {"WIDTH": 8, "DEPTH": 1}, "DEPTH=1; at least 2"),
    ("frame_repeat", {"WIDTH": 8, "BEATS": 0, "TIMES": 2}, "BEATS must be a positive integer"),
])
def test_bad_plumbing_is_refused(name, p, message):
    with pytest.raises(ConfigError, match=message):
        BLOCKS[name].check(p)


def test_a_partial_frame_is_refused():
    with pytest.raises(ConfigError, match="7 beats are not whole frames of BEATS=3"):
        BLOCKS["frame_repeat"].golden({"WIDTH": 8, "BEATS": 3, "TIMES": 2}, list(range(7)))
