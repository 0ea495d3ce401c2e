"""The whole accelerator: a SystemVerilog top generated from the export's graph, a pipeline of the
library's blocks (one engine per synaptic layer), and its end-to-end simulation against the golden
model through the compiled harness (docs/accelerator.md: the architecture, the schedule, why).

Every graph node becomes hardware, every edge a valid/ready stream:

    input      the top's s_* port: the quantized image, one pixel (all its channels) per beat
    synapse    event_encoder -> syn_engine (the first conv: the encoder carries the image's values)
    maxpool    maxpool              lif        lif_unit (a static value first goes through frame_repeat)
    add        stream_join -> sat_add (the branch that forked off earlier waits in a stream_fifo)
    tokens     nothing: a frame's (position, channel) order is the tokens' order
    sasa       stream_join {K, Q} -> sasa_core
    head       event_encoder (a group = a sample's T x N tokens) -> syn_engine with T*N x the bias
               and an accumulator-wide output: the logits, the top's m_* port

A node read by two others is forked (stream_fork). Every engine reads its spikes through a FIFO of
``engine_fifo_steps`` steps, which decouples it from its producer's drain. Lanes: an engine runs the
hardware config's engine_lanes for it, else the largest divisor of its output channels that is at most
the config's lanes (saformer.rtl_sim.balance chooses engine_lanes). The stream it feeds (pools, LIFs,
adds, the SASA core, up to the next event encoder) runs at the fewest lanes of the engines whose
streams meet there (``stream_lanes``); a wider engine reaches it through a lane_gearbox.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saformer.config import HardwareConfig, divisors
from saformer.errors import ConfigError
from saformer.graph import SYNAPTIC_OPS
from saformer.rtl_sim.blocks import BLOCKS, SYN_ENGINE, engine_from_export, event_fields
from saformer.rtl_sim.core import HDL_DIR, params_from_export, write_dwc_file

TOP = "saformer_top"
SIM_TOP = "saformer_top_sim"  # the top with weight_stream_mem models on its weight ports
WEIGHT_PORT_SIGNALS = ("wr_valid", "wr_ready", "wr_addr", "w_valid", "w_ready", "w_data")  # syn_engine.sv's
TRACE_BATCH = 64  # images per traced golden pass in accelerate_export (a CIFAR image's traces are ~MBs)


@dataclass
class Stream:
    """One valid/ready stream of the top: its signal prefix, width, lanes and how many beats a step."""
    wire: str
    width: int
    lanes: int
    beats_per_step: int
    static: bool = False  # carries one value per image, not one per step


@dataclass
class TopDesign:
    """What the generator made: the SystemVerilog, its sources, its ports, and per block its parameters."""
    sv: str
    sources: tuple[Path, ...]
    in_lanes: int
    in_bits: int
    out_lanes: int
    out_bits: int
    classes: int
    static_input: bool
    blocks: list[dict[str, Any]] = field(default_factory=list)
    output: str = "logits"  # the node whose values leave the top
    out_beats_per_image: int = 1
    streams: dict[str, Stream] = field(default_factory=dict)  # every stream by wire: the cycle model's edges
    input_wire: str = "img"
    output_wire: str = ""
    # engines on their weight stream port: {engine, words, width, burst, latency, file}, each a set
    # of top ports ENGINE_wr_* (burst requests) and ENGINE_w_* (the words)
    weight_ports: list[dict[str, Any]] = field(default_factory=list)
    sim_sv: str = ""  # with weight ports: SIM_TOP, the top with a memory model on each (simulation only)

    @property
    def sim_top(self) -> str:
        """The module a simulation runs: the top itself, or SIM_TOP when weights stream in."""
        return SIM_TOP if self.weight_ports else TOP


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _literal(v: Any) -> str:
    if isinstance(v, str):
        return v
    return str(int(v)) if int(v) >= 0 else f"-{-int(v)}"


class _Builder:
    def __init__(self, ex, hw: HardwareConfig, mem_dir: Path | None, mem_prefix: str, static_input: bool) -> None:
        self.ex, self.hw, self.mem_dir, self.prefix = ex, hw, mem_dir, mem_prefix
        self.static_input = static_input
        self.q = ex.qcfg
        self.t = ex.cfg.time_steps
        self.decls: list[str] = []
        self.body: list[str] = []
        self.blocks: list[dict[str, Any]] = []
        self.streams: dict[str, Stream] = {}  # graph node -> its stream
        self.wires: dict[str, Stream] = {}  # wire -> stream
        self.taps: dict[tuple[str, str], Stream] = {}  # (producer, consumer) -> the consumer's copy
        self.sources: set[str] = set()
        self.node: str | None = None  # the graph node being built: every block records it
        self.weight_ports: list[dict[str, Any]] = []
        self.stream_lanes = stream_lanes(ex, hw)

    # ---- wires and instances ---------------------------------------------------------------------
    def stream(self, wire: str, width: int, lanes: int, beats: int, static: bool = False) -> Stream:
        self.decls.append(f"    logic {wire}_valid, {wire}_ready;\n    logic [{width - 1}:0] {wire}_data;")
        self.wires[wire] = Stream(wire, width, lanes, beats, static)
        return self.wires[wire]

    def instance(self, block: str, module: str, name: str, params: dict[str, Any], ports: dict[str, str]) -> None:
        self.sources.update(str(s) for s in BLOCKS[block].sources)
        ps = ", ".join(f".{k}({_literal(v)})" for k, v in params.items())
        cs = ", ".join(f".{k}({v})" for k, v in ports.items())
        self.body.append(f"    {module} #({ps}) u_{name} (.clk, .rst, {cs});")
        self.blocks.append({"instance": f"u_{name}", "block": block, "module": module, "params": params, "node": self.node,
                            "ports": {p[:-len("_valid")]: w[:-len("_valid")] for p, w in ports.items()
                                      if p.endswith("_valid") and w[:-len("_valid")] in self.wires}})  # {s / m / s0 / m1 ...: its stream's wire}

    def one_to_one(self, block: str, module: str, name: str, params: dict, src: Stream, dst: Stream) -> None:
        self.instance(block, module, name, params, {
            "s_valid": f"{src.wire}_valid", "s_ready": f"{src.wire}_ready", "s_data": f"{src.wire}_data",
            "m_valid": f"{dst.wire}_valid", "m_ready": f"{dst.wire}_ready", "m_data": f"{dst.wire}_data"})

    # ---- the graph -------------------------------------------------------------------------------
    def build(self, output: str) -> None:
        """Every node up to ``output`` (the graph's in dataflow order), whose stream leaves the top."""
        graph = self.ex.graph
        names = [n.name for n in graph]
        if output not in names:
            raise ConfigError(f"accelerator: no node {output!r} in the graph; its nodes are {names}")
        keep = set(names[:names.index(output) + 1])
        self.users = {n: [c for c in cs if c in keep] for n, cs in graph.consumers().items()}
        for node in graph:
            if node.name not in keep:
                break
            self.node = node.name
            out = getattr(self, f"_{node.op}")(node)
            self.streams[node.name] = out
            if node.name != output:
                self._fork(node.name, out, self.users[node.name])

    def _fork(self, name: str, s: Stream, consumers: list[str]) -> None:
        """Give every consumer its own copy: a chain of two-way forks."""
        if len(consumers) <= 1:
            for c in consumers:
                self.taps[(name, c)] = s
            return
        for i, c in enumerate(consumers[:-1]):
            a = self.stream(f"{s.wire}_to_{_ident(c)}", s.width, s.lanes, s.beats_per_step, s.static)
            rest = self.stream(f"{s.wire}_f{i}", s.width, s.lanes, s.beats_per_step, s.static)
            self.instance("fork_join", "stream_fork", f"fork_{s.wire}_{i}", {"WIDTH": s.width}, {
                "s_valid": f"{s.wire}_valid", "s_ready": f"{s.wire}_ready", "s_data": f"{s.wire}_data",
                "m0_valid": f"{a.wire}_valid", "m0_ready": f"{a.wire}_ready", "m0_data": f"{a.wire}_data",
                "m1_valid": f"{rest.wire}_valid", "m1_ready": f"{rest.wire}_ready", "m1_data": f"{rest.wire}_data"})
            self.taps[(name, c)] = a
            s = rest
        self.taps[(name, consumers[-1])] = s

    def lanes(self, layer: str, outputs: int) -> int:
        """An engine's lanes: the hardware config's engine_lanes for it (check_engine_lanes), else the
        largest divisor of its outputs up to the config's lanes."""
        given = self.hw.lanes_of(layer)
        return _largest_divisor(outputs, self.hw.lanes) if given is None else given

    def tap(self, producer: str, consumer: str) -> Stream:
        return self.taps[(producer, consumer)]

    def _input(self, node) -> Stream:
        c, h, w = node.shape
        s = Stream("img", c * self.q.input_bits, c, h * w, self.static_input)
        self.wires["img"] = s
        self.body.append("    assign img_valid = s_valid;\n    assign s_ready = img_ready;\n    assign img_data = s_data;")
        self.decls.append(f"    logic img_valid, img_ready;\n    logic [{s.width - 1}:0] img_data;")
        return s

    def _engine(self, node, params: dict[str, int], data: dict[str, np.ndarray], src: Stream, name: str,
                group: int = 1) -> Stream:
        """event_encoder -> syn_engine for one synaptic layer; its memories written under mem_dir."""
        enc = {"IN": params["IN"], "LANES": src.lanes, "KERNEL": params["KERNEL"], "H": params["H"], "W": params["W"],
               "GROUP": group, "VALUE_BITS": params.get("VALUE_BITS", 0)}
        BLOCKS["event_encoder"].check(enc)
        if not src.static and self.hw.engine_fifo_steps:  # decouple: the producer drains while this engine works
            buf = self.stream(f"{name}_fifo", src.width, src.lanes, src.beats_per_step)
            self.one_to_one("stream_fifo", "stream_fifo", f"{name}_fifo",
                            {"WIDTH": src.width, "DEPTH": max(2, self.hw.engine_fifo_steps * src.beats_per_step)},
                            src, buf)
            self.blocks[-1]["beats_per_step"] = src.beats_per_step  # its traffic (activity.py)
            src = buf
        ev = self.stream(f"{name}_ev", sum(event_fields(enc)) + 2, 1, 0, src.static)
        self.one_to_one("event_encoder", "event_encoder", f"{name}_enc", enc, src, ev)
        if self.mem_dir is not None:
            SYN_ENGINE.write_memories(params, data, self.mem_dir / name)
        files = {p: f'"{self.prefix}{name}/{f}"' for p, f in SYN_ENGINE.files.items()}
        positions = params["H"] * params["W"] if params["KERNEL"] == 3 else node.shape[0] if node.op == "synapse" else 1
        out = self.stream(f"{name}_out", params["LANES"] * params["MEM_BITS"], params["LANES"],
                          positions * params["OUT"] // params["LANES"], src.static)
        ports = {"s_valid": f"{ev.wire}_valid", "s_ready": f"{ev.wire}_ready", "s_data": f"{ev.wire}_data",
                 "m_valid": f"{out.wire}_valid", "m_ready": f"{out.wire}_ready", "m_data": f"{out.wire}_data"}
        if self.hw.streams_weights(node.name):  # no ROM: the weights come in on the top's ports
            chunks, taps = params["OUT"] // params["LANES"], params["KERNEL"] ** 2
            params = {**params, "WEIGHT_PORT": 1}
            self.weight_ports.append({"engine": name, "node": node.name, "words": params["IN"] * taps * chunks,
                                      "width": params["LANES"] * params["W_BITS"], "burst": taps * chunks,
                                      "latency": self.hw.weight_stream_latency, "file": files["WEIGHT_FILE"]})
            files = {**files, "WEIGHT_FILE": '""'}
            ports.update({p: f"{name}_{p}" for p in WEIGHT_PORT_SIGNALS})
        else:  # the ROM: the port tied off
            ports.update({"wr_valid": "", "wr_ready": "1'b0", "wr_addr": "", "w_valid": "1'b0", "w_ready": "", "w_data": "'0"})
        if not self.hw.engine_output_register:  # the default (1) is left out: the same parameters as before it existed
            params = {**params, "OUT_REG": 0}
        self.instance("syn_engine", "syn_engine", name, {**params, **files}, ports)
        if params.get("WEIGHT_PORT"):
            self.blocks[-1]["weight_latency"] = self.hw.weight_stream_latency
        lanes = self.stream_lanes[node.name]
        if lanes == params["LANES"]:
            return out
        # the engine's lanes into its stream's: its drain moves at the narrower side's pace
        self.blocks[-1]["drain_lanes"] = lanes
        geared = self.stream(f"{name}_gear", lanes * params["MEM_BITS"], lanes,
                             positions * params["OUT"] // lanes, src.static)
        self.one_to_one("lane_gearbox", "lane_gearbox", f"{name}_gear",
                        {"WIDTH": params["MEM_BITS"], "IN_LANES": params["LANES"], "OUT_LANES": lanes}, out, geared)
        self.blocks[-1]["values_per_step"] = positions * params["OUT"]
        return geared

    def _synapse(self, node) -> Stream:
        src = self.tap(node.inputs[0], node.name)
        params, data = engine_from_export(self.ex, node.name, self.lanes(node.name, node.channels))
        return self._engine(node, params, data, src, _ident(node.name))

    def _head(self, node) -> Stream:
        """Spike counts over the sample, times the weights, plus T*N times the bias: one engine group
        spans the sample, and its accumulator holds the worst case of T*N spikes per input."""
        src = self.tap(node.inputs[0], node.name)
        n, d = self.ex.graph[node.inputs[0]].shape
        w, b = self.ex.weight(node.layer), self.ex.bias(node.layer)
        repeats = self.t * n
        worst = repeats * int(np.abs(w).sum(axis=1).max() + np.abs(b).max())
        acc = worst.bit_length() + 1
        classes = int(w.shape[0])
        params = {"IN": d, "OUT": classes, "LANES": self.lanes(node.name, classes), "KERNEL": 1, "H": 1, "W": 1,
                  "W_BITS": self.q.weight_bits, "ACC_BITS": acc, "MEM_BITS": acc, "OUT_SHIFT": 0}
        SYN_ENGINE.check(params)
        return self._engine(node, params, {"weight": w, "bias": b * repeats}, src, "head", group=repeats)

    def _maxpool(self, node) -> Stream:
        src = self.tap(node.inputs[0], node.name)
        c, h, w = self.ex.graph[node.inputs[0]].shape
        p = {"WIDTH": self.q.membrane_bits, "LANES": src.lanes, "C": c, "H": h, "W": w}
        BLOCKS["maxpool"].check(p)
        out = self.stream(_ident(node.name), src.width, src.lanes, src.beats_per_step // 4, src.static)
        self.one_to_one("maxpool", "maxpool", _ident(node.name), p, src, out)
        return out

    def _lif(self, node) -> Stream:
        src = self.tap(node.inputs[0], node.name)
        name = _ident(node.name)
        if src.static:  # the same drive at every step: store the frame, replay it T times
            rep = self.stream(f"{name}_rep", src.width, src.lanes, src.beats_per_step)
            self.one_to_one("frame_repeat", "frame_repeat", f"{name}_rep",
                            {"WIDTH": src.width, "BEATS": src.beats_per_step, "TIMES": self.t}, src, rep)
            src = rep
        p = {"WIDTH": self.q.membrane_bits, "LANES": src.lanes, "NEURONS": src.beats_per_step * src.lanes, "T": self.t,
             "THETA": self.ex.theta(node.neuron)}
        BLOCKS["lif_unit"].check(p)
        out = self.stream(name, src.lanes, src.lanes, src.beats_per_step)
        self.one_to_one("lif_unit", "lif_unit", name, p, src, out)
        return out

    def _tokens(self, node) -> Stream:
        return self.tap(node.inputs[0], node.name)

    def _join(self, name: str, a: Stream, b: Stream) -> Stream:
        if a.lanes != b.lanes or a.beats_per_step != b.beats_per_step or a.static or b.static:  # stream_lanes' job
            raise ConfigError(f"accelerator: internal error: '{name}' joins streams of {a.lanes} and {b.lanes} lanes "
                              f"({a.beats_per_step} and {b.beats_per_step} beats a step); stream_lanes should have "
                              "geared them to one")
        j = self.stream(f"{name}_in", a.width + b.width, a.lanes, a.beats_per_step)
        self.instance("fork_join", "stream_join", f"{name}_join", {"W0": a.width, "W1": b.width}, {
            "s0_valid": f"{a.wire}_valid", "s0_ready": f"{a.wire}_ready", "s0_data": f"{a.wire}_data",
            "s1_valid": f"{b.wire}_valid", "s1_ready": f"{b.wire}_ready", "s1_data": f"{b.wire}_data",
            "m_valid": f"{j.wire}_valid", "m_ready": f"{j.wire}_ready", "m_data": f"{j.wire}_data"})
        return j

    def _add(self, node) -> Stream:
        name = _ident(node.name)
        ins = []
        for i in node.inputs:
            s = self.tap(i, node.name)
            if len(self.users[i]) > 1:  # the branch that forked off waits here for its partner's long path
                buf = self.stream(f"{name}_buf{len(ins)}", s.width, s.lanes, s.beats_per_step, s.static)
                self.one_to_one("stream_fifo", "stream_fifo", f"{name}_buf{len(ins)}",
                                {"WIDTH": s.width, "DEPTH": max(2, 2 * s.beats_per_step)}, s, buf)
                self.blocks[-1]["beats_per_step"] = s.beats_per_step
                s = buf
            ins.append(s)
        j = self._join(name, *ins)
        out = self.stream(name, ins[0].width, ins[0].lanes, ins[0].beats_per_step)
        self.one_to_one("sat_add", "sat_add", name, {"WIDTH": self.q.membrane_bits, "LANES": ins[0].lanes}, j, out)
        return out

    def _sasa(self, node) -> Stream:
        name = _ident(node.name)
        q, k = (self.tap(i, node.name) for i in node.inputs)
        params, dwc = params_from_export(self.ex, node.name, q.lanes)
        j = self._join(name, q, k)  # {K, Q}: Q in the low bits
        files = {"DWC_FILE": '""', "DWC_BIAS_FILE": '""'}
        if dwc is not None and self.mem_dir is not None:
            (self.mem_dir / name).mkdir(parents=True, exist_ok=True)
            write_dwc_file(self.mem_dir / name / "dwc.hex", params, *dwc)
            files = {"DWC_FILE": f'"{self.prefix}{name}/dwc.hex"', "DWC_BIAS_FILE": f'"{self.prefix}{name}/dwc_bias.hex"'}
        out = self.stream(name, q.lanes, q.lanes, q.beats_per_step)
        hdl = {k: v for k, v in params.as_hdl(None).items() if not k.endswith("_FILE")}
        self.one_to_one("sasa_core", "sasa_core", name, {**hdl, **files}, j, out)
        return out


def stream_lanes(ex, hw: HardwareConfig) -> dict[str, int]:
    """Per synaptic layer, the lanes of the stream its engine feeds: the fewest of the engines whose
    streams meet (saformer.rtl_sim.balance.lane_groups), so that the dense blocks on it (LIFs, pools,
    residual adds, the SASA core) are as narrow as its engines allow; an engine with more lanes
    reaches it through a lane_gearbox."""
    from saformer.rtl_sim.balance import lane_groups

    own = {n.name: hw.lanes_of(n.name) or _largest_divisor(n.channels, hw.lanes)
           for n in ex.graph if n.op in SYNAPTIC_OPS}
    return {m: min(own[e] for e in members) for members in lane_groups(ex.graph).values() for m in members}


def check_engine_lanes(ex, hw: HardwareConfig) -> None:
    """The hardware config's engine_lanes against the export: synaptic layers only, lanes that divide
    their outputs."""
    engines = [n.name for n in ex.graph if n.op in SYNAPTIC_OPS]
    unknown = sorted(set(dict(hw.engine_lanes)) - set(engines))
    if unknown:
        raise ConfigError(f"accelerator: engine_lanes names {unknown}, not synaptic layers of '{ex.cfg.label}'; "
                          f"its layers: {engines}")
    unknown = sorted(set(hw.weight_stream) - set(engines) - ({"all"} if hw.weight_stream == ("all",) else set()))
    if unknown:
        raise ConfigError(f"accelerator: weight_stream names {unknown}, not synaptic layers of '{ex.cfg.label}'; "
                          f"its layers: {engines} (or 'all')")
    for layer, given in hw.engine_lanes:
        outputs = ex.graph[layer].channels
        if outputs % given:
            raise ConfigError(f"accelerator: engine_lanes gives '{layer}' {given} lanes, which do not divide its "
                              f"{outputs} outputs; divisors: {divisors(outputs)}")


def generate_top(ex, hw: HardwareConfig, mem_dir: Path | None, mem_prefix: str | None = None,
                 static_input: bool = True, output: str | None = None) -> TopDesign:
    """The top's SystemVerilog for the export ``ex`` at the hardware config's lanes; the memories of
    every engine and SASA core are written under ``mem_dir`` and named in the SystemVerilog as
    ``mem_prefix`` + their relative path (default: ``mem_dir``'s absolute path, for simulation).
    ``output``: a LIF or SASA node whose spikes leave the top instead of the logits (the network cut
    after it), for comparing a layer's spikes with the golden traces. ``mem_dir=None``: write no
    memories (the design's shape only, its blocks and parameters: for the stage loads and the lanes
    balancer, saformer.rtl_sim.balance)."""
    mem_dir = None if mem_dir is None else Path(mem_dir).resolve()
    prefix = mem_prefix if mem_prefix is not None else "" if mem_dir is None else f"{mem_dir}/"
    output = output or ex.graph.output.name
    if output in ex.graph.by_name and ex.graph[output].op not in ("lif", "sasa", "head"):
        raise ConfigError(f"accelerator: the top can end at a LIF, SASA or head node, not at "
                          f"'{output}' ({ex.graph[output].op})")
    check_engine_lanes(ex, hw)
    b = _Builder(ex, hw, mem_dir, prefix, static_input)
    b.build(output)
    out = b.streams[output]
    img = b.streams[ex.graph.nodes[0].name]
    logits = ex.graph[output].op == "head"
    classes = int(ex.graph.output.shape[0])
    header = (f"// {TOP}: SAFormer '{ex.cfg.label}' as one pipeline of the block library, generated by\n"
              f"// saformer/rtl_sim/accel.py from the export's graph (docs/accelerator.md).\n"
              f"//\n"
              f"// Input stream: one beat per pixel, row-major, {img.lanes} channel(s) of {ex.qcfg.input_bits}-bit signed\n"
              f"//   values (channel 0 low); {'one pass per image (a static image)' if static_input else 'T passes (frames)'}.\n"
              + (f"// Output stream: the logits, {out.lanes} classes a beat ({out.width // out.lanes}-bit signed, class 0 low),\n"
                 f"//   {classes // out.lanes} beat(s) per image, in units of 2^-acc_frac of the head, equal to the golden model's.\n"
                 if logits else
                 f"// Output stream: the spikes of '{output}' (the network cut after it), {out.lanes} a beat, every step.\n")
              + "// Cycle model: exact, from the golden spikes: the cycle of every beat of every stream, from each\n"
              "//   block's transfer equations (saformer.rtl_sim.cycle_model; docs/accelerator.md). Back to back, an\n"
              "//   image takes about its slowest stage's stall-free cycles (saformer.rtl_sim.balance.stage_loads).\n")
    weight_ports = []
    for wp in b.weight_ports:
        e, aw = wp["engine"], max(1, (wp["words"] - 1).bit_length())
        weight_ports += [f"    output logic {e}_wr_valid,", f"    input  wire logic {e}_wr_ready,",
                         f"    output logic [{aw - 1}:0] {e}_wr_addr,", f"    input  wire logic {e}_w_valid,",
                         f"    output logic {e}_w_ready,", f"    input  wire logic [{wp['width'] - 1}:0] {e}_w_data,"]
    if b.weight_ports:
        header += ("// Weight stream ports (the engines of hardware config weight_stream): per engine E, burst requests\n"
                   "//   E_wr_valid / E_wr_ready / E_wr_addr (a burst's first word) and its words in request order on\n"
                   "//   E_w_valid / E_w_ready / E_w_data (syn_engine.sv's header); " + SIM_TOP + " puts a memory\n"
                   "//   model (weight_stream_mem.sv) on each for simulation.\n")
    sv = "\n".join([header + "`default_nettype none\n",
                    f"module {TOP} (",
                    "    input  wire logic clk,",
                    "    input  wire logic rst,",
                    *weight_ports,
                    "    input  wire logic s_valid,",
                    "    output logic s_ready,",
                    f"    input  wire logic [{img.width - 1}:0] s_data,",
                    "    output logic m_valid,",
                    "    input  wire logic m_ready,",
                    f"    output logic [{out.width - 1}:0] m_data",
                    ");",
                    *b.decls,
                    "",
                    *b.body,
                    "",
                    f"    assign m_valid = {out.wire}_valid;",
                    f"    assign {out.wire}_ready = m_ready;",
                    f"    assign m_data = {out.wire}_data;",
                    "endmodule",
                    "",
                    "`default_nettype wire", ""])
    sources = sorted({*b.sources, str(HDL_DIR / "stream_fork.sv"), str(HDL_DIR / "stream_join.sv"),
                      str(HDL_DIR / "skid_buffer.sv"), str(HDL_DIR / "stream_fifo.sv")})
    sources = [s for s in sources if not s.endswith("fork_join_check.sv")]
    per_image = classes // out.lanes if logits else ex.cfg.time_steps * out.beats_per_step
    if b.weight_ports:
        sources.append(str(HDL_DIR / "weight_stream_mem.sv"))
    return TopDesign(sv, tuple(Path(s) for s in sources), img.lanes, ex.qcfg.input_bits, out.lanes,
                     out.width // out.lanes, classes, static_input, b.blocks, output, per_image, b.wires,
                     img.wire, out.wire, b.weight_ports, _sim_top(b.weight_ports, img.width, out.width))


def _sim_top(weight_ports: list[dict[str, Any]], in_width: int, out_width: int) -> str:
    """SIM_TOP: the top with a weight_stream_mem on each weight port (simulation only; '' without ports)."""
    if not weight_ports:
        return ""
    lines = [f"// {SIM_TOP}: {TOP} with a model of external memory (weight_stream_mem.sv) on each weight stream",
             "// port, for simulation: the same streams as the top. Generated by saformer/rtl_sim/accel.py.",
             "`default_nettype none", "", f"module {SIM_TOP} (",
             "    input  wire logic clk,", "    input  wire logic rst,",
             "    input  wire logic s_valid,", "    output logic s_ready,", f"    input  wire logic [{in_width - 1}:0] s_data,",
             "    output logic m_valid,", "    input  wire logic m_ready,", f"    output logic [{out_width - 1}:0] m_data", ");"]
    conns = []
    for wp in weight_ports:
        e, aw = wp["engine"], max(1, (wp["words"] - 1).bit_length())
        lines += [f"    logic {e}_wr_valid, {e}_wr_ready, {e}_w_valid, {e}_w_ready;",
                  f"    logic [{aw - 1}:0] {e}_wr_addr;", f"    logic [{wp['width'] - 1}:0] {e}_w_data;",
                  f"    weight_stream_mem #(.WORDS({wp['words']}), .WIDTH({wp['width']}), .BURST({wp['burst']}), "
                  f".LATENCY({wp['latency']}), .WEIGHT_FILE({wp['file']})) u_{e}_mem (",
                  f"        .clk, .rst, .r_valid({e}_wr_valid), .r_ready({e}_wr_ready), .r_addr({e}_wr_addr),",
                  f"        .m_valid({e}_w_valid), .m_ready({e}_w_ready), .m_data({e}_w_data));"]
        conns += [f".{e}_{p}" for p in WEIGHT_PORT_SIGNALS]
    lines += [f"    {TOP} u_top (.clk, .rst, .s_valid, .s_ready, .s_data, .m_valid, .m_ready, .m_data,",
              f"        {', '.join(conns)});", "endmodule", "", "`default_nettype wire", ""]
    return "\n".join(lines)


@dataclass
class TopRun:
    logits: np.ndarray  # (images, classes) as the RTL computed them; a cut top: (images, its values per image)
    # cycles between consecutive images' last logit beats within a shard (a shard's first: from its first pixel)
    cycles_per_image: np.ndarray
    total: int  # cycles of the longest shard, first pixel to last logit
    simulated: int  # cycles simulated, all shards together
    seconds: float  # wall time of the simulation (shards run side by side)
    build_seconds: float
    shard_starts: tuple[int, ...] = (0,)  # the images that start a shard: their cycles include the pipeline fill
    process_seconds: float = 0.0  # the shards' cycle loops added up (one process's speed: simulated / this)

    def steady_cycles(self) -> np.ndarray:
        """Cycles per image of the images streamed behind another (every shard's first dropped,
        unless nothing else is left)."""
        rest = np.delete(self.cycles_per_image, list(self.shard_starts))
        return rest if rest.size else self.cycles_per_image


def image_beats(design: TopDesign, x_int: np.ndarray) -> list[int]:
    """Quantized images (B, C, H, W) -> the top's input beats: a pixel's C channels per beat, row-major."""
    from saformer.rtl_sim.beats import pack_words

    x = np.asarray(x_int)
    if x.ndim != 4 or x.shape[1] != design.in_lanes:
        raise ConfigError(f"accelerator: images must be (B, C={design.in_lanes}, H, W) integers, got {x.shape}")
    if not design.static_input:
        raise ConfigError("accelerator: event-frame inputs (T passes per image) are not generated yet")
    return pack_words(x.transpose(0, 2, 3, 1), design.in_bits, design.in_lanes)


def build_top(ex, hw: HardwareConfig, build_dir: Path, static_input: bool = True, output: str | None = None):
    """Generate the top for ``ex`` (its memories under ``build_dir/mem``) and compile it into the
    harness; returns (design, harness, build seconds). A rebuild is skipped while the SystemVerilog
    and the sources are unchanged; the memories are rewritten every time and read when a run starts."""
    from saformer.rtl_sim.harness import StreamHarness

    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    design = generate_top(ex, hw, build_dir / "mem", static_input=static_input, output=output)
    top_sv = build_dir / f"{TOP}.sv"
    top_sv.write_text(design.sv)
    sim_sv = []
    if design.sim_sv:
        sim_sv = [build_dir / f"{SIM_TOP}.sv"]
        sim_sv[0].write_text(design.sim_sv)
    t0 = time.perf_counter()
    harness = StreamHarness([*design.sources, top_sv, *sim_sv], design.sim_top, {}, build_dir)
    return design, harness, time.perf_counter() - t0


def run_top(design: TopDesign, harness, x_int: np.ndarray, run_dir: Path | None = None, p_idle: float = 0.0,
            p_backpressure: float = 0.0, seed: int = 0, jobs: int = 1, ready_every: int = 0) -> TopRun:
    """Stream the images ``x_int`` through a built top, image after image (stall-free unless the
    input idles / the output back-pressures with the given probabilities, seeded). ``jobs`` > 1
    splits the images into that many contiguous shards, each streamed by its own harness process
    side by side (a bulk run on several cores; every shard's first image includes a pipeline fill).
    ``ready_every`` = K: the logits are taken on every K-th cycle only (a fixed back-pressure the
    cycle model follows: model_top's ``ready_every``)."""
    from saformer.rtl_sim.beats import unpack, unpack_words

    n = len(x_int)
    shards = [idx for idx in np.array_split(np.arange(n), max(1, min(int(jobs), n))) if idx.size]
    base = Path(run_dir or harness.exe.parent / "run")
    per_image = design.out_beats_per_image

    def one(k: int, idx: np.ndarray):
        beats = image_beats(design, x_int[idx[0]:idx[-1] + 1])
        return harness.run(beats, len(idx) * per_image, p_idle, p_backpressure, seed + k,
                           timeout=50_000_000 * len(idx), run_dir=base if len(shards) == 1 else base / f"shard{k}",
                           ready_every=ready_every)

    t0 = time.perf_counter()
    if len(shards) == 1:
        runs = [one(0, shards[0])]
    else:
        with ThreadPoolExecutor(max_workers=len(shards)) as pool:  # each run is a subprocess: no GIL held
            runs = list(pool.map(one, range(len(shards)), shards))
    wall = time.perf_counter() - t0
    logits, cycles = [], []
    for run, idx in zip(runs, shards):
        values = unpack(run.beats, design.out_lanes) if design.out_bits == 1 else \
            unpack_words(run.beats, design.out_bits, design.out_lanes)
        logits.append(values.reshape(len(idx), -1))
        ends = run.cycles[per_image - 1::per_image] - run.first_input + 1
        cycles.append(np.diff(ends, prepend=0))
    return TopRun(np.concatenate(logits), np.concatenate(cycles), max(r.total for r in runs),
                  sum(r.simulated for r in runs), wall if len(runs) > 1 else runs[0].seconds, 0.0,
                  tuple(int(idx[0]) for idx in shards), sum(r.seconds for r in runs))


def output_beats(design: TopDesign, values: np.ndarray) -> list[int]:
    """What the top emits for per-image ``values`` (logits, or a cut top's spikes): its out beats."""
    from saformer.rtl_sim.beats import pack, pack_words

    v = np.asarray(values).reshape(-1)
    return pack(v, design.out_lanes) if design.out_bits == 1 else pack_words(v, design.out_bits, design.out_lanes)


def cocotb_top(design: TopDesign, top_sv: Path, x_int: np.ndarray, expected: np.ndarray, build_dir: Path,
               p_idle: float = 0.2, p_backpressure: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """A few images through the top on the cocotb bench (saformer.rtl_sim.tb.block_tb) with random
    idles and back-pressure, every output beat asserted against ``expected`` (the golden logits);
    slow (about 7 k cycles/s): for a handful of images, the harness for bulk."""
    from saformer.rtl_sim.sim import build_hdl, run_bench

    build_dir = Path(build_dir).resolve()
    sources = [*design.sources, Path(top_sv).resolve()]
    if design.sim_sv:
        sources.append(build_dir / f"{SIM_TOP}.sv")
        sources[-1].write_text(design.sim_sv)
    runner, obj_dir = build_hdl(sources, design.sim_top, {}, build_dir)
    beats_in, beats_out = image_beats(design, x_int), output_beats(design, expected)
    test_dir = build_dir / f"stalls_{seed}"
    test_dir.mkdir(parents=True, exist_ok=True)
    (test_dir / "stim.json").write_text(json.dumps({
        "in": [f"{b:x}" for b in beats_in], "out": [f"{b:x}" for b in beats_out], "p_idle": p_idle,
        "p_backpressure": p_backpressure, "seed": seed, "timeout": 2_000_000 * len(x_int)}))
    result_file = test_dir / "result.json"
    env = {"BLOCK_STIM": str(test_dir / "stim.json"), "BLOCK_RESULT": str(result_file)}
    r, waves = run_bench(runner, obj_dir, lambda: build_hdl(sources, design.sim_top, {}, build_dir, trace=True),
                         "saformer.rtl_sim.tb.block_tb", design.sim_top, test_dir, result_file, env, f"stalls_{seed}")
    return {**r, "waves": str(waves) if waves else None}


def simulate_top(ex, hw: HardwareConfig, x_int: np.ndarray, build_dir: Path) -> TopRun:
    """Generate, build and run: the RTL's logits and cycle counts for the images ``x_int``."""
    design, harness, seconds = build_top(ex, hw, build_dir)
    r = run_top(design, harness, x_int)
    r.build_seconds = seconds
    return r


ACCEL_FILE, ACCEL_MD = "accel.json", "accel.md"
# the cycle model's memory bound, all shards together: 8-byte cycles, ~2.9 kept per transfer, so
# about 4.8 GB (a trained 2-block, 64-channel CIFAR model moves ~200 k beats an image: ~1,000
# images); a longer run is checked on each shard's first images, exact for those
MODEL_ENTRIES = 600_000_000
ENERGY_IMAGES = 256  # the energy count's sample: traces of every layer, held in memory at once


def checkpoint_layers(ex) -> list[str]:
    """Where a cut top compares spikes with the golden traces by default: the SPS's last LIF, every
    SASA core's output, and the head's LIF (each a build of its own)."""
    sps = [n.name for n in ex.graph if n.op == "lif" and n.segment == "sps"]
    return [*sps[-1:], *(n.name for n in ex.graph.of_op("sasa")), ex.graph.output.inputs[0]]


def accelerate_export(export_dir: Path, out: Path, hw: HardwareConfig | None = None, images: int | None = None,
                      data_dir: str | None = None, layer_images: int = 2,
                      layers: list[str] | None = None, keep_builds: bool = True,
                      stall_images: int = 2, target_cycles: int | None = None, jobs: int = 1) -> dict[str, Any]:
    """``saformer accel``: the whole accelerator of an export, on ``images`` test images (default: the
    whole test set), logits compared with the golden model's image by image; and for the first
    ``layer_images`` images, the spikes of ``layers`` (default: checkpoint_layers) from tops cut after
    them, compared with the golden traces; the first ``stall_images`` again with random input idles
    and output back-pressure (20% each); energy per image and the stage loads from the first
    ENERGY_IMAGES images' activity. ``target_cycles``: lanes per engine chosen by
    saformer.rtl_sim.balance (every stage's mean load at most this) instead of ``hw``'s. ``jobs``:
    harness processes side by side for the whole run (run_top's shards). Writes accel.json / .md.
    The Verilator builds (about 150 MB each) run two at a time; ``keep_builds=False`` deletes their
    objects afterwards (the generated SystemVerilog and memory files stay)."""
    from saformer.quant.export import load_export
    from saformer.quant.golden import GoldenModel
    from saformer.quant.stages import integer_batches
    from saformer.rtl_sim.balance import balance_to_cycles, image_bound, stage_loads
    from saformer.rtl_sim.cycle_model import encoder_counts
    from saformer.rundir import write_json

    hw = hw or HardwareConfig()
    ex = load_export(export_dir)
    out = Path(out)
    nodes = (layers or checkpoint_layers(ex)) if layer_images else []
    xs, ys = [], []
    for _, x_int, y in integer_batches(ex.manifest["dataset"], ex.cfg, ex.qcfg, data_dir, 256, images):
        xs.append(x_int)
        ys.append(np.asarray(y))
    x, y = np.concatenate(xs), np.concatenate(ys)
    golden = GoldenModel(ex)
    # traces (every layer's values) of a bounded sample: the energy count, the stage loads, the
    # lanes balance and the layer checks
    sample = x[:max(ENERGY_IMAGES, layer_images)]
    sample_logits, traces = golden.forward(sample, trace=True)
    balance = None
    if target_cycles is not None:
        balance = balance_to_cycles(ex, sample, traces, target_cycles, hw=hw)
        hw = balance.balance.hardware(hw)
    with ThreadPoolExecutor(max_workers=2) as pool:  # verilating is single-threaded: overlap two builds
        full = pool.submit(build_top, ex, hw, out / "build")
        cuts = [pool.submit(build_top, ex, hw, out / "build_cut" / _ident(n), output=n) for n in nodes]
        # the logits, and what the cycle model needs of every image's spikes (the encoders'
        # non-zero lanes per beat): the sample's from its traces, the rest batch by batch, so no
        # run holds every layer's trace of every image
        shape = generate_top(ex, hw, None)
        golds, counts = [sample_logits], [encoder_counts(shape, ex, sample, traces)]
        for i in range(len(sample), len(x), TRACE_BATCH):
            logits_i, traces_i = golden.forward(x[i:i + TRACE_BATCH], trace=True)
            golds.append(logits_i)
            counts.append(encoder_counts(shape, ex, x[i:i + TRACE_BATCH], traces_i))
            del traces_i
        gold = np.concatenate(golds)
        counts = {k: np.concatenate([c[k] for c in counts]) for k in counts[0]}
        layer_rows = []
        if nodes:
            xs_ = x[:layer_images]
            for node, cut in zip(nodes, cuts):
                d, h, _ = cut.result()
                got, want = run_top(d, h, xs_).logits, golden_stream(ex, traces, node)[:len(xs_)]
                layer_rows.append({"node": node, "images": int(len(xs_)), "spikes": int(want.sum()),
                                   "values": int(want.size), "bit_exact": bool(np.array_equal(got, want)),
                                   "differing": int((got != want).sum())})
        design, harness, build_seconds = full.result()
    r = run_top(design, harness, x, jobs=jobs)
    stalled = run_top(design, harness, x[:stall_images], p_idle=0.2, p_backpressure=0.2, seed=1) if stall_images else None
    if not keep_builds:
        for obj in [*out.glob("build/harness_*"), *out.glob("build_cut/*/harness_*")]:
            shutil.rmtree(obj, ignore_errors=True)
    wrong = np.flatnonzero((r.logits != gold).any(axis=1))
    model = cycle_model_check(design, ex, counts, r)
    energy = accel_energy(design, ex, sample, traces)
    raw_loads = stage_loads(design, ex, sample, traces)
    loads = {k: float(v.mean()) for k, v in raw_loads.items()}
    bound = image_bound(raw_loads)
    del traces
    cyc = r.steady_cycles()  # a shard's first image includes the pipeline's fill
    slowest = sorted(loads, key=loads.get, reverse=True)
    engine_lanes = {b["node"]: b["params"]["LANES"] for b in design.blocks if b["block"] == "syn_engine"}
    report = {
        "export_dir": str(export_dir), "config": ex.cfg.label, "hardware": hw.to_dict(), "images": int(len(x)),
        "blocks": len(design.blocks), "instances": [b["instance"] for b in design.blocks],
        "bit_exact": not wrong.size, "mismatching_images": wrong[:20].tolist(), "mismatching_count": int(wrong.size),
        "accuracy_rtl": float((r.logits.argmax(1) == y).mean()), "accuracy_golden": float((gold.argmax(1) == y).mean()),
        "cycles_total": r.total, "first_image_cycles": int(r.cycles_per_image[0]),
        "cycles_per_image": {"median": float(np.median(cyc)), "min": int(cyc.min()), "max": int(cyc.max()),
                             "mean": float(cyc.mean())},
        "latency_us_at_clock": float(np.median(cyc)) / hw.clock_mhz,
        "simulated_cycles": r.simulated, "simulation_seconds": r.seconds, "simulation_jobs": len(r.shard_starts),
        "simulated_cycles_per_second": r.simulated / r.seconds if r.seconds else None,
        "simulated_cycles_per_second_per_process": r.simulated / r.process_seconds if r.process_seconds else None,
        "build_seconds": build_seconds, "layers": layer_rows, "energy": energy,
        "cycle_model": model,
        "stalls": None if stalled is None else {
            "images": int(min(stall_images, len(x))), "p_idle": 0.2, "p_backpressure": 0.2,
            "bit_exact": bool(np.array_equal(stalled.logits, gold[:stall_images])), "cycles": stalled.total},
        "layers_bit_exact": all(row["bit_exact"] for row in layer_rows),
        "memory": memory_and_weight_stream(design, hw, float(np.median(cyc)), energy["activity"]["weight_read_bits"],
                                           energy["activity"]["external_read_bits"]),
        "engine_lanes": engine_lanes, "total_engine_lanes": int(sum(engine_lanes.values())),
        "balance": None if balance is None else {
            "target_cycles": balance.target, "met": balance.met, "groups": balance.balance.groups,
            # the stage bound balanced for, tightened round by round until the exact cycle model's
            # mean over the sample's images (behind the first) met the target
            "stage_bound": balance.bound, "rounds": balance.rounds, "model_images": int(len(balance.model_cycles)),
            "model_mean_cycles": balance.mean_cycles},
        "stage_loads": {"images": int(len(sample)), "slowest": [{"instance": k, "mean_cycles": loads[k]}
                                                                 for k in slowest[:8]],
                        # the pipeline's mean cycles per image over its slowest stage's (1 = no loss)
                        "pipeline_over_slowest": float(cyc.mean()) / loads[slowest[0]] if len(x) > len(r.shard_starts) else None,
                        # each image's slowest stage, averaged: the bound that follows the images
                        "image_bound": bound,
                        "pipeline_over_image_bound": float(cyc.mean()) / bound if len(x) > len(r.shard_starts) else None},
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / ACCEL_FILE, report)
    (out / ACCEL_MD).write_text(accel_markdown(report))
    return report


def cycle_model_check(design: TopDesign, ex, counts: dict[str, np.ndarray], run: TopRun,
                      max_entries: int = MODEL_ENTRIES) -> dict[str, Any]:
    """The exact cycle model (saformer.rtl_sim.cycle_model) of a harness run, shard by shard (each
    shard is a stream of its own), against the simulated cycles of every image it models: all of
    them, or each shard's first images where the run is longer than ``max_entries`` allows."""
    from saformer.rtl_sim.cycle_model import model_top

    t0 = time.perf_counter()
    starts = [*run.shard_starts, len(run.cycles_per_image)]
    predicted, simulated, steady, index, transfers = [], [], [], [], 0
    for a, b in zip(starts[:-1], starts[1:]):
        m = model_top(design, ex, {k: v[a:b] for k, v in counts.items()}, max_entries=max_entries // len(run.shard_starts))
        predicted.append(m.cycles_per_image)
        index.append(np.arange(a, a + len(m.cycles_per_image)))
        simulated.append(np.asarray(run.cycles_per_image)[index[-1]])
        steady.append(m.cycles_per_image[1:])  # a shard's first image includes the pipeline fill
        transfers += m.transfers
    predicted, simulated, steady = np.concatenate(predicted), np.concatenate(simulated), np.concatenate(steady)
    wrong = np.concatenate(index)[predicted != simulated]  # the images' places in the run
    if not steady.size:
        steady = predicted
    return {"images": int(len(predicted)), "images_simulated": int(len(run.cycles_per_image)),
            "max_entries": int(max_entries), "exact": not wrong.size, "mismatching_images": wrong[:20].tolist(),
            "mismatching_count": int(wrong.size), "seconds": time.perf_counter() - t0, "transfers": transfers,
            "predicted_cycles_per_image": predicted.tolist(), "steady_cycles_per_image": steady.tolist(),
            "percentiles": {str(q): float(np.percentile(steady, q)) for q in (0, 10, 25, 50, 75, 90, 100)}}


def top_memories(design: TopDesign) -> list[tuple[str, str, int, int]]:
    """(kind, instance, depth, width) of every memory of a generated top, from its blocks'
    parameters; kinds: weights, accumulators, biases, membranes, buffers, and external weights (an
    engine's on its weight stream port: off chip)."""
    out = []
    for b in design.blocks:
        p, name = b["params"], b["instance"]
        if b["block"] == "syn_engine":
            chunks, taps = p["OUT"] // p["LANES"], p["KERNEL"] ** 2
            pos = p["H"] * p["W"] if p["KERNEL"] == 3 else 1
            out += [("external weights" if p.get("WEIGHT_PORT") else "weights", name, p["IN"] * taps * chunks,
                     p["LANES"] * p["W_BITS"]),
                    ("accumulators", name, pos * chunks, p["LANES"] * p["ACC_BITS"]),
                    ("biases", name, chunks, p["LANES"] * p["ACC_BITS"])]
        elif b["block"] == "lif_unit":
            out.append(("membranes", name, p["NEURONS"] // p["LANES"], p["LANES"] * p["WIDTH"]))
        elif b["block"] == "sasa_core":
            g, win = p["D"] // p["P"], p["N"] // p["N_AGG"]
            a_bits = max(math.ceil(math.log2(p["N"] * win + 1)) + 1, math.ceil(math.log2(p["THETA_A"] + 1))) + 1
            out += [("weights", name + ".dwc", p["D"] * 9, p["W_BITS"]),
                    ("membranes", name + ".lif_a", g, p["P"] * a_bits),  # sasa_core.sv's A_BITS
                    ("membranes", name + ".lif_o", p["N"] * g, p["P"] * p["MEM_BITS"]),
                    ("buffers", name + ".k", 2 * p["N"] * g, p["P"])]
        elif b["block"] == "stream_fifo":
            out.append(("buffers", name, p["DEPTH"], p["WIDTH"]))
        elif b["block"] == "frame_repeat":
            out.append(("buffers", name, p["BEATS"], p["WIDTH"]))
    return out


def memory_and_weight_stream(design: TopDesign, hw: HardwareConfig, cycles_per_image: float,
                             weight_read_bits: float, streamed_bits: float = 0.0) -> dict[str, Any]:
    """The top's on-chip memory against the ECP5 part's block RAM, and what a weight stream port
    would have to carry at the clock if the weights lived off chip: every weight read of an image
    (one per in-range synaptic event: no on-chip cache) or every weight once per image (a cache
    that holds a layer while its events run). ``streamed_bits``: the weight bits per image that the
    engines on their weight stream port took (activity's external_read_bits): the port's traffic."""
    from saformer.config import DP16KD_BITS, ECP5_DP16KD

    bits: dict[str, int] = {}
    for kind, _, depth, width in top_memories(design):
        bits[kind] = bits.get(kind, 0) + depth * width
    external = bits.pop("external weights", 0)
    part_bits = ECP5_DP16KD[hw.ecp5_device] * DP16KD_BITS
    images_per_s = hw.clock_mhz * 1e6 / cycles_per_image
    return {"bits_by_kind": bits, "total_bits": sum(bits.values()), "part": hw.ecp5_device,
            "external_weight_bits": external, "streamed_engines": [w["node"] for w in design.weight_ports],
            "part_block_ram_bits": part_bits, "fits_part_by_bits": sum(bits.values()) <= part_bits,
            "weight_stream": {"clock_mhz": hw.clock_mhz, "images_per_second": images_per_s,
                              "weight_read_bits_per_image": weight_read_bits,
                              "per_event_gbit_per_s": weight_read_bits * images_per_s / 1e9,
                              "once_per_image_gbit_per_s": bits.get("weights", 0) * images_per_s / 1e9,
                              "latency_cycles": hw.weight_stream_latency if design.weight_ports else None,
                              "streamed_bits_per_image": streamed_bits,
                              "streamed_gbit_per_s": streamed_bits * images_per_s / 1e9,
                              "streamed_peak_gbit_per_s": sum(w["width"] for w in design.weight_ports) * hw.clock_mhz / 1e3}}


def accel_energy(design: TopDesign, ex, x_int: np.ndarray, traces: dict[str, np.ndarray]) -> dict[str, Any]:
    """Energy per image two ways, on the images simulated: from the accelerator's own activity
    (saformer.rtl_sim.activity: adds by width, multiplies, memory bits, at 45 nm) and by the
    paper's SOP model (E_AC / E_MAC, 32-bit float operations) at these images' firing rates."""
    from saformer.report.energy import energy_table, hardware_energy
    from saformer.rtl_sim.activity import image_activity

    act = image_activity(design, ex, x_int, traces)
    by_kind: dict[str, float] = {}
    for row in act["blocks"]:
        by_kind[row["block"]] = by_kind.get(row["block"], 0.0) + hardware_energy(row)["total_pj"]
    rates = {k[:-2]: float(v.mean()) for k, v in traces.items() if k.endswith(".s")}
    sop = energy_table(ex.cfg, rates, static_input=x_int.ndim == 4)
    return {"images": act["images"], "hardware": hardware_energy(act["total"]), "activity": act["total"],
            "hardware_pj_by_block": {k: v for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]) if v},
            "sop_model": {"macs": sop["macs"], "sops": sop["sops"], "energy_pj": sop["energy_pj"],
                          "e_ac_pj": sop["e_ac_pj"], "e_mac_pj": sop["e_mac_pj"]}}


def accel_markdown(r: dict[str, Any]) -> str:
    c = r["cycles_per_image"]
    jobs = r.get("simulation_jobs", 1)
    shards = f"; each of the {jobs} shards' first images is left out of the distribution" if jobs > 1 else ""
    processes = (f" from {jobs} harness processes side by side, "
                 f"{r['simulated_cycles_per_second_per_process'] / 1e6:.2f} M cycles/s each" if jobs > 1 else "")
    verdict = (f"**bit-exact**: the logits of all {r['images']} images equal the golden model's" if r["bit_exact"]
               else f"**MISMATCH** on {r['mismatching_count']} of {r['images']} images (first: {r['mismatching_images']})")
    return "\n".join([
        f"# The whole accelerator: {r['config']}", "",
        f"{r['blocks']} block instances generated from the export's graph at {lanes_phrase(r)} "
        f"(docs/accelerator.md), simulated end to end by the compiled Verilator harness.", "",
        f"- {verdict}.",
        f"- Accuracy: RTL {100 * r['accuracy_rtl']:.2f}% = golden model {100 * r['accuracy_golden']:.2f}% "
        "(the same logits, so the same classes).",
        f"- Cycles per image, images streamed back to back: median {c['median']:,.0f} (min {c['min']:,}, "
        f"max {c['max']:,}); the first image {r['first_image_cycles']:,} (pipeline fill{shards}). "
        f"At {r['hardware']['clock_mhz']:g} MHz: {r['latency_us_at_clock']:,.1f} us per image.",
        *_cycle_model_markdown(r.get("cycle_model")),
        *_lanes_markdown(r),
        f"- Simulation: {r['simulated_cycles']:,} cycles in {r['simulation_seconds']:.1f} s "
        f"({r['simulated_cycles_per_second'] / 1e6:.2f} M cycles/s{processes}); build {r['build_seconds']:.0f} s.",
        *_memory_markdown(r.get("memory")), "",
        *energy_markdown(r["energy"]),
        *([f"- With random stalls (input idle {r['stalls']['p_idle']:.0%}, output back-pressure "
            f"{r['stalls']['p_backpressure']:.0%}), the first {r['stalls']['images']} images: "
            + ("**bit-exact**." if r["stalls"]["bit_exact"] else "**MISMATCH**."), ""] if r.get("stalls") else []),
        *(["Spikes inside the network: the top cut after each layer, its spikes against the golden traces.", "",
           "| layer | images | spikes | values | equal |", "|---|---|---|---|---|",
           *(f"| {x['node']} | {x['images']} | {x['spikes']:,} | {x['values']:,} | "
             f"{'yes' if x['bit_exact'] else 'NO: ' + str(x['differing']) + ' differ'} |" for x in r["layers"]), ""]
          if r["layers"] else [])])


def _cycle_model_markdown(c: dict[str, Any] | None) -> list[str]:
    if not c:
        return []
    p = c["percentiles"]
    simulated = c.get("images_simulated", c["images"])
    which = (f"all {c['images']} images" if c["images"] == simulated else
             f"the first {c['images']} of {simulated} images (each shard's first: the model's memory bound)")
    verdict = (f"equal to the simulation for **{which}** (every image's cycles)" if c["exact"] else
               f"**differs** from the simulation on {c['mismatching_count']} of {c['images']} images "
               f"(first: {c['mismatching_images']})")
    return [f"- Cycle model (`saformer.rtl_sim.cycle_model`: every block's transfer equations over the golden "
            f"spikes, no RTL): {verdict}; {c['transfers']:,} transfers in {c['seconds']:.1f} s. Cycles per image "
            f"over the images behind another: 10% {p['10']:,.0f}, 25% {p['25']:,.0f}, median {p['50']:,.0f}, "
            f"75% {p['75']:,.0f}, 90% {p['90']:,.0f}."]


def _memory_markdown(m: dict[str, Any] | None) -> list[str]:
    if not m:
        return []
    w = m["weight_stream"]
    kinds = ", ".join(f"{k} {v / 1e6:.3f}" for k, v in sorted(m["bits_by_kind"].items(), key=lambda kv: -kv[1]))
    return [f"- On-chip memory: {m['total_bits'] / 1e6:.3f} Mbit ({kinds}), against the {m['part']}'s "
            f"{m['part_block_ram_bits'] / 1e6:.3f} Mbit of block RAM: "
            + ("fits by bits (synthesis decides the mapping)." if m["fits_part_by_bits"] else "**does not fit**: "
               "the weights would come from external memory."),
            *([] if m.get("streamed_engines") else [
               f"- A weight stream port from external memory would carry, at {w['clock_mhz']:g} MHz "
               f"({w['images_per_second']:,.0f} images/s): {w['per_event_gbit_per_s']:.2f} Gbit/s reading each weight "
               f"per synaptic event (no cache), or {w['once_per_image_gbit_per_s']:.2f} Gbit/s loading every weight "
               "once per image (a cache holding a layer's weights while its events run)."
               + ("" if m["fits_part_by_bits"] else " `--weight-stream` puts engines on such a port.")]),
            *([f"- **Weights streamed** from external memory ({len(m['streamed_engines'])} engines: "
               f"{', '.join(m['streamed_engines'])}; {m['external_weight_bits'] / 1e6:.3f} Mbit off chip, "
               f"latency {w['latency_cycles']} cycles in simulation): they took {w['streamed_bits_per_image'] / 1e6:.3f} "
               f"Mbit per image, a burst per spike: {w['streamed_gbit_per_s']:.2f} Gbit/s at {w['clock_mhz']:g} MHz, "
               f"{w['streamed_peak_gbit_per_s']:.2f} Gbit/s peak (every streamed engine taking a word each cycle)."]
              if m.get("streamed_engines") else [])]


def lanes_phrase(r: dict[str, Any]) -> str:
    """'8 lanes', or the engines' range when they differ (per-engine lanes, a balanced design)."""
    lanes = sorted(set(r.get("engine_lanes", {}).values()))
    if r["hardware"].get("engine_lanes") or r.get("balance"):
        return f"per-engine lanes ({lanes[0]} to {lanes[-1]}, {r['total_engine_lanes']} in all)"
    return f"{r['hardware']['lanes']} lanes"


def _lanes_markdown(r: dict[str, Any]) -> list[str]:
    """The lanes per engine and how close the pipeline runs to its slowest stage."""
    if "stage_loads" not in r:
        return []
    sl, b = r["stage_loads"], r.get("balance")
    chosen = (f"chosen by the balancer for a target of {b['target_cycles']:,} cycles per image "
              + (f"(met: the exact cycle model's mean over {b['model_images']} images is {b['model_mean_cycles']:,.0f}, "
                 f"balancing each image's slowest stage for {b['stage_bound']:,} in {b['rounds']} round(s))"
                 if b["met"] else "(**not met**: the stage furthest over it has no more lanes to take)")
              if b else f"the largest divisor of each engine's outputs up to {r['hardware']['lanes']}")
    top = sl["slowest"][0]
    ratio = sl["pipeline_over_slowest"]
    return [f"- Lanes per engine ({r['total_engine_lanes']} in all), {chosen}: "
            + ", ".join(f"{k} {v}" for k, v in r["engine_lanes"].items()) + ".",
            f"- Slowest stage (its stall-free cycle model, mean over {sl['images']} images): {top['instance']}, "
            f"{top['mean_cycles']:,.0f} cycles per image"
            + (f"; the whole pipeline takes {ratio:.2f}x that." if ratio else "."),
            *([f"- Each image's slowest stage, averaged over the images (the bound that follows the images: the "
               f"stage that limits one image is not always another's): {sl['image_bound']:,.0f} cycles"
               + (f"; the pipeline takes {sl['pipeline_over_image_bound']:.2f}x that." if sl.get("pipeline_over_image_bound")
                  else ".")] if sl.get("image_bound") else [])]


def energy_markdown(e: dict[str, Any]) -> list[str]:
    h, sop = e["hardware"], e["sop_model"]
    ext = e["activity"].get("external_read_bits", 0)
    external = f", {ext / 8e3:,.1f} kB of weights from external memory (DRAM)" if ext else ""
    external_share = f", external memory {100 * h['external_read_pj'] / h['total_pj']:.0f}%" if ext else ""
    return [f"Energy per image ({e['images']} images), two models (docs/accelerator.md):", "",
            "| model | what it counts | energy per image |", "|---|---|---|",
            f"| the accelerator's own activity, 45 nm | {h['add_ops']:,.0f} integer adds, {h['mult_ops']:,.0f} multiplies, "
            f"{e['activity']['read_bits'] / 8e3:,.1f} kB read and {e['activity']['write_bits'] / 8e3:,.1f} kB written "
            f"on chip{external} | **{h['total_pj'] / 1e6:.3f} uJ** (memory {100 * (h['memory_read_pj'] + h['memory_write_pj']) / h['total_pj']:.0f}%"
            f"{external_share}) |",
            f"| the paper's SOP model (E_AC {sop['e_ac_pj']} pJ, E_MAC {sop['e_mac_pj']} pJ: 32-bit float) | "
            f"{sop['sops']:,.0f} SOPs, {sop['macs']:,.0f} MACs | {sop['energy_pj'] / 1e6:.3f} uJ |", "",
            "By block: " + ", ".join(f"{k} {v / 1e6:.3f} uJ" for k, v in e["hardware_pj_by_block"].items()) + ".", ""]


def golden_stream(ex, traces: dict[str, np.ndarray], node_name: str) -> np.ndarray:
    """The golden traces' spikes of a LIF or SASA node as a cut top emits them: (images, T x positions
    x channels), steps in order, positions row-major, channels fastest."""
    node = ex.graph[node_name]
    s = traces[f"{node.neuron}.s"] if node.op == "lif" else traces[f"{node.attrs['lif_o']}.s"]
    if s.ndim == 5:  # (T, B, C, H, W) -> (T, B, H*W, C)
        s = s.reshape(*s.shape[:3], -1).transpose(0, 1, 3, 2)
    return s.transpose(1, 0, 2, 3).reshape(s.shape[1], -1)
