"""The network graph in the export is the one place the topology is written: the golden model, the
hls4ml stages, the RTL parameters and the accelerator's top read it, so other topologies (three blocks, no DWC, other
pooling) flow through them with no code change, and an edited graph changes what they compute."""

import copy
import json

import numpy as np
import pytest
import torch

from saformer.config import CONFIGS, HardwareConfig, QuantConfig, get_config
from saformer.graph import Graph, GraphError, network_graph
from saformer.hls.stages import build_stages
from saformer.model.neuron import LIF
from saformer.quant.export import MANIFEST, SCHEMA_VERSION, ExportError, IntegerExport, _content_hash, \
    build_export, load_export, write_export
from saformer.quant.golden import GoldenModel
from saformer.quant.qat import QuantSAFormer, integer_traces, synapse_names
from saformer.quant.stages import compare_traces
from saformer.rtl_sim.accel import build_top, run_top
from saformer.rtl_sim.core import params_from_export
from saformer.rtl_sim.cosim import layer_stimulus
from saformer.rtl_sim.sim import simulate
from tests.crafted import crafted_inputs, crafted_model, Crafted

DIGITS = get_config("saformer-2-64")
VARIANTS = {
    "three-blocks-no-dwc": DIGITS.replace(name="g3", depth=3, dim=32, dwc=False),
    "pool-early": DIGITS.replace(name="gp", depth=1, dim=16, pool_layers=(1, 3), n_agg=2),
}


def lif_names(cfg) -> list[str]:
    with torch.device("meta"):
        model = QuantSAFormer(cfg, QuantConfig())
    return [n for n, m in model.named_modules() if isinstance(m, LIF)]


@pytest.mark.parametrize("cfg", [*CONFIGS.values(), *VARIANTS.values()], ids=lambda c: c.name)
def test_graph_reads_every_layer_and_neuron_of_the_model_once(cfg):
    g = network_graph(cfg)
    assert g.synapse_layers() == synapse_names(cfg)  # the QAT model's layers, in its forward order
    assert sorted(g.neurons()) == sorted(lif_names(cfg))
    assert len(set(g.neurons())) == len(g.neurons())
    assert g.output.shape == (cfg.num_classes,)
    rt = Graph.from_list(json.loads(json.dumps(g.to_list())))
    assert rt.to_list() == g.to_list()
    rtl = [n for n in g if n.op == "sasa"]
    assert len(rtl) == cfg.depth and all((n.layer is not None) == cfg.dwc for n in rtl)


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, tmp_path_factory):
    cfg = VARIANTS[request.param]
    spec = Crafted(cfg, QuantConfig(), "digits", 5)
    model = crafted_model(cfg, spec.qcfg, spec.weight_frac, seed=3)
    manifest, tensors = build_export(model, "digits")
    out = tmp_path_factory.mktemp(request.param) / "export"
    write_export(out, manifest, tensors)
    x, x_int = crafted_inputs(spec, 3)
    return cfg, model, load_export(out), x, x_int, out


def test_other_topologies_flow_through_golden_hls_and_rtl(variant):
    """QAT == golden on every trace, the hls stages are the graph's segments, and every SASA core of
    the graph is simulated bit-exact: nothing in the code names these topologies."""
    cfg, model, ex, x, x_int, out = variant
    _, g_tr = GoldenModel(ex).forward(x_int, trace=True)
    diff = compare_traces(g_tr, integer_traces(model, x.double()))
    assert diff and all(v == 0 for v in diff.values()), {k: v for k, v in diff.items() if v}
    assert 0 < g_tr["head_lif.s"].mean() < 1  # not a vacuous comparison
    stages = build_stages(ex)
    assert [s.name for s in stages] == ["sps", *[f"blocks.{i}.{p}" for i in range(cfg.depth) for p in ("qk", "post")], "head"]
    assert [s.feeds_rtl for s in stages if s.feeds_rtl] == [f"blocks.{i}.attn" for i in range(cfg.depth)]
    core = ex.graph.of_op("sasa")[-1].name
    params, dwc = params_from_export(ex, core, 4)
    assert params.DWC == int(cfg.dwc) and (dwc is None) == (not cfg.dwc)
    q, k, o = layer_stimulus(ex, g_tr, core)
    assert 0 < o.mean() < 1
    res = simulate(params, q, k, o, dwc, out.parent / "rtl", samples=len(x_int))
    assert res.bit_exact and res.cycles_match


def test_other_topologies_run_end_to_end_on_the_generated_top(variant):
    """The whole accelerator is generated from the graph too: these topologies (three blocks without
    DWC; pooling right after the first conv, so the replayed frame is a pooled one) give the golden
    model's logits on the crafted, saturating inputs."""
    cfg, _, ex, _, x_int, out = variant
    design, harness, _ = build_top(ex, HardwareConfig(lanes=4), out.parent / "accel")
    assert sum(b["block"] == "sasa_core" for b in design.blocks) == cfg.depth
    r = run_top(design, harness, x_int)
    assert np.array_equal(r.logits, GoldenModel(ex).forward(x_int)[0])


def test_the_golden_model_executes_the_graph_not_the_config(variant):
    """Cut the last encoder block out of the graph (and its layers out of the manifest), leaving the
    model config as it is: the golden model runs one block fewer, the head reading the stream
    that entered the cut block."""
    cfg, _, ex, _, x_int, _ = variant
    manifest = copy.deepcopy(ex.manifest)
    last = f"blocks.{cfg.depth - 1}."
    entry = next(n for n in manifest["graph"] if n["name"] == f"{last}lif_attn_in")["inputs"][0]
    cut = {n["name"] for n in manifest["graph"] if n["segment"].startswith(last)}
    manifest["graph"] = [n for n in manifest["graph"] if n["name"] not in cut]
    manifest["layers"] = {k: v for k, v in manifest["layers"].items() if not k.startswith(last)}
    next(n for n in manifest["graph"] if n["name"] == "head_lif")["inputs"] = [entry]
    shorter = IntegerExport(manifest, ex.tensors)
    assert shorter.cfg.depth == cfg.depth  # the config still says so; the graph decides
    _, full = GoldenModel(ex).forward(x_int, trace=True)
    _, cut_tr = GoldenModel(shorter).forward(x_int, trace=True)
    assert not any(k.startswith(last) for k in cut_tr)
    assert np.array_equal(cut_tr["head_lif.x"], full[entry])
    assert not np.array_equal(cut_tr["head_lif.x"], full["head_lif.x"])


# ---- the graph in the export: versions and corrupt graphs ---------------------------------------
@pytest.fixture(scope="module")
def digits_export(tmp_path_factory):
    torch.manual_seed(0)
    model = QuantSAFormer(DIGITS, QuantConfig()).double().eval()
    manifest, tensors = build_export(model, "digits")
    out = tmp_path_factory.mktemp("graph") / "ok"
    write_export(out, manifest, tensors)
    return out


def rewrite(path, edit):
    m = json.loads((path / MANIFEST).read_text())
    edit(m)
    m["content_hash"] = _content_hash(m)
    (path / MANIFEST).write_text(json.dumps(m))


def copy_export(src, tmp_path):
    import shutil

    dst = tmp_path / "ex"
    shutil.copytree(src, dst)
    return dst


def test_the_export_holds_the_graph_and_version_1_is_upgraded(digits_export, tmp_path):
    ex = load_export(digits_export)
    assert ex.manifest["schema_version"] == SCHEMA_VERSION == 2
    assert ex.graph.to_list() == network_graph(DIGITS).to_list()
    old = copy_export(digits_export, tmp_path)

    def to_v1(m):
        del m["graph"]
        m["schema_version"] = 1

    rewrite(old, to_v1)
    upgraded = load_export(old)
    assert upgraded.graph.to_list() == ex.graph.to_list()
    x = np.random.default_rng(0).integers(0, 17, (2, 1, 8, 8))
    assert np.array_equal(GoldenModel(upgraded).forward(x)[0], GoldenModel(ex).forward(x)[0])


def _set_input(m, node, inputs):
    next(n for n in m["graph"] if n["name"] == node)["inputs"] = inputs


def _drop_node(m, name):
    m["graph"] = [n for n in m["graph"] if n["name"] != name]


def _shape(m, name, shape):
    next(n for n in m["graph"] if n["name"] == name)["shape"] = shape


CORRUPT = {
    "graph missing in version 2": (lambda m: m.pop("graph"), "must hold its 'graph'"),
    "an input defined later": (lambda m: _set_input(m, "sps.convs.1", ["sps.lifs.1"]), "is not a node before it"),
    "a layer no node reads": (lambda m: _drop_node(m, "blocks.1.attn.proj")
                              or _set_input(m, "blocks.1.u_attn", ["blocks.0.u_out", "blocks.1.attn.k"]),
                              "layers ['blocks.1.attn.proj'] are in the export but no graph node reads them"),
    "spikes into an add": (lambda m: _set_input(m, "blocks.1.u_attn", ["blocks.0.u_out", "blocks.1.attn"]),
                           "adds two membranes"),
    "a wrong conv shape": (lambda m: _shape(m, "sps.convs.2", [31, 8, 8]), "conv weights [32, 16, 3, 3] do not take"),
    "an unknown op": (lambda m: m["graph"][3].update(op="softmax"), "unknown op 'softmax'"),
    "a neuron not in the manifest": (lambda m: next(n for n in m["graph"] if n["op"] == "lif").update(neuron="sps.lifs.9"),
                                     "the graph's neurons are not the manifest's"),
    "not a list": (lambda m: m.update(graph={"a": 1}), "non-empty list"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_a_corrupt_graph_is_refused_naming_what(digits_export, tmp_path, case):
    edit, message = CORRUPT[case]
    path = copy_export(digits_export, tmp_path)
    rewrite(path, edit)
    with pytest.raises(ExportError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_export(path)


def test_graph_errors_name_the_node():
    g = network_graph(DIGITS).to_list()
    g[5]["inputs"] = ["nowhere"]
    with pytest.raises(GraphError, match=r"graph node 5 'sps.convs.2': input 'nowhere'"):
        Graph.from_list(g)
