"""The compiled Verilator harness: bulk runs of any one-in, one-out stream block without Python in
the cycle loop.

``harness/stream_harness.cpp`` is compiled with the Verilated model of one top and parameter set
(``verilator --cc --exe --build``); it reads input beats from a file, clocks the model with the
cocotb bench's timing (optionally with seeded idles and back-pressure), and writes the output
beats and the cycle each was accepted. A build is reused while its sources and parameters are
unchanged; memory files ($readmemh) are read when the model starts, so every run reads the data
of that moment. Python's share is packing and unpacking beats, once per run.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saformer.rtl_sim.sim import SimulationError, verilator_env

HARNESS_CPP = Path(__file__).resolve().parent / "harness" / "stream_harness.cpp"


@dataclass
class HarnessRun:
    beats: list[int]  # the output beats, as Python integers
    cycles: np.ndarray  # (beats,) the cycle each output beat was accepted
    first_input: int  # the cycle of the first accepted input beat
    first_output: int  # cycles from the first input beat to the first output beat
    total: int  # cycles from the first input beat to the last output beat, inclusive
    simulated: int  # cycles simulated, reset excluded
    seconds: float  # wall time of the cycle loop

    @property
    def cycles_per_second(self) -> float:
        return self.simulated / self.seconds if self.seconds > 0 else float("inf")


def _words(beats: list[int], words: int) -> np.ndarray:
    mask = (1 << 32) - 1
    return np.array([(b >> (32 * i)) & mask for b in beats for i in range(words)], dtype="<u4")


class StreamHarness:
    """One compiled harness: a top, its parameters (file parameters included) and its sources."""

    def __init__(self, sources, top: str, parameters: dict, build_dir: Path) -> None:
        self.top, self.build_dir = top, Path(build_dir).resolve()
        self.sources = [Path(s).resolve() for s in sources]
        key = hashlib.sha256(json.dumps({"top": top, "params": {k: str(v) for k, v in parameters.items()},
                                         "sources": [s.read_text() for s in self.sources],
                                         "harness": HARNESS_CPP.read_text()}, sort_keys=True).encode()).hexdigest()[:16]
        self.exe = self.build_dir / f"harness_{key}" / "stream_harness"
        if not self.exe.exists():
            self._build(parameters)
        proc = subprocess.run([str(self.exe), "--ports"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SimulationError(f"harness '{self.exe}' does not start: {proc.stderr.strip()[-500:]}")
        self.in_words, self.out_words = map(int, proc.stdout.split())

    def _build(self, parameters: dict) -> None:
        obj = self.exe.parent
        obj.mkdir(parents=True, exist_ok=True)
        env = verilator_env()
        cflags = f"-O2 -std=c++20 -DTOP_CLASS=V{self.top} -DTOP_HEADER='\"V{self.top}.h\"'"
        args = [str(Path(env["VERILATOR_ROOT"]) / "bin" / "verilator"), "--cc", "--exe", "--build", "-j", "2",
                "-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal", "--top-module", self.top,
                "--Mdir", str(obj), "-o", self.exe.name, "-CFLAGS", cflags,
                *[f"-G{k}={self._literal(v)}" for k, v in parameters.items()],
                *map(str, self.sources), str(HARNESS_CPP)]
        # the PyPI wheel's PCH flag is empty (see sim.build_hdl): a MAKEFLAGS variable fills it in;
        # and the model is compiled at -O3 rather than the makefile's -Os
        make = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O3 OPT_SLOW=-O1 OPT_GLOBAL=-O2"
        proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **env, "MAKEFLAGS": make})
        (obj / "build.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0 or not self.exe.exists():
            raise SimulationError(f"harness build of {self.top} in '{obj}' failed; log tail:\n"
                                  f"{(proc.stdout + proc.stderr)[-1500:]}")

    @staticmethod
    def _literal(v) -> str:  # strings arrive as Verilator literals (quoted, as Block.file_params writes them)
        return f'"{v}"' if isinstance(v, Path) else v if isinstance(v, str) else str(int(v))

    def run(self, beats_in: list[int], n_out: int, p_idle: float = 0.0, p_backpressure: float = 0.0, seed: int = 0,
            timeout: int | None = None, run_dir: Path | None = None, ready_every: int = 0) -> HarnessRun:
        """Stream ``beats_in`` and collect ``n_out`` output beats (``timeout``: cycles, default 10x
        the beats plus a margin of 10^6). ``ready_every`` = K > 0: the output is ready on the cycles
        that are multiples of K only (a fixed back-pressure, instead of ``p_backpressure``'s random one)."""
        if ready_every:
            if p_backpressure or int(ready_every) < 1:
                raise SimulationError(f"harness: ready_every={ready_every} must be a positive integer, without p_backpressure")
            p_backpressure = float(int(ready_every))
        run_dir = Path(run_dir or self.exe.parent / "run")
        run_dir.mkdir(parents=True, exist_ok=True)
        f_in, f_out, f_cyc = run_dir / "in.bin", run_dir / "out.bin", run_dir / "cycles.bin"
        _words(beats_in, self.in_words).tofile(f_in)
        timeout = timeout if timeout is not None else 10 * (len(beats_in) + n_out) + 1_000_000
        proc = subprocess.run([str(self.exe), str(f_in), str(f_out), str(f_cyc), str(n_out), repr(float(p_idle)),
                               repr(float(p_backpressure)), str(seed), str(timeout)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SimulationError(f"harness run of {self.top} failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        words = np.fromfile(f_out, dtype="<u4").astype(object).reshape(n_out, self.out_words)
        beats = [sum(int(w) << (32 * i) for i, w in enumerate(row)) for row in words]
        return HarnessRun(beats, np.fromfile(f_cyc, dtype="<u8").astype(np.int64), info["first_in"],
                          info["first_output"], info["total"], info["cycles"], info["seconds"])
