"""Co-simulation of every SASA layer of an integer export against the golden model: ``saformer rtl``.

The golden model runs the whole network on real test images; each SASA layer's Q and K spikes
(its traces) are streamed through the RTL core, whose O spikes must equal the golden model's, and
whose stall-free cycle count must equal the cycle model's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from saformer.config import HardwareConfig
from saformer.errors import ConfigError
from saformer.quant.export import load_export
from saformer.quant.golden import GoldenModel
from saformer.rtl_sim.core import params_from_export
from saformer.rtl_sim.sim import simulate
from saformer.rundir import write_json

RTL_FILE = "rtl.json"


def samples_first(x: np.ndarray) -> np.ndarray:
    """Golden traces are (T, B, N, D); the core streams sample after sample: (B*T, N, D)."""
    t, b = x.shape[:2]
    return x.transpose(1, 0, *range(2, x.ndim)).reshape(b * t, *x.shape[2:])


def layer_stimulus(ex, traces: dict[str, np.ndarray], core: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q, k, expected o) of the SASA graph node ``core``, each (samples*T, N, D)."""
    node, graph = ex.graph[core], ex.graph
    q, k = (graph[i].neuron for i in node.inputs)
    return tuple(samples_first(traces[f"{neuron}.s"]) for neuron in (q, k, node.attrs["lif_o"]))


def cosimulate_export(export_dir: Path, out: Path, hw: HardwareConfig | None = None, images: int = 4, p_idle: float = 0.2,
                      p_backpressure: float = 0.2, seed: int = 0, data_dir: str | None = None) -> dict[str, Any]:
    """Every SASA layer, stall-free (cycles checked) and with random stalls (spikes checked)."""
    from saformer.quant.stages import integer_batches  # the quant stage owns the test-set pipeline

    hw = hw or HardwareConfig()
    lanes = hw.lanes
    if images < 1:
        raise ConfigError(f"--images must be at least 1, got {images}")
    for name, p in (("--p-idle", p_idle), ("--p-backpressure", p_backpressure)):
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {p}")
    ex = load_export(export_dir)
    names = [n.name for n in ex.graph.of_op("sasa")]
    cores = [params_from_export(ex, name, lanes) for name in names]  # refused before any work
    golden = GoldenModel(ex)
    _, x_int, _ = next(integer_batches(ex.manifest["dataset"], ex.cfg, ex.qcfg, data_dir, images, images))
    _, traces = golden.forward(x_int, trace=True)
    out = Path(out)
    layers = []
    for layer, (params, dwc) in zip(names, cores, strict=True):
        q, k, o = layer_stimulus(ex, traces, layer)
        build_dir = out / "build" / f"{layer}_p{lanes}"
        t0 = time.perf_counter()
        clean = simulate(params, q, k, o, dwc, build_dir, samples=len(x_int), name="stall_free")
        t1 = time.perf_counter()
        stalled = simulate(params, q, k, o, dwc, build_dir, samples=len(x_int), name="stalls",
                           p_idle=p_idle, p_backpressure=p_backpressure, seed=seed)
        t2 = time.perf_counter()
        layers.append({
            "layer": layer, "params": params.as_hdl(None), "images": len(x_int),
            "output_spikes": int(o.sum()), "spike_beats": int(o.size // lanes),
            "bit_exact_stall_free": clean.bit_exact, "bit_exact_with_stalls": stalled.bit_exact,
            "cycles": clean.total, "predicted_cycles": clean.predicted.total,
            "first_output": clean.first_output, "predicted_first_output": clean.predicted.first_output,
            "cycles_match_model": clean.cycles_match,
            "cycles_with_stalls": stalled.total, "p_idle": p_idle, "p_backpressure": p_backpressure,
            "waves": str(stalled.waves or clean.waves or ""),
            "build_and_run_seconds": t1 - t0, "run_seconds_with_stalls": t2 - t1,
        })
    report = {"export_dir": str(export_dir), "config": ex.cfg.label, "lanes": lanes, "hardware": hw.to_dict(),
              "layers": layers,
              "all_bit_exact": all(r["bit_exact_stall_free"] and r["bit_exact_with_stalls"] for r in layers),
              "all_cycles_match": all(r["cycles_match_model"] for r in layers)}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / RTL_FILE, report)
    return report
