"""The whole accelerator at CIFAR geometry (saformer-4-384, T = 4): end to end on CIFAR-10 test
images against the golden model, cycles and latency, and whether its memories fit UltraScale+ parts
at 8- and 4-bit weights.

    python benchmarks/accel_cifar.py --data-dir DATA --export-8 E8 --export-4 E4 [--lanes 16 | --target-cycles N]
        [--images 8] [--jobs 2] [--synth]

--target-cycles has the balancer choose every engine's lanes (saformer.rtl_sim.balance.balance_to_cycles:
until the exact cycle model's mean over the simulated images is at most N); --lanes gives every
engine the same. --synth adds the 8-bit top's UltraScale+ resources from Yosys (synth_xilinx -family
xcup), block by block (saformer.rtl_sim.synth.synthesize_top_by_block; about an hour on two cores).

The exports may be of a freshly quantized model (random weights, BatchNorm calibrated); cycles of an
event-driven design follow the firing rates, so the rates of the model simulated are written beside
the cycles. A finished simulation (WORK/acc_cifar_w<bits>_l<lanes>/accel.json) is reused. Writes
results/accel_cifar.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from saformer.config import HardwareConfig  # noqa: E402
from saformer.quant.export import load_export  # noqa: E402
from saformer.quant.golden import GoldenModel  # noqa: E402
from saformer.quant.stages import integer_batches  # noqa: E402
from saformer.rtl_sim.accel import accelerate_export, generate_top, top_memories  # noqa: E402
from saformer.rtl_sim.synth import synthesize_top_by_block  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# UltraScale+ parts (AMD DS891 / DS923): BRAM36 blocks, URAM blocks, LUTs, DSPs
PARTS = {"XCZU7EV": (312, 96, 230_400, 1_728), "XCZU9EG": (912, 0, 274_080, 2_520),
         "XCVU9P": (2_160, 960, 1_182_240, 6_840)}
BRAM36 = [(512, 72), (1024, 36), (2048, 18), (4096, 9), (8192, 4), (16384, 2), (32768, 1)]


def bram36(depth: int, width: int) -> int:
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in BRAM36)


def uram(depth: int, width: int) -> int:
    return math.ceil(depth / 4096) * math.ceil(width / 72)


def fit(mems, uram_kinds: tuple[str, ...] = ("weights",)) -> dict:
    """Block counts of ``mems`` (top_memories), all in BRAM36, or with the memories of ``uram_kinds``
    that are 4 K words deep or more in URAM (4K x 72) and the rest in BRAM36; per part, whether they fit."""
    bits = {}
    for kind, _, d, w in mems:
        bits[kind] = bits.get(kind, 0) + d * w
    all_bram = sum(bram36(d, w) for _, _, d, w in mems)
    deep = [(k in uram_kinds and d >= 4096) for k, _, d, _ in mems]
    with_uram = {"uram": sum(uram(d, w) for (_, _, d, w), u in zip(mems, deep) if u),
                 "bram36": sum(bram36(d, w) for (_, _, d, w), u in zip(mems, deep) if not u)}
    rows = {}
    for part, (b36, u, lut, dsp) in PARTS.items():
        rows[part] = {"bram36": b36, "uram": u, "fits_bram_only": all_bram <= b36,
                      "fits_with_uram": with_uram["bram36"] <= b36 and with_uram["uram"] <= u}
    return {"bits": bits, "total_mbit": sum(bits.values()) / 1e6, "bram36_all": all_bram, "with_uram": with_uram,
            "parts": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--export-8", required=True)
    ap.add_argument("--export-4", required=True)
    ap.add_argument("--lanes", type=int, default=16)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--clock-mhz", type=float, default=200.0)
    ap.add_argument("--target-cycles", type=int, help="lanes per engine chosen by the balancer for this target")
    ap.add_argument("--jobs", type=int, default=1, help="harness processes side by side")
    ap.add_argument("--synth", action="store_true", help="UltraScale+ resources of the 8-bit top (Yosys, per block)")
    ap.add_argument("--work", default="build/accel_cifar")
    ap.add_argument("--out", default="results/accel_cifar", help="writes OUT.json and OUT.md")
    args = ap.parse_args()
    work = Path(args.work)
    # UltraScale+ reads LUT RAM fast: no engine output register (it would add a LUT and a flip-flop
    # per output bit, about 17k of each at 1,075 lanes; HardwareConfig.engine_output_register)
    hw = HardwareConfig(lanes=args.lanes, engine_output_register=False)
    tag = f"t{args.target_cycles}" if args.target_cycles else f"l{args.lanes}"
    result = {"lanes": None if args.target_cycles else args.lanes, "target_cycles": args.target_cycles,
              "images": args.images, "clock_mhz": args.clock_mhz, "runs": {}}
    for bits, export in ((8, args.export_8), (4, args.export_4)):
        ex = load_export(export)
        if bits == 8:
            out = work / f"acc_cifar_w{bits}_{tag}"
            if (out / "accel.json").is_file():
                acc = json.loads((out / "accel.json").read_text())
            else:
                acc = accelerate_export(Path(export), out, hw, images=args.images, data_dir=args.data_dir,
                                        layer_images=0, stall_images=0, keep_builds=False,
                                        target_cycles=args.target_cycles, jobs=args.jobs)
            hw = hw.replace(engine_lanes=tuple(sorted(acc["engine_lanes"].items())))  # the 4-bit top: the same lanes
        design = generate_top(ex, hw, work / f"mem_w{bits}")
        run = {"export": str(export), "blocks": len(design.blocks), "memory": fit(top_memories(design)),
               "engine_lanes": {b["node"]: b["params"]["LANES"] for b in design.blocks if b["block"] == "syn_engine"}}
        if bits == 8:
            _, x, _ = next(integer_batches("cifar10", ex.cfg, ex.qcfg, args.data_dir, args.images, args.images))
            _, traces = GoldenModel(ex).forward(x, trace=True)
            rates = {k[:-2]: float(v.mean()) for k, v in traces.items() if k.endswith(".s")}
            c = acc["cycles_per_image"]
            run.update({"bit_exact": acc["bit_exact"], "images": acc["images"], "cycles_per_image": c,
                        "first_image_cycles": acc["first_image_cycles"],
                        "latency_ms_at_clock": c["median"] / (args.clock_mhz * 1e3),
                        "simulated_cycles_per_second": acc["simulated_cycles_per_second"],
                        "energy_uj_per_image": acc["energy"]["hardware"]["total_pj"] / 1e6,
                        "sop_model_uj_per_image": acc["energy"]["sop_model"]["energy_pj"] / 1e6,
                        "firing_rates": rates, "mean_firing_rate": float(np.mean(list(rates.values()))),
                        "cycle_model": {k: v for k, v in acc["cycle_model"].items() if not k.endswith("cycles_per_image")},
                        "balance": {k: v for k, v in (acc.get("balance") or {}).items() if k != "groups"} or None})
            if args.synth:
                run["synthesis"] = synthesize_top_by_block(ex, hw, work / "synth_xcup", "xcup", jobs=2)
        result["runs"][bits] = run
        print(bits, json.dumps({k: v for k, v in run.items() if k not in ("firing_rates",)})[:1500], flush=True)
    out = ROOT / args.out
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    r8 = result["runs"][8]
    lanes = (f"lanes per engine balanced for {args.target_cycles:,} cycles per image, "
             f"{sum(r8['engine_lanes'].values())} in all" if args.target_cycles else f"{args.lanes} lanes")
    lines = [f"# The whole accelerator at CIFAR geometry (saformer-4-384, T=4, {lanes})", "",
             "Command: `python benchmarks/accel_cifar.py " + " ".join(sys.argv[1:]) + "`", "",
             "Model simulated: a freshly quantized saformer-4-384 (random weights, BatchNorm calibrated on 256 CIFAR-10 "
             "train images), not a trained one: its firing rates set the cycles (an event-driven design), and a "
             f"trained model's rates differ. Mean firing rate over its LIF layers: {r8['mean_firing_rate']:.3f} "
             "(per layer in accel_cifar.json).", "",
             f"- {r8['images']} CIFAR-10 test images end to end: "
             + ("**bit-exact** (logits equal to the golden model's)" if r8["bit_exact"] else "**MISMATCH**") + ".",
             f"- Cycles per image (back to back): median {r8['cycles_per_image']['median']:,.0f} (min "
             f"{r8['cycles_per_image']['min']:,}, max {r8['cycles_per_image']['max']:,}); "
             f"{r8['latency_ms_at_clock']:.2f} ms at {args.clock_mhz:g} MHz "
             "(bar: 53 ms for Spikformer-1-384 on a ZU7EV at 200 MHz; target under 5 ms).",
             f"- Cycle model (from the golden spikes, no RTL): "
             + (f"equal to the simulation on all {r8['cycle_model']['images']} images"
                if r8["cycle_model"]["exact"] else f"**differs** on {r8['cycle_model']['mismatching_count']} images")
             + f" ({r8['cycle_model']['seconds']:.0f} s).",
             *([f"- Lanes balanced until the cycle model's mean over {r8['balance']['model_images']} images "
                f"(behind the first) was {r8['balance']['model_mean_cycles']:,.0f} cycles: each image's slowest stage "
                f"balanced for {r8['balance']['stage_bound']:,} in {r8['balance']['rounds']} round(s) "
                + ("(met)." if r8["balance"]["met"] else "(**not met**).")] if r8.get("balance") else []),
             f"- Simulation: {r8['simulated_cycles_per_second'] / 1e6:.2f} M cycles/s.",
             f"- Energy per image from the accelerator's activity: {r8['energy_uj_per_image']:.1f} uJ "
             f"(the SOP model: {r8['sop_model_uj_per_image']:.1f} uJ).", "",
             "On-chip memory (all of it: weights, accumulators, biases, membranes, buffers) and whether it fits:", "",
             "| weights | total Mbit | BRAM36, all in BRAM | with URAM for deep weight ROMs | "
             + " | ".join(f"{p} (BRAM36 / URAM)" for p in PARTS) + " |",
             "|---|---|---|---|" + "---|" * len(PARTS)]
    for bits, run in result["runs"].items():
        m = run["memory"]
        cells = [f"{'fits' if v['fits_bram_only'] else 'fits with URAM' if v['fits_with_uram'] else 'does not fit'} "
                 f"({v['bram36']} / {v['uram']})" for v in m["parts"].values()]
        lines.append(f"| {bits}-bit | {m['total_mbit']:.1f} | {m['bram36_all']} | {m['with_uram']['bram36']} BRAM36 + "
                     f"{m['with_uram']['uram']} URAM | " + " | ".join(cells) + " |")
    lines += ["", "Memory by kind (Mbit, 8-bit weights): " + ", ".join(
        f"{k} {v / 1e6:.2f}" for k, v in sorted(r8["memory"]["bits"].items(), key=lambda kv: -kv[1])) + "."]
    syn = r8.get("synthesis")
    if syn:
        res = syn["resources"]
        lut_bar, zu7_lut = 143_886, PARTS["XCZU7EV"][2]
        lines += ["", f"Resources, Yosys `synth_xilinx -family xcup`, the 8-bit top summed over its {syn['blocks']} blocks "
                  f"({syn['distinct']} distinct ones synthesized, each with a fixed random memory pattern; no optimization "
                  "crosses a block's registered ports):", "",
                  "| LUT | FF | CARRY8 | LUT-RAM | BRAM36 + BRAM18 | URAM | DSP |", "|---|---|---|---|---|---|---|",
                  f"| {res.get('LUT', 0):,} | {res.get('FF', 0):,} | {res.get('CARRY', 0):,} | {res.get('LUTRAM', 0):,} | "
                  f"{res.get('BRAM36', 0):,} + {res.get('BRAM18', 0):,} | {res.get('URAM', 0):,} | {res.get('DSP', 0):,} |", "",
                  f"- LUTs against the bar (Spikformer-1-384 on a ZU7EV: 143,886 LUT): {res.get('LUT', 0) / lut_bar:.2f}x; "
                  f"against the ZU7EV's {zu7_lut:,}: {100 * res.get('LUT', 0) / zu7_lut:.0f}%.",
                  "- Largest blocks (LUT, all instances): " + ", ".join(
                      f"{row['module']} x{row['instances']} {row['instances'] * row['resources'].get('LUT', 0):,}"
                      for row in sorted(syn["by_block"], key=lambda r: -r["instances"] * r["resources"].get("LUT", 0))[:6])
                  + "."]
    if args.target_cycles:
        lines += ["", "Lanes per engine: " + ", ".join(f"{k} {v}" for k, v in r8["engine_lanes"].items()) + "."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}.json, .md")


if __name__ == "__main__":
    main()
