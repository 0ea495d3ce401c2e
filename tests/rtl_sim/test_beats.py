"""Beat packing (saformer/rtl_sim/beats.py) against a bit-by-bit definition, at any lane count."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from saformer.rtl_sim.beats import pack, sasa_input_beat, unpack


@settings(max_examples=60, deadline=None)
@given(lanes=st.integers(1, 200), beats=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_pack_is_lsb_first_and_unpack_inverts_it(lanes, beats, seed):
    bits = np.random.default_rng(seed).integers(0, 2, (beats, lanes))
    bits[0, -1] = 1  # the top lane set: the case a fixed-width integer gets wrong
    words = pack(bits, lanes)
    assert words == [sum(int(b) << i for i, b in enumerate(row)) for row in bits]
    np.testing.assert_array_equal(unpack(words, lanes), bits)


def test_input_beat_puts_k_above_q():
    assert sasa_input_beat(q_beat=0b01, k_beat=0b10, lanes=2) == 0b1001
    assert sasa_input_beat(q_beat=1 << 63, k_beat=1, lanes=64) == (1 << 64) | (1 << 63)
