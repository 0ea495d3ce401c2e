"""The lanes sweep of the whole accelerator: accuracy is fixed (every setting is bit-exact with the
golden model); LUTs, memories, fmax, cycles and latency vary. Energy from the accelerator's own
counts is the same at every setting (the same words move in wider or narrower rows).

    python benchmarks/accel_lanes.py EXPORT [--lanes 2 4 8] [--images 100] [--pnr]

Per lanes setting: the top is generated, built and run on the first --images test images (logits
checked equal to the golden model's), synthesized by Yosys for xc7 (synth_xilinx) and ECP5
(synth_ecp5), and with --pnr placed and routed by nextpnr-ecp5 on the LFE5U-85F (fmax; slow:
10-30 min a setting). Synthesis results are kept in --work and reused on a rerun. Writes
results/accel_lanes.json, .md and a Pareto plot (LUTs against latency per image).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from saformer.config import HardwareConfig  # noqa: E402
from saformer.quant.export import load_export  # noqa: E402
from saformer.quant.golden import GoldenModel  # noqa: E402
from saformer.quant.stages import integer_batches  # noqa: E402
from saformer.rtl_sim.accel import accel_energy, build_top, run_top  # noqa: E402
from saformer.rtl_sim.synth import SynthesisError, nextpnr_ecp5, synthesize_top  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def synthesized(ex, hw: HardwareConfig, work: Path, target: str, pnr: bool) -> dict:
    """synthesize_top, reusing a finished result (a JSON beside its work directory)."""
    done = work.with_suffix(".json")
    if done.is_file():
        r = json.loads(done.read_text())
        if not pnr or r.get("pnr"):
            return r
    t0 = time.perf_counter()
    r = synthesize_top(ex, hw, work, target)
    if pnr:
        try:
            r["pnr"] = nextpnr_ecp5(work.resolve(), hw)
        except SynthesisError as e:  # a design that does not place is a result too: say why
            r["pnr"] = {"fmax_mhz": None, "error": next((ln.strip() for ln in str(e).splitlines() if "ERROR" in ln),
                                                        str(e).splitlines()[-1])}
    r["seconds"] = time.perf_counter() - t0
    done.write_text(json.dumps(r, indent=1))
    return r


def plot(rows: list[dict], config: str) -> None:
    """The Pareto plot: LUTs against latency per image (at 100 MHz), one point per lanes setting."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    lut = [r["xc7"]["LUT"] for r in rows]
    lat = [r["cycles_per_image_median"] / 100.0 for r in rows]
    ax.plot(lut, lat, "o-")
    for r, a, b in zip(rows, lut, lat):
        ax.annotate(f"{r['lanes']} lanes", (a, b), textcoords="offset points", xytext=(6, 6))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:.0f}k"))
    ax.set_xlim(0, max(lut) * 1.2)
    ax.set_ylim(0, max(lat) * 1.15)
    ax.set_xlabel("xc7 LUTs (Yosys synth_xilinx)")
    ax.set_ylabel("latency per image at 100 MHz (us)")
    ax.set_title(f"{config}: lanes sweep\n(accuracy and energy per image the same at every point)", fontsize=10)
    fig.tight_layout()
    fig.savefig(ROOT / "results" / "accel_lanes.png", dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export")
    ap.add_argument("--lanes", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--pnr", action="store_true")
    ap.add_argument("--work", default="build/accel_lanes")
    ap.add_argument("--replot", action="store_true", help="only redraw the plot from results/accel_lanes.json")
    args = ap.parse_args()
    if args.replot:
        done = json.loads((ROOT / "results" / "accel_lanes.json").read_text())
        plot(done["rows"], done["config"])
        return
    ex = load_export(args.export)
    _, x, _ = next(integer_batches(ex.manifest["dataset"], ex.cfg, ex.qcfg, None, args.images, args.images))
    gold, traces = GoldenModel(ex).forward(x, trace=True)
    work = Path(args.work).resolve()
    rows = []
    for lanes in args.lanes:
        hw = HardwareConfig(lanes=lanes)
        design, harness, _ = build_top(ex, hw, work / f"sim_l{lanes}")
        r = run_top(design, harness, x)
        assert np.array_equal(r.logits, gold), f"lanes {lanes}: the RTL's logits differ from the golden model's"
        cyc = np.median(r.cycles_per_image[1:])
        xc7 = synthesized(ex, hw, work / f"xc7_l{lanes}", "xc7", False)
        ecp5 = synthesized(ex, hw, work / f"ecp5_l{lanes}", "ecp5", args.pnr)
        fmax = (ecp5.get("pnr") or {}).get("fmax_mhz")
        energy = accel_energy(design, ex, x, traces)["hardware"]["total_pj"]
        rows.append({"lanes": lanes, "blocks": len(design.blocks), "bit_exact_images": len(x),
                     "cycles_per_image_median": float(cyc), "xc7": xc7["resources"], "ecp5": ecp5["resources"],
                     "ecp5_fmax_mhz": fmax, "ecp5_pnr_error": (ecp5.get("pnr") or {}).get("error"),
                     "energy_uj_per_image": energy / 1e6,
                     "latency_us_at_100mhz": cyc / 100.0,
                     "latency_us_at_fmax": cyc / fmax if fmax else None,
                     "images_per_s_at_fmax": fmax * 1e6 / cyc if fmax else None})
        print(json.dumps(rows[-1]), flush=True)
    out = {"export": str(args.export), "config": ex.cfg.label, "images": len(x), "rows": rows}
    (ROOT / "results" / "accel_lanes.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"# Lanes sweep of the whole accelerator ({ex.cfg.label}, {len(x)} test images, all bit-exact)", "",
             "Command: `python benchmarks/accel_lanes.py EXPORT " + " ".join(sys.argv[2:]) + "`", "",
             "| lanes | cycles/image (median) | xc7 LUT | xc7 FF | xc7 BRAM36+18 | xc7 DSP | ECP5 LUT4 | ECP5 FF | "
             "ECP5 DP16KD | ECP5 MULT18 | ECP5 fmax (MHz) | latency at fmax (us) | images/s at fmax | energy/image (uJ) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for r in rows:
        x7, e5 = r["xc7"], r["ecp5"]
        f = r["ecp5_fmax_mhz"]
        fmax = "-" if f is None else f"{f:.1f}"
        if f is None and r.get("ecp5_pnr_error"):
            fmax = "does not place"
            notes.append(f"- {r['lanes']} lanes on the LFE5U-85F: {r['ecp5_pnr_error']} "
                         f"(synthesis maps {e5['DP16KD']} DP16KD of 208).")
        lat = "-" if f is None else f"{r['latency_us_at_fmax']:,.0f}"
        rate = "-" if f is None else f"{r['images_per_s_at_fmax']:,.0f}"
        lines.append(f"| {r['lanes']} | {r['cycles_per_image_median']:,.0f} | {x7['LUT']:,} | {x7['FF']:,} | "
                     f"{x7['BRAM36']}+{x7['BRAM18']} | {x7['DSP']} | {e5['LUT4']:,} | {e5['FF']:,} | {e5['DP16KD']} | "
                     f"{e5['MULT18']} | {fmax} | {lat} | {rate} | {r['energy_uj_per_image']:.3f} |")
    (ROOT / "results" / "accel_lanes.md").write_text("\n".join(lines + ([""] + notes if notes else [])) + "\n")
    plot(rows, ex.cfg.label)
    print("wrote results/accel_lanes.{json,md,png}")


if __name__ == "__main__":
    main()
