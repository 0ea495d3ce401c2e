"""Reusable cocotb valid/ready stream driver and monitor: random idles on the input, random
back-pressure on the output, beats as Python integers of any width (saformer.rtl_sim.beats).

The bench awaits the falling edge, sets this cycle's inputs, waits for the values to settle
(ReadOnly: a ready that depends combinationally on the other side's ready or valid has its
final value), notes what the next rising edge transfers, then awaits the rising edge; so a
transfer is seen exactly when the DUT sees it.
"""

from __future__ import annotations

import random

from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge


class StreamDriver:
    """Presents beats on (valid, data), holding each until accepted; idles with probability p_idle."""

    def __init__(self, valid, ready, data, beats: list[int], p_idle: float, rng: random.Random) -> None:
        self.valid, self.ready, self.data = valid, ready, data
        self.beats, self.p_idle, self.rng = beats, p_idle, rng
        self.sent, self.presenting = 0, False
        self.cycles: list[int] = []

    def drive(self) -> None:
        if self.sent < len(self.beats) and (self.presenting or self.rng.random() >= self.p_idle):
            self.presenting = True
            self.data.value = self.beats[self.sent]
            self.valid.value = 1
        else:
            self.valid.value = 0

    def sample(self, cycle: int) -> None:
        if self.presenting and self.ready.value:
            self.cycles.append(cycle)
            self.sent += 1
            self.presenting = False


class StreamMonitor:
    """Drives ready (low with probability p_backpressure) and compares every accepted beat."""

    def __init__(self, valid, ready, data, expected: list[int], p_backpressure: float, rng: random.Random,
                 describe=None) -> None:
        self.valid, self.ready, self.data = valid, ready, data
        self.expected, self.p, self.rng = expected, p_backpressure, rng
        self.describe = describe or (lambda i, got, want: f"beat {i}: got {got:#x}, want {want:#x}")
        self.received, self.wrong = 0, 0
        self.mismatches: list[str] = []
        self.cycles: list[int] = []
        self._ready = False

    def drive(self) -> None:
        self._ready = self.rng.random() >= self.p
        self.ready.value = int(self._ready)

    def sample(self, cycle: int) -> None:
        if self._ready and self.valid.value and self.received < len(self.expected):
            got, want = int(self.data.value), self.expected[self.received]
            if got != want:
                self.wrong += 1
                if len(self.mismatches) < 10:
                    self.mismatches.append(self.describe(self.received, got, want))
            self.cycles.append(cycle)
            self.received += 1

    @property
    def done(self) -> bool:
        return self.received >= len(self.expected)


async def run_streams(clk, drivers: list[StreamDriver], monitors: list[StreamMonitor], timeout: int) -> int:
    """Clock the streams until every monitor has its beats; returns the cycles simulated."""
    cycle = 0
    while not all(m.done for m in monitors):
        if cycle > timeout:
            raise AssertionError(f"timeout after {cycle} cycles: in {[d.sent for d in drivers]}, "
                                 f"out {[m.received for m in monitors]} of {[len(m.expected) for m in monitors]}")
        await FallingEdge(clk)
        for d in drivers:
            d.drive()
        for m in monitors:
            m.drive()
        await ReadOnly()
        for d in drivers:
            d.sample(cycle)
        for m in monitors:
            m.sample(cycle)
        await RisingEdge(clk)
        cycle += 1
    for d in drivers:
        d.valid.value = 0
    return cycle
