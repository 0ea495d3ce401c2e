"""cocotb bench for any one-in, one-out stream block of the library (saformer.rtl_sim.blocks): the
runner writes the input beats and the expected output beats (JSON, hex) and the stall
probabilities; this bench streams them through with StreamDriver / StreamMonitor, asserts every
output beat, and writes the measured cycles to ``BLOCK_RESULT``."""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from saformer.rtl_sim.tb.streams import StreamDriver, StreamMonitor, run_streams


@cocotb.test()
async def stream(dut):
    with open(os.environ["BLOCK_STIM"]) as fh:
        stim = json.load(fh)
    beats_in = [int(b, 16) for b in stim["in"]]
    beats_out = [int(b, 16) for b in stim["out"]]
    rng = random.Random(stim["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value, dut.s_valid.value, dut.m_ready.value = 1, 0, 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    driver = StreamDriver(dut.s_valid, dut.s_ready, dut.s_data, beats_in, stim["p_idle"], rng)
    monitor = StreamMonitor(dut.m_valid, dut.m_ready, dut.m_data, beats_out, stim["p_backpressure"], rng)
    cycles = await run_streams(dut.clk, [driver], [monitor], stim["timeout"])
    result = {"beats_in": driver.sent, "beats_out": monitor.received, "mismatching_beats": monitor.wrong,
              "first_output": monitor.cycles[0] - driver.cycles[0], "total": monitor.cycles[-1] - driver.cycles[0] + 1,
              "cycles_simulated": cycles, "mismatches": monitor.mismatches}
    with open(os.environ["BLOCK_RESULT"], "w") as fh:
        json.dump(result, fh)
    assert not monitor.mismatches, "output beats differ from the golden model:\n" + "\n".join(monitor.mismatches)
