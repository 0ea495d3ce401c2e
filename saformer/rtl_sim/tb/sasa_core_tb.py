"""cocotb testbench of sasa_core: stimulus and expected spikes from a file the runner names.

The file (``SASA_STIM``, npz) holds q, k (steps, N, D) spike arrays, the expected o (steps, N,
D), and the stall probabilities; this bench drives the input stream (random idle cycles),
back-pressures the output (random ready), scores every output spike as it arrives, and writes
the measured cycles to ``SASA_RESULT`` (JSON). Per-cycle Python work is kept small.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

from saformer.rtl_sim.beats import pack, sasa_input_beat


@cocotb.test()
async def stream(dut):
    stim = np.load(os.environ["SASA_STIM"])
    lanes = int(dut.P.value)
    q_beats, k_beats = pack(stim["q"], lanes), pack(stim["k"], lanes)
    expected = pack(stim["o"], lanes)
    p_idle, p_stall = float(stim["p_idle"]), float(stim["p_backpressure"])
    rng = random.Random(int(stim["seed"]))
    timeout = int(stim["timeout"])

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.s_valid.value = 0
    dut.m_ready.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    cycle = 0  # rising edges since reset was released
    sent = received = 0
    presenting = False  # a beat held on the input until accepted (valid/ready rule)
    in_cycles: list[int] = []
    out_cycles: list[int] = []
    mismatches: list[str] = []  # the first few, described
    wrong = 0
    groups = stim["q"].shape[2] // lanes
    while received < len(expected):
        if cycle > timeout:
            raise AssertionError(f"timeout after {cycle} cycles: {sent}/{len(q_beats)} beats in, "
                                 f"{received}/{len(expected)} out")
        # Mid-cycle: registered outputs and s_ready (state only) are stable; set this cycle's
        # inputs and note what the next rising edge transfers.
        await FallingEdge(dut.clk)
        if sent < len(q_beats) and (presenting or rng.random() >= p_idle):
            presenting = True
            dut.s_data.value = sasa_input_beat(q_beats[sent], k_beats[sent], lanes)
            dut.s_valid.value = 1
        else:
            dut.s_valid.value = 0
        ready = rng.random() >= p_stall
        dut.m_ready.value = int(ready)
        if presenting and dut.s_ready.value:
            in_cycles.append(cycle)
            sent += 1
            presenting = False
        if ready and dut.m_valid.value:
            got = int(dut.m_data.value)
            wrong += got != expected[received]
            if got != expected[received] and len(mismatches) < 10:
                step, rest = divmod(received, len(expected) // len(stim["o"]))
                token, group = divmod(rest, groups)
                mismatches.append(f"step {step} token {token} channels {group * lanes}..{group * lanes + lanes - 1}: "
                                  f"got {got:0{lanes}b}, want {expected[received]:0{lanes}b} (LSB = first channel)")
            out_cycles.append(cycle)
            received += 1
        await RisingEdge(dut.clk)
        cycle += 1
    dut.s_valid.value = 0

    result = {"beats_in": sent, "beats_out": received, "mismatching_beats": wrong,
              "first_output": out_cycles[0] - in_cycles[0], "total": out_cycles[-1] - in_cycles[0] + 1,
              "cycles_simulated": cycle}
    with open(os.environ["SASA_RESULT"], "w") as fh:
        json.dump(result, fh)
    assert not mismatches, "output spikes differ from the golden model:\n" + "\n".join(mismatches)
