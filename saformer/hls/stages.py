"""The hls4ml stages of a SAFormer: torch graphs built from the integer export alone, their
precisions (from the contract), and how each stage's inputs and traces map to the golden model.

The stages are the segments of the export's graph (saformer.graph): the SASA core (score, LIF_a,
mask, DWC, LIF_o) is the hand-written RTL, so every encoder block splits around it into two stages.
For the SAFormer graph:

    sps              image -> conv/pool/LIF x4 -> rpe + residual          -> U0
    blocks.i.qk      U -> LIF -> Q and K 1x1 convs -> LIF_q, LIF_k        -> [Q | K] spikes
    (RTL core)       Q, K -> O
    blocks.i.post    O, U -> proj + residual -> LIF -> fc1 -> LIF -> fc2 + residual -> U'
    head             U -> LIF -> spike counts over tokens and steps -> linear -> logits

hls4ml layer names are the graph's node names less the stage's prefix (``convs_0``, ``attn_q``,
``mlp_fc1``, ``head``); residual adds are ``add``, ``add_1``; the Q | K concatenation ``cat``.

Tokens stay on their grid (H, W, D), channels last, so the Q/K/proj/MLP linears are 1x1 convs
and a channels-last flat vector is exactly the golden model's row-major (N, D) token layout.
Weights enter hls4ml as their integers times the export's power-of-two scale; with
``ap_fixed<B, B - F>`` the stored bits are the export's B-bit integers.
"""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import fx, nn

from saformer.errors import SaformerError
from saformer.graph import RTL_OPS, SYNAPTIC_OPS, Graph, GraphError, Node
from saformer.hls.extension import lif_module, spike_count_module
from saformer.quant.export import IntegerExport

SUPPORTED_KINDS = {"conv", "linear"}
MAX_EXACT_BITS = 53  # the C simulation returns doubles: every checked value must fit their mantissa


class HlsError(SaformerError):
    """A layer, precision or option the hls4ml flow cannot take."""


def fixed(width: int, frac: int, signed: bool = True, rounding: str | None = None, saturation: str | None = None) -> str:
    """An ap_fixed type string holding integers of ``width`` bits at scale 2^-frac."""
    args = [str(width), str(width - frac)] + [a for a in (rounding, saturation) if a]
    return f"ap_{'' if signed else 'u'}fixed<{','.join(args)}>"


@dataclass
class TraceCheck:
    """A traced hls4ml layer and the golden values it must equal, as integers (rows = B*T steps)."""

    layer: str
    golden: str  # a golden trace key, or a description for derived values
    frac: int  # hls value * 2^frac = golden integer
    expected: Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass
class Stage:
    name: str
    module: nn.Module
    inputs: list[str]  # forward() argument names = hls4ml input layer names
    input_shapes: list[tuple[int, ...]]  # channels first, no batch
    input_precisions: dict[str, str]
    precisions: dict[str, dict[str, str]]  # layer name -> {result/weight/bias/accum: type}
    input_values: Callable[[np.ndarray, dict[str, np.ndarray]], list[np.ndarray]]  # (x_int, traces) -> hls inputs
    checks: list[TraceCheck] = field(default_factory=list)
    output_check: TraceCheck | None = None
    synapses: dict[str, str] = field(default_factory=dict)  # hls layer -> export layer
    feeds_rtl: str | None = None  # the RTL graph node (a SASA core) its output streams into
    logits: bool = False  # its output is the logits (at every step: running sums)


def steps_first(x: np.ndarray, channels_first: bool = False) -> np.ndarray:
    """A golden trace (T, B, ...) -> (B*T, features) rows in the order the stage is called,
    channels last (a (C, H, W) trace is moved to (H, W, C) first)."""
    t, b = x.shape[:2]
    x = np.moveaxis(x, 0, 1)
    if channels_first:
        x = np.moveaxis(x, 2, -1)
    return x.reshape(b * t, -1)


def _conv(ex: IntegerExport, name: str, kernel: int) -> nn.Conv2d:
    w, b = ex.weight(name), ex.bias(name)
    spec = ex.layer(name)
    if w.ndim == 2:
        w = w[:, :, None, None]
    if w.shape[-1] != kernel:
        raise HlsError(f"layer '{name}': expected a {kernel}x{kernel} kernel, the export has {w.shape[-2:]}")
    conv = nn.Conv2d(w.shape[1], w.shape[0], kernel, padding=kernel // 2)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w.astype(np.float64) * 2.0 ** -spec["weight_frac"]))
        conv.bias.copy_(torch.from_numpy(b.astype(np.float64) * 2.0 ** -spec["acc_frac"]))
    return conv


class _Builder:
    """Precisions and checks for one export, shared by the stage constructors."""

    def __init__(self, ex: IntegerExport) -> None:
        try:
            self.graph = ex.graph
        except GraphError as exc:  # an export edited around load_export: still a one-line error
            raise HlsError(f"the export's graph has no hls4ml stages: {exc}") from None
        self.ex, self.cfg, self.q = ex, ex.cfg, ex.qcfg
        self.mem_bits, self.mem_frac = self.q.membrane_bits, self.q.membrane_frac
        self.membrane = fixed(self.mem_bits, self.mem_frac)
        self.membrane_sat = fixed(self.mem_bits, self.mem_frac, rounding="AP_TRN", saturation="AP_SAT")
        self.spike = "ap_uint<1>"
        self.validate()

    def validate(self) -> None:
        cfg = self.cfg
        if cfg.attention != "sasa":
            raise HlsError(f"the hls4ml flow splits SASA blocks around the RTL core; this export's attention "
                           f"is '{cfg.attention}' (layer 'blocks.0.attn')")
        if not 2 <= self.mem_bits <= MAX_EXACT_BITS - 1:
            raise HlsError(f"membrane format of {self.mem_bits} bits: hls4ml's C simulation checks values "
                           f"up to {MAX_EXACT_BITS - 1} bits")
        for node in self.graph:
            if node.op not in SYNAPTIC_OPS:
                continue  # a SASA node's DWC is inside the RTL core
            name, spec = node.layer, self.ex.layer(node.layer)
            if spec["kind"] not in SUPPORTED_KINDS:
                raise HlsError(f"layer '{name}': kind '{spec['kind']}' has no hls4ml stage "
                               f"(supported: {sorted(SUPPORTED_KINDS)})")
            if spec["kind"] == "conv" and spec["groups"] != 1:
                raise HlsError(f"layer '{name}': grouped conv ({spec['groups']} groups) has no hls4ml stage")
            if not 2 <= spec["weight_bits"] <= 32:
                raise HlsError(f"layer '{name}': {spec['weight_bits']}-bit weights are outside what the "
                               "flow maps to ap_fixed (2..32 bits)")
            if spec["acc_bits_needed"] > MAX_EXACT_BITS:
                raise HlsError(f"layer '{name}': its accumulator needs {spec['acc_bits_needed']} bits; the C "
                               f"simulation's doubles hold {MAX_EXACT_BITS}")
        for node in self.graph.of_op("lif"):
            spec = self.ex.manifest["neurons"][node.neuron]
            if spec["frac"] != self.mem_frac:
                raise HlsError(f"neuron '{node.neuron}': threshold in 2^-{spec['frac']} units, but its hls4ml LIF "
                               f"works on the 2^-{self.mem_frac} membrane")

    def synapse(self, name: str, result: str | None = None) -> dict[str, str]:
        spec = self.ex.layer(name)
        acc_bits = spec["acc_bits_needed"]
        return {"weight": fixed(spec["weight_bits"], spec["weight_frac"]),
                "bias": fixed(self.q.accumulator_bits, spec["acc_frac"]),
                "accum": fixed(acc_bits, spec["acc_frac"]),
                "result": result or self.membrane_sat}

    def lif(self, neuron: str) -> nn.Module:
        return lif_module(self.ex.theta(neuron), self.mem_frac, self.cfg.time_steps)


# ---- the stages, cut from the export's graph -----------------------------------------------------
def observed(node: Node, mem_frac: int, graph: Graph) -> tuple[str, int] | None:
    """The golden trace key holding a node's value, and its fractional bits (None: not traced)."""
    if node.op == "lif":
        return f"{node.neuron}.s", 0
    if node.op == "sasa":
        return f"{node.attrs['lif_o']}.s", 0
    if node.trace:
        return node.name, mem_frac if node.format == "membrane" else 0
    readers = [graph[u] for u in graph.consumers()[node.name] if graph[u].op == "lif"]
    if readers and node.format == "membrane":
        return f"{readers[0].neuron}.x", mem_frac
    return None


def _local_names(nodes: list[Node]) -> dict[str, str]:
    """Module names inside a stage: node names less the stage's common prefix, dots as underscores."""
    names = [n.name for n in nodes]
    prefix = os.path.commonprefix(names) if len(names) > 1 else ""
    prefix = prefix[: prefix.rfind(".") + 1]
    return {n: n[len(prefix):].replace(".", "_") for n in names}


def graph_stage(b: _Builder, name: str, nodes: list[Node]) -> Stage:
    """One hls4ml stage: a torch.fx module built node by node from a segment of the graph.

    Its inputs are the values it reads from other segments, its outputs the values others read
    (several are concatenated along channels, as Q | K into the SASA core). Token values (N, D)
    stay on their grid as (D, H, W): a channels-last flat row is the golden (N, D) layout.
    """
    graph, cfg, ex = b.graph, b.cfg, b.ex
    inside = {n.name for n in nodes}
    users = graph.consumers()
    inputs = [i for i in dict.fromkeys(i for n in nodes for i in n.inputs) if i not in inside]
    outputs = [n.name for n in nodes if any(u not in inside for u in users[n.name]) or n is graph.output]
    local = _local_names(nodes)

    def hls_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) == 3:
            return shape
        tokens = graph.of_op("tokens")[0]
        return (shape[1], *graph[tokens.inputs[0]].shape[1:])

    root, fxg = nn.Module(), fx.Graph()
    env: dict[str, fx.Node] = {}
    input_names, input_shapes, input_precisions = [], [], {}
    for i in inputs:
        src = graph[i]
        arg = i.replace(".", "_")
        env[i] = fxg.placeholder(arg)
        input_names.append(arg)
        input_shapes.append(hls_shape(src.shape))
        input_precisions[arg] = ({"input": fixed(ex.manifest["formats"]["input"]["bits"], ex.manifest["formats"]["input"]["frac"]),
                                  "spikes": b.spike}.get(src.format, b.membrane))

    precisions: dict[str, dict[str, str]] = {}
    synapses: dict[str, str] = {}
    checks: list[TraceCheck] = []
    head_node = None
    for n in nodes:
        x = [env[i] for i in n.inputs]
        if n.op == "synapse":
            kind = ex.layer(n.layer)["kind"]
            root.add_module(local[n.name], _conv(ex, n.layer, 3 if kind == "conv" else 1))
            env[n.name] = fxg.call_module(local[n.name], tuple(x))
            precisions[local[n.name]] = b.synapse(n.layer)
            synapses[local[n.name]] = n.layer
        elif n.op == "maxpool":
            root.add_module(local[n.name], nn.MaxPool2d(3, 2, 1))
            env[n.name] = fxg.call_module(local[n.name], tuple(x))
            precisions[local[n.name]] = {"result": b.membrane_sat}
        elif n.op == "lif":
            root.add_module(local[n.name], b.lif(n.neuron))
            env[n.name] = fxg.call_module(local[n.name], tuple(x))
            precisions[local[n.name]] = {"result": b.spike}
        elif n.op == "add":
            env[n.name] = fxg.call_function(operator.add, tuple(x))
            precisions[env[n.name].name] = {"result": b.membrane_sat}
        elif n.op == "tokens":
            env[n.name] = x[0]  # the grid stays; channels-last rows are row-major tokens
        elif n.op == "head":
            head_node = n
            count, head = f"{local[n.name]}_count", local[n.name]
            root.add_module(count, spike_count_module(cfg.time_steps))
            root.add_module(head, _head_linear(ex, n.layer, cfg.time_steps * graph[n.inputs[0]].shape[0]))
            env[n.name] = fxg.call_module(head, (fxg.call_module(count, tuple(x)),))
            synapses[head] = n.layer
        else:
            raise HlsError(f"graph node '{n.name}': op '{n.op}' has no hls4ml stage")
        seen = observed(n, b.mem_frac, graph) if n.op not in ("tokens", "head") else None
        if seen is not None and n.name not in outputs:
            checks.append(_trace(env[n.name].name, seen[0], seen[1], channels_first=len(n.shape) == 3))

    if len(outputs) > 1:
        if any(graph[o].format != "spikes" for o in outputs):
            raise HlsError(f"stage '{name}': several outputs {outputs} can only be concatenated when all are spikes")
        out_fx = fxg.call_function(torch.cat, (tuple(env[o] for o in outputs),), {"dim": 1})
        precisions[out_fx.name] = {"result": b.spike}
        keys = [observed(graph[o], b.mem_frac, graph)[0] for o in outputs]
        output_check = TraceCheck(out_fx.name, " | ".join(keys), 0,
                                  lambda tr: steps_first(np.concatenate([tr[k] for k in keys], axis=-1)))
    elif head_node is not None:
        out_fx = env[outputs[0]]
        spec = ex.layer(head_node.layer)
        steps = cfg.time_steps * graph[head_node.inputs[0]].shape[0]
        spikes_key = observed(graph[head_node.inputs[0]], b.mem_frac, graph)[0]
        count, head = f"{local[head_node.name]}_count", local[head_node.name]
        acc = spec["acc_bits_needed"]
        precisions[count] = {"result": f"ap_uint<{steps.bit_length()}>"}
        precisions[head] = {**b.synapse(head_node.layer, result=fixed(acc, spec["acc_frac"])), "bias": fixed(acc, spec["acc_frac"])}
        w, bias = ex.weight(head_node.layer), ex.bias(head_node.layer)

        def running_counts(tr):  # (T, B, N, D) spikes -> counts so far (B*T, D)
            return steps_first(np.cumsum(tr[spikes_key].sum(axis=2), axis=0))

        checks.append(TraceCheck(count, f"{spikes_key} summed so far", 0, running_counts))
        output_check = TraceCheck(head, "logits (and the running sums before the last step)", spec["acc_frac"],
                                  lambda tr: running_counts(tr) @ w.T + steps * bias)
    else:
        out_fx = env[outputs[0]]
        key, frac = observed(graph[outputs[0]], b.mem_frac, graph) or (None, 0)
        if key is None:
            raise HlsError(f"stage '{name}': its output '{outputs[0]}' is not in the golden traces")
        output_check = _trace(out_fx.name, key, frac, channels_first=len(graph[outputs[0]].shape) == 3)
    fxg.output(out_fx)
    module = fx.GraphModule(root, fxg)

    def input_values(x_int: np.ndarray, traces: dict[str, np.ndarray]) -> list[np.ndarray]:
        values = []
        for i in inputs:
            src = graph[i]
            if src.op == "input":
                fmt = ex.manifest["formats"]["input"]
                x = np.asarray(x_int, np.float64) * 2.0 ** -fmt["frac"]
                if x.ndim == 4:  # a static image: the same input at every step
                    x = np.repeat(x[:, None], cfg.time_steps, axis=1)
                values.append(np.moveaxis(x, 2, -1).reshape(x.shape[0] * x.shape[1], -1))  # (B*T, H*W*C)
                continue
            key, frac = observed(src, b.mem_frac, graph) or (None, 0)
            if key is None:
                raise HlsError(f"stage '{name}': its input '{i}' is not in the golden traces")
            values.append(steps_first(traces[key], len(src.shape) == 3).astype(np.float64) * 2.0 ** -frac)
        return values

    consumers = {u for o in outputs for u in users[o] if u not in inside}
    feeds = [u for u in consumers if graph[u].op in RTL_OPS]
    return Stage(name, module, input_names, input_shapes, input_precisions, precisions, input_values, checks,
                 output_check=output_check, synapses=synapses, feeds_rtl=feeds[0] if feeds else None,
                 logits=head_node is not None)


def _head_linear(ex: IntegerExport, layer: str, steps: int) -> nn.Linear:
    """The head's linear on spike counts; the contract adds the bias once per token and step."""
    spec, w = ex.layer(layer), ex.weight(layer)
    head = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(w * 2.0 ** -spec["weight_frac"]))
        head.bias.copy_(torch.from_numpy(ex.bias(layer) * steps * 2.0 ** -spec["acc_frac"]))
    return head


def _trace(layer: str, key: str, frac: int, channels_first: bool = False) -> TraceCheck:
    return TraceCheck(layer, key, frac, lambda tr: steps_first(tr[key], channels_first))


def build_stages(ex: IntegerExport) -> list[Stage]:
    """Every hls4ml stage of an export, in dataflow order: the graph's segments, less the RTL's."""
    b = _Builder(ex)
    return [graph_stage(b, name, nodes) for name, nodes in ex.graph.segments()
            if not any(n.op in RTL_OPS for n in nodes)]
