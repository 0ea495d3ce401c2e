"""``saformer flow``: the whole co-design flow in one command, into one run directory.

    OUT/float     train            the float model (metrics.json: accuracy, firing rates)
    OUT/qat       quantize         QAT fine-tuning of it
    OUT/export    export           the integer export, checked bit for bit against QAT (export.json)
    OUT/golden    golden           the integer golden model's test accuracy (golden.json)
    OUT/hls       hls              hls4ml projects, C simulation vs golden, hls4ml -> RTL (hls.json)
    OUT/rtl       rtl              every SASA layer on the RTL core vs golden, cycles (rtl.json)
    OUT/synth     synth            Yosys resources of the SASA core, nextpnr ECP5 clock (synth.json)
    OUT/sweep     sweep            the N' sweep when asked (--sweep-n-agg): accuracy, resources, cycles
    OUT/report.*  report           report.md / report.json / plots

A stage is skipped when ``OUT/flow.json`` records it as done with the same fingerprint: a hash of
its options and of the fingerprints of the stages it reads, so changing an option redoes that
stage and everything downstream, and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from saformer.config import DATASET_DEFAULTS, ModelConfig, TrainConfig, get_config
from saformer.errors import ConfigError
from saformer.model.checkpoint import write_json

FLOW_FILE = "flow.json"


@dataclass
class FlowOptions:
    dataset: str = "digits"
    data_dir: str | None = None
    cfg: ModelConfig | None = None  # default: the data set's
    epochs: int | None = None  # float training (default: the data set's)
    qat_epochs: int | None = None
    weight_bits: int = 8
    check_images: int = 64  # export: golden vs QAT
    hls_images: int = 4
    rtl_images: int = 4
    lanes: int = 8
    family: str = "xc7"
    pnr: bool = True
    sweep_n_agg: tuple[int, ...] = ()  # N' values to sweep (accuracy, resources, cycles); empty: no sweep
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.dataset not in DATASET_DEFAULTS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; known: {sorted(DATASET_DEFAULTS)}")
        for name in ("check_images", "hls_images", "rtl_images", "lanes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"flow option {name} must be at least 1, got {getattr(self, name)}")
        if self.weight_bits not in range(2, 17):
            raise ConfigError(f"--weight-bits {self.weight_bits}: choose 2..16")


@dataclass
class Stage:
    name: str
    needs: tuple[str, ...]
    options: Callable[[FlowOptions], dict[str, Any]]
    run: Callable[[Path, FlowOptions], dict[str, Any]]
    output: str  # the file whose presence means the stage has run


def _train(out: Path, o: FlowOptions) -> dict[str, Any]:
    from saformer.model.train import train

    defaults = DATASET_DEFAULTS[o.dataset]
    cfg = (o.cfg or get_config(defaults.config)).replace(num_classes=defaults.num_classes)
    tcfg: TrainConfig = defaults.train.replace(epochs=o.epochs) if o.epochs else defaults.train
    return train(out / "float", cfg, tcfg, o.dataset, data_dir=o.data_dir, device=o.device, progress=o.progress)


def _quantize(out: Path, o: FlowOptions) -> dict[str, Any]:
    from saformer.quant.stages import default_quant_config, quantize

    qcfg = default_quant_config(o.dataset, weight_bits=o.weight_bits)
    extra = {"epochs": o.qat_epochs} if o.qat_epochs else {}
    return quantize(out / "qat", qcfg, run_dir=out / "float", data_dir=o.data_dir, device=o.device,
                    progress=o.progress, **extra)


def _export(out: Path, o: FlowOptions) -> dict[str, Any]:
    from saformer.quant.stages import export_run

    return export_run(out / "qat", out / "export", check_images=o.check_images, qonnx=False, data_dir=o.data_dir)


def _golden(out: Path, o: FlowOptions) -> dict[str, Any]:
    from saformer.quant.stages import golden_eval

    return golden_eval(out / "export", out / "golden", data_dir=o.data_dir, progress=o.progress)


def _hls(out: Path, o: FlowOptions) -> dict[str, Any]:
    from saformer.hls.flow import build_hls

    return build_hls(out / "export", out / "hls", images=o.hls_images, data_dir=o.data_dir, rtl_lanes=o.lanes,
                     progress=o.progress)


def _rtl(out: Path, o: FlowOptions) -> dict[str, Any]:
    from saformer.rtl_sim.cosim import cosimulate_export

    return cosimulate_export(out / "export", out / "rtl", lanes=o.lanes, images=o.rtl_images, data_dir=o.data_dir)


def _synth(out: Path, o: FlowOptions) -> dict[str, Any]:
    from saformer.quant.export import load_export
    from saformer.rtl_sim.core import params_from_export
    from saformer.rtl_sim.synth import place_and_route, synthesize

    ex = load_export(out / "export")
    params, dwc = params_from_export(ex, 0, o.lanes)  # every SASA layer has the same geometry
    work = out / "synth"
    result = {"module": "sasa_core", "layers": list(range(ex.cfg.depth)), "lanes": o.lanes,
              "yosys": synthesize(params, work / o.family, o.family, dwc)}
    result["pnr"] = place_and_route(params, work / "ecp5", dwc) if o.pnr else None
    write_json(work / "synth.json", result)
    return result


def _sweep(out: Path, o: FlowOptions) -> dict[str, Any]:
    """The N' sweep, when asked: per N', a float model trained like the flow's (its test accuracy),
    the SASA core synthesized with that window (resources), and the cycle model."""
    import dataclasses
    import math

    from saformer.model.train import train
    from saformer.quant.export import load_export
    from saformer.rtl_sim.core import cycle_model, params_from_export
    from saformer.rtl_sim.synth import synthesize

    ex = load_export(out / "export")
    base, dwc = params_from_export(ex, 0, o.lanes)
    defaults = DATASET_DEFAULTS[o.dataset]
    tcfg: TrainConfig = defaults.train.replace(epochs=o.epochs) if o.epochs else defaults.train
    rows = []
    for n_agg in o.sweep_n_agg:
        try:
            cfg = ex.cfg.replace(n_agg=n_agg)
        except ConfigError as exc:
            raise ConfigError(f"--sweep-n-agg {n_agg}: {exc}") from None
        window = cfg.num_tokens // n_agg
        params = dataclasses.replace(base, N_AGG=n_agg, THETA_A=math.ceil(cfg.v_threshold_attn * window * window))
        run = out / "sweep" / f"n_agg{n_agg}"
        metrics = train(run, cfg, tcfg, o.dataset, data_dir=o.data_dir, device=o.device, progress=o.progress)
        syn = synthesize(params, run / "synth", o.family, dwc)
        rows.append({"n_agg": n_agg, "window": window, "float_test_accuracy": metrics["test_accuracy"],
                     "resources": syn["resources"], "cycles_single_image": cycle_model(params).total,
                     "run_dir": str(run)})
    result = {"lanes": o.lanes, "family": o.family, "rows": rows}  # no rows: no sweep was asked for
    (out / "sweep").mkdir(parents=True, exist_ok=True)
    write_json(out / "sweep" / "sweep.json", result)
    return result


def _report(out: Path, o: FlowOptions) -> dict[str, Any]:
    from saformer.report.report import build_report

    return build_report(out)


STAGES = [
    Stage("train", (), lambda o: {"dataset": o.dataset, "cfg": o.cfg.to_dict() if o.cfg else None, "epochs": o.epochs},
          _train, "float/metrics.json"),
    Stage("quantize", ("train",), lambda o: {"bits": o.weight_bits, "epochs": o.qat_epochs}, _quantize, "qat/metrics.json"),
    Stage("export", ("quantize",), lambda o: {"check_images": o.check_images}, _export, "export/export.json"),
    Stage("golden", ("export",), lambda o: {}, _golden, "golden/golden.json"),
    Stage("hls", ("export",), lambda o: {"images": o.hls_images, "lanes": o.lanes}, _hls, "hls/hls.json"),
    Stage("rtl", ("export",), lambda o: {"images": o.rtl_images, "lanes": o.lanes}, _rtl, "rtl/rtl.json"),
    Stage("synth", ("export",), lambda o: {"lanes": o.lanes, "family": o.family, "pnr": o.pnr}, _synth, "synth/synth.json"),
    Stage("sweep", ("train", "export"), lambda o: {"n_agg": list(o.sweep_n_agg), "epochs": o.epochs, "lanes": o.lanes,
                                                  "family": o.family}, _sweep, "sweep/sweep.json"),
    Stage("report", ("train", "quantize", "export", "golden", "hls", "rtl", "synth", "sweep"), lambda o: {"built": time.time()},  # always rebuilt: it is cheap
          _report, "report.json"),
]


def _fingerprint(stage: Stage, o: FlowOptions, done: dict[str, Any]) -> str:
    body = {"stage": stage.name, "options": stage.options(o), "data_dir": o.data_dir,
            "upstream": {n: done.get(n, {}).get("fingerprint") for n in stage.needs}}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_flow(out: Path, options: FlowOptions | None = None, log=print) -> dict[str, Any]:
    """Run every stage that is not up to date; returns flow.json's content."""
    o = options or FlowOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / FLOW_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"stages": {}}
    done = state["stages"]
    start = time.perf_counter()
    for i, stage in enumerate(STAGES, 1):
        fp = _fingerprint(stage, o, done)
        prior = done.get(stage.name, {})
        if prior.get("fingerprint") == fp and (out / stage.output).is_file():
            log(f"[{i}/{len(STAGES)}] {stage.name}: up to date")
            continue
        log(f"[{i}/{len(STAGES)}] {stage.name} ...")
        t0 = time.perf_counter()
        stage.run(out, o)
        done[stage.name] = {"fingerprint": fp, "seconds": time.perf_counter() - t0, "finished": time.time()}
        log(f"[{i}/{len(STAGES)}] {stage.name}: done in {done[stage.name]['seconds']:.0f} s")
        state["total_seconds_last_run"] = time.perf_counter() - start
        write_json(state_path, state)
    state["total_seconds_last_run"] = time.perf_counter() - start
    write_json(state_path, state)
    return state
