"""The event encoder (hdl/event_encoder.sv): a lif_unit's spike beats (or the image's values) in,
syn_engine's events out, beat for beat as the engine's own packing writes them: linear groups of one
token and of a whole sample (the head), 3x3 frames, the image's signed values; rates from none to
all, empty groups, a lone event at a group's end; stall-free with the exact cycle model and with
random idles and back-pressure; lint clean; and chained into the engine, the layer's membranes."""

import numpy as np
import pytest

from saformer.errors import ConfigError
from saformer.rtl_sim.blocks import BLOCKS, SYN_ENGINE, lint, simulate, simulate_bulk
from tests.rtl_sim.test_syn_engine import layer_data

GEOMETRIES = {
    "linear-16-L4": dict(IN=16, LANES=4, KERNEL=1),
    "head-12-L3-group6": dict(IN=12, LANES=3, KERNEL=1, GROUP=6),
    "conv-8-4x5-L8": dict(IN=8, LANES=8, KERNEL=3, H=4, W=5),
    "conv-3-3x3-L1": dict(IN=3, LANES=1, KERNEL=3, H=3, W=3),
    "image-2-4x4-L2-v5": dict(IN=2, LANES=2, KERNEL=3, H=4, W=4, VALUE_BITS=5),
}


def positions(p):
    return p["H"] * p["W"] if p["KERNEL"] == 3 else p.get("GROUP", 1) * 4


def stimulus(p, rng):
    """(groups..., positions, IN): random at three rates, none, all, and one element at the very end."""
    shape = (2, positions(p), p["IN"])
    vb = p.get("VALUE_BITS", 0)
    draw = (lambda r: rng.integers(-(2 ** (vb - 1)), 2 ** (vb - 1), shape) * (rng.random(shape) < r)) if vb \
        else (lambda r: (rng.random(shape) < r).astype(np.int8))
    last = np.zeros(shape, np.int64)
    last[:, -1, -1] = 1
    return np.concatenate([draw(0.05), draw(0.3), draw(0.8), np.zeros(shape, np.int64),
                           np.ones(shape, np.int64) * (-1 if vb else 1), last])


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_event_encoder_writes_the_engines_events(name, tmp_path):
    p = GEOMETRIES[name]
    assert lint("event_encoder", p) == ""
    x = stimulus(p, np.random.default_rng(len(name)))
    clean = simulate("event_encoder", p, x, tmp_path, run="stall_free")
    assert clean.bit_exact and clean.cycles_match, clean
    stalled = simulate("event_encoder", p, x, tmp_path, p_idle=0.3, p_backpressure=0.5, seed=4, run="stalls")
    assert stalled.bit_exact and stalled.total > clean.total, stalled


def test_events_of_the_encoder_drive_the_engine_to_the_layers_membranes(tmp_path):
    """The chain lif spikes -> encoder -> engine: the encoder's output beats, fed to the engine, give the
    contract's layer output (the encoder's expected beats are the engine's own input packing)."""
    rng = np.random.default_rng(2)
    p, data = layer_data(dict(IN=8, OUT=8, LANES=4, KERNEL=3, H=3, W=4, W_BITS=6, MEM_BITS=8, OUT_SHIFT=1), rng)
    enc = dict(IN=8, LANES=4, KERNEL=3, H=3, W=4)
    x = (rng.random((2, 2, 12, 8)) < 0.3).astype(np.int8)  # (samples, T, positions, IN)
    assert BLOCKS["event_encoder"].pack_out(enc, BLOCKS["event_encoder"].golden(enc, x)) == SYN_ENGINE.pack_in(p, x)
    events = simulate_bulk("event_encoder", enc, x, tmp_path / "enc")
    assert events.bit_exact and events.cycles_match
    layer = simulate_bulk("syn_engine", p, x, tmp_path / "eng", data)
    assert layer.bit_exact


@pytest.mark.parametrize("change, message", [
    (dict(IN=10, LANES=4), "IN=10 is not a multiple of LANES=4"),
    (dict(KERNEL=2), "KERNEL=2 \\(1 or 3\\)"),
    (dict(VALUE_BITS=20), "VALUE_BITS=20 is outside 0..16"),
])
def test_bad_encoders_are_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        BLOCKS["event_encoder"].check({**GEOMETRIES["linear-16-L4"], **change})


def test_input_that_does_not_fit_is_refused():
    with pytest.raises(ConfigError, match="an element of 2 does not fit a spike"):
        BLOCKS["event_encoder"].pack_in(GEOMETRIES["linear-16-L4"], np.full((1, 16), 2))
    with pytest.raises(ConfigError, match="whole groups of 6 positions"):
        BLOCKS["event_encoder"].pack_in(GEOMETRIES["head-12-L3-group6"], np.zeros((4, 12), np.int8))
