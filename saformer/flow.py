"""``saformer flow``: the whole co-design flow in one command, into one run directory.

    OUT/float     train            the float model (metrics.json: accuracy, firing rates)
    OUT/qat       quantize         QAT fine-tuning of it
    OUT/export    export           the integer export, checked bit for bit against QAT (export.json)
    OUT/golden    golden           the integer golden model's test accuracy (golden.json)
    OUT/accel     accel            the whole accelerator (generated top, Verilator) vs golden (accel.json)
    OUT/hls       hls              hls4ml projects, C simulation vs golden, hls4ml -> RTL (hls.json)
    OUT/rtl       rtl              every SASA layer on the RTL core vs golden, cycles (rtl.json)
    OUT/synth     synth            Yosys resources of the SASA core, nextpnr ECP5 clock (synth.json)
    OUT/sweep     sweep            the N' sweep when asked (--sweep-n-agg): accuracy, resources, cycles
    OUT/report.*  report           report.md / report.json / plots
    OUT/hardware.json                the hardware config (lanes, family, ECP5 part, clock) of the run

A stage is skipped when ``OUT/flow.json`` records it as done with the same fingerprint: a hash of
its options and of the fingerprints of the stages it reads, so changing an option redoes that
stage and everything downstream, and nothing else.

Interruptions: a stage runs in a hidden ``OUT/.NAME.partial`` directory and is renamed to
``OUT/NAME`` only when all its files are written, so ``OUT/NAME`` is whole or absent. A rerun
after Ctrl-C, a kill or a crash continues from the last finished stage; the training stages
(float and QAT) resume from their last epoch's checkpoint when the partial directory was made
with the same fingerprint, and start over otherwise. A lock on ``OUT`` keeps a second flow out.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from saformer.config import DATASET_DEFAULTS, HardwareConfig, ModelConfig, TrainConfig, get_config
from saformer.data import EVENT_DATASETS
from saformer.errors import ConfigError
from saformer.rundir import EXPORT_DIR, RUN_FILES, DirectoryLock, check_out_dir, partial_dir, publish, write_json

FLOW_FILE, HARDWARE_FILE = RUN_FILES["flow"], RUN_FILES["hardware"]


HARDWARE_STAGES = ("accel", "hls", "rtl", "synth")  # may be left out with --skip


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
    accel_images: int = 100  # test images through the whole accelerator; 0: the whole test set
    accel_layer_images: int = 1  # images whose spikes inside the network are compared (a cut top per layer)
    hw: HardwareConfig = HardwareConfig()  # lanes, family, ECP5 part, clock: recorded in OUT/hardware.json
    pnr: bool = True
    sweep_n_agg: tuple[int, ...] = ()  # N' values to sweep (accuracy, resources, cycles); empty: no sweep
    skip: tuple[str, ...] = ()  # hardware stages left out
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.dataset not in DATASET_DEFAULTS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; known: {sorted(DATASET_DEFAULTS)}")
        for name in ("check_images", "hls_images", "rtl_images"):
            if getattr(self, name) < 1:
                raise ConfigError(f"flow option {name} must be at least 1, got {getattr(self, name)}")
        for name in ("accel_images", "accel_layer_images"):
            if getattr(self, name) < 0:
                raise ConfigError(f"flow option {name} must be at least 0, got {getattr(self, name)}")
        for name in ("epochs", "qat_epochs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"flow option {name} must be at least 1, got {getattr(self, name)}")
        if self.weight_bits not in range(2, 17):
            raise ConfigError(f"--weight-bits {self.weight_bits}: choose 2..16")
        unknown = sorted(set(self.skip) - set(HARDWARE_STAGES))
        if unknown:
            raise ConfigError(f"--skip {unknown}: only {list(HARDWARE_STAGES)} can be left out")

    @property
    def model_config(self) -> ModelConfig:
        defaults = DATASET_DEFAULTS[self.dataset]
        return (self.cfg or get_config(defaults.config)).replace(num_classes=defaults.num_classes)


def check_flow_options(o: FlowOptions) -> None:
    """What would fail minutes into the flow, refused before it starts: a model the integer
    contract cannot take, a lane count the SASA core cannot take, N' values that do not divide N."""
    from saformer.quant.qat import check_quantizable
    from saformer.rtl_sim.core import SasaCoreParams

    cfg = o.model_config
    check_quantizable(cfg)
    if "rtl" not in o.skip or "hls" not in o.skip or "synth" not in o.skip:
        try:
            SasaCoreParams(N=cfg.num_tokens, N_AGG=cfg.n_agg, GRID_H=cfg.grid_h, GRID_W=cfg.grid_w, D=cfg.dim,
                           T=cfg.time_steps, P=o.hw.lanes, DWC=int(cfg.dwc))
        except ConfigError as exc:
            raise ConfigError(f"--lanes {o.hw.lanes}: {exc}") from None
    for n_agg in o.sweep_n_agg:
        try:
            check_quantizable(cfg.replace(n_agg=n_agg))
        except ConfigError as exc:
            raise ConfigError(f"--sweep-n-agg {n_agg}: {exc}") from None


@dataclass
class Stage:
    name: str
    needs: tuple[str, ...]
    options: Callable[[FlowOptions], dict[str, Any]]
    run: Callable[[Path, Path, FlowOptions, bool], dict[str, Any]]  # (OUT, work dir, options, resume)
    directory: str | None  # OUT/<directory>, written through OUT/.<directory>.partial; None: OUT itself
    output: str  # the file (under OUT) whose presence means the stage has run
    resumable: bool = False  # a partial directory of the same fingerprint is continued, not restarted
    not_applicable: Callable[[FlowOptions], str | None] = lambda o: None  # why it cannot run on these inputs


def _train(out: Path, work: Path, o: FlowOptions, resume: bool) -> dict[str, Any]:
    from saformer.model.train import train

    if resume:
        return train(work, None, None, None, device=o.device, resume=True, progress=o.progress)
    defaults = DATASET_DEFAULTS[o.dataset]
    tcfg: TrainConfig = defaults.train.replace(epochs=o.epochs)
    return train(work, o.model_config, tcfg, o.dataset, data_dir=o.data_dir, device=o.device, progress=o.progress)


def _quantize(out: Path, work: Path, o: FlowOptions, resume: bool) -> dict[str, Any]:
    from saformer.quant.stages import default_quant_config, quantize

    if resume:
        return quantize(work, None, resume=True, device=o.device, progress=o.progress)
    qcfg = default_quant_config(o.dataset, weight_bits=o.weight_bits)
    extra = {"epochs": o.qat_epochs} if o.qat_epochs else {}
    return quantize(work, qcfg, run_dir=out / "float", data_dir=o.data_dir, device=o.device,
                    progress=o.progress, **extra)


def _export(out: Path, work: Path, o: FlowOptions, resume: bool) -> dict[str, Any]:
    from saformer.quant.stages import export_run

    return export_run(out / "qat", work, check_images=o.check_images, qonnx=False, data_dir=o.data_dir)


def _golden(out: Path, work: Path, o: FlowOptions, resume: bool) -> dict[str, Any]:
    from saformer.quant.stages import golden_eval

    return golden_eval(out / EXPORT_DIR, work, data_dir=o.data_dir, progress=o.progress)


def _accel(out: Path, work: Path, o: FlowOptions, resume: bool) -> dict[str, Any]:
    from saformer.rtl_sim.accel import accelerate_export

    return accelerate_export(out / EXPORT_DIR, work, hw=o.hw, images=o.accel_images or None, data_dir=o.data_dir,
                             layer_images=o.accel_layer_images, keep_builds=False)


def _hls(out: Path, work: Path, o: FlowOptions, resume: bool) -> dict[str, Any]:
    from saformer.crosscheck import HlsIntoRtl
    from saformer.hls.flow import HlsOptions, build_hls

    return build_hls(out / EXPORT_DIR, work, HlsOptions(part=o.hw.xilinx_part), images=o.hls_images,
                     data_dir=o.data_dir, mixed=HlsIntoRtl(o.hw.lanes), progress=o.progress)


def _rtl(out: Path, work: Path, o: FlowOptions, resume: bool) -> dict[str, Any]:
    from saformer.rtl_sim.cosim import cosimulate_export

    return cosimulate_export(out / EXPORT_DIR, work, hw=o.hw, images=o.rtl_images, data_dir=o.data_dir)


def _synth(out: Path, work: Path, o: FlowOptions, resume: bool) -> dict[str, Any]:
    from saformer.quant.export import load_export
    from saformer.rtl_sim.core import params_from_export
    from saformer.rtl_sim.synth import place_and_route, synthesize

    ex = load_export(out / EXPORT_DIR)
    cores = [n.name for n in ex.graph.of_op("sasa")]
    params, dwc = params_from_export(ex, cores[0], o.hw.lanes)  # every SASA layer has the same geometry
    result = {"module": "sasa_core", "layers": cores, "lanes": o.hw.lanes, "hardware": o.hw.to_dict(),
              "yosys": synthesize(params, work / o.hw.family, o.hw.family, dwc, o.hw.memory_style)}
    result["pnr"] = place_and_route(params, work / "ecp5", dwc, o.hw) if o.pnr else None
    write_json(work / "synth.json", result)
    return result


def _sweep(out: Path, work: Path, o: FlowOptions, resume: bool) -> dict[str, Any]:
    """The N' sweep, when asked: per N', a float model trained like the flow's (its test accuracy),
    the SASA core synthesized with that window (resources), and the cycle model. A sweep that was
    interrupted keeps its finished models and resumes the one it was training."""
    import dataclasses
    import math

    from saformer.model.checkpoint import CHECKPOINT_FILE, METRICS_FILE
    from saformer.model.train import train
    from saformer.quant.export import load_export
    from saformer.rtl_sim.core import cycle_model, params_from_export
    from saformer.rtl_sim.synth import synthesize

    ex = load_export(out / EXPORT_DIR)
    base, dwc = params_from_export(ex, ex.graph.of_op("sasa")[0].name, o.hw.lanes)
    tcfg: TrainConfig = DATASET_DEFAULTS[o.dataset].train.replace(epochs=o.epochs)
    rows = []
    work.mkdir(parents=True, exist_ok=True)
    for n_agg in o.sweep_n_agg:
        cfg = ex.cfg.replace(n_agg=n_agg)
        window = cfg.num_tokens // n_agg
        params = dataclasses.replace(base, N_AGG=n_agg, THETA_A=math.ceil(cfg.v_threshold_attn * window * window))
        run = work / f"n_agg{n_agg}"
        done = run / METRICS_FILE
        if done.is_file() and json.loads(done.read_text()).get("complete"):
            metrics = json.loads(done.read_text())
        elif (run / CHECKPOINT_FILE).is_file():
            metrics = train(run, None, None, None, device=o.device, resume=True, progress=o.progress)
        else:
            shutil.rmtree(run, ignore_errors=True)
            metrics = train(run, cfg, tcfg, o.dataset, data_dir=o.data_dir, device=o.device, progress=o.progress)
        syn = synthesize(params, run / "synth", o.hw.family, dwc, o.hw.memory_style)
        rows.append({"n_agg": n_agg, "window": window, "float_test_accuracy": metrics["test_accuracy"],
                     "resources": syn["resources"], "cycles_single_image": cycle_model(params).total,
                     "run_dir": str(run)})
    result = {"lanes": o.hw.lanes, "family": o.hw.family, "rows": rows}  # no rows: no sweep was asked for
    write_json(work / "sweep.json", result)
    return result


def _report(out: Path, work: Path, o: FlowOptions, resume: bool) -> dict[str, Any]:
    from saformer.report.report import build_report

    return build_report(out)


STAGES = [
    Stage("train", (), lambda o: {"dataset": o.dataset, "cfg": o.model_config.to_dict(), "epochs": o.epochs},
          _train, "float", RUN_FILES["float"], resumable=True),
    Stage("quantize", ("train",), lambda o: {"bits": o.weight_bits, "epochs": o.qat_epochs}, _quantize, "qat",
          RUN_FILES["qat"], resumable=True),
    Stage("export", ("quantize",), lambda o: {"check_images": o.check_images}, _export, "export", RUN_FILES["export"]),
    Stage("golden", ("export",), lambda o: {}, _golden, "golden", RUN_FILES["golden"]),
    Stage("accel", ("export",), lambda o: {"images": o.accel_images, "layer_images": o.accel_layer_images,
                                           "hardware": o.hw.to_dict()}, _accel, "accel", RUN_FILES["accel"],
          not_applicable=lambda o: "event-frame inputs are not generated yet" if o.dataset in EVENT_DATASETS else None),
    Stage("hls", ("export",), lambda o: {"images": o.hls_images, "lanes": o.hw.lanes, "part": o.hw.xilinx_part},
          _hls, "hls", RUN_FILES["hls"]),
    Stage("rtl", ("export",), lambda o: {"images": o.rtl_images, "hardware": o.hw.to_dict()}, _rtl, "rtl", RUN_FILES["rtl"]),
    Stage("synth", ("export",), lambda o: {"hardware": o.hw.to_dict(), "pnr": o.pnr}, _synth, "synth",
          RUN_FILES["synth"]),
    Stage("sweep", ("train", "export"), lambda o: {"n_agg": list(o.sweep_n_agg), "epochs": o.epochs, "lanes": o.hw.lanes,
                                                  "family": o.hw.family, "memory_style": o.hw.memory_style}, _sweep, "sweep", RUN_FILES["sweep"],
          resumable=True),
    Stage("report", ("train", "quantize", "export", "golden", "accel", "hls", "rtl", "synth", "sweep"),
          lambda o: {"built": time.time()}, _report, None, "report.json"),  # always rebuilt: it is cheap
]


def _fingerprint(stage: Stage, o: FlowOptions, done: dict[str, Any]) -> str:
    body = {"stage": stage.name, "options": stage.options(o), "data_dir": o.data_dir,
            "upstream": {n: done.get(n, {}).get("fingerprint") for n in stage.needs}}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _marker(work: Path) -> Path:
    """The fingerprint of a partial directory, kept beside it (the stage owns what is inside)."""
    return work.parent / f"{work.name}.json"


def _prepare_work(stage: Stage, out: Path, fp: str, log) -> tuple[Path, bool]:
    """The partial directory a stage writes into, and whether it continues an interrupted run."""
    work = partial_dir(out / stage.directory)
    marker = _marker(work)
    same = marker.is_file() and marker.read_text().strip() == fp
    if stage.resumable and same and work.is_dir():
        from saformer.model.checkpoint import CHECKPOINT_FILE

        if stage.name == "sweep" or (work / CHECKPOINT_FILE).is_file():
            log(f"    continuing the interrupted {stage.name} stage in '{work}'")
            return work, stage.name != "sweep"
    if work.exists():
        shutil.rmtree(work)
    marker.write_text(fp + "\n")
    return work, False


def run_flow(out: Path, options: FlowOptions | None = None, log=print) -> dict[str, Any]:
    """Run every stage that is not up to date; returns flow.json's content."""
    o = options or FlowOptions()
    check_flow_options(o)
    out = Path(out)
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    with DirectoryLock(out, "saformer flow"):
        write_json(out / HARDWARE_FILE, o.hw.to_dict())  # what every hardware stage of this run reads
        return _run_stages(out, o, log)


def _run_stages(out: Path, o: FlowOptions, log) -> dict[str, Any]:
    state_path = out / FLOW_FILE
    try:
        state = json.loads(state_path.read_text()) if state_path.is_file() else {"stages": {}}
        done = state["stages"]
    except (json.JSONDecodeError, KeyError, TypeError):
        log(f"'{state_path}' is unreadable; every stage is redone")
        state, done = {"stages": {}}, {}
    start = time.perf_counter()
    for i, stage in enumerate(STAGES, 1):
        tag = f"[{i}/{len(STAGES)}] {stage.name}"
        fp = _fingerprint(stage, o, done)
        prior = done.get(stage.name, {})
        if prior.get("fingerprint") == fp and (out / stage.output).is_file():
            log(f"{tag}: up to date")
            continue
        reason = "--skip" if stage.name in o.skip else stage.not_applicable(o)
        if reason:  # left out: a stale result of other inputs must not be reported
            if stage.directory and (out / stage.directory).exists():
                shutil.rmtree(out / stage.directory)
            done.pop(stage.name, None)
            log(f"{tag}: skipped ({reason})")
            continue
        log(f"{tag} ...")
        t0 = time.perf_counter()
        if stage.directory is None:
            stage.run(out, out, o, False)
        else:
            work, resume = _prepare_work(stage, out, fp, log)
            stage.run(out, work, o, resume)
            publish(work, out / stage.directory)
            _marker(work).unlink(missing_ok=True)
        done[stage.name] = {"fingerprint": fp, "seconds": time.perf_counter() - t0, "finished": time.time()}
        log(f"{tag}: done in {done[stage.name]['seconds']:.0f} s")
        state["total_seconds_last_run"] = time.perf_counter() - start
        write_json(state_path, state)
    state["total_seconds_last_run"] = time.perf_counter() - start
    write_json(state_path, state)
    return state
