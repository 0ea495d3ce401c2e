"""The compiled Verilator harness (saformer.rtl_sim.harness): the same blocks, the same golden
functions and the same cycle models as the cocotb benches, with no Python in the cycle loop. Each
case runs stall-free (exact cycle model) and with seeded idles and back-pressure; a flipped weight
bit in the memory the RTL reads is caught; and a seed repeats its stall pattern exactly."""

import numpy as np
import pytest

from saformer.rtl_sim import blocks
from saformer.rtl_sim.blocks import BLOCKS, simulate_bulk
from saformer.rtl_sim.harness import StreamHarness
from saformer.rtl_sim.sim import SimulationError
from tests.rtl_sim.test_blocks import LIF_GEOMETRIES, lif_stimulus
from tests.rtl_sim.test_syn_engine import FIRST_CONV, GEOMETRIES, layer_data, spikes


def sasa_case(rng):
    p = BLOCKS["sasa_core"].examples[0]
    qk = (rng.random((2, 2 * p["T"], p["N"], p["D"])) < 0.3).astype(np.int8)
    return p, qk, (rng.integers(-128, 128, (p["D"], 1, 3, 3)), rng.integers(-1000, 1001, p["D"]))


def cases():
    rng = np.random.default_rng(11)
    out = []
    for name in ("conv-3to8-4x5-L8", "linear-12x6-L6"):
        p, data = layer_data(GEOMETRIES[name], rng)
        out.append(pytest.param("syn_engine", p, spikes(p, rng), data, id=f"engine-{name}"))
    p, data = layer_data(FIRST_CONV, rng)
    lo, hi = 1 - 2 ** (p["VALUE_BITS"] - 1), 2 ** (p["VALUE_BITS"] - 1) - 1
    x = rng.integers(lo - 1, hi + 1, (3, 1, p["H"] * p["W"], p["IN"])) * (rng.random((3, 1, p["H"] * p["W"], p["IN"])) < 0.5)
    out.append(pytest.param("syn_engine", p, x, data, id="first-conv"))
    p = LIF_GEOMETRIES[1]
    out.append(pytest.param("lif_unit", p, lif_stimulus(p, rng), None, id="lif_unit"))
    out.append(pytest.param("sasa_core", *sasa_case(rng), id="sasa_core"))
    return out


@pytest.mark.parametrize("name, params, inputs, data", cases())
def test_the_harness_equals_the_contract_and_the_cycle_model(name, params, inputs, data, tmp_path):
    clean = simulate_bulk(name, params, inputs, tmp_path, data)
    assert clean.bit_exact and clean.cycles_match, clean
    stalled = simulate_bulk(name, params, inputs, tmp_path, data, p_idle=0.3, p_backpressure=0.4, seed=5)
    assert stalled.bit_exact and stalled.total > clean.total, stalled


def test_a_flipped_weight_bit_is_caught(tmp_path, monkeypatch):
    """The RTL reads a weight memory with one bit flipped; the expected values use the true weights."""
    rng = np.random.default_rng(3)
    p, data = layer_data(GEOMETRIES["linear-16x16-L4"], rng)
    x = spikes(p, rng)
    write = BLOCKS["syn_engine"].write_memories

    def write_flipped(params, d, directory):
        w = d["weight"].copy()
        w[5, 7] ^= 1 << 6  # 64: still 4 after the layer's shift by 4
        write(params, {**d, "weight": w}, directory)
    monkeypatch.setitem(blocks.BLOCKS, "syn_engine", blocks.dataclasses.replace(BLOCKS["syn_engine"],
                                                                              write_memories=write_flipped))
    r = simulate_bulk("syn_engine", p, x, tmp_path, data)
    assert not r.bit_exact and r.mismatching_beats >= 1 and "got" in r.mismatches[0]


def test_a_seed_repeats_its_stalls_and_the_beats_round_trip(tmp_path):
    """Beats wider than 64 bits go through the file format and back unchanged (a skid buffer of 100
    bits), and the same seed gives the same cycles."""
    p = {"WIDTH": 100}
    h = StreamHarness(BLOCKS["skid_buffer"].sources, "skid_buffer", p, tmp_path)
    assert (h.in_words, h.out_words) == (4, 4)
    rng = np.random.default_rng(0)
    beats = [int.from_bytes(rng.bytes(13), "little") >> 4 for _ in range(200)] + [(1 << 100) - 1, 0]
    a = h.run(beats, len(beats), p_idle=0.4, p_backpressure=0.4, seed=9)
    b = h.run(beats, len(beats), p_idle=0.4, p_backpressure=0.4, seed=9)
    assert a.beats == beats and (a.cycles == b.cycles).all() and a.total == b.total > len(beats) + 1


def test_a_run_that_cannot_finish_times_out_with_a_message(tmp_path):
    h = StreamHarness(BLOCKS["skid_buffer"].sources, "skid_buffer", {"WIDTH": 8}, tmp_path)
    with pytest.raises(SimulationError, match="timeout after .* cycles: 3 of 3 input beats in, 3 of 5 out"):
        h.run([1, 2, 3], 5, timeout=50)
