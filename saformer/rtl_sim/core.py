"""The SASA core's parameters, their checks, its weight file, and its cycle model.

Parameters come from an integer export (one SASA layer) plus the lane count P; a parameter set
the core cannot take is refused here, with the reason, before any tool runs. The cycle model
predicts a stall-free run exactly (the testbenches hold the simulation to it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saformer.errors import ConfigError
from saformer.quant.fixed_point import int_range

HDL_DIR = Path(__file__).resolve().parent / "hdl"
# the one file list that lint, simulation and synthesis read (the top first: the fast path names its model after it)
SOURCES = [HDL_DIR / "sasa_core.sv", HDL_DIR / "lif_unit.sv", HDL_DIR / "skid_buffer.sv"]
TOP = "sasa_core"


@dataclass(frozen=True)
class SasaCoreParams:
    """The RTL parameters of sasa_core (names as in the SystemVerilog)."""

    N: int
    N_AGG: int
    GRID_H: int
    GRID_W: int
    D: int
    T: int
    P: int
    MEM_BITS: int = 16
    MEM_FRAC: int = 8
    THETA_A: int = 8
    THETA_O: int = 128
    DWC: int = 1
    ACC_BITS: int = 32
    W_BITS: int = 8
    DWC_SHIFT: int = 0

    def __post_init__(self) -> None:
        self.validate()

    @property
    def window(self) -> int:
        return self.N // self.N_AGG

    @property
    def beats_per_step(self) -> int:
        return self.N * self.D // self.P

    def validate(self) -> None:
        where = f"sasa_core(N={self.N}, N'={self.N_AGG}, D={self.D}, P={self.P})"
        for key in ("N", "N_AGG", "GRID_H", "GRID_W", "D", "T", "P", "MEM_BITS", "ACC_BITS", "THETA_A", "THETA_O"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{where}: {key} must be >= 1, got {getattr(self, key)}")
        if self.N < 2:
            raise ConfigError(f"{where}: the core needs at least 2 tokens, got N={self.N}")
        if self.D % self.P:
            raise ConfigError(f"{where}: D={self.D} is not a multiple of the lane count P={self.P}; "
                              f"choose P among {[p for p in range(1, self.D + 1) if self.D % p == 0]}")
        if self.GRID_H * self.GRID_W != self.N:
            raise ConfigError(f"{where}: the token grid {self.GRID_H}x{self.GRID_W} does not hold N={self.N} tokens")
        if self.N % self.N_AGG:
            raise ConfigError(f"{where}: N'={self.N_AGG} does not divide N={self.N}")
        if not 4 <= self.MEM_BITS <= 32 or not 0 <= self.MEM_FRAC < self.MEM_BITS - 1:
            raise ConfigError(f"{where}: membrane format Q{self.MEM_BITS}.{self.MEM_FRAC} is out of range")
        if self.THETA_O >= 1 << (self.MEM_BITS - 1):
            raise ConfigError(f"{where}: THETA_O={self.THETA_O} does not fit the {self.MEM_BITS}-bit membrane")
        if not self.MEM_BITS <= self.ACC_BITS <= 48:
            raise ConfigError(f"{where}: ACC_BITS={self.ACC_BITS} must be in MEM_BITS..48")
        if not 2 <= self.W_BITS <= self.ACC_BITS:
            raise ConfigError(f"{where}: W_BITS={self.W_BITS} must be in 2..ACC_BITS={self.ACC_BITS}")

    def as_hdl(self, dwc_file: Path | None) -> dict[str, Any]:
        """Parameters for the simulator / synthesis; the DWC files are read when simulation starts."""
        p = dataclasses.asdict(self)
        p["DWC_FILE"] = f'"{dwc_file}"' if dwc_file else '""'  # Verilator's -G takes the literal
        p["DWC_BIAS_FILE"] = f'"{dwc_bias_file(dwc_file)}"' if dwc_file else '""'
        return p


def params_from_export(ex, core: str, lanes: int) -> tuple[SasaCoreParams, tuple[np.ndarray, np.ndarray] | None]:
    """The core's parameters and DWC integers for the SASA node ``core`` of an IntegerExport's graph."""
    cores = [n.name for n in ex.graph.of_op("sasa")]
    if core not in cores:
        raise ConfigError(f"the export's SASA layers are {cores}, not {core!r}")
    node, q = ex.graph[core], ex.qcfg
    (n, d), (gh, gw) = node.shape, node.attrs["grid"]
    dwc, shift = None, 0
    if node.layer is not None:
        shift = ex.layer(node.layer)["out_shift"]
        dwc = (ex.weight(node.layer), ex.bias(node.layer))
    params = SasaCoreParams(N=n, N_AGG=node.attrs["n_agg"], GRID_H=gh, GRID_W=gw, D=d, T=ex.cfg.time_steps, P=lanes,
                            MEM_BITS=q.membrane_bits, MEM_FRAC=q.membrane_frac, THETA_A=ex.theta(node.attrs["lif_a"]),
                            THETA_O=ex.theta(node.attrs["lif_o"]), DWC=int(node.layer is not None),
                            ACC_BITS=q.accumulator_bits, W_BITS=q.weight_bits, DWC_SHIFT=shift)
    return params, dwc


def dwc_bias_file(weight_file: Path) -> Path:
    """The bias ROM's file, beside the weight ROM's (``dwc.hex`` -> ``dwc_bias.hex``)."""
    weight_file = Path(weight_file)
    return weight_file.with_name(weight_file.stem + "_bias" + weight_file.suffix)


def check_lanes(ex, lanes: int) -> None:
    """Every SASA node of the export's graph must take ``lanes`` (ConfigError naming the reason)."""
    for node in ex.graph.of_op("sasa"):
        params_from_export(ex, node.name, lanes)


def write_dwc_file(path: Path, params: SasaCoreParams, weights: np.ndarray, biases: np.ndarray) -> Path:
    """$readmemh files: D*9 weights (channel-major, taps row-major) at W_BITS in ``path``, and D
    biases at ACC_BITS beside it (dwc_bias_file)."""
    weights, biases = np.asarray(weights), np.asarray(biases)
    if weights.size != params.D * 9 or biases.size != params.D:
        raise ConfigError(f"DWC integers: expected {params.D * 9} weights and {params.D} biases, "
                          f"got {weights.size} and {biases.size}")
    path = Path(path)
    for values, bits, where in ((weights.reshape(params.D, 9).ravel(), params.W_BITS, path),
                                (biases.ravel(), params.ACC_BITS, dwc_bias_file(path))):
        lo, hi = int_range(bits)
        if values.min() < lo or values.max() > hi:
            raise ConfigError(f"DWC integers exceed {bits} bits ({int(values.min())}..{int(values.max())}): "
                              f"the weights must fit W_BITS, the biases ACC_BITS")
        where.write_text("".join(f"{int(v) & ((1 << bits) - 1):0{(bits + 3) // 4}x}\n" for v in values))
    return path


@dataclass(frozen=True)
class CyclePrediction:
    first_output: int  # cycles from the first accepted input beat to the first accepted output beat
    total: int  # cycles from the first accepted input beat to the last accepted output beat, + 1
    beats_in: int
    beats_out: int


def cycle_model(params: SasaCoreParams, samples: int = 1) -> CyclePrediction:
    """Stall-free timing of sasa_core (input always valid, output always ready).

    The input pass of step s takes B = N*D/P cycles, one beat a cycle, starting at cycle s*B (the
    double buffer never blocks it: step s-1's output pass ends on the same cycle as step s's
    input pass). Step s's output pass starts the cycle after its input pass ends, at (s+1)*B; each
    output beat goes through three registers (LIF_o's drive, lif_unit's output, the skid buffer),
    so it is accepted three cycles after it is computed. The first output is accepted at cycle
    B + 3 and the last at (S*T + 1)*B + 2 for S samples of T steps; total = that + 1 cycles
    counted from cycle 0.
    """
    b = params.beats_per_step
    steps = samples * params.T
    return CyclePrediction(first_output=b + 3, total=(steps + 1) * b + 3, beats_in=steps * b, beats_out=steps * b)
