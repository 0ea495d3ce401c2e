"""``saformer report RUN_DIR``: report.md, report.json and PNG plots from what a flow's stages measured.

Every number comes from a file in the run directory, and report.json names that file next to each
section. A comparison is reported "bit-exact" only where it ran and found no difference; one that
did not run reads "not run", never "bit-exact".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from saformer.config import ModelConfig
from saformer.data import EVENT_DATASETS
from saformer.errors import SaformerError
from saformer.rundir import RUN_FILES, write_json
from saformer.report.energy import energy_table
from saformer.rtl_sim.accel import lanes_phrase
from saformer.rtl_sim.core import SasaCoreParams, cycle_model

REPORT_JSON, REPORT_MD = "report.json", "report.md"
SOURCES = RUN_FILES  # the run directory's layout (saformer.rundir): what the report reads


def _load(run: Path) -> dict[str, Any]:
    found = {}
    for key, rel in SOURCES.items():
        p = run / rel
        if p.is_file():
            try:
                found[key] = json.loads(p.read_text())
            except json.JSONDecodeError as exc:
                raise SaformerError(f"'{p}' is not valid JSON ({exc})") from None
    if "float" not in found and "export" not in found:
        raise SaformerError(f"'{run}' holds no flow results (no {SOURCES['float']} or {SOURCES['export']}); "
                            "run 'saformer flow --out DIR' first")
    return found


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _verdict(ran: bool, passed: bool | None, compared: int | None = None) -> str:
    """"bit-exact" only over a positive number of compared values; zero compared is no verdict."""
    if not ran:
        return "not run"
    if compared is not None and compared < 1:
        return "not checked (0 compared)"
    return "bit-exact" if passed else "MISMATCH"


def accuracy_levels(m: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    if "float" in m:
        rows.append({"level": "float (PyTorch)", "accuracy": m["float"]["test_accuracy"], "images": "test set",
                     "source": SOURCES["float"]})
    if "qat" in m:
        rows.append({"level": "QAT (Brevitas, integer emulation)", "accuracy": m["qat"]["test_accuracy"],
                     "images": "test set", "source": SOURCES["qat"]})
    if "golden" in m:
        rows.append({"level": "integer (golden model)", "accuracy": m["golden"]["test_accuracy"],
                     "images": m["golden"]["images"], "source": SOURCES["golden"]})
    if "hls" in m:
        head = next((s for s in m["hls"]["stages"] if s["stage"] == "head"), None)
        if head is not None and "accuracy_on_checked_images" in head:
            rows.append({"level": "HLS (hls4ml C simulation, stage by stage)", "accuracy": head["accuracy_on_checked_images"],
                         "images": m["hls"]["images"], "source": SOURCES["hls"],
                         "golden_on_same_images": m["hls"].get("golden_accuracy_on_checked_images")})
    if "accel" in m:
        a = m["accel"]
        rows.append({"level": "RTL accelerator (the whole network, Verilator)", "accuracy": a["accuracy_rtl"],
                     "images": a["images"], "source": SOURCES["accel"], "golden_on_same_images": a["accuracy_golden"]})
    return rows


def bit_exactness(m: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    ex = m.get("export", {}).get("golden_vs_qat")
    rows.append({"comparison": "golden model vs QAT model (every trace)",
                 "verdict": _verdict(ex is not None, ex and ex["bit_exact"], ex and ex["images"] * ex["traces"]),
                 "detail": f"{ex['images']} images, {ex['traces']} traces" if ex else "", "source": SOURCES["export"]})
    acc = m.get("accel")
    rows.append({"comparison": "RTL accelerator vs golden: logits of every image",
                 "verdict": _verdict(acc is not None, acc and acc["bit_exact"], acc and acc["images"]),
                 "detail": f"{_count(acc['images'], 'image')}, {acc['blocks']} blocks at {lanes_phrase(acc)}"
                 if acc else "", "source": SOURCES["accel"]})
    cm = (acc or {}).get("cycle_model")
    if cm:
        rows.append({"comparison": "cycle model vs RTL accelerator: cycles of every image",
                     "verdict": _verdict(True, cm["exact"], cm["images"]),
                     "detail": f"{_count(cm['images'], 'image')}, from the golden spikes alone", "source": SOURCES["accel"]})
    st = (acc or {}).get("stalls")
    if st:
        rows.append({"comparison": "RTL accelerator vs golden: logits with random stalls",
                     "verdict": _verdict(True, st["bit_exact"], st["images"]),
                     "detail": f"{_count(st['images'], 'image')}, input idle {st['p_idle']:.0%}, "
                               f"back-pressure {st['p_backpressure']:.0%}", "source": SOURCES["accel"]})
    for lay in (acc or {}).get("layers", []):
        rows.append({"comparison": f"RTL accelerator vs golden: spikes after {lay['node']}",
                     "verdict": _verdict(True, lay["bit_exact"], lay["values"]),
                     "detail": f"{_count(lay['images'], 'image')}, {lay['spikes']:,} spikes of {lay['values']:,}",
                     "source": SOURCES["accel"]})
    hls = m.get("hls")
    for s in (hls or {}).get("stages", []):
        values = sum(c["values"] for c in s["checks"])
        rows.append({"comparison": f"hls4ml C sim vs golden: {s['stage']}", "verdict": _verdict(True, s["bit_exact"], values),
                     "detail": f"{_count(s['images'], 'image')} x T steps, {values:,} values", "source": SOURCES["hls"]})
    if not hls:
        rows.append({"comparison": "hls4ml C sim vs golden", "verdict": "not run", "detail": "", "source": SOURCES["hls"]})
    for mx in (hls or {}).get("mixed_hls_rtl", []):
        rows.append({"comparison": f"hls4ml Q/K -> RTL core vs golden: SASA layer {mx['layer']}",
                     "verdict": _verdict(True, mx["bit_exact"], mx.get("values")),
                     "detail": f"P={mx['lanes']}, {mx.get('values', '?')} O values", "source": SOURCES["hls"]})
    rtl = m.get("rtl")
    for lay in (rtl or {}).get("layers", []):
        rows.append({"comparison": f"RTL SASA core vs golden: layer {lay['layer']} (stall-free / with stalls)",
                     "verdict": _verdict(True, lay["bit_exact_stall_free"] and lay["bit_exact_with_stalls"],
                                         lay["spike_beats"]),
                     "detail": f"{lay['images']} images, {lay['output_spikes']} output spikes", "source": SOURCES["rtl"]})
    if not rtl:
        rows.append({"comparison": "RTL SASA core vs golden", "verdict": "not run", "detail": "", "source": SOURCES["rtl"]})
    return rows


def timing(m: dict[str, Any], cfg: ModelConfig) -> dict[str, Any] | None:
    rtl, synth = m.get("rtl"), m.get("synth")
    if not rtl:
        return None
    fmax = (synth or {}).get("pnr", {}) or {}
    mhz = fmax.get("fmax_mhz")
    layers = []
    for lay in rtl["layers"]:
        p = lay["params"]
        params = SasaCoreParams(**{k: v for k, v in p.items() if not k.endswith("_FILE")})
        beats = params.beats_per_step
        per_image = cycle_model(params, 2).total - cycle_model(params, 1).total  # steady state: the interval
        # a lone image, first beat to last output: from the model the rtl stage recorded for its run
        # (so a run directory made by an older core reports that core's figure)
        first = lay["predicted_cycles"] - (lay["images"] - 1) * per_image
        layers.append({"layer": lay["layer"], "lanes": p["P"], "beats_per_step": beats,
                       "cycles_per_image_streaming": per_image, "cycles_single_image": first,
                       "simulated_cycles": lay["cycles"], "predicted_cycles": lay["predicted_cycles"],
                       "simulated_images": lay["images"], "simulation_matches_model": lay["cycles_match_model"],
                       "latency_us_single_image": first / mhz if mhz else None})
    total = sum(x["cycles_single_image"] for x in layers)
    return {"clock_mhz": mhz, "clock_source": f"{SOURCES['synth']} (nextpnr-ecp5 fmax)" if mhz else None,
            "layers": layers, "sasa_cycles_per_image": total,
            "sasa_latency_us_per_image": total / mhz if mhz else None,
            "images_per_s_streaming": mhz * 1e6 / max(x["cycles_per_image_streaming"] for x in layers) if mhz else None,
            "source": SOURCES["rtl"]}


def energy(m: dict[str, Any], cfg: ModelConfig, dataset: str) -> dict[str, Any] | None:
    src = "qat" if "qat" in m else "float"
    rates = m.get(src, {}).get("firing_rates")
    if not rates:
        return None
    static = dataset not in EVENT_DATASETS
    tables = {att: energy_table(cfg, rates, att, static) for att in ("sasa", "ssa", "sdsa")}
    return {"rates_source": SOURCES[src], "static_input": static, "tables": tables,
            "note": "SSA and SDSA are costed on the same config with this run's measured firing rates "
                    "(see saformer/report/energy.py)"}


def plots(run: Path, m: dict[str, Any], en: dict[str, Any] | None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    src = "qat" if "qat" in m else "float"
    rates = m.get(src, {}).get("firing_rates")
    if rates:
        fig, ax = plt.subplots(figsize=(8, 0.28 * len(rates) + 1))
        names = list(rates)
        ax.barh(names[::-1], [rates[n] for n in names][::-1], color="tab:blue")
        ax.set_xlabel("firing rate (spikes per neuron per step)")
        ax.set_title(f"Per-layer firing rates ({SOURCES[src]})")
        fig.tight_layout()
        fig.savefig(run / "firing_rates.png", dpi=110)
        plt.close(fig)
        written.append("firing_rates.png")
    if en:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        atts = list(en["tables"])
        ax.bar(atts, [en["tables"][a]["energy_uj"] for a in atts], color=["tab:green", "tab:red", "tab:orange"])
        ax.set_ylabel("energy per image (uJ)")
        ax.set_title("Energy by attention (E_MAC 4.6 pJ, E_AC 0.9 pJ)")
        fig.tight_layout()
        fig.savefig(run / "energy.png", dpi=110)
        plt.close(fig)
        written.append("energy.png")
    cm = (m.get("accel") or {}).get("cycle_model")
    if cm:
        cycles = cm["steady_cycles_per_image"]  # each shard's first image (the pipeline fill) left out
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(cycles, bins=min(40, max(5, len(cycles) // 5)), color="tab:purple")
        ax.set_xlabel("cycles per image (images back to back)")
        ax.set_ylabel("images")
        ax.set_title("Accelerator: cycles per image (cycle model = Verilator)" if cm["exact"]
                     else "Accelerator: cycles per image (cycle model, NOT equal to Verilator)")
        fig.tight_layout()
        fig.savefig(run / "accel_cycles.png", dpi=110)
        plt.close(fig)
        written.append("accel_cycles.png")
    sweep = (m.get("sweep") or {}).get("rows")
    if sweep:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        n = [x["n_agg"] for x in sweep]
        ax.plot(n, [x["float_test_accuracy"] * 100 for x in sweep], "o-", color="tab:blue")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("N' (aggregated tokens)")
        ax.set_ylabel("float test accuracy (%)", color="tab:blue")
        ax2 = ax.twinx()
        ax2.plot(n, [x["resources"]["LUT"] for x in sweep], "s--", color="tab:red")
        ax2.set_ylabel("SASA core LUTs", color="tab:red")
        ax.set_title("N' sweep")
        fig.tight_layout()
        fig.savefig(run / "n_agg_sweep.png", dpi=110)
        plt.close(fig)
        written.append("n_agg_sweep.png")
    return written


def _modelled(cm: dict) -> str:
    """Which images the cycle model covered, when its memory bound stopped it short of the run."""
    simulated = cm.get("images_simulated", cm["images"])
    return "" if cm["images"] == simulated else f" (the first {cm['images']} of the {simulated} images)"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f}%"


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def render(r: dict[str, Any]) -> str:
    out = [f"# SAFormer flow report: {r['config']} on {r['dataset']}, {r['weight_bits']}-bit weights\n"]
    acc = r.get("accel")
    if acc:
        c = acc["cycles_per_image"]
        verdict = (f"**bit-exact**: the logits of all {acc['images']} images equal the golden model's" if acc["bit_exact"]
                   else f"**MISMATCH** on {acc['mismatching_count']} of {acc['images']} images")
        layers = ("; spikes inside the network equal the golden traces after " +
                  ", ".join(x["node"] for x in acc["layers"]) if acc["layers_bit_exact"]
                  else "; spikes inside the network: **MISMATCH** after " +
                  ", ".join(x["node"] for x in acc["layers"] if not x["bit_exact"])) if acc["layers"] else ""
        out += [f"## The whole accelerator (`{SOURCES['accel']}`)\n",
                f"{acc['blocks']} blocks generated from the export's graph at {lanes_phrase(acc)}, "
                f"simulated end to end (Verilator): {verdict}{layers}. RTL accuracy "
                f"{_pct(acc['accuracy_rtl'])} = golden {_pct(acc['accuracy_golden'])} on these images. Cycles per image "
                f"(back to back): median {c['median']:,.0f}, min {c['min']:,}, max {c['max']:,}; "
                f"{acc['latency_us_at_clock']:,.1f} us at {acc['hardware']['clock_mhz']:g} MHz"
                + ((f"; the cycle model predicts every image's cycles exactly{_modelled(acc['cycle_model'])}"
                    if acc["cycle_model"]["exact"] else
                    f"; the cycle model **differs** on {acc['cycle_model']['mismatching_count']} images")
                   if acc.get("cycle_model") else "") + ". "
                "All test images: `saformer flow --accel-images 0` or `saformer accel`.\n"]
        e = acc.get("energy")
        if e:
            h = e["hardware"]
            out += [f"Energy per image from the accelerator's own activity (45 nm; adds by width, multiplies, "
                    f"on-chip memory bits): **{h['total_pj'] / 1e6:.3f} uJ**, "
                    f"{100 * (h['memory_read_pj'] + h['memory_write_pj']) / h['total_pj']:.0f}% of it memory traffic; "
                    f"the paper's SOP model on the same images: {e['sop_model']['energy_pj'] / 1e6:.3f} uJ "
                    "(`accel/accel.md` says what each counts).\n"]
        mem = acc.get("memory")
        if mem:
            w = mem["weight_stream"]
            out += [f"On-chip memory {mem['total_bits'] / 1e6:.3f} Mbit (weights {mem['bits_by_kind'].get('weights', 0) / 1e6:.3f}) "
                    f"against the {mem['part']}'s {mem['part_block_ram_bits'] / 1e6:.3f} Mbit of block RAM: "
                    + ("fits by bits" if mem["fits_part_by_bits"] else "**does not fit**") +
                    f". Weights streamed from external memory instead would need {w['per_event_gbit_per_s']:.2f} Gbit/s "
                    f"(read per synaptic event) or {w['once_per_image_gbit_per_s']:.2f} Gbit/s (once per image) at "
                    f"{w['clock_mhz']:g} MHz.\n"]
    out += ["## Accuracy\n", "| level | test accuracy | images | source |", "|---|---|---|---|"]
    for a in r["accuracy"]:
        extra = f" (golden on the same images: {_pct(a['golden_on_same_images'])})" if a.get("golden_on_same_images") is not None else ""
        out.append(f"| {a['level']} | {_pct(a['accuracy'])}{extra} | {a['images']} | `{a['source']}` |")
    att = r.get("attention")
    if att:
        drop = 100 * (att["accuracy_model"] - att["accuracy_sasa_output_zeroed"])
        out += [f"\n## Attention diagnostics (integer golden model, test set, `{SOURCES['golden']}`)\n",
                "| variant | test accuracy |", "|---|---|",
                f"| the model | {_pct(att['accuracy_model'])} |",
                f"| every SASA core's output spikes zeroed (proj adds only its bias) | {_pct(att['accuracy_sasa_output_zeroed'])} |",
                f"| the mask forced to all ones (every K spike passes) | {_pct(att['accuracy_mask_all_ones'])} |",
                "", f"Zeroing the attention output costs {drop:.2f} points"
                + (": the attention carries information on this data." if drop >= 0.5 else
                   ": the attention carries little or nothing on this data.") + "\n",
                "| SASA core | LIF_a (mask) rate | LIF_o (output) rate |", "|---|---|---|",
                *(f"| {c['core']} | {c['lif_a_rate']:.4f} | {c['lif_o_rate']:.4f} |" for c in att["cores"])]
    out += ["\n## Bit-exactness against the golden model\n", "| comparison | verdict | checked | source |", "|---|---|---|---|"]
    out += [f"| {b['comparison']} | **{b['verdict']}** | {b['detail']} | `{b['source']}` |" for b in r["bit_exact"]]
    syn = r.get("resources")
    if syn:
        y = syn["yosys"]
        res = y["resources"]
        out += [f"\n## Resources (Yosys `synth_xilinx -family {y['family']}`, `{SOURCES['synth']}`)\n",
                "| module | P | LUT | FF | CARRY | LUTRAM | BRAM18 | BRAM36 | DSP | $mul before mapping |",
                "|---|---|---|---|---|---|---|---|---|---|",
                f"| sasa_core (x{len(syn['layers'])} layers) | {syn['lanes']} | {res['LUT']} | {res['FF']} | {res['CARRY']} "
                f"| {res['LUTRAM']} | {res['BRAM18']} | {res['BRAM36']} | {res['DSP']} | {y['mul_cells_before_mapping']} |"]
        if syn.get("pnr"):
            p = syn["pnr"]
            out.append(f"\nPlaced and routed on ECP5 {p['part']['device']} ({p['part']['package']}) with nextpnr: "
                       f"**fmax {p['fmax_mhz']:.1f} MHz** (register to register).")
    hls = r.get("hls_resources")
    if hls:
        out += ["\nhls4ml stages (estimate without Vitis HLS; method in docs/hls.md):\n",
                "| stage | adders | multipliers | LUT (est.) | weight bits |", "|---|---|---|---|---|"]
        out += [f"| {h['stage']} | {h['adders']} | {h['multipliers']} | {h['lut_estimate']} | {h['weight_bits']} |" for h in hls]
    t = r.get("timing")
    if t:
        clock = f"{t['clock_mhz']:.1f} MHz" if t["clock_mhz"] else "no clock estimate"
        out += [f"\n## Cycles and latency of the SASA core (cycle model = simulation; clock {clock})\n",
                "| layer | P | cycles/step | cycles/image (streaming) | cycles, one image | simulated = model | latency, one image |",
                "|---|---|---|---|---|---|---|"]
        for x in t["layers"]:
            lat = f"{x['latency_us_single_image']:.2f} us" if x["latency_us_single_image"] else "-"
            out.append(f"| {x['layer']} | {x['lanes']} | {x['beats_per_step']} | {x['cycles_per_image_streaming']} "
                       f"| {x['cycles_single_image']} | {x['simulation_matches_model']} ({x['simulated_cycles']} for "
                       f"{x['simulated_images']} images) | {lat} |")
        if t["sasa_latency_us_per_image"]:
            out.append(f"\nAll SASA layers, one image: {t['sasa_cycles_per_image']} cycles = "
                       f"{t['sasa_latency_us_per_image']:.2f} us; streaming: {t['images_per_s_streaming']:,.0f} images/s per core.")
    en = r.get("energy")
    if en:
        tabs = en["tables"]
        out += [f"\n## Energy per image (firing rates from `{en['rates_source']}`)\n",
                "| attention | MACs | SOPs | energy (uJ) |", "|---|---|---|---|"]
        out += [f"| {a.upper()} | {tb['macs']:,.0f} | {tb['sops']:,.0f} | {tb['energy_uj']:.4f} |" for a, tb in tabs.items()]
        out += [f"\n{en['note']}.\n", "Per layer (SASA):\n", "| layer | kind | FLOPs | input rate | ops | energy (pJ) |",
                "|---|---|---|---|---|---|"]
        out += [f"| {x['layer']} | {x['kind']} | {x['flops']:,} | {_rate(x['rate'])} "
                f"| {x['ops']:,.0f} | {x['energy_pj']:,.0f} |" for x in tabs["sasa"]["layers"]]
    sweep = (r.get("sweep") or {}).get("rows")
    if sweep:
        out += [f"\n## N' sweep (`{SOURCES['sweep']}`; float models, SASA core at P={r['sweep']['lanes']})\n",
                "| N' | window | float accuracy | LUT | FF | DSP | cycles, one image |", "|---|---|---|---|---|---|---|"]
        out += [f"| {x['n_agg']} | {x['window']} | {_pct(x['float_test_accuracy'])} | {x['resources']['LUT']} "
                f"| {x['resources']['FF']} | {x['resources']['DSP']} | {x['cycles_single_image']} |" for x in sweep]
    if r.get("plots"):
        out.append("\n## Plots\n")
        out += [f"![{p}]({p})" for p in r["plots"]]
    if r.get("flow"):
        secs = {k: v["seconds"] for k, v in r["flow"]["stages"].items() if "seconds" in v}
        out += ["\n## Stage times (last run that did the stage)\n", "| stage | seconds |", "|---|---|"]
        out += [f"| {k} | {v:.0f} |" for k, v in secs.items()]
    return "\n".join(out) + "\n"


def build_report(run_dir: Path) -> dict[str, Any]:
    run = Path(run_dir)
    if not run.is_dir():
        raise SaformerError(f"run directory '{run}' does not exist")
    m = _load(run)
    cfg_dict = (m.get("manifest") or {}).get("model_config") or m["float"]["model_config"]
    cfg = ModelConfig.from_dict(cfg_dict)
    dataset = (m.get("manifest") or {}).get("dataset") or m["float"]["dataset"]
    en = energy(m, cfg, dataset)
    r: dict[str, Any] = {
        "run_dir": str(run), "config": cfg.label, "dataset": dataset, "model_config": cfg.to_dict(),
        "weight_bits": (m.get("manifest") or {}).get("quant_config", {}).get("weight_bits"),
        "sources": {k: SOURCES[k] for k in m},
        "accuracy": accuracy_levels(m), "bit_exact": bit_exactness(m),
        "resources": m.get("synth"), "timing": timing(m, cfg), "energy": en,
        "hls_resources": [{"stage": s["stage"], **{k: s["resources"].get(k) for k in
                                                   ("adders", "multipliers", "lut_estimate", "weight_bits")}}
                          for s in m.get("hls", {}).get("stages", []) if "adders" in s["resources"]],
        "flow": m.get("flow"), "sweep": m.get("sweep"), "accel": m.get("accel"),
        "attention": (m.get("golden") or {}).get("attention"),
    }
    r["plots"] = plots(run, m, en)
    write_json(run / REPORT_JSON, r)
    (run / REPORT_MD).write_text(render(r))
    return r
