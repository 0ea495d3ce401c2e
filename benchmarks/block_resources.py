"""Resources of every block of the RTL library, on Xilinx 7-series and Lattice ECP5 (Yosys).

    python benchmarks/block_resources.py            # every block's example parameter sets

Writes results/blocks.json and results/blocks.md. The examples (saformer.rtl_sim.blocks, each
block's ``examples``) are at the digits model's geometry; the synaptic engine's memories hold random
non-zero integers (resources do not depend on their values as long as none is constant zero).
Yosys synthesis only: no place and route, so no clock figure here (see results/rtl.md for the SASA
core's nextpnr fmax).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from saformer.rtl_sim.blocks import BLOCKS  # noqa: E402
from saformer.rtl_sim.synth import synthesize_block  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def describe(name: str, p: dict[str, int]) -> str:
    if name == "syn_engine":
        kind = f"3x3 conv {p['H']}x{p['W']}" if p["KERNEL"] == 3 else "linear"
        values = f", {p['VALUE_BITS']}-bit input values (the first conv)" if p.get("VALUE_BITS") else ""
        return (f"{kind}, {p['IN']} -> {p['OUT']} ch, {p['LANES']} lanes, "
                f"w{p['W_BITS']}/acc{p['ACC_BITS']}/mem{p['MEM_BITS']}{values}")
    if name == "sasa_core":
        return (f"N={p['N']} ({p['GRID_H']}x{p['GRID_W']}), N'={p['N_AGG']}, D={p['D']}, T={p['T']}, {p['P']} lanes, "
                f"DWC w{p['W_BITS']}/acc{p['ACC_BITS']}")
    return ", ".join(f"{k}={v}" for k, v in p.items())


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, block in BLOCKS.items():
            for i, params in enumerate(block.examples):
                row = {"block": name, "params": params, "description": describe(name, params)}
                for target in ("xc7", "ecp5"):
                    t0 = time.perf_counter()
                    r = synthesize_block(name, params, Path(tmp) / f"{name}_{i}_{target}", target)
                    row[target] = {**r["resources"], "mul_cells": r["mul_cells_before_mapping"],
                                   "seconds": round(time.perf_counter() - t0, 1)}
                rows.append(row)
                print(name, row["xc7"], row["ecp5"], flush=True)
    (ROOT / "results" / "blocks.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    lines = ["# RTL blocks: resources (Yosys synthesis)", "",
             "Each block at its example parameters (the digits model saformer-2-64: D = 64, 16 tokens, 8x8 SPS "
             "maps, 16-bit membranes, 8-bit weights, 32-bit accumulators). `$mul` counts multipliers found after "
             "elaboration, before any mapping: zero everywhere but in the first conv, whose LANES multipliers "
             "(weight x input value) are the network's only ones (DSP on xc7, MULT18X18D on ECP5).", "",
             "Xilinx 7-series (`synth_xilinx -family xc7`):", "",
             "| block | parameters | LUT | FF | CARRY4 | LUTRAM | BRAM36 | BRAM18 | DSP | $mul |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        x = r["xc7"]
        lines.append(f"| {r['block']} | {r['description']} | {x['LUT']} | {x['FF']} | {x['CARRY']} | {x['LUTRAM']} | "
                     f"{x['BRAM36']} | {x['BRAM18']} | {x['DSP']} | {x['mul_cells']} |")
    lines += ["", "Lattice ECP5 (`synth_ecp5`):", "",
              "| block | parameters | LUT4 | FF | CCU2C | DPR16X4 | DP16KD | MULT18 | $mul |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e = r["ecp5"]
        lines.append(f"| {r['block']} | {r['description']} | {e['LUT4']} | {e['FF']} | {e['CCU2C']} | {e['LUTRAM']} | "
                     f"{e['DP16KD']} | {e['MULT18']} | {e['mul_cells']} |")
    lines += ["", "Made by `python benchmarks/block_resources.py`."]
    (ROOT / "results" / "blocks.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
