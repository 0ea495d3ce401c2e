"""What an integer export must mean, not only how it must be laid out.

:func:`check_manifest_structure` refuses a manifest whose JSON is not the shape the readers expect
(a list, a missing key, a value of the wrong type) before anything indexes into it.
:func:`check_contract` then holds a structurally sound export to the integer contract
(docs/integer_contract.md), recomputing every derived field instead of trusting it:

- ``model_config`` / ``quant_config`` are valid configs, and ``formats`` says what they say;
- the layers and neurons are exactly those of the network the config describes (read off the QAT
  model built on the meta device: the topology is not written a second time here), with the
  config's shapes, kinds and bit widths;
- ``acc_frac = weight_frac + in_frac`` and ``out_shift = acc_frac - membrane_frac``;
- weights are integers in their narrow range, biases fit the accumulator, and the worst-case
  accumulator (recomputed) is ``acc_bits_needed`` and fits ``accumulator_bits``;
- every threshold is ``ceil(v_threshold * 2^frac)`` and within the range its neuron can reach.

Each failure names the field, the expected and the actual value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from saformer.config import DATASET_DEFAULTS, ModelConfig, QuantConfig
from saformer.errors import SaformerError
from saformer.model.neuron import LIF
from saformer.quant.fixed_point import int_range, threshold_units

IMAGE_LAYER = "sps.convs.0"  # the one synaptic layer whose input is the image, not spikes


class ContractError(SaformerError):
    """Raised by the checks here; load_export turns it into an ExportError naming the file."""


def _type_name(v: Any) -> str:
    return "null" if v is None else {dict: "object", list: "list", str: "string", bool: "boolean",
                                      int: "integer", float: "number"}.get(type(v), type(v).__name__)


def _expect(d: dict, key: str, kind: str, where: str) -> Any:
    """d[key], which must be of JSON ``kind``: object, list, string, integer, number, boolean, int-or-null."""
    if key not in d:
        raise ContractError(f"{where}: the key '{key}' is missing")
    v = d[key]
    ok = {"object": isinstance(v, dict), "list": isinstance(v, list), "string": isinstance(v, str),
          "integer": isinstance(v, int) and not isinstance(v, bool),
          "number": isinstance(v, (int, float)) and not isinstance(v, bool),
          "boolean": isinstance(v, bool),
          "int-or-null": v is None or (isinstance(v, int) and not isinstance(v, bool))}[kind]
    if not ok:
        raise ContractError(f"{where}: '{key}' must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}, "
                            f"found {_type_name(v)} {v!r:.60}")
    return v


TOP_LEVEL = {"schema": "string", "schema_version": "integer", "content_hash": "string", "dataset": "string",
             "model_config": "object", "quant_config": "object", "rounding": "object", "formats": "object",
             "layers": "object", "neurons": "object", "tensors": "object"}
TENSOR_FIELDS = {"shape": "list", "dtype": "string", "bits": "integer", "frac": "integer", "sha256": "string"}
LAYER_FIELDS = {"kind": "string", "weight": "string", "bias": "string", "weight_bits": "integer",
                "weight_frac": "integer", "in_frac": "integer", "acc_frac": "integer", "to_membrane": "boolean",
                "out_shift": "int-or-null", "groups": "integer", "shape": "list", "acc_bits_needed": "integer"}
NEURON_FIELDS = {"theta": "integer", "frac": "integer", "v_threshold": "number"}


def check_manifest_structure(manifest: Any) -> None:
    """The JSON shape every reader relies on (keys and value types); the schema keys first."""
    if not isinstance(manifest, dict):
        raise ContractError(f"the manifest must be a JSON object, found a {_type_name(manifest)}")
    for key in ("schema", "schema_version"):
        if key not in manifest:
            raise ContractError(f"manifest: the key '{key}' is missing")
    for key, kind in TOP_LEVEL.items():
        _expect(manifest, key, kind, "manifest")
    for name, spec in manifest["tensors"].items():
        if not isinstance(spec, dict):
            raise ContractError(f"tensors['{name}'] must be an object, found {_type_name(spec)}")
        for key, kind in TENSOR_FIELDS.items():
            _expect(spec, key, kind, f"tensors['{name}']")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in spec["shape"]):
            raise ContractError(f"tensors['{name}']: 'shape' must list non-negative integers, found {spec['shape']}")
        if not 1 <= spec["bits"] <= 64:
            raise ContractError(f"tensors['{name}']: 'bits' must be in 1..64, found {spec['bits']}")
    for name, spec in manifest["layers"].items():
        if not isinstance(spec, dict):
            raise ContractError(f"layers['{name}'] must be an object, found {_type_name(spec)}")
        for key, kind in LAYER_FIELDS.items():
            _expect(spec, key, kind, f"layers['{name}']")
    for name, spec in manifest["neurons"].items():
        if not isinstance(spec, dict):
            raise ContractError(f"neurons['{name}'] must be an object, found {_type_name(spec)}")
        for key, kind in NEURON_FIELDS.items():
            _expect(spec, key, kind, f"neurons['{name}']")
    for key in ("input", "membrane", "accumulator", "sasa_score"):
        _expect(manifest["formats"], key, "object", "formats")


def _signed_integer_dtype(name: str) -> bool:
    try:
        return np.dtype(name).kind == "i"
    except TypeError:
        return False


def _same(field: str, expected: Any, actual: Any) -> None:
    if expected != actual:
        raise ContractError(f"{field}: expected {expected!r}, found {actual!r}")


def _same_names(what: str, needed: dict, found: dict, cfg: ModelConfig) -> None:
    """The export has every layer (neuron) the config's network needs, and no other."""
    missing = [n for n in needed if n not in found]
    if missing:
        raise ContractError(f"{what}: the network of config '{cfg.name}' needs {missing}, which the export lacks")
    extra = [n for n in found if n not in needed]
    if extra:
        raise ContractError(f"{what}: {extra} are not {what} of config '{cfg.name}'")


def max_abs_input(name: str, cfg: ModelConfig, qcfg: QuantConfig) -> int:
    """The largest input magnitude a layer sees: the image's, a spike count's (head), or a spike's."""
    if name == IMAGE_LAYER:  # the image (static or event frames): signed input_bits integers
        return 1 << (qcfg.input_bits - 1)
    if name == "head":  # spike counts over T time steps and N tokens
        return cfg.time_steps * cfg.num_tokens
    return 1


def worst_case_accumulator(name: str, w: np.ndarray, b: np.ndarray, cfg: ModelConfig, qcfg: QuantConfig) -> int:
    """The largest |accumulator| any input can produce: sum |w| times the largest input, plus the
    bias (T*N times for the head, which adds it once per step and token)."""
    fan_in = np.abs(w.astype(np.int64)).reshape(w.shape[0], -1).sum(axis=1)
    steps = cfg.time_steps * cfg.num_tokens if name == "head" else 1
    return int((fan_in * max_abs_input(name, cfg, qcfg) + np.abs(b.astype(np.int64)) * steps).max(initial=0))


def check_contract(manifest: dict[str, Any], arrays: dict[str, np.ndarray], rounding: dict[str, str]) -> None:
    """Hold a structurally sound export to the integer contract (see the module docstring)."""
    from saformer.quant.qat import QuantSAFormer, check_quantizable, score_frac, synapse_layers

    try:
        cfg = ModelConfig.from_dict(manifest["model_config"])
        qcfg = QuantConfig.from_dict(manifest["quant_config"])
        check_quantizable(cfg)
    except (SaformerError, TypeError) as exc:
        raise ContractError(f"model_config / quant_config: {exc}") from None
    if manifest["dataset"] not in DATASET_DEFAULTS:
        raise ContractError(f"dataset: expected one of {sorted(DATASET_DEFAULTS)}, found {manifest['dataset']!r}")
    _same("model_config.num_classes (classes of dataset "
          f"'{manifest['dataset']}')", DATASET_DEFAULTS[manifest["dataset"]].num_classes, cfg.num_classes)
    _same("rounding", rounding, manifest["rounding"])
    fmt = manifest["formats"]
    _same("formats.input", {"bits": qcfg.input_bits, "frac": qcfg.input_frac}, fmt["input"])
    _same("formats.membrane", {"bits": qcfg.membrane_bits, "frac": qcfg.membrane_frac}, fmt["membrane"])
    _same("formats.accumulator", {"bits": qcfg.accumulator_bits}, fmt["accumulator"])
    _same("formats.sasa_score", {"frac": score_frac(cfg), "window": cfg.window, "n_agg": cfg.n_agg},
          fmt["sasa_score"])

    with torch.device("meta"):  # shapes and names only: no weights are allocated
        model = QuantSAFormer(cfg, qcfg)
    synapses = synapse_layers(model)
    layers = manifest["layers"]
    _same_names("layers", synapses, layers, cfg)
    acc_lo, acc_hi = int_range(qcfg.accumulator_bits)
    tensors = manifest["tensors"]
    for name, syn in synapses.items():
        spec, where = layers[name], f"layers['{name}']"
        groups = syn.layer.groups if syn.kind == "conv" else 1
        _same(f"{where}.kind", "dwconv" if syn.kind == "conv" and groups > 1 else syn.kind, spec["kind"])
        _same(f"{where}.groups", groups, spec["groups"])
        _same(f"{where}.shape (from model_config)", list(syn.layer.weight.shape), spec["shape"])
        _same(f"{where}.weight_bits (quant_config)", qcfg.bits_for(name), spec["weight_bits"])
        _same(f"{where}.in_frac", syn.in_frac, spec["in_frac"])
        _same(f"{where}.to_membrane", syn.to_membrane, spec["to_membrane"])
        _same(f"{where}.acc_frac (weight_frac + in_frac)", spec["weight_frac"] + spec["in_frac"], spec["acc_frac"])
        _same(f"{where}.out_shift (acc_frac - membrane_frac)",
              spec["acc_frac"] - qcfg.membrane_frac if syn.to_membrane else None, spec["out_shift"])
        _same(f"{where}.weight", f"{name}.weight", spec["weight"])
        _same(f"{where}.bias", f"{name}.bias", spec["bias"])
        for role, bits, frac, shape in (("weight", spec["weight_bits"], spec["weight_frac"], spec["shape"]),
                                        ("bias", qcfg.accumulator_bits, spec["acc_frac"], spec["shape"][:1])):
            tname = spec[role]
            if tname not in tensors:
                raise ContractError(f"{where}.{role}: tensor '{tname}' is not listed in tensors")
            t = tensors[tname]
            _same(f"tensors['{tname}'].bits", bits, t["bits"])
            _same(f"tensors['{tname}'].frac", frac, t["frac"])
            _same(f"tensors['{tname}'].shape", shape, t["shape"])
            if not _signed_integer_dtype(t["dtype"]):
                raise ContractError(f"tensors['{tname}'].dtype: expected a signed integer dtype, found {t['dtype']!r}")
        w, b = arrays[spec["weight"]], arrays[spec["bias"]]
        limit = (1 << (spec["weight_bits"] - 1)) - 1  # narrow range: -(2^(b-1) - 1) .. 2^(b-1) - 1
        if w.size and np.abs(w.astype(np.int64)).max() > limit:
            raise ContractError(f"tensors['{spec['weight']}']: expected values in the narrow {spec['weight_bits']}-bit "
                                f"range [-{limit}, {limit}], found [{w.min()}, {w.max()}]")
        if b.size and (b.min() < acc_lo or b.max() > acc_hi):
            raise ContractError(f"tensors['{spec['bias']}']: expected values in the {qcfg.accumulator_bits}-bit "
                                f"accumulator range, found [{b.min()}, {b.max()}]")
        worst = worst_case_accumulator(name, w, b, cfg, qcfg)
        if worst > acc_hi:
            raise ContractError(f"{where}: worst-case accumulator {worst} exceeds the {qcfg.accumulator_bits}-bit "
                                f"accumulator (max {acc_hi})")
        _same(f"{where}.acc_bits_needed (recomputed from the tensors)", worst.bit_length() + 1, spec["acc_bits_needed"])

    neurons = manifest["neurons"]
    lifs = {n: m for n, m in model.named_modules() if isinstance(m, LIF)}
    _same_names("neurons", lifs, neurons, cfg)
    for name, lif in lifs.items():
        spec, where = neurons[name], f"neurons['{name}']"
        _same(f"{where}.frac", lif.frac, spec["frac"])
        _same(f"{where}.v_threshold (model_config)", lif.v_threshold, spec["v_threshold"])
        _same(f"{where}.theta (ceil(v_threshold * 2^frac))", threshold_units(lif.v_threshold, lif.frac), spec["theta"])
        if name.endswith(".lif_a"):  # drive: the window-count score, at most N' * w * w = N * w
            top, what = cfg.num_tokens * cfg.window, f"the SASA score's maximum N*w = {cfg.num_tokens * cfg.window}"
        else:
            top, what = int_range(qcfg.membrane_bits)[1], f"the {qcfg.membrane_bits}-bit membrane's maximum"
        if not 1 <= spec["theta"] <= top:
            raise ContractError(f"{where}.theta: expected 1..{top} ({what}; a larger threshold never fires), "
                                f"found {spec['theta']}")
