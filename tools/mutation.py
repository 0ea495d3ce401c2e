"""Mutation testing of the integer contract's chain: does the suite notice a planted fault?

Each mutant is one textual change (a comparison, a rounding, a saturation, a bound, a bias, a lane)
in one file of the fixed-point primitives, the golden model, the QAT model, the hls4ml types and
templates, the SystemVerilog or the cycle model. For each, the harness copies the package and the
tests into a scratch directory, plants the fault there, and runs the tests that should notice
(`pytest -x`: the first failure kills the mutant). The copy is first on the import path, so the
installed package is never touched.

    python tools/mutation.py                      # every mutant -> results/mutation.{md,json}
    python tools/mutation.py --only rtl-lif-o-ge  # some mutants (ids), nothing written to results/

Outcomes: "killed" (a test failed), "survived" (every test passed), "error" (the copy did not run,
or only a fixture broke: a broken mutant, which says nothing about the tests; its log is kept). A survivor is a gap in the suite unless the
mutant is equivalent (it cannot change any result); those carry the reason in ``equivalent``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# the tests each kind of fault should meet; the cheap ones first (pytest -x stops at the first failure)
FIXED_POINT_TESTS = ("tests/quant/test_fixed_point.py", "tests/test_reach.py")
GOLDEN_TESTS = ("tests/quant/test_integer_model.py::test_golden_blocks_against_direct_definitions",
                "tests/test_reach.py")
QAT_TESTS = ("tests/test_reach.py::test_qat_model_equals_golden_model_on_every_trace",
             "tests/quant/test_integer_model.py::test_quant_bias_rounds_to_the_nearest_grid_point")
HLS_TESTS = ("tests/hls/test_hls_flow.py::test_lif_step_reference_keeps_state_and_resets_every_t_calls",
             "tests/test_reach.py::test_hls_c_simulation_equals_golden_model")
RTL_TESTS = ("tests/rtl_sim/test_sasa_core.py::test_random_spikes_stall_free_and_cycle_exact",
             "tests/rtl_sim/test_sasa_core.py::test_corner_cases",
             "tests/rtl_sim/test_sasa_core.py::test_other_geometries",
             "tests/rtl_sim/test_sasa_core.py::test_other_membrane_formats_and_accumulator_widths",
             "tests/test_reach.py::test_rtl_sasa_core_equals_golden_model")

FP, GOLDEN, QAT = "saformer/quant/fixed_point.py", "saformer/quant/golden.py", "saformer/quant/qat.py"
HLS_STAGES, HLS_H = "saformer/hls/stages.py", "saformer/hls/nnet_utils/nnet_saformer.h"
SV, CORE = "saformer/rtl_sim/hdl/sasa_core.sv", "saformer/rtl_sim/core.py"
HDL, BLOCKS = "saformer/rtl_sim/hdl/", "saformer/rtl_sim/blocks.py"
ENGINE_TESTS = ("tests/rtl_sim/test_syn_engine.py::test_syn_engine_equals_the_contract",)
PORT_TESTS = ("tests/rtl_sim/test_syn_engine.py::test_the_weight_stream_port_equals_the_rom",)
BLOCK_TESTS = ("tests/rtl_sim/test_blocks.py",)
LIF_TESTS = ("tests/rtl_sim/test_blocks.py::test_lif_unit_equals_the_contract",)
POOL_TESTS = ("tests/rtl_sim/test_blocks.py::test_maxpool_equals_the_contract",)
PLUMBING_TESTS = ("tests/rtl_sim/test_stream_plumbing.py::test_plumbing_passes_every_beat_with_its_cycle_model",)
TOP_MODEL = "saformer/rtl_sim/cycle_model.py"
TOP_MODEL_TESTS = ("tests/rtl_sim/test_cycle_model.py::test_without_engine_fifos_at_two_lanes_every_beat_is_predicted",
                   "tests/rtl_sim/test_accel.py::test_the_top_equals_the_golden_model_and_a_flipped_weight_bit_is_caught")
ENCODER_TESTS = ("tests/rtl_sim/test_event_encoder.py::test_event_encoder_writes_the_engines_events",)


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    old: str  # must occur exactly once in the file
    new: str
    fault: str  # what the change means
    tests: tuple[str, ...]
    equivalent: str = ""  # why it cannot change a result, for a mutant expected to survive


MUTANTS = [
    # ---- fixed-point primitives: both the integer and the float-emulation side --------------------
    Mutant("fp-saturate-wraps", FP, "    return np.clip(x, lo, hi)", "    return (x - lo) % (hi - lo + 1) + lo",
           "integer saturation turned into wrap-around", FIXED_POINT_TESTS),
    Mutant("fp-shift-rounds", FP, "    return x >> k if k >= 0 else x << -k",
           "    return (x + ((1 << k) >> 1)) >> k if k >= 0 else x << -k",
           "the floor shift rounds to nearest", FIXED_POINT_TESTS),
    Mutant("fp-range-off-by-one", FP, "    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1",
           "    return -(1 << (bits - 1)), (1 << (bits - 1))", "upper clip bound one too high", FIXED_POINT_TESTS),
    Mutant("fp-lif-gt", FP, "        s = h >= theta\n        v = np.where(s, 0, h)",
           "        s = h > theta\n        v = np.where(s, 0, h)", "integer LIF fires at H > theta", FIXED_POINT_TESTS),
    Mutant("fp-torch-lif-gt", FP, "        s = h >= theta\n        v = torch.where(s, 0, h)",
           "        s = h > theta\n        v = torch.where(s, 0, h)",
           "the torch golden backend's LIF fires at H > theta",
           ("tests/quant/test_golden_torch.py::test_primitives_equal_their_numpy_definitions",)),
    Mutant("fp-lif-no-reset", FP, "        v = np.where(s, 0, h)", "        v = h",
           "integer LIF without its hard reset", FIXED_POINT_TESTS),
    Mutant("fp-threshold-rounds", FP, "    return math.ceil(v_threshold * 2 ** frac)",
           "    return round(v_threshold * 2 ** frac)", "threshold rounded instead of ceiled", FIXED_POINT_TESTS),
    Mutant("fp-input-rounds", FP, "np.floor(np.asarray(x, np.float64) * 2.0 ** frac)",
           "np.round(np.asarray(x, np.float64) * 2.0 ** frac)", "input quantizer rounds", FIXED_POINT_TESTS),
    Mutant("fp-emulation-rounds", FP, "    return emulate_saturate(floor_ste(x * scale) / scale, mem_bits, mem_frac)",
           "    return emulate_saturate(round_ste(x * scale) / scale, mem_bits, mem_frac)",
           "QAT's membrane conversion rounds", FIXED_POINT_TESTS),
    # ---- golden model --------------------------------------------------------------------------------
    Mutant("golden-pool-pads-zero", GOLDEN, "constant_values=INT_MIN)", "constant_values=0)",
           "max-pool pads with 0 instead of -inf", GOLDEN_TESTS),
    Mutant("golden-conv-pad-shift", GOLDEN, "np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))",
           "np.pad(x, ((0, 0), (0, 0), (2, 0), (1, 1)))", "conv window off by one row", GOLDEN_TESTS),
    Mutant("golden-linear-drops-bias", GOLDEN, "    return flat.reshape(*x.shape[:-1], -1).astype(np.int64) + b",
           "    return flat.reshape(*x.shape[:-1], -1).astype(np.int64)", "linear layers lose their bias",
           GOLDEN_TESTS),
    Mutant("golden-window-dropped", GOLDEN, "    return (window_counts(q, n_agg) * window_counts(k, n_agg)).sum(axis=2, keepdims=True)",
           "    return (window_counts(q, n_agg) * window_counts(k, n_agg))[:, :, 1:].sum(axis=2, keepdims=True)",
           "SASA score skips the first window", GOLDEN_TESTS),
    Mutant("golden-drive-wraps", GOLDEN, "        y = saturate(y + f, mem_bits)", "        y = y + f",
           "SASA drive (mask + DWC) not saturated", GOLDEN_TESTS),
    Mutant("golden-residual-wraps", GOLDEN, "            return self.saturate(a + b, self.qcfg.membrane_bits), ta or tb",
           "            return a + b, ta or tb", "residual adds not saturated", GOLDEN_TESTS),
    Mutant("golden-head-bias-once", GOLDEN, "+ steps * self.ex.bias(node.layer)", "+ self.ex.bias(node.layer)",
           "head bias added once, not T*N times", GOLDEN_TESTS),
    # ---- QAT model -----------------------------------------------------------------------------------
    Mutant("qat-merge-wraps", QAT, "        return emulate_saturate(membrane + rpe, self.qcfg.membrane_bits, self.qcfg.membrane_frac)",
           "        return membrane + rpe", "SPS residual (membrane + RPE) not saturated", QAT_TESTS),
    Mutant("qat-bias-floors", QAT, "round_ste(self.bias * scale)", "torch.floor(self.bias * scale)",
           "bias quantized by floor instead of nearest", QAT_TESTS),
    Mutant("qat-no-membrane", QAT, "        if not self.to_membrane:\n            return acc",
           "        if True:\n            return acc", "synaptic outputs skip the membrane conversion", QAT_TESTS),
    # ---- hls4ml types and templates ------------------------------------------------------------------
    Mutant("hls-membrane-wraps", HLS_STAGES, 'rounding="AP_TRN", saturation="AP_SAT")',
           'rounding="AP_TRN", saturation="AP_WRAP")', "membrane result types wrap around", HLS_TESTS),
    Mutant("hls-membrane-rounds", HLS_STAGES, 'rounding="AP_TRN", saturation="AP_SAT")',
           'rounding="AP_RND", saturation="AP_SAT")', "membrane result types round to nearest", HLS_TESTS),
    Mutant("hls-lif-gt", HLS_H, "        bool fire = h >= theta;", "        bool fire = h > theta;",
           "HLS LIF fires at H > theta", HLS_TESTS),
    Mutant("hls-lif-no-reset", HLS_H, "        v[i] = fire ? data_T(0) : h;", "        v[i] = h;",
           "HLS LIF without its hard reset", HLS_TESTS),
    # ---- SystemVerilog: the SASA core --------------------------------------------------------------
    Mutant("rtl-lif-a-every-token", SV, "lif_a_valid <= !rst && a_fire && a_last_token;",
           "lif_a_valid <= !rst && a_fire;", "LIF_a (its registered drive, G >= 3) stepped by every token, not the "
           "step's last", RTL_TESTS),
    Mutant("rtl-mask-bypass-any-step", SV, "(G == 1 && mask_valid && mask_bank == b_bank)",
           "(G == 1 && mask_valid)", "one beat per token: the mask bypass ignores which step it belongs to",
           ("tests/rtl_sim/test_sasa_core.py::test_one_beat_per_token_under_backpressure",)),
    Mutant("rtl-lif-o-gt", "saformer/rtl_sim/hdl/lif_unit.sv", "spikes[l] = h >= THETA_W;", "spikes[l] = h > THETA_W;",
           "LIF_o (the core's lif_unit) fires at H > theta", RTL_TESTS),
    Mutant("rtl-saturate-wraps", SV,
           "saturate = x > MEM_HI ? MEM_HI[MEM_BITS-1:0] : x < MEM_LO ? MEM_LO[MEM_BITS-1:0] : x[MEM_BITS-1:0];",
           "saturate = x[MEM_BITS-1:0];", "membrane saturation turned into wrap-around", RTL_TESTS),
    Mutant("rtl-dwc-drops-bias", SV, "dwc_sum = (WIDE + 1)'(dwc_b[DB'(l) + b_dbase]);", "dwc_sum = '0;",
           "DWC bias dropped", RTL_TESTS),
    Mutant("rtl-lif-a-mask-group-late", SV, "mask_g <= lif_a_g;", "mask_g <= a_g;",
           "LIF_a's registered drive: the mask is filed under the group the input side has moved on to", RTL_TESTS),
    Mutant("rtl-q-lanes-swapped", SV, "        wire q = s_data[l];", "        wire q = s_data[P - 1 - l];",
           "Q lanes in reverse order", RTL_TESTS),
    Mutant("rtl-window-off-by-one", SV, "a_wpos <= a_wpos == CNT_BITS'(WIN - 1) ? '0 : a_wpos + 1'b1;",
           "a_wpos <= a_wpos == CNT_BITS'(WIN - 2) ? '0 : a_wpos + 1'b1;", "aggregation window one token short",
           RTL_TESTS),
    Mutant("rtl-grid-edge-off-by-one", SV, "(DR <= 0 || b_row != ($bits(b_row))'(GRID_H - 1))",
           "(DR <= 0 || b_row != ($bits(b_row))'(GRID_H - 2))", "DWC zero padding at the wrong bottom row",
           RTL_TESTS),
    Mutant("rtl-lif-o-logical-shift", "saformer/rtl_sim/hdl/lif_unit.sv",
           "+ {x[l*WIDTH +: WIDTH][WIDTH-1], x[l*WIDTH +: WIDTH]};", "+ {1'b0, x[l*WIDTH +: WIDTH]};",
           "LIF_o (the core's lif_unit) zero-extends its drive: negative drives halve as large positives", RTL_TESTS),
    Mutant("rtl-dwc-logical-shift", SV, "dwc_sum >>> DWC_SHIFT", "dwc_sum >> DWC_SHIFT",
           "DWC accumulator shifted right logically (no floor of negatives)", RTL_TESTS),
    Mutant("beats-msb-first", "saformer/rtl_sim/beats.py", 'np.packbits(rows, axis=1, bitorder="little")',
           'np.packbits(rows, axis=1, bitorder="big")', "bench packs lanes MSB first (a lane swap in the bench)",
           ("tests/rtl_sim/test_beats.py", *RTL_TESTS[:1])),
    # ---- the block library -------------------------------------------------------------------------
    Mutant("engine-no-forwarding", HDL + "syn_engine.sv", "fwd <= b_wen && rd_en && b_addr == rd_addr;", "fwd <= 1'b0;",
           "synaptic engine reads an accumulator the cycle after writing it, without forwarding", ENGINE_TESTS),
    Mutant("engine-top-padding", HDL + "syn_engine.sv", "if (ky == 2'd2 && ey == '0) in_range = 1'b0;", "",
           "3x3 engine: a spike in the top row also lands below the frame (wraps to the last row)", ENGINE_TESTS),
    Mutant("engine-logical-shift", HDL + "syn_engine.sv", "sum >>> OUT_SHIFT", "sum >> OUT_SHIFT",
           "synaptic engine shifts right logically (no floor of negatives)", ENGINE_TESTS),
    Mutant("engine-saturate-low-wraps", HDL + "syn_engine.sv", "else if (shifted[WIDE-1]) membranes[l*MEM_BITS +: MEM_BITS] = {1'b1, {(MEM_BITS-1){1'b0}}};",
           "else if (shifted[WIDE-1]) membranes[l*MEM_BITS +: MEM_BITS] = shifted[MEM_BITS-1:0];", "synaptic engine's membrane wraps at the bottom instead of saturating", ENGINE_TESTS),
    Mutant("engine-rom-ahead-misses-event-start", HDL + "syn_engine.sv",
           "wire [WAW-1:0] ahead_addr = take ? WAW'(cmul(32'(s_c), TAPS * CH)) : waddr + 1'b1;",
           "wire [WAW-1:0] ahead_addr = waddr + 1'b1;",
           "synaptic engine's weight read-ahead ignores a new event: its first step reads the last event's next word",
           ENGINE_TESTS),
    Mutant("engine-output-head-drops-a-drain", HDL + "syn_engine.sv", "assign ram_write = b_drain && !(m_head_free && ram_empty);",
           "assign ram_write = b_drain && !m_head_free;",
           "synaptic engine's output FIFO: a beat drained while the head refills from the RAM is lost",
           ENGINE_TESTS),
    Mutant("engine-drain-keeps-sums", HDL + "syn_engine.sv", "wdata = b_update ? accumulate(base, w_q, b_value) : '0;",
           "wdata = b_update ? accumulate(base, w_q, b_value) : base;", "drained accumulators not cleared: groups add up", ENGINE_TESTS),
    Mutant("engine-first-conv-unsigned", HDL + "syn_engine.sv", "ACC_BITS'(w) * ACC_BITS'($signed(value))",
           "ACC_BITS'(w) * ACC_BITS'(value)", "first conv reads its input values as unsigned",
           ("tests/rtl_sim/test_syn_engine.py::test_first_conv_multiplies_and_equals_the_contract",)),
    Mutant("engine-port-stale-lookahead", HDL + "syn_engine.sv", "if (take) head_requested <= 1'b0;", "",
           "weight stream port: the next event is taken on the last one's request (its burst never asked for)",
           PORT_TESTS),
    Mutant("engine-port-latency-ignored", TOP_MODEL, "max(a + 1, o + 1 + latency) + busy - 1", "a + busy",
           "the top's cycle model forgets the weight stream's latency",
           ("tests/rtl_sim/test_accel.py::test_a_top_with_streamed_weights_equals_the_golden_model",)),
    Mutant("engine-cycles-off-by-one", BLOCKS, "!= 0).sum(axis=(1, 2))).sum()) + 2", "!= 0).sum(axis=(1, 2))).sum()) + 1",
           "synaptic engine's cycle model one cycle short", ENGINE_TESTS),
    Mutant("pool-pad-is-a-value", HDL + "maxpool.sv", "odd_c ? x : (first_col ? x : h);",
           "odd_c ? x : h;", "max-pool's left pad takes the previous row's last column",
           POOL_TESTS),
    Mutant("pool-max3-skips-a-compare", HDL + "maxpool.sv", "m3 = r_gt_x && r_gt_c ? r : h;",
           "m3 = r_gt_x ? r : h;", "max-pool's side-by-side 3-way max forgets the row-vs-column compare",
           POOL_TESTS),
    Mutant("pool-column-read-ahead-unforwarded", HDL + "maxpool.sv", "c_q <= CH == 1 ? w[0 +: BW] : col_mem",
           "c_q <= col_mem", "max-pool with one chunk a position reads its column word ahead from the memory "
           "it is writing in the same cycle (the old word)", POOL_TESTS),
    Mutant("pool-row-read-ahead-unforwarded", HDL + "maxpool.sv", "r_q <= VDEPTH == 1 ? w[BW +: BW] : row_mem",
           "r_q <= row_mem", "max-pool with one row word reads it ahead from the memory it is writing in the same "
           "cycle (the old word)", POOL_TESTS),
    Mutant("pool-row-read-ahead-same-row", HDL + "maxpool.sv", "wire odd_row_next = row_end ? !odd_row : odd_row;",
           "wire odd_row_next = odd_row;", "max-pool's row read-ahead at a row's end keeps the ending row's bank",
           POOL_TESTS),
    Mutant("lif-unit-fires-above", HDL + "lif_unit.sv", "spikes[l] = h >= THETA_W;", "spikes[l] = h > THETA_W;",
           "lif_unit fires at H > theta", BLOCK_TESTS),
    Mutant("lif-unit-reads-one-ahead", HDL + "lif_unit.sv", "if (rst) addr_ahead <= AW'(2);",
           "if (rst) addr_ahead <= AW'(1);", "lif_unit's membrane read-ahead starts a word short: "
           "every beat reads its neighbour's membrane", LIF_TESTS),
    Mutant("lif-unit-keeps-last-sample", HDL + "lif_unit.sv", "if (rst || (take && next_first)) v_held <= '0;", "if (rst) v_held <= '0;",
           "lif_unit's read-ahead carries the last sample's membranes into a new sample's first step", LIF_TESTS),
    Mutant("sat-add-wraps", HDL + "sat_add.sv", "(sum[WIDTH] != sum[WIDTH-1]) ? (sum[WIDTH] ? MIN : MAX) : sum[WIDTH-1:0]",
           "sum[WIDTH-1:0]", "residual add wraps instead of saturating", BLOCK_TESTS),
    Mutant("skid-drops-held-beat", HDL + "skid_buffer.sv", "skid_valid <= 1'b1;", "skid_valid <= 1'b0;",
           "skid buffer drops the beat it should hold under back-pressure", BLOCK_TESTS),
    Mutant("encoder-last-event-empty", HDL + "event_encoder.sv", "o_data = pend_valid ? {2'b10, pend}",
           "o_data = pend_valid ? {2'b11, pend}", "event encoder marks a group's final event empty", ENCODER_TESTS),
    Mutant("encoder-group-ends-early", HDL + "event_encoder.sv",
           "wire in_group_end = in_last_chunk && in_pos == PW'(POS - 1);", "wire in_group_end = in_pos == PW'(POS - 1);",
           "event encoder ends a group at the first beat of its last position", ENCODER_TESTS),
    Mutant("fifo-write-wraps-early", HDL + "stream_fifo.sv", "if (push) wr <= wr == AW'(DEPTH - 1)",
           "if (push) wr <= wr == AW'(DEPTH - 2)", "FIFO write pointer wraps one entry early", PLUMBING_TESTS),
    Mutant("fork-forgets-taken", HDL + "stream_fork.sv", "if (v0 && r0) taken0 <= 1'b1;", "if (1'b0) taken0 <= 1'b1;",
           "fork sends a beat twice to the consumer that took it while the other stalls", PLUMBING_TESTS),
    Mutant("repeat-one-pass-short", HDL + "frame_repeat.sv", "pass == TW'(TIMES - 1);",
           "pass == TW'(TIMES - 2);", "frame repeat stops one replay early", PLUMBING_TESTS),
    # ---- cycle model ---------------------------------------------------------------------------------
    Mutant("cycles-total-off-by-one", CORE, "total=(steps + 1) * b + 3,", "total=(steps + 1) * b + 2,",
           "cycle model one cycle short", RTL_TESTS[:1]),
    # the accelerator's exact cycle model (saformer/rtl_sim/cycle_model.py) against the whole top
    Mutant("top-model-engine-fifo-deeper", TOP_MODEL, "t = max(t, out_xfer[j - 4] + 1)", "t = max(t, out_xfer[j - 5] + 1)",
           "the model's engine output FIFO holds 5 beats, not 4", TOP_MODEL_TESTS),
    Mutant("top-model-skid-deeper", TOP_MODEL, "    return max(t, v[m - 2] + 1) if m >= 2 else t",
           "    return t", "the model's skid buffers never fill: encoders, forks, joins never wait for them",
           TOP_MODEL_TESTS),
    Mutant("top-model-sasa-three-steps", TOP_MODEL, "if step >= 2 and pos == 0:", "if step >= 3 and pos == 0:",
           "the model lets the SASA core hold three steps in flight, not two", TOP_MODEL_TESTS,
           equivalent="the limit binds only while the core's output is slower than its input; in a whole top the "
                      "residual FIFO (two steps) holds the block's input back first, and in a top cut after the core "
                      "the output's rate alone then sets every output cycle (checked: equal cycles with and without "
                      "the fault on digits tops at 2 and 8 lanes, with and without engine FIFOs, a 1-lane proj, and "
                      "the output ready every 3 to 400 cycles)"),
]


def planted(mutant: Mutant, text: str) -> str:
    """The file's text with the fault in; refuses a mutant whose text is not in the code exactly once."""
    found = text.count(mutant.old)
    if found != 1:
        raise ValueError(f"mutant '{mutant.id}': its text occurs {found} times in {mutant.file} (must be once); "
                         "update the mutant to the code")
    return text.replace(mutant.old, mutant.new)


def apply(mutant: Mutant, root: Path) -> None:
    path = root / mutant.file
    path.write_text(planted(mutant, path.read_text()))


def copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for name in ("saformer", "tests"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def run(mutant: Mutant, scratch: Path, timeout: int) -> dict:
    root = scratch / mutant.id
    copy_tree(root)
    apply(mutant, root)
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    where = subprocess.run([sys.executable, "-c", "import saformer; print(saformer.__file__)"], cwd=root, env=env,
                           capture_output=True, text=True).stdout.strip()
    if not Path(where).is_relative_to(root):  # the tests must import the planted copy
        raise RuntimeError(f"the copy imports saformer from '{where}', not from '{root}'")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *mutant.tests]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired:
        rc, tail = -1, f"timed out after {timeout} s"
    seconds = time.perf_counter() - start
    failed = [line.split(" ")[1] for line in tail.splitlines() if line.startswith("FAILED ")]
    # a test that failed kills the mutant; only errors (a fixture or an import broke) say nothing of the tests
    outcome = "survived" if rc == 0 else "killed" if rc == 1 and failed else "error"
    shutil.rmtree(root, ignore_errors=True)
    return {**asdict(mutant), "outcome": outcome, "returncode": rc, "killed_by": failed[:1], "seconds": round(seconds, 1),
            "log_tail": tail if outcome == "error" else ""}


def table(rows: list[dict]) -> str:
    killed = sum(r["outcome"] == "killed" for r in rows)
    survived = [r for r in rows if r["outcome"] == "survived"]
    unexplained = [r for r in survived if not r["equivalent"]]
    lines = ["# Mutation testing: planted faults and the tests that catch them\n",
             f"Command: `python tools/mutation.py` (the harness: `tools/mutation.py`). {len(rows)} mutants: "
             f"**{killed} killed**, {len(survived)} survived ({len(unexplained)} unexplained), "
             f"{sum(r['outcome'] == 'error' for r in rows)} errors.\n",
             "| mutant | file | fault | outcome | killed by | seconds |", "|---|---|---|---|---|---|"]
    for r in rows:
        by = r["killed_by"][0] if r["killed_by"] else (r["equivalent"] or "-")
        lines.append(f"| `{r['id']}` | `{r['file']}` | {r['fault']} | **{r['outcome']}** | {by} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="ID", help="run these mutants; results/ is left alone")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per mutant (default 900)")
    parser.add_argument("--out", type=Path, default=ROOT / "results", help="where mutation.md/json go")
    args = parser.parse_args(argv)
    chosen = MUTANTS
    if args.only:
        known = {m.id for m in MUTANTS}
        unknown = sorted(set(args.only) - known)
        if unknown:
            parser.error(f"unknown mutant(s) {unknown}; known: {sorted(known)}")
        chosen = [m for m in MUTANTS if m.id in args.only]
    for m in chosen:  # every mutant still matches the code before anything runs
        planted(m, (ROOT / m.file).read_text())
    rows = []
    with tempfile.TemporaryDirectory(prefix="saformer-mutants-") as scratch:
        for i, m in enumerate(chosen, 1):
            r = run(m, Path(scratch), args.timeout)
            rows.append(r)
            print(f"[{i}/{len(chosen)}] {m.id:<28} {r['outcome']:<9} {r['seconds']:6.0f} s  "
                  f"{(r['killed_by'] or [r['equivalent'] or ''])[0]}", flush=True)
    if not args.only:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "mutation.json").write_text(json.dumps(rows, indent=2) + "\n")
        (args.out / "mutation.md").write_text(table(rows))
        print(f"wrote {args.out / 'mutation.md'}")
    return 0 if all(r["outcome"] == "killed" or (r["outcome"] == "survived" and r["equivalent"]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
