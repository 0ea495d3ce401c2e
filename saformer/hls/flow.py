"""``saformer hls``: hls4ml projects for the synaptic stages of an integer export, each checked in
C simulation against the golden model, step by step and spike for spike.

For every stage (saformer.hls.stages) it converts the torch graph with hls4ml, pins every
precision to the contract, writes a project ready for ``vitis_hls`` (``build.sh``), compiles the
C simulation with g++, runs it on the golden model's own inputs for real test images (T calls per
image), and compares every traced layer with the golden trace. Results go to ``hls.json`` and a
table in ``hls.md``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm

from saformer.errors import ConfigError
from saformer.hls.extension import register_extensions
from saformer.hls.stages import HlsError, Stage, TraceCheck, build_stages
from saformer.rundir import write_json
from saformer.quant.export import IntegerExport, load_export
from saformer.quant.golden import GoldenModel

HLS_FILE, HLS_TABLE = "hls.json", "hls.md"
BACKENDS = ("Vitis", "Vivado")
STRATEGIES = ("Latency", "Resource")
IO_TYPES = ("io_parallel",)  # the stateful LIF layer is written for io_parallel arrays


@dataclass(frozen=True)
class LayerOptions:
    reuse_factor: int = 1
    strategy: str = "Latency"


@dataclass(frozen=True)
class HlsOptions:
    """What a user may choose; everything else follows from the export. Defaults: Vitis backend,
    io_parallel, Latency strategy, reuse factor 1 (fully parallel), 5 ns clock, hls4ml's default part.

    ``layers`` maps a pattern over ``<stage>/<layer>`` (fnmatch, e.g. ``blocks.*.post/mlp_fc1``) to
    per-layer options; the last matching pattern wins.
    """

    backend: str = "Vitis"
    io_type: str = "io_parallel"
    part: str | None = None
    clock_period: float = 5.0
    defaults: LayerOptions = LayerOptions()
    layers: dict[str, LayerOptions] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"hls backend '{self.backend}': choose one of {BACKENDS}")
        if self.io_type not in IO_TYPES:
            raise ConfigError(f"hls io type '{self.io_type}': the stateful LIF layer supports {IO_TYPES} only")
        if not self.clock_period > 0:
            raise ConfigError(f"hls clock period must be positive, got {self.clock_period}")
        for where, opt in [("defaults", self.defaults), *self.layers.items()]:
            if opt.strategy not in STRATEGIES:
                raise ConfigError(f"hls options '{where}': strategy '{opt.strategy}', choose one of {STRATEGIES}")
            if not isinstance(opt.reuse_factor, int) or opt.reuse_factor < 1:
                raise ConfigError(f"hls options '{where}': reuse factor must be an integer >= 1, "
                                  f"got {opt.reuse_factor!r}")

    def for_layer(self, stage: str, layer: str) -> LayerOptions:
        chosen = self.defaults
        for pattern, opt in self.layers.items():
            if fnmatch.fnmatchcase(f"{stage}/{layer}", pattern):
                chosen = opt
        return chosen

    @classmethod
    def from_file(cls, path: Path, **overrides: Any) -> "HlsOptions":
        """Read options from JSON or YAML: {backend, io_type, part, clock_period, defaults: {...}, layers: {...}}."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"hls config file '{path}' does not exist")
        text = path.read_text()
        try:
            if path.suffix in (".yml", ".yaml"):
                import yaml

                raw = yaml.safe_load(text) or {}
            else:
                raw = json.loads(text)
        except Exception as exc:  # noqa: BLE001 (any parse error is the user's file)
            raise ConfigError(f"hls config file '{path}' cannot be parsed: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"hls config file '{path}' must hold a mapping")
        known = {"backend", "io_type", "part", "clock_period", "defaults", "layers"}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"hls config file '{path}': unknown keys {sorted(unknown)} (known: {sorted(known)})")

        def layer_opts(d: Any, where: str) -> LayerOptions:
            if not isinstance(d, dict) or set(d) - {"reuse_factor", "strategy"}:
                raise ConfigError(f"hls config file '{path}': '{where}' must map reuse_factor / strategy")
            return LayerOptions(**d)

        raw["defaults"] = layer_opts(raw.get("defaults", {}), "defaults")
        raw["layers"] = {k: layer_opts(v, k) for k, v in (raw.get("layers") or {}).items()}
        opts = cls(**raw)
        return replace(opts, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- one stage -----------------------------------------------------------------------------------
def hls_config(stage: Stage, options: HlsOptions) -> dict[str, Any]:
    """hls4ml's per-layer config with every precision pinned by the stage (no 'auto' left)."""
    import hls4ml

    cfg = hls4ml.utils.config_from_pytorch_model(
        stage.module, stage.input_shapes if len(stage.input_shapes) > 1 else stage.input_shapes[0],
        granularity="name", backend=options.backend, default_precision="ap_fixed<16,8>",
        channels_last_conversion="internal", transpose_outputs=False)
    cfg["Model"]["Strategy"] = options.defaults.strategy
    cfg["Model"]["ReuseFactor"] = options.defaults.reuse_factor
    layers = cfg["LayerName"]
    for name, precision in stage.input_precisions.items():
        layers.setdefault(name, {})["Precision"] = {"result": precision}
    for name, layer in layers.items():
        if name in stage.input_precisions:
            continue
        if name not in stage.precisions:
            raise HlsError(f"stage '{stage.name}': hls4ml made layer '{name}', which the stage does not define "
                           "a precision for (an unsupported operation in the stage graph)")
        layer["Precision"] = dict(stage.precisions[name])
        opt = options.for_layer(stage.name, name)
        layer["ReuseFactor"], layer["Strategy"], layer["Trace"] = opt.reuse_factor, opt.strategy, True
    return cfg


def project_name(stage: str) -> str:
    return stage.replace("blocks.", "block").replace(".", "_")


# hls4ml prints; and redirect_stdout / catch_warnings swap process-wide state, which two threads
# must not interleave (one would restore the other's buffer for good): every quieted hls4ml call
# holds this lock. Only the g++ builds run outside it, two at a time (build_hls).
_HLS_LOCK = threading.RLock()


@contextlib.contextmanager
def _quiet():
    with _HLS_LOCK, contextlib.redirect_stdout(io.StringIO()) as log:
        yield log


def convert(stage: Stage, options: HlsOptions, out_dir: Path):
    import hls4ml

    register_extensions(options.backend)
    cfg = hls_config(stage, options)
    kwargs = {"part": options.part} if options.part else {}
    try:
        with _quiet(), warnings.catch_warnings():
            # hls4ml prints its topology walk, and warns when its pointwise pass re-cases 'strategy'
            warnings.filterwarnings("ignore", message="Overriding attribute 'strategy'")
            model = hls4ml.converters.convert_from_pytorch_model(
                stage.module, hls_config=cfg, output_dir=str(out_dir), project_name=project_name(stage.name),
                backend=options.backend, io_type=options.io_type, clock_period=options.clock_period, **kwargs)
    except HlsError:
        raise
    except Exception as exc:  # noqa: BLE001 (hls4ml raises bare Exceptions for unsupported layers)
        raise HlsError(f"stage '{stage.name}': hls4ml cannot convert it: {exc}") from None
    check_precisions(stage, model)
    return model


def check_precisions(stage: Stage, model) -> None:
    """hls4ml's optimizers may rewrite types: make sure what it will compile is what the contract says."""
    for layer in model.get_layers():
        want = stage.precisions.get(layer.name, {}).get("result") or stage.input_precisions.get(layer.name)
        if want is None:
            continue
        got = layer.get_output_variable().type.precision
        if got != model.config.backend.convert_precision_string(want):
            raise HlsError(f"stage '{stage.name}', layer '{layer.name}': hls4ml uses {got}, the contract needs {want}")


def _as_int(values: np.ndarray, frac: int, where: str) -> np.ndarray:
    scaled = np.asarray(values, np.float64) * 2.0 ** frac
    ints = np.round(scaled)
    if not np.array_equal(ints, scaled):
        raise HlsError(f"{where}: the C simulation produced values off the 2^-{frac} grid")
    return ints.astype(np.int64)


def compare(check: TraceCheck, hls_values: np.ndarray, traces: dict[str, np.ndarray], stage: str) -> dict[str, Any]:
    expected = check.expected(traces)
    got = _as_int(hls_values.reshape(len(hls_values), -1), check.frac, f"stage '{stage}', layer '{check.layer}'")
    if got.shape != expected.shape:
        return {"layer": check.layer, "golden": check.golden, "values": int(expected.size), "mismatches": -1,
                "note": f"shape {got.shape} vs golden {expected.shape}"}
    return {"layer": check.layer, "golden": check.golden, "values": int(expected.size),
            "mismatches": int(np.count_nonzero(got != expected))}


def estimate_resources(stage: Stage, model, ex: IntegerExport) -> dict[str, Any]:
    """Resources without Vitis HLS (method in docs/hls.md): hls4ml's own report where the user has
    run synthesis, else adders and multipliers counted from the layer shapes and reuse factors."""
    import hls4ml

    prj = Path(model.config.get_output_dir())
    if any(prj.glob("*_prj/solution1/syn/report/*_csynth.xml")):
        with _quiet():
            report = hls4ml.report.parse_vivado_report(str(prj))
        return {"method": "vitis_hls csynth report (hls4ml.report.parse_vivado_report)", "report": report}
    multiplying = {n.layer for n in ex.graph if n.op == "synapse" and ex.graph[n.inputs[0]].format == "input"}
    layers, totals = [], {"adders": 0, "multipliers": 0, "lut_estimate": 0, "weight_bits": 0, "ops_per_step": 0}
    for hls_name, export_name in stage.synapses.items():
        spec = ex.layer(export_name)
        w = ex.weight(export_name)
        layer = model.graph[hls_name]
        rf = int(layer.get_attr("reuse_factor", 1))
        out_ch, fan_in = w.shape[0], int(np.prod(w.shape[1:]))
        positions = int(np.prod(layer.get_output_variable().shape[:-1]))  # output pixels (1 for the head)
        units = -(-out_ch * fan_in // rf)  # products computed in parallel for one output position
        multiplies = export_name in multiplying  # only the image multiplies; spikes and counts add
        entry = {"layer": hls_name, "export_layer": export_name, "reuse_factor": rf,
                 "strategy": layer.get_attr("strategy", "latency"),
                 "ops_per_step": positions * out_ch * fan_in,
                 "multipliers": units if multiplies else 0, "adders": 0 if multiplies else units,
                 "lut_estimate": units * spec["acc_bits_needed"] if not multiplies else 0,
                 "weight_bits": int(w.size) * spec["weight_bits"]}
        layers.append(entry)
        for k in totals:
            totals[k] += entry[k]
    return {"method": "estimate: one adder (acc_bits LUTs) per weight a spike gates, one multiplier per "
                      "product of the image layer, divided by the reuse factor (docs/hls.md)",
            "layers": layers, **totals}


@dataclass
class CompiledStage:
    """A stage converted and built with tracing on, ready for ``model.trace`` (no rebuild)."""
    model: Any
    convert_seconds: float
    compile_seconds: float


def compile_stage(stage: Stage, options: HlsOptions, out_dir: Path) -> CompiledStage:
    """Convert one stage and build its C simulation with tracing on. Safe to run in threads: the
    g++ build runs in the project's own directory (hls4ml passes cwd); the rest holds _HLS_LOCK."""
    t0 = time.perf_counter()
    with _HLS_LOCK:  # conversion passes share hls4ml's registries
        model = convert(stage, options, out_dir)
        model.config.trace_output = True  # what trace() would set before rebuilding
        with _quiet():
            model.write()
    convert_s = time.perf_counter() - t0
    try:
        model._compile()  # g++ in the project's directory; prints only on failure
    except Exception as exc:  # noqa: BLE001 (g++ failures surface as a bare Exception)
        raise HlsError(f"stage '{stage.name}': the C simulation failed to build in '{out_dir}': {exc}") from None
    return CompiledStage(model, convert_s, time.perf_counter() - t0 - convert_s)


def run_stage(stage: Stage, options: HlsOptions, out_dir: Path, ex: IntegerExport, x_int: np.ndarray,
              traces: dict[str, np.ndarray], compiled: CompiledStage | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Convert, write, compile (unless ``compiled``) and C-simulate one stage; returns its record
    and its output rows."""
    compiled = compiled or compile_stage(stage, options, out_dir)
    model = compiled.model
    model.compile = lambda: None  # trace() rebuilds the tracing build compile_stage made: skip it
    inputs = stage.input_values(x_int, traces)
    rows = len(inputs[0])
    if rows % ex.cfg.time_steps:
        raise HlsError(f"stage '{stage.name}': {rows} calls is not whole samples of T={ex.cfg.time_steps} steps")
    start = time.perf_counter()
    try:
        with _quiet() as log:
            output, hls_traces = model.trace(inputs[0] if len(inputs) == 1 else inputs)
    except Exception as exc:  # noqa: BLE001 (g++ failures surface as a bare Exception)
        raise HlsError(f"stage '{stage.name}': the C simulation failed to build or run: {exc}\n{log.getvalue()[-2000:]}") from None
    csim_s = time.perf_counter() - start
    output = output[0] if isinstance(output, list) and len(output) == 1 else output
    checks = [compare(c, hls_traces[c.layer], traces, stage.name) for c in stage.checks]
    if stage.output_check is not None:
        checks.append(compare(stage.output_check, np.asarray(output), traces, stage.name))
    write_build_script(out_dir, project_name(stage.name), options.backend)
    record = {
        "stage": stage.name, "project": str(out_dir), "project_name": project_name(stage.name),
        "calls": rows, "images": rows // ex.cfg.time_steps,
        "layers": {layer.name: {"class": layer.class_name, "result": str(layer.get_output_variable().type.precision),
                                **{k: str(v.type.precision) for k, v in layer.weights.items()},
                                "reuse_factor": layer.get_attr("reuse_factor"),
                                "strategy": layer.get_attr("strategy")}
                   for layer in model.get_layers()},
        "checks": checks,
        "bit_exact": all(c["mismatches"] == 0 for c in checks),
        "convert_seconds": compiled.convert_seconds, "compile_seconds": compiled.compile_seconds, "csim_seconds": csim_s,
        "resources": estimate_resources(stage, model, ex),
    }
    return record, np.asarray(output)


def write_build_script(prj: Path, name: str, backend: str) -> None:
    """A one-line entry point for a user with the vendor tools: C synthesis of the project."""
    tool = "vitis_hls" if backend == "Vitis" else "vivado_hls"
    script = prj / "build.sh"
    script.write_text(
        "#!/bin/sh\n# C synthesis of this hls4ml project (needs AMD/Xilinx tools on PATH); the report lands in\n"
        f"# {name}_prj/solution1/syn/report/, which `saformer hls` reads back on its next run.\n"
        f'cd "$(dirname "$0")" && {tool} -f build_prj.tcl "reset=1 csim=0 synth=1 cosim=0 validation=0 export=0 vsynth=0"\n')
    os.chmod(script, 0o755)


# ---- the command ---------------------------------------------------------------------------------
def sample_inputs(ex: IntegerExport, images: int, data_dir: str | None, labels: bool = False):
    """The first ``images`` test images, quantized as the hardware receives them (and their labels)."""
    from saformer.quant.stages import integer_batches  # the quant stage owns the test-set pipeline

    _, x_int, y = next(integer_batches(ex.manifest["dataset"], ex.cfg, ex.qcfg, data_dir, images, images))
    return (x_int, y) if labels else x_int


def build_hls(export_dir: Path, out: Path, options: HlsOptions | None = None, images: int = 8,
              data_dir: str | None = None, mixed: Callable[..., dict[str, Any]] | None = None,
              stages: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """``saformer hls``: every stage converted, written, compiled and checked; ``hls.json`` + ``hls.md``.

    ``mixed`` (e.g. saformer.crosscheck.HlsIntoRtl) is called with the integer output of every stage
    that feeds an RTL block; its ``validate(export)`` runs first, before any C simulation.
    """
    options = options or HlsOptions()
    if images < 1:
        raise ConfigError(f"--images must be at least 1, got {images}")
    ex = load_export(export_dir)
    if mixed is not None:
        mixed.validate(ex)
    all_stages = build_stages(ex)
    if stages:
        unknown = sorted(set(stages) - {s.name for s in all_stages})
        if unknown:
            raise ConfigError(f"unknown hls stage(s) {unknown}; this export has {[s.name for s in all_stages]}")
        all_stages = [s for s in all_stages if s.name in stages]
    x_int, labels = sample_inputs(ex, images, data_dir, labels=True)
    golden_logits, traces = GoldenModel(ex).forward(x_int, trace=True)
    out = Path(out).absolute()  # hls4ml and Verilator build in directories of their own
    out.mkdir(parents=True, exist_ok=True)
    records, mixed_results = [], []
    # the g++ builds (most of the time) run two at a time; the C simulations one at a time
    # (hls4ml's trace changes the working directory)
    pool = ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1)))
    builds = [pool.submit(compile_stage, stage, options, out / stage.name) for stage in all_stages]
    bar = tqdm(all_stages, desc="hls4ml", unit="stage", disable=None if progress else True)
    try:
        for stage, build in zip(bar, builds):
            bar.set_postfix_str(stage.name)
            record, output = run_stage(stage, options, out / stage.name, ex, x_int, traces, build.result())
            records.append(record)
            if stage.logits:  # the logits of a sample are the head's output at its last step
                logits = output.reshape(len(x_int), ex.cfg.time_steps, -1)[:, -1]
                record["accuracy_on_checked_images"] = float((logits.argmax(1) == labels).mean())
            if mixed is not None and stage.feeds_rtl:
                qk = _as_int(output, 0, f"the Q | K stream into {stage.feeds_rtl}")
                mixed_results.append(mixed(ex, stage.feeds_rtl, qk, traces, out, len(x_int)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    report = {
        "export_dir": str(export_dir), "content_hash": ex.manifest["content_hash"], "config": ex.cfg.label,
        "weight_bits": ex.qcfg.weight_bits, "images": int(len(x_int)), "options": options.to_dict(),
        "golden_accuracy_on_checked_images": float((golden_logits.argmax(1) == labels).mean()),
        "stages": records, "all_bit_exact": all(r["bit_exact"] for r in records),
        "mixed_hls_rtl": mixed_results,
        "mixed_bit_exact": all(m["bit_exact"] for m in mixed_results) if mixed_results else None,
    }
    write_json(out / HLS_FILE, report)
    (out / HLS_TABLE).write_text(render_table(report))
    return report


def render_table(report: dict[str, Any]) -> str:
    lines = [f"# hls4ml C simulation: {report['config']}, {report['weight_bits']}-bit weights, "
             f"{report['images']} test images\n",
             "| stage | layers | values compared | C sim vs golden | compile (s) | C sim (s) | adders | multipliers | LUT (est.) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["stages"]:
        res = r["resources"]
        values = sum(c["values"] for c in r["checks"])
        lines.append(f"| {r['stage']} | {len(r['layers'])} | {values:,} | {'bit-exact' if r['bit_exact'] else 'MISMATCH'} "
                     f"| {r['compile_seconds']:.1f} | {r['csim_seconds']:.2f} | {res.get('adders', '-')} "
                     f"| {res.get('multipliers', '-')} | {res.get('lut_estimate', '-')} |")
    for m in report["mixed_hls_rtl"]:
        lines.append(f"\nMixed check, SASA core {m['layer']}: hls4ml Q/K -> RTL core (P={m['lanes']}): "
                     f"{'bit-exact' if m['bit_exact'] else 'MISMATCH'}, {m['cycles']} cycles "
                     f"(model {m['predicted_cycles']}).")
    return "\n".join(lines) + "\n"
