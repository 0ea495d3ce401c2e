"""The fixed-point primitives against their written definitions, on integers and in float emulation."""

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from saformer.quant.fixed_point import (emulate_quantize_input, emulate_to_membrane, int_range, lif_int,
                                        quantize_input, saturate, shift_floor, threshold_units, to_membrane)
from saformer.model.neuron import lif_multistep

ints = st.integers(min_value=-(2 ** 40), max_value=2 ** 40)


@given(x=ints, k=st.integers(min_value=-8, max_value=30))
def test_shift_is_floor_of_the_exact_quotient(x, k):
    got = int(shift_floor(np.int64(x), k))
    assert got == math.floor(x * 2.0 ** -k)  # exact: |x| < 2^53
    assert got == (x // (1 << k) if k >= 0 else x * (1 << -k))  # Python's // is floor division


@given(x=ints, bits=st.integers(min_value=2, max_value=32))
def test_saturation_clips_at_both_ends(x, bits):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    got = int(saturate(np.int64(x), bits))
    assert got == min(max(x, lo), hi)
    assert int_range(bits) == (lo, hi)


def test_saturation_edges_exactly():
    x = np.array([-32769, -32768, -32767, 32766, 32767, 32768])
    np.testing.assert_array_equal(saturate(x, 16), [-32768, -32768, -32767, 32766, 32767, 32767])


@settings(max_examples=300)
@given(acc=st.integers(min_value=-(2 ** 30), max_value=2 ** 30), acc_frac=st.integers(min_value=0, max_value=16))
def test_membrane_conversion_integer_equals_float_emulation(acc, acc_frac):
    """to_membrane on integers == the QAT model's float emulation on the same value, saturation included."""
    want = to_membrane(np.int64(acc), acc_frac, 8, 16)
    x = torch.tensor([acc * 2.0 ** -acc_frac], dtype=torch.float64)
    got = emulate_to_membrane(x, 8, 16) * 256
    assert float(got) == float(want)
    assert want == max(-32768, min(32767, math.floor(acc * 2.0 ** (8 - acc_frac))))


@given(v=st.floats(min_value=-300, max_value=300, allow_nan=False), frac=st.integers(min_value=0, max_value=8))
def test_input_quantizer_floors_and_saturates(v, frac):
    got = int(quantize_input(np.array([v]), 8, frac)[0])
    assert got == max(-128, min(127, math.floor(v * 2 ** frac)))
    emu = emulate_quantize_input(torch.tensor([v], dtype=torch.float64), 8, frac)
    assert float(emu[0]) * 2 ** frac == got


@given(v=st.floats(min_value=0.01, max_value=4.0), frac=st.integers(min_value=0, max_value=10))
def test_threshold_is_the_smallest_integer_at_or_above(v, frac):
    theta = threshold_units(v, frac)
    assert theta * 2.0 ** -frac >= v and (theta - 1) * 2.0 ** -frac < v


def test_lif_threshold_ties_fire_and_reset():
    # theta = 256 (1.0 in Q8). X = 512: H = (0 + 512) >> 1 = 256 -> tie fires, V = 0.
    # X = 511: H = 255, no spike; next step H = (255 + 511) >> 1 = 383 fires.
    s, h = lif_int(np.array([[512], [0], [511], [511], [-1], [-1]]), 256)
    np.testing.assert_array_equal(s[:, 0], [1, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(h[:, 0], [256, 0, 255, 383, -1, -1])  # floor(-1/2) = -1: floor, not truncation


@settings(max_examples=100, deadline=None)
@given(seq=st.lists(st.integers(min_value=-32768, max_value=32767), min_size=1, max_size=12),
       theta=st.integers(min_value=1, max_value=1024))
def test_integer_lif_equals_qat_lif_and_its_definition(seq, theta):
    x = np.array(seq, np.int64)[:, None]
    s, _ = lif_int(x, theta)
    # the definition, with Python integers
    v, want = 0, []
    for xt in seq:
        h = (v + xt) // 2
        want.append(int(h >= theta))
        v = 0 if h >= theta else h
    assert s[:, 0].tolist() == want
    # the QAT model's neuron on the same values at scale 2^-8
    emu = lif_multistep(torch.tensor(seq, dtype=torch.float64)[:, None] / 256, 2.0, theta / 256, frac=8)
    assert emu[:, 0].tolist() == want
