"""The fixed-point primitives of the integer contract, defined once (docs/integer_contract.md).

Each primitive exists twice, side by side, and the tests hold them to each other:

- on integers (numpy), used by the golden model: the definition the hardware matches;
- on floats holding the same values times 2^-frac (torch), used by the QAT model so that its eval
  mode computes exactly the integers (every value is a small integer times a power of two, so
  float arithmetic on it is exact), with straight-through gradients for training.

Rounding everywhere at run time is **floor** (an arithmetic right shift); saturation clips to the
signed range of the stated width.
"""

from __future__ import annotations

import math

import numpy as np
import torch


# ---- integers (golden model) ------------------------------------------------------------------
def int_range(bits: int) -> tuple[int, int]:
    """The signed range [-2^(bits-1), 2^(bits-1) - 1]."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def saturate(x: np.ndarray, bits: int) -> np.ndarray:
    lo, hi = int_range(bits)
    return np.clip(x, lo, hi)


def shift_floor(x: np.ndarray, k: int) -> np.ndarray:
    """x * 2^-k rounded down: arithmetic right shift by k (k >= 0) or exact left shift (k < 0)."""
    return x >> k if k >= 0 else x << -k


def shift_to_membrane(acc: np.ndarray, out_shift: int, mem_bits: int) -> np.ndarray:
    """Accumulator -> membrane by the export's ``out_shift`` (= acc_frac - mem_frac), floor, saturate."""
    return saturate(shift_floor(acc, out_shift), mem_bits)


def to_membrane(acc: np.ndarray, acc_frac: int, mem_frac: int, mem_bits: int) -> np.ndarray:
    """Accumulator (scale 2^-acc_frac) -> membrane format Q(mem_bits, mem_frac), floor, saturate."""
    return shift_to_membrane(acc, acc_frac - mem_frac, mem_bits)


def quantize_input(x: np.ndarray, bits: int, frac: int) -> np.ndarray:
    """A real-valued image -> signed ``bits`` integers at scale 2^-frac (floor, saturate).

    This runs once, before the integer forward pass (the data pipeline's job in hardware).
    """
    return saturate(np.floor(np.asarray(x, np.float64) * 2.0 ** frac).astype(np.int64), bits)


def threshold_units(v_threshold: float, frac: int) -> int:
    """A threshold in units of 2^-frac: the smallest integer H with H * 2^-frac >= V_th."""
    return math.ceil(v_threshold * 2 ** frac)


def lif_int(x_seq: np.ndarray, theta: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer LIF with tau = 2 over axis 0 (T): returns (spikes, H) with H before the reset.

        H = (V + X) >> 1;   S = H >= theta;   V = S ? 0 : H

    H stays inside the width of V and X (their sum has one bit more, the shift removes it), so
    no saturation is needed inside the neuron.
    """
    v = np.zeros(x_seq.shape[1:], np.int64)
    spikes = np.empty(x_seq.shape, np.int8)
    h_seq = np.empty(x_seq.shape, np.int64)
    for t in range(x_seq.shape[0]):
        h = (v + x_seq[t]) >> 1
        s = h >= theta
        v = np.where(s, 0, h)
        spikes[t], h_seq[t] = s, h
    return spikes, h_seq


# ---- integers on torch tensors (the golden model's torch backend, saformer.quant.golden_torch) ---
def saturate_torch(x: torch.Tensor, bits: int) -> torch.Tensor:
    """saturate() on an integer tensor."""
    lo, hi = int_range(bits)
    return x.clamp(lo, hi)


def shift_to_membrane_torch(acc: torch.Tensor, out_shift: int, mem_bits: int) -> torch.Tensor:
    """shift_to_membrane() on an int64 tensor (torch's >> on signed integers is arithmetic: floor)."""
    return saturate_torch(acc >> out_shift if out_shift >= 0 else acc << -out_shift, mem_bits)


def lif_int_torch(x_seq: torch.Tensor, theta: int) -> torch.Tensor:
    """lif_int()'s spikes (int8) from an int64 drive (T, ...)."""
    v = torch.zeros_like(x_seq[0])
    spikes = torch.empty(x_seq.shape, dtype=torch.int8, device=x_seq.device)
    for t in range(x_seq.shape[0]):
        h = (v + x_seq[t]) >> 1
        s = h >= theta
        v = torch.where(s, 0, h)
        spikes[t] = s
    return spikes


# ---- float emulation with straight-through gradients (QAT) ------------------------------------
class _StraightThrough(torch.autograd.Function):
    """Applies a rounding function forward; passes the gradient through unchanged."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, fn) -> torch.Tensor:
        return fn(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    return _StraightThrough.apply(x, torch.floor)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return _StraightThrough.apply(x, torch.round)


def emulate_saturate(x: torch.Tensor, bits: int, frac: int) -> torch.Tensor:
    """saturate() on values held as real numbers at scale 2^-frac."""
    lo, hi = int_range(bits)
    return torch.clamp(x, lo * 2.0 ** -frac, hi * 2.0 ** -frac)


def emulate_to_membrane(x: torch.Tensor, mem_frac: int, mem_bits: int) -> torch.Tensor:
    """to_membrane() on a real-valued accumulator: floor to the 2^-mem_frac grid, saturate.

    Equal to the integer version for any accumulator scale: when acc_frac <= mem_frac the
    accumulator is already on the grid and the floor is the identity (the exact left shift).
    """
    scale = 2.0 ** mem_frac
    return emulate_saturate(floor_ste(x * scale) / scale, mem_bits, mem_frac)


def emulate_quantize_input(x: torch.Tensor, bits: int, frac: int) -> torch.Tensor:
    """quantize_input() returning real values on the 2^-frac grid."""
    scale = 2.0 ** frac
    return emulate_saturate(floor_ste(x * scale) / scale, bits, frac)
