"""The ``saformer`` command line.

One convention for every stage: a stage writes into ``--out DIR`` and reads an earlier stage's
directory as its positional argument, leaving a JSON of what it measured in its directory.
Errors the user can cause print as one line, ``saformer: error: ...``, with exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from saformer.config import ATTENTIONS, CONFIGS, DATASET_DEFAULTS, ECP5_DEVICES, GOLDEN_BACKENDS, MEMORY_STYLES, SURROGATES, \
    WEIGHT_LATENCY_RANGE, XILINX_FAMILIES, HardwareConfig, get_config
from saformer.data import DATASETS, check_data_source
from saformer.errors import CheckpointError, ConfigError, SaformerError
from saformer.graph import SYNAPTIC_OPS
from saformer.flow import HARDWARE_STAGES, FlowOptions
from saformer.rundir import check_out_dir, refuse_whitespace

MAKE_TOOLS = "Verilator's and hls4ml's generated makefiles"


def one_line(text: str) -> str:
    """A message as one printable line: control characters a user typed (a newline in a path) are
    shown escaped, so that the error stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error style: one line, exit status 2 (the usage is in --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see '{self.prog} --help')\n")


# ---- argument types: a value out of range is refused by the parser, naming the option -------------
def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {value}")
        return value
    parse.__name__ = f"integer >= {lo}"
    return parse


def _float_in(lo: float, hi: float | None = None, lo_open: bool = False, hi_open: bool = True):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= lo if lo_open else value < lo
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if value != value or too_low or too_high or value in (float("inf"), float("-inf")):
            span = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}{')' if hi_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be in {span}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


def _int_list(text: str) -> list[int]:
    items = [x.strip() for x in text.split(",")]
    if not items or any(not x.lstrip("-").isdigit() for x in items):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers (e.g. 1,4,16), got {text!r}")
    values = [int(x) for x in items]
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"every value must be at least 1, got {text}")
    return values


POSITIVE, NON_NEGATIVE = _int_at_least(1), _int_at_least(0)
MODEL_OVERRIDES = ("config", "time_steps", "n_agg", "no_agg", "no_dwc", "attention", "depth", "dim", "heads",
                   "surrogate")
TRAIN_OVERRIDES = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "label_smoothing", "seed",
                   "no_augment")


def _flags_given(args: argparse.Namespace, names) -> list[str]:
    """The options among ``names`` that the user passed (every such option defaults to None/False)."""
    return [f"--{n.replace('_', '-')}" for n in names if getattr(args, n, None) not in (None, False)]


def _add_model_overrides(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model overrides (on top of --config)")
    g.add_argument("--time-steps", "-T", type=POSITIVE, help="time steps T")
    g.add_argument("--n-agg", type=POSITIVE, help="N': tokens after SASA's aggregation (must divide N)")
    g.add_argument("--no-agg", action="store_true", help="SASA without aggregation (N' = N)")
    g.add_argument("--no-dwc", action="store_true", help="SASA without its depthwise-conv branch")
    g.add_argument("--attention", choices=ATTENTIONS, help="attention variant (SSA, SDSA: baselines)")
    g.add_argument("--depth", type=POSITIVE, help="encoder blocks L")
    g.add_argument("--dim", type=POSITIVE, help="embedding channels D")
    g.add_argument("--heads", type=POSITIVE, help="heads of the SSA/SDSA baselines (SASA has none)")
    g.add_argument("--surrogate", choices=SURROGATES)


def _model_config(args: argparse.Namespace, dataset: str):
    """The named config (or the data set's default) with the data set's class count and the
    command line's overrides applied."""
    defaults = DATASET_DEFAULTS[dataset]
    cfg = get_config(args.config or defaults.config)
    if args.heads is not None and (args.attention or cfg.attention) == "sasa":
        raise ConfigError("--heads sets the SSA/SDSA baselines' heads; SASA works per channel and has none")
    cfg = cfg.replace(
        time_steps=args.time_steps, attention=args.attention, depth=args.depth, dim=args.dim, heads=args.heads,
        surrogate=args.surrogate, num_classes=defaults.num_classes)
    if args.no_dwc:
        cfg = cfg.replace(dwc=False)
    if args.no_agg and args.n_agg is not None:
        raise ConfigError("--no-agg and --n-agg contradict each other")
    if args.no_agg:
        cfg = cfg.replace(n_agg=cfg.num_tokens)
    elif args.n_agg is not None:
        cfg = cfg.replace(n_agg=args.n_agg)
    return cfg


def _check_device(args: argparse.Namespace) -> None:
    if getattr(args, "device", None) is not None:
        from saformer.model.train import resolve_device

        resolve_device(args.device)


# ---- up-front checks: everything that can be refused before work starts, writing nothing --------
def check_train(args: argparse.Namespace):
    from saformer.model.checkpoint import read_run
    from saformer.model.train import refuse_existing_run

    check_out_dir(args.out)
    _check_device(args)
    if args.resume:
        given = _flags_given(args, ("dataset", "download", *MODEL_OVERRIDES, *TRAIN_OVERRIDES))
        if given:
            raise ConfigError(f"--resume continues the run in '{args.out}' as it was started; {', '.join(given)} "
                              "would change it (start a new run with another --out instead)")
        run = read_run(args.out)
        if run["stage"] != "float":
            raise CheckpointError(f"'{args.out}' is a {run['stage']} run; continue it with 'saformer quantize --resume'")
        check_data_source(run["dataset"], args.data_dir)
        return None, None, None
    dataset = args.dataset or "digits"
    check_data_source(dataset, args.data_dir, args.download)
    cfg = _model_config(args, dataset)
    tcfg = DATASET_DEFAULTS[dataset].train.replace(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing, seed=args.seed, warmup_epochs=args.warmup_epochs)
    if args.no_augment:
        tcfg = tcfg.replace(augment=False)
    refuse_existing_run(args.out)
    return cfg, tcfg, dataset


def cmd_train(args: argparse.Namespace) -> int:
    from saformer.model.distributed import ranks_from_env
    from saformer.model.train import train

    cfg, tcfg, dataset = check_train(args)
    m = train(Path(args.out), cfg, tcfg, dataset, data_dir=args.data_dir, device=args.device, resume=args.resume,
              max_minutes=args.max_minutes, compile_model=args.compile, amp=not args.no_amp,
              workers=args.workers, download=args.download, progress=not args.no_progress)
    if not ranks_from_env().main:  # under torchrun, rank 0 reports
        return 0
    print(f"\n{m['config']} on {m['dataset']}: test accuracy {m['test_accuracy'] * 100:.2f}% "
          f"after {m['epochs_done']} epochs ({m['train_minutes_total']:.1f} min, "
          f"{m['train_images_per_s_median']:.0f} train img/s, {m['eval_images_per_s']:.0f} eval img/s)")
    _print_rates(m["firing_rates"])
    print(f"wrote {Path(args.out) / 'metrics.json'}")
    return 0


def check_eval(args: argparse.Namespace) -> None:
    from saformer.model.checkpoint import read_run

    _check_device(args)
    run = read_run(args.run_dir)
    if args.config:
        get_config(args.config)
    check_data_source(run["dataset"], args.data_dir)
    if args.out:
        check_out_dir(args.out)


def cmd_eval(args: argparse.Namespace) -> int:
    from saformer.model.train import evaluate_run

    check_eval(args)
    cfg = get_config(args.config) if args.config else None
    m = evaluate_run(Path(args.run_dir), Path(args.out) if args.out else None, data_dir=args.data_dir,
                     batch_size=args.batch_size, device=args.device, cfg=cfg, amp=not args.no_amp,
                     progress=not args.no_progress, probes=not args.no_attention_probes)
    print(f"{m['config']} on {m['dataset']} ({m['images']} test images): accuracy {m['test_accuracy'] * 100:.2f}%, "
          f"loss {m['test_loss']:.4f}, {m['eval_images_per_s']:.0f} img/s")
    _print_rates(m["firing_rates"])
    _print_attention(m["attention"])
    return 0


def _print_attention(a: dict | None) -> None:
    """One line of attention diagnostics (saformer eval and saformer golden share the schema)."""
    if not a:
        return

    def pct(v: float | None) -> str:
        return "n/a (no mask)" if v is None else f"{v * 100:.2f}%"

    def rates(c: dict) -> str:  # the neurons' own names where the float model's diagnostics give them
        names = (c.get("mask_neuron") or "lif_a", c.get("output_neuron") or "lif_o")
        return " / ".join(f"{n.replace('lif_', 'LIF_')} {c[k]:.3f}" for n, k in zip(names, ("lif_a_rate", "lif_o_rate"))
                          if c[k] is not None)

    print(f"attention diagnostics: model {pct(a['accuracy_model'])}, attention output zeroed "
          f"{pct(a['accuracy_sasa_output_zeroed'])}, mask all ones {pct(a['accuracy_mask_all_ones'])}; firing rates "
          + ", ".join(f"{c['core']} {rates(c)}" for c in a["cores"]))


def _layer_bits(args: argparse.Namespace) -> list[tuple[str, int]]:
    layer_bits = []
    for item in args.layer_bits or []:
        name, _, bits = item.partition("=")
        if not name or not bits.isdigit():
            raise ConfigError(f"--layer-bits takes NAME=BITS (e.g. blocks.0.mlp.fc1=4), got {item!r}")
        layer_bits.append((name, int(bits)))
    return layer_bits


def check_quantize(args: argparse.Namespace):
    """Returns (mode, cfg, qcfg, dataset) for a run that may start, or raises naming the problem."""
    from saformer.model.checkpoint import read_run
    from saformer.model.train import refuse_existing_run
    from saformer.quant.qat import check_quantizable
    from saformer.quant.stages import check_layer_bits, default_quant_config

    check_out_dir(args.out)
    _check_device(args)
    if args.resume:
        given = _flags_given(args, ("run_dir", "weight_bits", "layer_bits", "from_scratch", "dataset",
                                    *MODEL_OVERRIDES, "epochs", "batch_size", "lr", "seed"))
        if given:
            raise ConfigError(f"--resume continues the QAT run in '{args.out}' as it was started; "
                              f"{', '.join(given)} would change it (start a new run with another --out instead)")
        run = read_run(args.out)
        if run["stage"] != "qat":
            raise CheckpointError(f"'{args.out}' is a {run['stage']} run, not a QAT run; "
                                  "quantize --resume continues runs written by 'saformer quantize'")
        return "resume", None, None, None
    layer_bits = _layer_bits(args)
    if args.from_scratch:
        if args.run_dir:
            raise ConfigError("--from-scratch takes no float run directory")
        dataset = args.dataset or "digits"
        check_data_source(dataset, args.data_dir)
        cfg = _model_config(args, dataset)
    else:
        if not args.run_dir:
            raise ConfigError("quantize needs a float run directory (or --from-scratch)")
        given = _flags_given(args, ("dataset", *MODEL_OVERRIDES))
        if given:
            raise ConfigError(f"{', '.join(given)}: quantize takes the model and data set of the float run "
                              f"'{args.run_dir}' (these options are for --from-scratch)")
        run = read_run(args.run_dir)
        if run["stage"] != "float":
            raise CheckpointError(f"'{args.run_dir}' is a {run['stage']} run; quantize starts from a float run")
        if Path(args.out).resolve() == Path(args.run_dir).resolve():
            raise ConfigError(f"--out '{args.out}' is the float run itself; choose another directory")
        from saformer.config import ModelConfig

        dataset, cfg = run["dataset"], ModelConfig.from_dict(run["model_config"])
        check_data_source(dataset, args.data_dir)
    qcfg = default_quant_config(dataset, weight_bits=args.weight_bits, layer_weight_bits=tuple(layer_bits))
    check_quantizable(cfg)
    check_layer_bits(cfg, qcfg)
    refuse_existing_run(args.out)
    return ("scratch" if args.from_scratch else "float"), cfg, qcfg, dataset


def cmd_quantize(args: argparse.Namespace) -> int:
    from saformer.quant.stages import quantize

    mode, cfg, qcfg, dataset = check_quantize(args)
    overrides = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    if mode == "resume":
        m = quantize(Path(args.out), None, resume=True, device=args.device, max_minutes=args.max_minutes,
                     progress=not args.no_progress)
    elif mode == "scratch":
        m = quantize(Path(args.out), qcfg, cfg=cfg, dataset=dataset, data_dir=args.data_dir,
                     device=args.device, max_minutes=args.max_minutes, progress=not args.no_progress, **overrides)
    else:
        m = quantize(Path(args.out), qcfg, run_dir=Path(args.run_dir), data_dir=args.data_dir, device=args.device,
                     max_minutes=args.max_minutes, progress=not args.no_progress, **overrides)
    print(f"\nQAT {m['config']} on {m['dataset']}: test accuracy {m['test_accuracy'] * 100:.2f}% "
          f"(before QAT {m.get('ptq_test_accuracy', float('nan')) * 100:.2f}%"
          + (f", float {m['float_test_accuracy'] * 100:.2f}%" if m.get("float_test_accuracy") is not None else "")
          + f"); wrote {Path(args.out) / 'metrics.json'}")
    return 0


def check_export(args: argparse.Namespace) -> None:
    from saformer.quant.stages import check_export_target

    run = check_export_target(Path(args.qrun_dir), Path(args.out), force=args.force)
    check_data_source(run["dataset"], args.data_dir)


def cmd_export(args: argparse.Namespace) -> int:
    from saformer.quant.stages import export_run

    check_export(args)
    r = export_run(Path(args.qrun_dir), Path(args.out), check_images=args.check_images, qonnx=not args.no_qonnx,
                   data_dir=args.data_dir, force=args.force)
    check = r["golden_vs_qat"]
    verdict = "bit-exact" if check["bit_exact"] else f"NOT bit-exact: {check['mismatching']}"
    print(f"wrote {r['tensors']} tensors ({r['weight_bytes']} bytes) to {args.out}, hash {r['content_hash'][:16]}")
    print(f"golden model vs QAT model on {check['images']} test images, {check['traces']} traces: {verdict}")
    if "qonnx" in r:
        ok = sum(v["equals_golden_accumulator"] for v in r["qonnx"].values())
        print(f"QONNX: {len(r['qonnx'])} layers written to {Path(args.out) / 'qonnx'}, loaded back; "
              f"{ok}/{len(r['qonnx'])} equal the golden accumulator")
    return 0 if check["bit_exact"] else 1


def _check_export_input(args: argparse.Namespace):
    from saformer.quant.export import load_export

    ex = load_export(Path(args.export_dir))
    check_data_source(ex.manifest["dataset"], args.data_dir)
    return ex


def check_golden(args: argparse.Namespace) -> None:
    if args.out:
        check_out_dir(args.out)
    if args.crosscheck and args.backend != "torch":
        raise ConfigError(f"--crosscheck compares the torch backend with the numpy model; add --backend torch "
                          f"(the backend is '{args.backend}')")
    _check_export_input(args)


def cmd_golden(args: argparse.Namespace) -> int:
    from saformer.quant.stages import golden_eval

    check_golden(args)
    r = golden_eval(Path(args.export_dir), Path(args.out) if args.out else None, data_dir=args.data_dir,
                    batch_size=args.batch_size, limit=args.limit, progress=not args.no_progress,
                    backend=args.backend, device=args.device, probes=not args.no_attention_probes,
                    crosscheck=args.crosscheck)
    qat = r["qat_test_accuracy"]
    print(f"integer golden model ({r['config']}, {r['weight_bits']}-bit weights) on {r['images']} {r['dataset']} "
          f"test images: accuracy {r['test_accuracy'] * 100:.2f}%"
          + (f" (QAT model: {qat * 100:.2f}%{' on the whole test set' if args.limit else ''})" if qat is not None else "")
          + f", {r['images_per_s']:.1f} img/s ({r['backend']} on {r['device']})")
    _print_attention(r["attention"])
    if r["crosscheck"]:
        print(f"torch backend vs numpy model on the first {r['crosscheck']['images']} images: logits equal")
    return 0


def _check_build_paths(out: str) -> None:
    """Verilator's and hls4ml's makefiles break on whitespace in the build directory or in the
    path of the sources they compile: refuse up front, not minutes into a build."""
    from saformer.rtl_sim.core import HDL_DIR

    refuse_whitespace(out, "--out", MAKE_TOOLS)
    refuse_whitespace(HDL_DIR, "the saformer package's HDL folder", MAKE_TOOLS)


def _check_lanes(ex, lanes: int) -> None:
    """Every SASA layer of the export must take the lane count (refused before the golden run)."""
    from saformer.rtl_sim.core import check_lanes

    try:
        check_lanes(ex, lanes)
    except ConfigError as exc:
        raise ConfigError(f"--lanes {lanes}: {exc}") from None


def check_rtl(args: argparse.Namespace) -> None:
    check_out_dir(args.out)
    _check_build_paths(args.out)
    ex = _check_export_input(args)
    _check_lanes(ex, args.lanes)


def cmd_rtl(args: argparse.Namespace) -> int:
    from saformer.rtl_sim.cosim import cosimulate_export

    check_rtl(args)
    r = cosimulate_export(Path(args.export_dir), Path(args.out), hw=HardwareConfig(lanes=args.lanes), images=args.images,
                          p_idle=args.p_idle, p_backpressure=args.p_backpressure, seed=args.seed,
                          data_dir=args.data_dir)
    width = max(5, *(len(x["layer"]) for x in r["layers"]))
    print(f"{'layer':>{width}} {'bit-exact':>10} {'with stalls':>12} {'cycles':>8} {'model':>8}")
    for x in r["layers"]:
        print(f"{x['layer']:>{width}} {str(x['bit_exact_stall_free']):>10} {str(x['bit_exact_with_stalls']):>12} "
              f"{x['cycles']:>8} {x['predicted_cycles']:>8}")
    print(f"wrote {Path(args.out) / 'rtl.json'}")
    return 0 if r["all_bit_exact"] and r["all_cycles_match"] else 1


def _engine_lanes(text: str | None, ex) -> tuple[tuple[str, int], ...]:
    """--engine-lanes LAYER=N[,LAYER=N...] against the export's synaptic layers."""
    if not text:
        return ()
    layers = [n.name for n in ex.graph if n.op in SYNAPTIC_OPS]
    pairs = []
    for item in text.split(","):
        name, _, lanes = item.strip().partition("=")
        if name not in layers or not lanes.strip().isdigit() or int(lanes) < 1:
            raise ConfigError(f"--engine-lanes: '{item.strip()}' is not LAYER=N with N >= 1 and LAYER one of {layers}")
        outputs = ex.graph[name].channels
        if outputs % int(lanes):
            raise ConfigError(f"--engine-lanes: {name}={lanes}: the lanes must divide its {outputs} outputs")
        pairs.append((name, int(lanes)))
    return tuple(pairs)


def _weight_stream(text: str | None, ex) -> tuple[str, ...]:
    """--weight-stream LAYER[,LAYER...] or 'all' against the export's synaptic layers."""
    if not text:
        return ()
    names = tuple(n.strip() for n in text.split(","))
    if names == ("all",):
        return names
    layers = [n.name for n in ex.graph if n.op in SYNAPTIC_OPS]
    for name in names:
        if name not in layers:
            raise ConfigError(f"--weight-stream: '{name}' is not a synaptic layer; give 'all' or names from {layers}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--weight-stream: a layer is named twice in '{text}'")
    return names


def check_accel(args: argparse.Namespace) -> HardwareConfig:
    check_out_dir(args.out)
    _check_build_paths(args.out)
    ex = _check_export_input(args)
    if args.engine_lanes and args.target_cycles:
        raise ConfigError("--engine-lanes and --target-cycles both choose the engines' lanes; give one")
    if args.weight_latency is not None and not args.weight_stream:
        raise ConfigError("--weight-latency is the external memory's, for the engines of --weight-stream; give those too")
    return HardwareConfig(lanes=args.lanes, engine_lanes=_engine_lanes(args.engine_lanes, ex),
                          weight_stream=_weight_stream(args.weight_stream, ex),
                          engine_output_register=not args.no_engine_output_register,
                          **({} if args.weight_latency is None else {"weight_stream_latency": args.weight_latency}))


def cmd_accel(args: argparse.Namespace) -> int:
    from saformer.rtl_sim.accel import ACCEL_MD, accelerate_export

    hw = check_accel(args)
    r = accelerate_export(Path(args.export_dir), Path(args.out), hw, args.images,
                          args.data_dir, layer_images=args.layer_images, target_cycles=args.target_cycles,
                          jobs=args.jobs)
    print((Path(args.out) / ACCEL_MD).read_text())
    return 0 if (r["bit_exact"] and r["layers_bit_exact"] and (r["stalls"] or {}).get("bit_exact", True)
                 and r["cycle_model"]["exact"]) else 1


def _hls_options(args: argparse.Namespace):
    from saformer.hls.flow import HlsOptions, LayerOptions

    overrides = {"backend": args.backend, "part": args.part, "clock_period": args.clock_period}
    if args.hls_config:
        options = HlsOptions.from_file(Path(args.hls_config), **overrides)
    else:
        options = HlsOptions(**{k: v for k, v in overrides.items() if v is not None})
    if args.reuse_factor is not None or args.strategy is not None:
        d = options.defaults
        options = dataclasses.replace(options, defaults=LayerOptions(
            d.reuse_factor if args.reuse_factor is None else args.reuse_factor, args.strategy or d.strategy))
    return options


def check_hls(args: argparse.Namespace):
    from saformer.hls.stages import build_stages

    check_out_dir(args.out)
    _check_build_paths(args.out)
    if args.no_rtl and args.lanes is not None:
        raise ConfigError("--lanes sets the RTL core of the mixed hls4ml -> RTL check, which --no-rtl skips")
    options = _hls_options(args)
    ex = _check_export_input(args)
    names = [s.name for s in build_stages(ex)]
    unknown = sorted(set(args.stage or ()) - set(names))
    if unknown:
        raise ConfigError(f"unknown hls stage(s) {unknown}; this export has {names}")
    lanes = None if args.no_rtl else (args.lanes or DEFAULT_LANES)
    if lanes is not None:
        _check_lanes(ex, lanes)
    return options, lanes


def cmd_hls(args: argparse.Namespace) -> int:
    from saformer.crosscheck import HlsIntoRtl
    from saformer.hls.flow import HLS_FILE, build_hls

    options, lanes = check_hls(args)
    r = build_hls(Path(args.export_dir), Path(args.out), options, images=args.images, data_dir=args.data_dir,
                  mixed=HlsIntoRtl(lanes) if lanes is not None else None, stages=args.stage,
                  progress=not args.no_progress)
    print(f"{'stage':<16} {'C sim vs golden':>16} {'values':>9} {'compile s':>10} {'adders':>8} {'mults':>6}")
    for x in r["stages"]:
        res = x["resources"]
        print(f"{x['stage']:<16} {'bit-exact' if x['bit_exact'] else 'MISMATCH':>16} "
              f"{sum(c['values'] for c in x['checks']):>9} {x['compile_seconds']:>10.1f} "
              f"{res.get('adders', '-'):>8} {res.get('multipliers', '-'):>6}")
        for c in x["checks"]:
            if c["mismatches"]:
                print(f"    {c['layer']} vs {c['golden']}: {c['mismatches']} of {c['values']} differ")
    for m in r["mixed_hls_rtl"]:
        print(f"mixed check, SASA layer {m['layer']}: hls4ml Q/K -> RTL core: "
              f"{'bit-exact' if m['bit_exact'] else 'MISMATCH'} ({m['cycles']} cycles)")
    print(f"wrote {Path(args.out) / HLS_FILE}")
    return 0 if r["all_bit_exact"] and r["mixed_bit_exact"] in (None, True) else 1


def check_flow(args: argparse.Namespace):
    from saformer.flow import check_flow_options

    check_out_dir(args.out)
    _check_device(args)
    dataset = args.dataset or "digits"
    check_data_source(dataset, args.data_dir)
    cfg = _model_config(args, dataset)
    opts = FlowOptions(dataset=dataset, data_dir=args.data_dir, cfg=cfg, epochs=args.epochs,
                       qat_epochs=args.qat_epochs, weight_bits=args.weight_bits, hls_images=args.hls_images,
                       rtl_images=args.rtl_images, check_images=args.check_images,
                       accel_images=args.accel_images, accel_layer_images=args.accel_layer_images,
                       hw=HardwareConfig(lanes=args.lanes, family=args.family, ecp5_device=args.ecp5_device,
                                         clock_mhz=args.clock_mhz, memory_style=args.memory_style),
                       pnr=not args.no_pnr, device=args.device, progress=not args.no_progress,
                       sweep_n_agg=tuple(args.sweep_n_agg or ()), skip=tuple(args.skip or ()))
    check_flow_options(opts)
    if not {"accel", "hls", "rtl"} <= set(opts.skip):
        _check_build_paths(args.out)
    return opts


def cmd_flow(args: argparse.Namespace) -> int:
    from saformer.flow import run_flow
    from saformer.report.report import REPORT_MD

    state = run_flow(Path(args.out), check_flow(args))
    print(f"flow finished in {state['total_seconds_last_run'] / 60:.1f} min; report: {Path(args.out) / REPORT_MD}")
    return _mismatch_status(json.loads((Path(args.out) / "report.json").read_text()))


def _mismatch_status(report: dict) -> int:
    """Exit status 1 when any comparison of the report found a difference (the report says where)."""
    failed = [b["comparison"] for b in report["bit_exact"] if b["verdict"] == "MISMATCH"]
    if failed:
        print(f"MISMATCH in {len(failed)} comparison(s): {'; '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def check_report(args: argparse.Namespace) -> None:
    if not Path(args.run_dir).is_dir():
        raise ConfigError(f"run directory '{args.run_dir}' does not exist")


def cmd_report(args: argparse.Namespace) -> int:
    from saformer.report.report import REPORT_MD, build_report

    check_report(args)
    r = build_report(Path(args.run_dir))
    for a in r["accuracy"]:
        print(f"{a['level']:<45} {a['accuracy'] * 100:6.2f}%")
    for b in r["bit_exact"]:
        print(f"{b['comparison']:<70} {b['verdict']}")
    print(f"wrote {Path(args.run_dir) / REPORT_MD}")
    return _mismatch_status(r)


def _print_rates(rates: dict[str, float]) -> None:
    width = max(len(k) for k in rates)
    print(f"\n{'LIF layer':<{width}}  firing rate")
    for name, rate in rates.items():
        print(f"{name:<{width}}  {rate:.4f}")


DEFAULT_LANES = HardwareConfig().lanes  # the SASA core's lanes P when none is given (rtl, hls, flow)
PROBABILITY = _float_in(0.0, 1.0)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="saformer", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train the float model (or continue a run with --resume)")
    p.add_argument("--out", required=True, help="run directory to write (checkpoint, metrics.json)")
    p.add_argument("--dataset", choices=DATASETS, help="default: digits (no download)")
    p.add_argument("--data-dir", help="data directory (CIFAR, DVS); digits needs none")
    p.add_argument("--download", action="store_true", help="download CIFAR with torchvision where a network exists")
    p.add_argument("--config", help=f"named config: {', '.join(CONFIGS)} (default: the data set's)")
    _add_model_overrides(p)
    g = p.add_argument_group("training (defaults depend on the data set)")
    g.add_argument("--epochs", type=POSITIVE)
    g.add_argument("--batch-size", type=POSITIVE)
    g.add_argument("--lr", type=_float_in(0.0, lo_open=True, hi=None))
    g.add_argument("--weight-decay", type=_float_in(0.0))
    g.add_argument("--warmup-epochs", type=_float_in(0.0))
    g.add_argument("--label-smoothing", type=PROBABILITY)
    g.add_argument("--seed", type=NON_NEGATIVE)
    g.add_argument("--no-augment", action="store_true")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    g.add_argument("--max-minutes", type=_float_in(0.0), help="stop after the epoch that passes this time (resumable)")
    _add_runtime(p)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU runs)")
    p.set_defaults(func=cmd_train, check=check_train)

    p = sub.add_parser("eval", help="evaluate a run's checkpoint on its test split")
    p.add_argument("run_dir", help="a directory written by 'saformer train'")
    p.add_argument("--out", help="write metrics.json here (default: RUN_DIR/eval.json)")
    p.add_argument("--data-dir", help="override the run's data directory")
    p.add_argument("--config", help="check that the checkpoint is of this named config")
    p.add_argument("--batch-size", type=POSITIVE, default=256)
    p.add_argument("--no-attention-probes", action="store_true",
                   help="skip the attention diagnostics (accuracy with the attention output zeroed / the mask "
                        "forced open: two more passes over the test set)")
    _add_runtime(p)
    p.set_defaults(func=cmd_eval, check=check_eval)

    p = sub.add_parser("quantize", help="quantization-aware training from a float run (or from scratch)")
    p.add_argument("run_dir", nargs="?", help="a float run directory written by 'saformer train'")
    p.add_argument("--out", required=True, help="QAT run directory to write")
    p.add_argument("--weight-bits", type=int, help="signed weight bits, 2..16 (default 8)")
    p.add_argument("--layer-bits", action="append", metavar="NAME=BITS",
                   help="per-layer weight bits, e.g. blocks.0.mlp.fc1=4 (repeatable)")
    p.add_argument("--from-scratch", action="store_true", help="no float run: QAT from a BN-calibrated init")
    p.add_argument("--dataset", choices=DATASETS, help="with --from-scratch (default: digits)")
    p.add_argument("--data-dir")
    p.add_argument("--config", help="with --from-scratch: named config")
    _add_model_overrides(p)
    g = p.add_argument_group("training (defaults: half the float epochs at a third of its learning rate)")
    g.add_argument("--epochs", type=POSITIVE)
    g.add_argument("--batch-size", type=POSITIVE)
    g.add_argument("--lr", type=_float_in(0.0, lo_open=True, hi=None))
    g.add_argument("--seed", type=NON_NEGATIVE)
    g.add_argument("--resume", action="store_true")
    g.add_argument("--max-minutes", type=_float_in(0.0))
    _add_runtime(p)
    p.set_defaults(func=cmd_quantize, check=check_quantize)

    p = sub.add_parser("export", help="write the integer export of a QAT run and check it against the golden model")
    p.add_argument("qrun_dir", help="a QAT run directory written by 'saformer quantize'")
    p.add_argument("--out", required=True, help="export directory to write (new, or an export to replace with --force)")
    p.add_argument("--force", action="store_true", help="replace the export already in --out")
    p.add_argument("--check-images", type=POSITIVE, default=64, help="test images for the golden-vs-QAT check")
    p.add_argument("--no-qonnx", action="store_true", help="skip the QONNX files")
    p.add_argument("--data-dir")
    p.set_defaults(func=cmd_export, check=check_export)

    p = sub.add_parser("golden", help="accuracy of the integer golden model of an export")
    p.add_argument("export_dir", help="a directory written by 'saformer export'")
    p.add_argument("--out", help="write golden.json here (default: the export directory)")
    p.add_argument("--data-dir")
    p.add_argument("--batch-size", type=POSITIVE, default=64)
    p.add_argument("--limit", type=POSITIVE, help="only the first N test images")
    p.add_argument("--backend", choices=list(GOLDEN_BACKENDS), default=GOLDEN_BACKENDS[0],
                   help="numpy (the definition) or torch (bit-exact with it, any device; faster)")
    p.add_argument("--device", default="cpu", help="torch device of --backend torch, e.g. cuda (default cpu)")
    p.add_argument("--crosscheck", type=NON_NEGATIVE, default=0, metavar="N",
                   help="with --backend torch: run the numpy model (the definition) on the first N images "
                        "too and require equal logits")
    p.add_argument("--no-attention-probes", action="store_true",
                   help="skip the attention diagnostics (accuracy with the SASA output zeroed / the mask all "
                        "ones: two more passes over the test set)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_golden, check=check_golden)

    p = sub.add_parser("rtl", help="co-simulate every SASA layer of an export on the RTL core (Verilator)")
    p.add_argument("export_dir", help="a directory written by 'saformer export'")
    p.add_argument("--out", required=True, help="directory for builds, stimuli and rtl.json")
    p.add_argument("--lanes", "-P", type=POSITIVE, default=DEFAULT_LANES, help="channels per beat P (must divide D)")
    p.add_argument("--images", type=POSITIVE, default=4, help="test images streamed back to back")
    p.add_argument("--p-idle", type=PROBABILITY, default=0.2, help="input idle probability in the stalled run")
    p.add_argument("--p-backpressure", type=PROBABILITY, default=0.2, help="output not-ready probability")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0)
    p.add_argument("--data-dir")
    p.set_defaults(func=cmd_rtl, check=check_rtl)

    p = sub.add_parser("accel", help="the whole accelerator of an export: generated, simulated end to end (Verilator)")
    p.add_argument("export_dir", help="a directory written by 'saformer export'")
    p.add_argument("--out", required=True, help="directory for the build and accel.json / accel.md")
    p.add_argument("--lanes", "-P", type=POSITIVE, default=DEFAULT_LANES,
                   help="lanes of every engine (the largest divisor of its outputs up to this); the SASA cores' P")
    p.add_argument("--engine-lanes", metavar="LAYER=N[,LAYER=N...]",
                   help="lanes of named engines (graph node names, e.g. sps.convs.3=32), overriding --lanes; "
                        "an engine of other lanes than the stream it feeds reaches it through a lane gearbox")
    p.add_argument("--target-cycles", type=POSITIVE, metavar="N",
                   help="choose every engine's lanes, fewest first, until the pipeline takes at most N cycles per "
                        "image on average as the exact cycle model computes it on the first test images "
                        "(saformer.rtl_sim.balance.balance_to_cycles)")
    p.add_argument("--weight-stream", metavar="LAYER[,LAYER...]|all",
                   help="engines that take their weights from external memory on a weight stream port (a burst per "
                        "spike) instead of an on-chip ROM, for weights that do not fit the part; simulated with a "
                        "memory model")
    p.add_argument("--weight-latency", type=int, metavar="CYCLES",
                   help=f"that memory's latency, a burst's request to its first word (default "
                        f"{HardwareConfig.weight_stream_latency}; {WEIGHT_LATENCY_RANGE[0]}..{WEIGHT_LATENCY_RANGE[1]})")
    p.add_argument("--no-engine-output-register", action="store_true",
                   help="engines' m_data straight from their output FIFO's LUT RAM: a LUT and a flip-flop less per "
                        "output bit, for parts with fast LUT RAM (UltraScale+); the same cycles")
    p.add_argument("--images", type=POSITIVE, help="the first N test images (default: the whole test set)")
    p.add_argument("--layer-images", type=NON_NEGATIVE, default=2,
                   help="images whose spikes inside the network (SPS, every SASA core, the head's LIF) are "
                        "compared with the golden traces, one cut top each (default 2; 0: none)")
    p.add_argument("--jobs", "-j", type=POSITIVE, default=1,
                   help="harness processes that stream the images side by side, a contiguous shard each "
                        "(default 1; up to the cores: each shard's first image includes a pipeline fill)")
    p.add_argument("--data-dir")
    p.set_defaults(func=cmd_accel, check=check_accel)

    p = sub.add_parser("hls", help="hls4ml projects of the synaptic stages, C-simulated against the golden model")
    p.add_argument("export_dir", help="a directory written by 'saformer export'")
    p.add_argument("--out", required=True, help="directory for the hls4ml projects and hls.json")
    p.add_argument("--hls-config", help="YAML/JSON options: backend, part, clock_period, defaults, layers "
                                        "(per-layer reuse_factor / strategy by '<stage>/<layer>' pattern)")
    p.add_argument("--backend", choices=["Vitis", "Vivado"], help="default: Vitis")
    p.add_argument("--part", help="FPGA part (default: hls4ml's)")
    p.add_argument("--clock-period", type=_float_in(0.0, lo_open=True, hi=None), help="ns (default 5)")
    p.add_argument("--reuse-factor", type=POSITIVE, help="default reuse factor of every layer (default 1)")
    p.add_argument("--strategy", choices=["Latency", "Resource"], help="default strategy (default Latency)")
    p.add_argument("--images", type=POSITIVE, default=8, help="test images run through every stage (T calls each)")
    p.add_argument("--stage", action="append", help="only this stage (repeatable), e.g. blocks.0.qk")
    p.add_argument("--lanes", "-P", type=POSITIVE,
                   help=f"RTL core lanes for the mixed hls4ml -> RTL check (default {DEFAULT_LANES})")
    p.add_argument("--no-rtl", action="store_true", help="skip the mixed check (no Verilator)")
    p.add_argument("--data-dir")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_hls, check=check_hls)

    p = sub.add_parser("flow", help="the whole flow: train, QAT, export, golden, hls4ml, RTL, synthesis, report")
    p.add_argument("--out", required=True, help="run directory (stages already done with the same inputs are kept)")
    p.add_argument("--dataset", choices=DATASETS, help="default: digits (no download)")
    p.add_argument("--data-dir", help="data directory (CIFAR, DVS)")
    p.add_argument("--config", help=f"named config: {', '.join(CONFIGS)} (default: the data set's)")
    _add_model_overrides(p)
    p.add_argument("--epochs", type=POSITIVE, help="float training epochs (default: the data set's)")
    p.add_argument("--qat-epochs", type=POSITIVE, help="QAT fine-tuning epochs (default: the data set's)")
    p.add_argument("--weight-bits", type=int, default=8, help="signed weight bits, 2..16")
    p.add_argument("--check-images", type=POSITIVE, default=64, help="images for the golden-vs-QAT trace check")
    p.add_argument("--hls-images", type=POSITIVE, default=4, help="images through the hls4ml C simulation")
    p.add_argument("--rtl-images", type=POSITIVE, default=4, help="images through the RTL co-simulation")
    p.add_argument("--accel-images", type=NON_NEGATIVE, default=FlowOptions.accel_images,
                   help=f"test images through the whole accelerator (default {FlowOptions.accel_images}; "
                        "0: the whole test set)")
    p.add_argument("--accel-layer-images", type=NON_NEGATIVE, default=FlowOptions.accel_layer_images,
                   help="images whose spikes inside the accelerator (SPS, every SASA core, the head's LIF) are "
                        f"compared with the golden traces (default {FlowOptions.accel_layer_images}; 0: none)")
    p.add_argument("--lanes", "-P", type=POSITIVE, default=DEFAULT_LANES,
                   help="lanes: the SASA cores' P, and every engine's (the largest divisor of its outputs up to this)")
    hw = HardwareConfig()
    p.add_argument("--family", choices=sorted(XILINX_FAMILIES), default=hw.family,
                   help=f"Xilinx family of the Yosys resource counts (default {hw.family})")
    p.add_argument("--ecp5-device", choices=sorted(ECP5_DEVICES), default=hw.ecp5_device,
                   help=f"ECP5 part for place and route (default {hw.ecp5_device})")
    p.add_argument("--clock-mhz", type=_float_in(0.0, lo_open=True, hi=1000.0), default=hw.clock_mhz,
                   help=f"target clock of place and route (default {hw.clock_mhz:g} MHz)")
    p.add_argument("--memory-style", choices=list(MEMORY_STYLES), default=hw.memory_style,
                   help=f"how synthesis maps memories (default {hw.memory_style}: Yosys's choice by size)")
    p.add_argument("--no-pnr", action="store_true", help="skip the nextpnr ECP5 clock estimate")
    p.add_argument("--skip", action="append", choices=list(HARDWARE_STAGES),
                   help="leave out a hardware stage (repeatable); the report says 'not run' for it")
    p.add_argument("--sweep-n-agg", type=_int_list, metavar="N1,N2,...",
                   help="also sweep N' (SASA windows): a float model, the core's resources and cycles per value")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_flow, check=check_flow)

    p = sub.add_parser("report", help="report.md / report.json / plots of a flow run directory")
    p.add_argument("run_dir", help="a directory written by 'saformer flow'")
    p.set_defaults(func=cmd_report, check=check_report)
    return parser


def _add_runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    p.add_argument("--workers", type=NON_NEGATIVE, default=0, help="DataLoader workers for event data")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(argv: list[str] | None = None, check_only: bool = False) -> int:
    """Run a command. ``check_only`` parses and makes the up-front checks only: no stage runs and
    nothing is written (the property-based tests drive this)."""
    from saformer.procs import Interrupted, stop_children_on_exit

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if check_only:
            args.check(args)
            return 0
        with stop_children_on_exit():
            return args.func(args)
    except SaformerError as exc:
        print(f"saformer: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"saformer: stopped by {exc} (rerun the same command to continue)", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("saformer: interrupted (rerun the same command to continue)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
