"""The integer export: a versioned artifact that the golden model, hls4ml and the RTL all read.

    EXPORT_DIR/manifest.json   schema, configs, formats, rounding, every layer and neuron, the
                               network graph (saformer.graph), every tensor's shape / dtype /
                               bit width / scale / sha256, content hash
    EXPORT_DIR/tensors.npz     the integers (weights int8/int16, biases int32/int64)

Nothing downstream reads the float checkpoint. :func:`load_export` checks everything it reads and
raises :class:`ExportError` naming the tensor or field at fault. Schema version 1 (before the
graph) is upgraded on load: its topology is the one its model config implies.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

import saformer
from saformer.config import ModelConfig, QuantConfig
from saformer.errors import SaformerError
from saformer.graph import Graph, GraphError, network_graph
from saformer.model.neuron import LIF
from saformer.quant.fixed_point import int_range, threshold_units
from saformer.quant.qat import QuantSAFormer, synapse_layers
from saformer.quant.validate import ContractError, check_contract, check_manifest_structure, worst_case_accumulator

SCHEMA = "saformer-integer-export"
SCHEMA_VERSION = 2  # 2: the network graph in the manifest
READS_VERSIONS = (1, 2)  # 1 is upgraded on load (graph from its model config)
MANIFEST, TENSORS = "manifest.json", "tensors.npz"
ROUNDING = {
    "runtime": "floor: every scale change is an arithmetic shift right (x >> k), LIF included",
    "weights": "round half to even (Brevitas fixed point), narrow range, power-of-two scale per tensor",
    "biases": "round half to even at the accumulator scale",
    "saturation": "clip to the signed range of the stated width",
}


class ExportError(SaformerError):
    """A corrupt, incomplete or incompatible integer export."""


def _dtype_for(bits: int) -> np.dtype:
    return np.dtype(np.int8 if bits <= 8 else np.int16 if bits <= 16 else np.int32 if bits <= 32 else np.int64)


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _content_hash(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "content_hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass
class IntegerExport:
    """A loaded, validated export: the manifest and the integer tensors by name."""

    manifest: dict[str, Any]
    tensors: dict[str, np.ndarray]

    @property
    def cfg(self) -> ModelConfig:
        return ModelConfig.from_dict(self.manifest["model_config"])

    @property
    def qcfg(self) -> QuantConfig:
        return QuantConfig.from_dict(self.manifest["quant_config"])

    def layer(self, name: str) -> dict[str, Any]:
        return self.manifest["layers"][name]

    def weight(self, name: str) -> np.ndarray:
        return self.tensors[self.layer(name)["weight"]]

    def bias(self, name: str) -> np.ndarray:
        return self.tensors[self.layer(name)["bias"]]

    def theta(self, neuron: str) -> int:
        return self.manifest["neurons"][neuron]["theta"]

    @cached_property
    def graph(self) -> Graph:
        """The network graph: the manifest's, or for a version-1 export the one its config implies."""
        if "graph" in self.manifest:
            return Graph.from_list(self.manifest["graph"], self.manifest["layers"])
        return network_graph(self.cfg)


@torch.no_grad()
def build_export(model: QuantSAFormer, dataset: str, extra: dict[str, Any] | None = None
                 ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Integers and manifest of a QAT model, checked against the accumulator width."""
    cfg, qcfg = model.cfg, model.qcfg
    tensors: dict[str, np.ndarray] = {}
    layers: dict[str, Any] = {}
    lo, hi = int_range(qcfg.accumulator_bits)
    for name, syn in synapse_layers(model).items():
        qw = syn.layer.quant_weight()
        w_int = qw.int().cpu().numpy().astype(np.int64)
        acc_frac = syn.acc_frac
        b_int = np.round(syn.quant_bias().double().cpu().numpy() * 2.0 ** acc_frac).astype(np.int64)
        groups = syn.layer.groups if syn.kind == "conv" else 1
        kind = "dwconv" if syn.kind == "conv" and groups > 1 else syn.kind
        layer = {"kind": kind, "weight": f"{name}.weight", "bias": f"{name}.bias",
                 "weight_bits": syn.weight_bits, "weight_frac": syn.weight_frac(), "in_frac": syn.in_frac,
                 "acc_frac": acc_frac, "to_membrane": syn.to_membrane,
                 "out_shift": acc_frac - qcfg.membrane_frac if syn.to_membrane else None,
                 "groups": groups, "shape": list(w_int.shape)}
        # accumulators sized not to overflow: the worst case over any input must fit
        worst = worst_case_accumulator(name, w_int, b_int, cfg, qcfg)
        if worst > hi:
            raise ExportError(f"layer '{name}': worst-case accumulator {worst} exceeds the "
                              f"{qcfg.accumulator_bits}-bit accumulator (max {hi})")
        layer["acc_bits_needed"] = worst.bit_length() + 1
        tensors[layer["weight"]] = w_int.astype(_dtype_for(syn.weight_bits))
        tensors[layer["bias"]] = b_int.astype(_dtype_for(qcfg.accumulator_bits))
        layers[name] = layer
        if b_int.min() < lo or b_int.max() > hi:
            raise ExportError(f"layer '{name}': bias outside the {qcfg.accumulator_bits}-bit accumulator")

    neurons = {}
    for name, m in model.named_modules():
        if isinstance(m, LIF):
            neurons[name] = {"theta": threshold_units(m.v_threshold, m.frac), "frac": m.frac,
                             "v_threshold": m.v_threshold}

    manifest: dict[str, Any] = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "saformer_version": saformer.__version__,
        "dataset": dataset, "model_config": cfg.to_dict(), "quant_config": qcfg.to_dict(),
        "rounding": ROUNDING,
        "formats": {"input": {"bits": qcfg.input_bits, "frac": qcfg.input_frac},
                    "membrane": {"bits": qcfg.membrane_bits, "frac": qcfg.membrane_frac},
                    "accumulator": {"bits": qcfg.accumulator_bits},
                    "sasa_score": {"frac": 2 * (cfg.window.bit_length() - 1), "window": cfg.window,
                                   "n_agg": cfg.n_agg}},
        "layers": layers, "neurons": neurons, "graph": network_graph(cfg).to_list(),
        "tensors": {name: {"shape": list(a.shape), "dtype": str(a.dtype),
                           "bits": layers[name.rsplit(".", 1)[0]]["weight_bits"] if name.endswith(".weight")
                           else qcfg.accumulator_bits,
                           "frac": layers[name.rsplit(".", 1)[0]]["weight_frac" if name.endswith(".weight") else "acc_frac"],
                           "sha256": _sha256(a)} for name, a in tensors.items()},
        **(extra or {}),
    }
    manifest["content_hash"] = _content_hash(manifest)
    return manifest, tensors


def write_export(out_dir: Path, manifest: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / TENSORS, **tensors)
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def load_export(export_dir: Path) -> IntegerExport:
    """Read and validate an export; every failure names what is wrong and where."""
    export_dir = Path(export_dir)
    mpath, tpath = export_dir / MANIFEST, export_dir / TENSORS
    if not export_dir.is_dir():
        raise ExportError(f"export directory '{export_dir}' does not exist")
    for p in (mpath, tpath):
        if not p.is_file():
            raise ExportError(f"'{export_dir}' is not an integer export: {p.name} is missing")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"'{mpath}' is not valid JSON ({exc})") from None
    if isinstance(manifest, dict):
        if manifest.get("schema") != SCHEMA:
            raise ExportError(f"'{mpath}' is not a saformer integer export (schema {manifest.get('schema')!r})")
        if manifest.get("schema_version") not in READS_VERSIONS:
            raise ExportError(f"'{mpath}': unknown schema version {manifest.get('schema_version')!r}; "
                              f"this saformer reads versions {list(READS_VERSIONS)}")
    try:
        check_manifest_structure(manifest)
    except ContractError as exc:
        raise ExportError(f"'{mpath}' is malformed: {exc}") from None
    if manifest.get("content_hash") != _content_hash(manifest):
        raise ExportError(f"'{mpath}': content hash mismatch: the manifest was changed after export")
    try:
        with np.load(tpath, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ExportError(f"'{tpath}' cannot be read ({exc})") from None
    for name, spec in manifest["tensors"].items():
        if name not in arrays:
            raise ExportError(f"tensor '{name}' is listed in the manifest but missing from {TENSORS}")
        a = arrays[name]
        if list(a.shape) != spec["shape"]:
            raise ExportError(f"tensor '{name}' has shape {list(a.shape)}, the manifest says {spec['shape']}")
        if str(a.dtype) != spec["dtype"]:
            raise ExportError(f"tensor '{name}' has dtype {a.dtype}, the manifest says {spec['dtype']}")
        lo, hi = int_range(spec["bits"])
        if a.size and (a.min() < lo or a.max() > hi):
            raise ExportError(f"tensor '{name}' holds values in [{a.min()}, {a.max()}], outside its "
                              f"{spec['bits']}-bit range [{lo}, {hi}]")
        if _sha256(a) != spec["sha256"]:
            raise ExportError(f"tensor '{name}': sha256 mismatch (the data was changed after export)")
    extra = sorted(set(arrays) - set(manifest["tensors"]))
    if extra:
        raise ExportError(f"{TENSORS} holds tensors the manifest does not list: {extra}")
    for name, a in arrays.items():
        if a.dtype.kind != "i":
            raise ExportError(f"'{tpath}': tensor '{name}' has dtype {a.dtype}; the integer contract stores "
                              "signed integers")
    try:
        check_contract(manifest, arrays, ROUNDING)
    except ContractError as exc:
        raise ExportError(f"'{mpath}' breaks the integer contract: {exc}") from None
    ex = IntegerExport(manifest, {k: v.astype(np.int64) for k, v in arrays.items()})
    check_graph(ex, mpath)
    return ex


def check_graph(ex: IntegerExport, where: Path | str) -> None:
    """The graph is well formed, reads every layer once, and its neurons are the manifest's."""
    if manifest_version(ex.manifest) >= 2 and "graph" not in ex.manifest:
        raise ExportError(f"'{where}': a version-{ex.manifest['schema_version']} export must hold its 'graph'")
    try:
        graph = ex.graph
    except (GraphError, KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"'{where}': the network graph is malformed: {exc}") from None
    neurons = graph.neurons()
    if sorted(neurons) != sorted(ex.manifest["neurons"]) or len(set(neurons)) != len(neurons):
        missing = sorted(set(ex.manifest["neurons"]) - set(neurons))
        extra = sorted(set(neurons) - set(ex.manifest["neurons"]))
        raise ExportError(f"'{where}': the graph's neurons are not the manifest's (not in the graph: {missing}; "
                          f"unknown: {extra}; each once)")
    image = graph.nodes[0].shape
    cfg = ex.cfg
    if list(image) != [cfg.in_channels, cfg.height, cfg.width] or graph.output.shape != (cfg.num_classes,):
        raise ExportError(f"'{where}': the graph takes {list(image)} to {list(graph.output.shape)}, the model "
                          f"config {[cfg.in_channels, cfg.height, cfg.width]} to [{cfg.num_classes}]")


def manifest_version(manifest: dict[str, Any]) -> int:
    return int(manifest.get("schema_version", 0))

