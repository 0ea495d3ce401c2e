"""The CIFAR-geometry accelerator with its weights streamed from external memory: every engine on
its weight stream port (hardware config weight_stream = all), at the lanes of the balanced CIFAR
run. What is left on chip against UltraScale+ parts and the ECP5, the port's bandwidth at the
clock, and the cycles per image at several memory latencies against the ROM design's.

    python benchmarks/accel_cifar_stream.py --data-dir DATA --export E8 [--lanes-from results/accel_cifar_balanced.json]
        [--latency 16 32 64] [--images 8] [--simulate 2] [--work DIR]

Cycles come from the exact cycle model (saformer.rtl_sim.cycle_model) over the golden spikes of
``--images`` test images; ``--simulate N`` also streams the first N images through the Verilator
top with the memory models (at the default latency) and checks logits and cycles against the
golden model and the cycle model. Writes results/accel_cifar_stream.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from accel_cifar import PARTS, fit  # noqa: E402

from saformer.config import DP16KD_BITS, ECP5_DP16KD, HardwareConfig  # noqa: E402
from saformer.quant.export import load_export  # noqa: E402
from saformer.quant.golden import GoldenModel  # noqa: E402
from saformer.quant.stages import integer_batches  # noqa: E402
from saformer.rtl_sim.accel import accelerate_export, generate_top, top_memories  # noqa: E402
from saformer.rtl_sim.activity import image_activity  # noqa: E402
from saformer.rtl_sim.cycle_model import encoder_counts, model_top  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def steady_median(cycles: np.ndarray) -> float:
    return float(np.median(cycles[1:] if len(cycles) > 1 else cycles))  # the first image fills the pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--export", required=True, help="an 8-bit saformer-4-384 export")
    ap.add_argument("--lanes-from", default=str(ROOT / "results/accel_cifar_balanced.json"),
                    help="an accel_cifar.py result whose 8-bit run's engine lanes to use")
    ap.add_argument("--latency", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--simulate", type=int, default=2, help="images through the Verilator top (0: none)")
    ap.add_argument("--clock-mhz", type=float, default=200.0)
    ap.add_argument("--work", default="build/accel_cifar_stream")
    ap.add_argument("--out", default="results/accel_cifar_stream")
    args = ap.parse_args()

    lanes = json.loads(Path(args.lanes_from).read_text())["runs"]["8"]["engine_lanes"]
    rom_hw = HardwareConfig(engine_lanes=tuple(sorted(lanes.items())), clock_mhz=args.clock_mhz,
                            engine_output_register=False)  # as accel_cifar.py: UltraScale+
    ex = load_export(args.export)
    _, x, _ = next(integer_batches("cifar10", ex.cfg, ex.qcfg, args.data_dir, args.images, args.images))
    _, traces = GoldenModel(ex).forward(x, trace=True)
    rom = generate_top(ex, rom_hw, None)
    counts = encoder_counts(rom, ex, x, traces)
    rom_cycles = model_top(rom, ex, counts).cycles_per_image
    rows = []
    for latency in args.latency:
        hw = rom_hw.replace(weight_stream=("all",), weight_stream_latency=latency)
        design = generate_top(ex, hw, None)
        cyc = model_top(design, ex, counts).cycles_per_image
        rows.append({"latency": latency, "cycles_per_image": cyc.tolist(), "median": steady_median(cyc),
                     "over_rom": steady_median(cyc) / steady_median(rom_cycles)})
        print(f"latency {latency}: median {rows[-1]['median']:,.0f} cycles ({rows[-1]['over_rom']:.2f}x the ROM's)",
              flush=True)
    design = generate_top(ex, rom_hw.replace(weight_stream=("all",)), None)
    mems = top_memories(design)
    on_chip = [m for m in mems if m[0] != "external weights"]
    act = image_activity(design, ex, x, traces)["total"]
    ecp5_bits = ECP5_DP16KD[rom_hw.ecp5_device] * DP16KD_BITS
    result = {"export": args.export, "images": int(len(x)), "clock_mhz": args.clock_mhz,
              "engine_lanes": lanes, "total_engine_lanes": int(sum(lanes.values())),
              "rom_cycles_per_image": rom_cycles.tolist(), "rom_median": steady_median(rom_cycles),
              "latencies": rows,
              "external_weight_bits": int(sum(d * w for k, _, d, w in mems if k == "external weights")),
              # with the weights gone, any memory 4 K words deep may take URAM (membranes, accumulators)
              "on_chip": fit(on_chip, tuple({k for k, _, _, _ in on_chip})), "rom_design_on_chip": fit(top_memories(rom)),
              "ecp5": {"part": rom_hw.ecp5_device, "block_ram_bits": ecp5_bits,
                       "on_chip_bits": int(sum(d * w for _, _, d, w in on_chip))},
              "streamed_bits_per_image": act["external_read_bits"],
              "ports": len(design.weight_ports),
              "peak_gbit_per_s": sum(w["width"] for w in design.weight_ports) * args.clock_mhz / 1e3}
    mid = next((r for r in rows if r["latency"] == HardwareConfig.weight_stream_latency), rows[0])
    result["streamed_gbit_per_s"] = act["external_read_bits"] * args.clock_mhz * 1e6 / mid["median"] / 1e9
    if args.simulate:
        acc = accelerate_export(Path(args.export), Path(args.work) / "accel", rom_hw.replace(weight_stream=("all",)),
                                images=args.simulate, data_dir=args.data_dir, layer_images=0, stall_images=0,
                                keep_builds=False, jobs=1)
        result["simulated"] = {"images": acc["images"], "bit_exact": acc["bit_exact"],
                               "cycle_model_exact": acc["cycle_model"]["exact"],
                               "cycles_per_image": acc["cycle_model"]["predicted_cycles_per_image"],
                               "simulated_cycles_per_second": acc["simulated_cycles_per_second"],
                               "latency": HardwareConfig.weight_stream_latency}
    out = ROOT / args.out
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    oc, r0 = result["on_chip"], result["rom_design_on_chip"]
    lines = ["# CIFAR geometry with every weight streamed from external memory", "",
             "Command: `python benchmarks/accel_cifar_stream.py " + " ".join(sys.argv[1:]) + "`", "",
             f"saformer-4-384 (T=4), freshly quantized 8-bit export (the firing rates of an untrained model), every "
             f"synaptic engine on its weight stream port ({result['ports']} ports), lanes of the balanced run "
             f"({result['total_engine_lanes']} in all, {Path(args.lanes_from).name}); {result['images']} CIFAR-10 test "
             f"images through the exact cycle model; {args.clock_mhz:g} MHz.", ""]
    sim = result.get("simulated")
    if sim:
        lines += [f"- Verilator, the top with a memory model on each port (latency {sim['latency']} cycles), "
                  f"{sim['images']} images: " + ("**bit-exact**" if sim["bit_exact"] else "**MISMATCH**")
                  + ", cycle model " + ("equal to the simulation" if sim["cycle_model_exact"] else "**differs**")
                  + f" ({sim['simulated_cycles_per_second'] / 1e6:.2f} M cycles/s).", ""]
    lines += ["| memory latency (cycles) | median cycles per image | x the ROM design | ms per image |",
              "|---|---|---|---|",
              f"| (weights in on-chip ROMs) | {result['rom_median']:,.0f} | 1.00 | "
              f"{result['rom_median'] / (args.clock_mhz * 1e3):.2f} |"]
    for r in rows:
        lines.append(f"| {r['latency']} | {r['median']:,.0f} | {r['over_rom']:.2f} | "
                     f"{r['median'] / (args.clock_mhz * 1e3):.2f} |")
    lines += ["", f"- Off chip: {result['external_weight_bits'] / 1e6:.1f} Mbit of weights. The port carries "
              f"{result['streamed_bits_per_image'] / 1e6:.1f} Mbit per image (a burst per spike, border taps "
              f"included): {result['streamed_gbit_per_s']:.1f} Gbit/s at the latency-{mid['latency']} pace, "
              f"{result['peak_gbit_per_s']:,.0f} Gbit/s if every engine took a word in the same cycle.",
              f"- On chip: {oc['total_mbit']:.1f} Mbit (was {r0['total_mbit']:.1f} with the weight ROMs): "
              + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in sorted(oc['bits'].items(), key=lambda kv: -kv[1])) + ".",
              "- Fits: " + "; ".join(
                  f"{p}: {'fits in BRAM' if v['fits_bram_only'] else 'fits with URAM' if v['fits_with_uram'] else 'does not fit'}"
                  f" (ROM design: {'fits in BRAM' if r0['parts'][p]['fits_bram_only'] else 'fits with URAM' if r0['parts'][p]['fits_with_uram'] else 'does not fit'})"
                  for p, v in oc["parts"].items())
              + f"; the {result['ecp5']['part']}: {result['ecp5']['on_chip_bits'] / 1e6:.1f} Mbit against its "
              f"{ecp5_bits / 1e6:.1f} Mbit of block RAM: "
              + ("fits." if result["ecp5"]["on_chip_bits"] <= ecp5_bits else
                 "does not fit: the membranes, accumulators and buffers alone exceed it."),
              f"- Blocks, URAM for every memory 4 K words deep or more: {oc['with_uram']['bram36']} BRAM36 + "
              f"{oc['with_uram']['uram']} URAM (ROM design, URAM for its deep weight ROMs: {r0['with_uram']['bram36']} + "
              f"{r0['with_uram']['uram']} URAM). Counted from the memories' shapes, not synthesized."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
