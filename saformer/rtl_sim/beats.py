"""Beat packing of the cores' valid/ready streams, defined once for every bench and harness.

A beat carries P channels of one token, LSB = lowest channel; the input beat of the SASA core is
{K beat, Q beat}. Beats are Python integers (any width): packing through numpy int64 overflowed at
64 lanes and more, which is why the co-simulation failed for P >= 64 while the RTL was right.
"""

from __future__ import annotations

import numpy as np


def pack(bits: np.ndarray, lanes: int) -> list[int]:
    """(..., lanes-multiple) 0/1 values -> one integer per beat of ``lanes`` channels, in order."""
    rows = np.asarray(bits).reshape(-1, lanes).astype(np.uint8)
    return [int.from_bytes(row.tobytes(), "little") for row in np.packbits(rows, axis=1, bitorder="little")]


def unpack(beats: list[int], lanes: int) -> np.ndarray:
    """The inverse of :func:`pack`: integers -> (beats, lanes) int8 bits."""
    width = (lanes + 7) // 8
    raw = np.frombuffer(b"".join(int(b).to_bytes(width, "little") for b in beats), np.uint8).reshape(-1, width)
    return np.unpackbits(raw, axis=1, bitorder="little")[:, :lanes].astype(np.int8)


def sasa_input_beat(q_beat: int, k_beat: int, lanes: int) -> int:
    """The SASA core's s_data word: K in the upper P bits, Q in the lower."""
    return (k_beat << lanes) | q_beat


def pack_words(values: np.ndarray, width: int, lanes: int) -> list[int]:
    """(..., lanes-multiple) signed integers -> one integer per beat of ``lanes`` two's-complement
    ``width``-bit fields, lane 0 in the low bits."""
    rows = np.asarray(values, dtype=object).reshape(-1, lanes)
    mask = (1 << width) - 1
    return [sum((int(v) & mask) << (width * i) for i, v in enumerate(row)) for row in rows]


def unpack_words(beats: list[int], width: int, lanes: int) -> np.ndarray:
    """The inverse of :func:`pack_words`: integers -> (beats, lanes) signed int64."""
    mask, top = (1 << width) - 1, 1 << (width - 1)
    out = [[((b >> (width * i)) & mask) - (((b >> (width * i)) & top) << 1) for i in range(lanes)] for b in beats]
    return np.array(out, dtype=np.int64).reshape(len(beats), lanes)


def concat_beats(low: list[int], high: list[int], low_bits: int) -> list[int]:
    """Two streams side by side in one beat: ``high`` above the ``low_bits`` of ``low``."""
    return [(h << low_bits) | lo for lo, h in zip(low, high, strict=True)]
