"""Every block of the library is addition-only: Yosys finds no multiplier ($mul / $macc) in any of
them, at their example parameter sets (the digits geometry) and at every geometry the simulation
tests use, except the first conv (the engine with VALUE_BITS > 0), which has exactly its LANES
multipliers; and the check finds one where a block does multiply (positive control)."""

import dataclasses

import pytest

from saformer.rtl_sim import blocks
from saformer.rtl_sim.blocks import BLOCKS
from saformer.rtl_sim.synth import block_mul_cells, synthesize_block
from tests.rtl_sim.test_blocks import ADD_GEOMETRIES, LIF_GEOMETRIES, POOL_GEOMETRIES
from tests.rtl_sim.test_event_encoder import GEOMETRIES as ENCODER_GEOMETRIES
from tests.rtl_sim.test_lane_gearbox import CASES as GEARBOX
from tests.rtl_sim.test_stream_plumbing import CASES as PLUMBING
from tests.rtl_sim.test_sasa_core import SMALL
from tests.rtl_sim.test_syn_engine import FIRST_CONV, GEOMETRIES

TESTED = {"sasa_core": [dataclasses.asdict(SMALL)], "lif_unit": LIF_GEOMETRIES, "sat_add": ADD_GEOMETRIES,
          "maxpool": POOL_GEOMETRIES, "skid_buffer": [{"WIDTH": 20}], "event_encoder": list(ENCODER_GEOMETRIES.values()),
          **{name: [p for n, p in PLUMBING if n == name] for name in ("stream_fifo", "fork_join", "frame_repeat")},
          "syn_engine": [{**g, "ACC_BITS": 16} for g in [*GEOMETRIES.values(), FIRST_CONV]]
          + [{**g, "ACC_BITS": 16, "WEIGHT_PORT": 1} for g in (GEOMETRIES["conv-3to8-4x5-L8"], FIRST_CONV)],
          "lane_gearbox": GEARBOX}
HARDWARE = sorted(n for n, b in BLOCKS.items() if not b.simulation_only)  # the memory model's bench is not


def test_every_block_has_examples_and_tested_geometries():
    assert set(TESTED) == set(HARDWARE) and BLOCKS["syn_engine_streamed"].simulation_only
    assert all(BLOCKS[n].examples for n in HARDWARE)


@pytest.mark.parametrize("name", HARDWARE)
def test_no_block_multiplies_but_the_first_conv(name, tmp_path):
    counted = []
    for i, params in enumerate([*BLOCKS[name].examples, *TESTED[name]]):
        counted.append(block_mul_cells(name, params, tmp_path / str(i)))
        assert counted[-1] == BLOCKS[name].multipliers(params), (name, params)
    assert (max(counted) > 0) == (name == "syn_engine")  # the first conv's multipliers are seen


def test_a_block_that_multiplies_is_found(tmp_path, monkeypatch):
    src = tmp_path / "mul_add.sv"
    src.write_text("module mul_add #(parameter int WIDTH = 8, parameter int LANES = 1) (input logic [WIDTH-1:0] a, b, output logic [2*WIDTH-1:0] y);\n"
                   "    assign y = a * b + a;\nendmodule\n")
    monkeypatch.setitem(blocks.BLOCKS, "sat_add", dataclasses.replace(BLOCKS["sat_add"], top="mul_add", sources=(src,)))
    assert block_mul_cells("sat_add", {"WIDTH": 8, "LANES": 1}, tmp_path / "m") >= 1


@pytest.mark.parametrize("target", ["xc7", "ecp5"])
def test_the_engine_maps_its_memories_to_block_ram(target, tmp_path):
    """The fc1-sized engine's weights (64 x 256 x 8 bits) land in block RAM, not in LUTs."""
    r = synthesize_block("syn_engine", BLOCKS["syn_engine"].examples[0], tmp_path, target)
    ram = r["resources"]["BRAM36"] + r["resources"]["BRAM18"] if target == "xc7" else r["resources"]["DP16KD"]
    assert ram >= 1 and r["mul_cells_before_mapping"] == 0, r["resources"]


def test_a_narrow_accumulator_shrinks_the_engine_and_keeps_its_datapath(tmp_path):
    """The fc1-sized engine at 13 accumulator bits (what engine_from_export gives a small layer:
    under the 16-bit membrane, so the drain sign-extends) against 32: fewer LUTs, and the same
    weight ROM in block RAM. Measured 369 against 867 LUT; the comparator form of the drain's
    saturation once left Yosys + ABC 34 LUTs and no ROM (the whole datapath folded to constants)."""
    wide = BLOCKS["syn_engine"].examples[0]
    narrow = {**wide, "ACC_BITS": 13}
    w = synthesize_block("syn_engine", wide, tmp_path / "wide", "xc7")["resources"]
    n = synthesize_block("syn_engine", narrow, tmp_path / "narrow", "xc7")["resources"]
    assert 0.25 * w["LUT"] < n["LUT"] < w["LUT"] and n["FF"] < w["FF"], (n, w)
    assert n["BRAM36"] + n["BRAM18"] >= 1, n


def test_the_weight_stream_port_takes_the_weight_rom_off_the_chip(tmp_path):
    """The fc1-sized engine (its worst-case 16-bit accumulators) with WEIGHT_PORT = 1: its 64 x 32
    words of 64 bits (4 BRAM36 as a ROM) are gone, the datapath stays (measured: 557 -> 553 LUT,
    4 -> 0 BRAM36, the accumulators in LUT RAM either way)."""
    rom = {**BLOCKS["syn_engine"].examples[0], "ACC_BITS": 16}
    r = synthesize_block("syn_engine", rom, tmp_path / "rom", "xc7")["resources"]
    s = synthesize_block("syn_engine", {**rom, "WEIGHT_PORT": 1}, tmp_path / "port", "xc7")["resources"]
    assert r["BRAM36"] + r["BRAM18"] >= 4 and s["BRAM36"] + s["BRAM18"] == 0, (r, s)
    assert 0.8 * r["LUT"] < s["LUT"] < 1.2 * r["LUT"], (r, s)


def test_the_memory_style_moves_memories_between_block_ram_and_luts(tmp_path):
    """The hardware config's memory_style reaches Yosys: the LIF unit's membranes (1,024 x 16 bits)
    sit in block RAM when asked, in LUT RAM when asked, whatever Yosys would pick by itself."""
    params = BLOCKS["lif_unit"].examples[0]
    block = synthesize_block("lif_unit", params, tmp_path / "block", "xc7", memory_style="block")["resources"]
    lut = synthesize_block("lif_unit", params, tmp_path / "lut", "xc7", memory_style="distributed")["resources"]
    assert block["BRAM18"] + block["BRAM36"] >= 1 and block["LUTRAM"] == 0, block
    assert lut["BRAM18"] + lut["BRAM36"] == 0 and lut["LUTRAM"] >= 1, lut
