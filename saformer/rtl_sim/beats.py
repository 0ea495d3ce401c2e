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
