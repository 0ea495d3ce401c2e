"""The network as a graph: the one place the topology of the integer SAFormer is written.

An integer export carries this graph (``manifest["graph"]``, schema version 2): an ordered list of
nodes, each computed from nodes before it. The golden model executes it, the hls4ml stages are
cut from it, and the RTL generators read their layers off it, so a config with three blocks or
without the DWC branch flows through all of them with no code change. The float and QAT models
are torch modules and define the same network a second time by construction; the export check
(QAT == golden on real images, every trace) is what holds the two together.

Node ops and what their value is (per sample and time step; ``shape`` is that value's shape):

    input     the quantized image (C, H, W), format "input"; static images have no time axis
    synapse   ``layer``'s weights over the input (conv 3x3 on (C, H, W), linear on (N, D)), plus
              bias, to the membrane format (shift, floor, saturate)
    maxpool   MaxPool(3, stride 2, pad 1) on membranes
    lif       the integer LIF ``neuron`` (tau = 2) over time: membrane -> spikes
    add       the saturating residual add of two membranes
    tokens    (D, H, W) -> (N, D), tokens in row-major order over the grid
    sasa      SASA's count score, LIF_a mask, masked K (+ DWC ``layer``), LIF_o: Q, K -> O spikes
    head      spike counts over tokens and steps times the head's weights, plus T*N biases: logits

``segment`` is the hardware partition (DESIGN.md): runs of nodes that form one hls4ml stage, and
the SASA nodes, which the hand-written RTL core computes. ``trace`` marks values recorded in the
golden traces under the node's name (LIF nodes always record ``<neuron>.x`` and ``<neuron>.s``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from saformer.config import ModelConfig
from saformer.errors import SaformerError

OPS = ("input", "synapse", "maxpool", "lif", "add", "tokens", "sasa", "head")
FORMATS = ("input", "membrane", "spikes", "logits")
SYNAPTIC_OPS = ("synapse", "head")  # the ops with weights: one engine each in the accelerator
RTL_OPS = ("sasa",)  # computed by the hand-written core; every other op is a synaptic-stage op
IMAGE = "image"


class GraphError(SaformerError):
    """A graph that is not a well-formed SAFormer dataflow (names, inputs, shapes, formats)."""


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    inputs: tuple[str, ...]
    shape: tuple[int, ...]  # the value per sample and step
    format: str  # one of FORMATS
    segment: str  # hls4ml stage name, or the RTL core's layer name for a sasa node
    layer: str | None = None  # synapse / head: the export layer; sasa: the DWC layer or None
    neuron: str | None = None  # lif: the neuron (threshold in the manifest's neurons)
    trace: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)  # sasa: lif_a, lif_o, n_agg, grid

    @property
    def channels(self) -> int:
        """Channels of the value: C of a map (C, H, W), D of tokens (N, D), the head's classes."""
        return self.shape[0] if len(self.shape) == 3 else self.shape[-1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"], d["shape"] = list(self.inputs), list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> "Node":
        known = {"name", "op", "inputs", "shape", "format", "segment", "layer", "neuron", "trace", "attrs"}
        if not isinstance(d, dict):
            raise GraphError(f"{where}: a node must be an object, found {type(d).__name__}")
        missing = sorted({"name", "op", "inputs", "shape", "format", "segment"} - set(d))
        if missing:
            raise GraphError(f"{where}: missing {missing}")
        if set(d) - known:
            raise GraphError(f"{where}: unknown field(s) {sorted(set(d) - known)}")
        if not isinstance(d["inputs"], list) or not all(isinstance(i, str) for i in d["inputs"]):
            raise GraphError(f"{where}: 'inputs' must be a list of node names")
        if not isinstance(d["shape"], list) or not all(isinstance(s, int) and s >= 1 for s in d["shape"]):
            raise GraphError(f"{where}: 'shape' must be a list of positive integers, found {d['shape']!r:.60}")
        return cls(name=str(d["name"]), op=str(d["op"]), inputs=tuple(d["inputs"]), shape=tuple(d["shape"]),
                   format=str(d["format"]), segment=str(d["segment"]), layer=d.get("layer"),
                   neuron=d.get("neuron"), trace=bool(d.get("trace", False)), attrs=dict(d.get("attrs") or {}))


class Graph:
    """An ordered, validated node list with lookups."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = list(nodes)
        self.by_name = {n.name: n for n in self.nodes}
        self._users: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                if i in self._users:  # a dangling input is validate()'s to name
                    self._users[i].append(n.name)

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, name: str) -> Node:
        return self.by_name[name]

    def of_op(self, op: str) -> list[Node]:
        return [n for n in self.nodes if n.op == op]

    @property
    def output(self) -> Node:
        return self.nodes[-1]

    def segments(self) -> list[tuple[str, list[Node]]]:
        """(segment name, nodes) in dataflow order: each an hls4ml stage or one SASA core layer."""
        out: list[tuple[str, list[Node]]] = []
        for n in self.nodes:
            if n.op == "input":
                continue
            if out and out[-1][0] == n.segment:
                out[-1][1].append(n)
            else:
                out.append((n.segment, [n]))
        return out

    def consumers(self) -> dict[str, list[str]]:
        """Per node, the nodes that read it, in order."""
        return self._users

    def last_use(self) -> dict[str, int]:
        """Index of the last node reading each value (the output: past the end), to free memory."""
        last = {n.name: len(self.nodes) for n in self.nodes}
        for idx, n in enumerate(self.nodes):
            for i in n.inputs:
                last[i] = idx
        return last

    def synapse_layers(self) -> list[str]:
        """Every export layer the graph reads, in dataflow order (a SASA node's DWC included)."""
        return [n.layer for n in self.nodes if n.layer is not None]

    def neurons(self) -> list[str]:
        names = []
        for n in self.nodes:
            if n.op == "lif":
                names.append(n.neuron)
            elif n.op == "sasa":
                names += [n.attrs["lif_a"], n.attrs["lif_o"]]
        return names

    def to_list(self) -> list[dict[str, Any]]:
        return [n.to_dict() for n in self.nodes]

    @classmethod
    def from_list(cls, data: Any, layers: dict[str, Any] | None = None) -> "Graph":
        if not isinstance(data, list) or not data:
            raise GraphError("the graph must be a non-empty list of nodes")
        g = cls([Node.from_dict(d, f"graph node {i}") for i, d in enumerate(data)])
        g.validate(layers)
        return g

    # ---- checks ---------------------------------------------------------------------------------
    def validate(self, layers: dict[str, Any] | None = None) -> None:
        """Names unique, inputs defined before use, ops and formats known, shapes consistent with
        each op (and with the weight shapes in ``layers`` when given), one output."""
        seen: dict[str, Node] = {}
        for idx, n in enumerate(self.nodes):
            where = f"graph node {idx} '{n.name}'"
            if n.name in seen:
                raise GraphError(f"{where}: the name is used twice")
            if n.op not in OPS:
                raise GraphError(f"{where}: unknown op '{n.op}' (known: {list(OPS)})")
            if n.format not in FORMATS:
                raise GraphError(f"{where}: unknown format '{n.format}' (known: {list(FORMATS)})")
            for i in n.inputs:
                if i not in seen:
                    raise GraphError(f"{where}: input '{i}' is not a node before it")
            ins = [seen[i] for i in n.inputs]
            _check_node(n, ins, where, layers)
            seen[n.name] = n
        if sum(n.op == "input" for n in self.nodes) != 1 or self.nodes[0].op != "input":
            raise GraphError("the graph must start with its one input node")
        if self.output.op != "head":
            raise GraphError(f"the graph must end in a head node, not '{self.output.op}' ({self.output.name})")
        if layers is not None:
            used = self.synapse_layers()
            dup = sorted({x for x in used if used.count(x) > 1})
            if dup:
                raise GraphError(f"layers {dup} are read by more than one graph node")
            unused = sorted(set(layers) - set(used))
            if unused:
                raise GraphError(f"layers {unused} are in the export but no graph node reads them")


_ARITY = {"input": 0, "synapse": 1, "maxpool": 1, "lif": 1, "add": 2, "tokens": 1, "sasa": 2, "head": 1}


def _check_node(n: Node, ins: list[Node], where: str, layers: dict[str, Any] | None) -> None:
    def need(cond: bool, what: str) -> None:
        if not cond:
            raise GraphError(f"{where} ({n.op}): {what}")

    need(len(ins) == _ARITY[n.op], f"takes {_ARITY[n.op]} input(s), has {len(ins)}")
    if n.op in (*SYNAPTIC_OPS, "lif"):
        need(n.layer is not None if n.op != "lif" else n.neuron is not None,
             "names no layer" if n.op != "lif" else "names no neuron")
    if n.op == "input":
        need(n.format == "input" and len(n.shape) == 3, "the image is (C, H, W) in the input format")
    elif n.op == "synapse":
        x = ins[0]
        need(x.format in ("input", "spikes"), f"reads '{x.name}' in {x.format} format; synapses read spikes or the image")
        need(n.format == "membrane", "writes the membrane format")
        if layers is not None:
            need(n.layer in layers, f"layer '{n.layer}' is not in the export")
            spec = layers[n.layer]
            w = spec["shape"]
            if spec["kind"] == "conv":
                need(len(x.shape) == 3 and w[1:] == [x.shape[0], 3, 3] and list(n.shape) == [w[0], *x.shape[1:]],
                     f"conv weights {w} do not take {list(x.shape)} to {list(n.shape)}")
            elif spec["kind"] == "linear":
                need(len(x.shape) == 2 and w[1] == x.shape[1] and list(n.shape) == [x.shape[0], w[0]],
                     f"linear weights {w} do not take {list(x.shape)} to {list(n.shape)}")
            else:
                need(False, f"layer kind '{spec['kind']}' is not a synapse node's")
    elif n.op == "maxpool":
        x = ins[0]
        need(x.format == "membrane" and len(x.shape) == 3, "pools a (C, H, W) membrane")
        need(list(n.shape) == [x.shape[0], (x.shape[1] + 1) // 2, (x.shape[2] + 1) // 2],
             f"(3, stride 2, pad 1) takes {list(x.shape)} to {[x.shape[0], (x.shape[1] + 1) // 2, (x.shape[2] + 1) // 2]}, "
             f"not {list(n.shape)}")
    elif n.op == "lif":
        need(ins[0].format == "membrane" and n.format == "spikes" and n.shape == ins[0].shape,
             "takes a membrane to spikes of the same shape")
    elif n.op == "add":
        need(all(x.format == "membrane" for x in ins) and n.format == "membrane"
             and ins[0].shape == ins[1].shape == n.shape, "adds two membranes of its own shape")
    elif n.op == "tokens":
        c, h, w = ins[0].shape if len(ins[0].shape) == 3 else (0, 0, 0)
        need(len(ins[0].shape) == 3 and list(n.shape) == [h * w, c] and n.format == ins[0].format,
             f"takes (D, H, W) to (H*W, D); found {list(ins[0].shape)} -> {list(n.shape)}")
    elif n.op == "sasa":
        q, k = ins
        need(q.format == k.format == n.format == "spikes" and q.shape == k.shape == n.shape and len(n.shape) == 2,
             "takes Q and K spikes (N, D) to O spikes (N, D)")
        for key in ("lif_a", "lif_o", "n_agg", "grid"):
            need(key in n.attrs, f"attrs lack '{key}'")
        gh, gw = n.attrs["grid"]
        need(gh * gw == n.shape[0] and n.shape[0] % n.attrs["n_agg"] == 0,
             f"grid {gh}x{gw} and N'={n.attrs['n_agg']} do not fit N={n.shape[0]}")
        if layers is not None and n.layer is not None:
            need(n.layer in layers and layers[n.layer]["kind"] == "dwconv"
                 and layers[n.layer]["shape"] == [n.shape[1], 1, 3, 3], f"DWC layer '{n.layer}' is not a {n.shape[1]}-channel dwconv")
    elif n.op == "head":
        x = ins[0]
        need(x.format == "spikes" and len(x.shape) == 2 and n.format == "logits" and len(n.shape) == 1,
             "takes token spikes (N, D) to logits (classes,)")
        if layers is not None:
            need(n.layer in layers and layers[n.layer]["shape"] == [n.shape[0], x.shape[1]],
                 f"head weights do not take D={x.shape[1]} to {n.shape[0]} classes")


# ---- the SAFormer topology ----------------------------------------------------------------------
def network_graph(cfg: ModelConfig) -> Graph:
    """The integer SAFormer of ``cfg`` as a graph (SASA attention; the contract's only attention)."""
    nodes: list[Node] = []

    def add(name: str, op: str, inputs: list[str], shape, fmt: str, segment: str, **kw) -> str:
        nodes.append(Node(name, op, tuple(inputs), tuple(int(s) for s in shape), fmt, segment, **kw))
        return name

    c, h, w = cfg.in_channels, cfg.height, cfg.width
    x = add(IMAGE, "input", [], (c, h, w), "input", "sps")
    for i, ch in enumerate(cfg.sps_channels[:4]):
        if i:
            x = add(f"sps.lifs.{i - 1}", "lif", [x], nodes[-1].shape, "spikes", "sps", neuron=f"sps.lifs.{i - 1}")
        x = add(f"sps.convs.{i}", "synapse", [x], (ch, h, w), "membrane", "sps", layer=f"sps.convs.{i}")
        if i + 1 in cfg.pool_layers:
            h, w = (h + 1) // 2, (w + 1) // 2
            x = add(f"sps.pools.{i}", "maxpool", [x], (ch, h, w), "membrane", "sps")
    y = x
    s = add("sps.lifs.3", "lif", [y], nodes[-1].shape, "spikes", "sps", neuron="sps.lifs.3")
    rpe = add("sps.rpe", "synapse", [s], (cfg.dim, h, w), "membrane", "sps", layer="sps.rpe")
    u = add("sps.add", "add", [y, rpe], (cfg.dim, h, w), "membrane", "sps")
    n, d = h * w, cfg.dim
    u = add("sps.u0", "tokens", [u], (n, d), "membrane", "sps", trace=True)
    for b in range(cfg.depth):
        p = f"blocks.{b}"
        pre, post = f"{p}.qk", f"{p}.post"
        s = add(f"{p}.lif_attn_in", "lif", [u], (n, d), "spikes", pre, neuron=f"{p}.lif_attn_in")
        q = add(f"{p}.attn.q", "synapse", [s], (n, d), "membrane", pre, layer=f"{p}.attn.q")
        q = add(f"{p}.attn.lif_q", "lif", [q], (n, d), "spikes", pre, neuron=f"{p}.attn.lif_q")
        k = add(f"{p}.attn.k", "synapse", [s], (n, d), "membrane", pre, layer=f"{p}.attn.k")
        k = add(f"{p}.attn.lif_k", "lif", [k], (n, d), "spikes", pre, neuron=f"{p}.attn.lif_k")
        o = add(f"{p}.attn", "sasa", [q, k], (n, d), "spikes", f"{p}.attn",
                layer=f"{p}.attn.dwc" if cfg.dwc else None,
                attrs={"lif_a": f"{p}.attn.lif_a", "lif_o": f"{p}.attn.lif_o", "n_agg": cfg.n_agg,
                       "grid": [cfg.grid_h, cfg.grid_w]})
        a = add(f"{p}.attn.proj", "synapse", [o], (n, d), "membrane", post, layer=f"{p}.attn.proj")
        u = add(f"{p}.u_attn", "add", [u, a], (n, d), "membrane", post, trace=True)
        s = add(f"{p}.lif_mlp_in", "lif", [u], (n, d), "spikes", post, neuron=f"{p}.lif_mlp_in")
        hid = cfg.mlp_ratio * d
        f = add(f"{p}.mlp.fc1", "synapse", [s], (n, hid), "membrane", post, layer=f"{p}.mlp.fc1")
        f = add(f"{p}.mlp.lif", "lif", [f], (n, hid), "spikes", post, neuron=f"{p}.mlp.lif")
        f = add(f"{p}.mlp.fc2", "synapse", [f], (n, d), "membrane", post, layer=f"{p}.mlp.fc2")
        u = add(f"{p}.u_out", "add", [u, f], (n, d), "membrane", post, trace=True)
    s = add("head_lif", "lif", [u], (n, d), "spikes", "head", neuron="head_lif")
    add("logits", "head", [s], (cfg.num_classes,), "logits", "head", layer="head", trace=True)
    g = Graph(nodes)
    g.validate()
    return g
