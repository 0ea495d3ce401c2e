"""load_export holds an export to the integer contract, not only to its hashes: every case below is
an export whose hashes are consistent (recomputed after the edit, as another tool or a hand edit
would leave them) and that breaks the contract in one way; each is refused, naming the field, the
expected and the found value."""

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from saformer.config import QuantConfig, get_config
from saformer.quant.export import MANIFEST, TENSORS, ExportError, IntegerExport, _content_hash, _sha256, \
    build_export, load_export, write_export
from saformer.quant.golden import GoldenModel
from saformer.quant.qat import QuantSAFormer


@pytest.fixture(scope="module")
def export_parts(tmp_path_factory):
    """A digits-geometry export of an untrained QAT model: valid, and quick to make."""
    torch.manual_seed(0)
    model = QuantSAFormer(get_config("saformer-2-64"), QuantConfig()).double().eval()
    manifest, tensors = build_export(model, "digits")
    out = tmp_path_factory.mktemp("export") / "ok"
    write_export(out, manifest, tensors)
    load_export(out)  # the unedited export is accepted
    return manifest, tensors


def rewrite(tmp_path: Path, manifest, tensors) -> Path:
    """Write an edited export with consistent hashes (what a careless tool would produce)."""
    out = tmp_path / "edited"
    if isinstance(manifest, dict) and isinstance(manifest.get("tensors"), dict):
        for name, spec in manifest["tensors"].items():
            if name in tensors and isinstance(spec, dict):
                spec["sha256"] = _sha256(tensors[name])
        manifest["content_hash"] = _content_hash(manifest)
    out.mkdir()
    np.savez(out / TENSORS, **tensors)
    (out / MANIFEST).write_text(json.dumps(manifest))
    return out


def set_weight(m, t, name, value, index=0):
    t[name] = t[name].copy()
    t[name].flat[index] = value


def drop_layer(m, t, name):
    del m["layers"][name]
    for suffix in ("weight", "bias"):
        del m["tensors"][f"{name}.{suffix}"]
        del t[f"{name}.{suffix}"]


def as_float(m, t, name):
    t[name] = t[name].astype(np.float32)
    m["tensors"][name]["dtype"] = "float32"


def membrane_q12_6(m, t):
    """Changes the membrane format consistently in quant_config and formats, but not the shifts."""
    m["quant_config"]["membrane_frac"] = 6
    m["formats"]["membrane"]["frac"] = 6


def huge_threshold(m, t):
    """A threshold that the membrane can never reach, with v_threshold and theta consistent."""
    m["model_config"]["v_threshold"] = 200.0
    for name, n in m["neurons"].items():
        if n["v_threshold"] == 1.0:
            n["v_threshold"], n["theta"] = 200.0, 200 * 256


def huge_bias(m, t):
    t["blocks.0.mlp.fc1.bias"] = t["blocks.0.mlp.fc1.bias"].copy()
    t["blocks.0.mlp.fc1.bias"][0] = 2 ** 31 - 1


CASES = {
    "a JSON list": (lambda m, t: None, "the manifest must be a JSON object, found a list"),
    "missing layers": (lambda m, t: m.pop("layers"), "the key 'layers' is missing"),
    "layer not an object": (lambda m, t: m["layers"].__setitem__("head", "linear"), "layers['head'] must be an object"),
    "theta a string": (lambda m, t: m["neurons"]["head_lif"].__setitem__("theta", "256"),
                       "neurons['head_lif']: 'theta' must be an integer, found string"),
    "theta not its formula": (lambda m, t: m["neurons"]["blocks.0.attn.lif_o"].__setitem__("theta", 129),
                              "neurons['blocks.0.attn.lif_o'].theta (ceil(v_threshold * 2^frac)): expected 128, found 129"),
    "threshold out of reach": (huge_threshold, "a larger threshold never fires"),
    "formats vs quant_config": (lambda m, t: m["formats"]["membrane"].__setitem__("bits", 12),
                                "formats.membrane: expected {'bits': 16, 'frac': 8}, found {'bits': 12, 'frac': 8}"),
    "out_shift vs membrane_frac": (membrane_q12_6, "out_shift (acc_frac - membrane_frac)"),
    "out_shift edited": (lambda m, t: m["layers"]["blocks.1.mlp.fc2"].__setitem__(
        "out_shift", m["layers"]["blocks.1.mlp.fc2"]["out_shift"] + 1), "layers['blocks.1.mlp.fc2'].out_shift"),
    "acc_frac edited": (lambda m, t: m["layers"]["sps.rpe"].__setitem__("acc_frac", 3),
                        "layers['sps.rpe'].acc_frac (weight_frac + in_frac)"),
    "weight outside the narrow range": (lambda m, t: set_weight(m, t, "blocks.0.attn.q.weight", -128),
                                        "expected values in the narrow 8-bit range [-127, 127], found [-128"),
    "float weights": (lambda m, t: as_float(m, t, "head.weight"), "tensor 'head.weight' has dtype float32"),
    "acc_bits_needed edited": (lambda m, t: m["layers"]["head"].__setitem__("acc_bits_needed", 12),
                               "layers['head'].acc_bits_needed (recomputed from the tensors): expected"),
    "worst case over the accumulator": (huge_bias, "worst-case accumulator"),
    "weight bits vs quant_config": (lambda m, t: m["quant_config"].__setitem__("weight_bits", 6),
                                    "weight_bits (quant_config): expected 6, found 8"),
    "model_config vs shapes": (lambda m, t: m["model_config"].__setitem__("dim", 32),
                               "layers['sps.convs.0'].shape (from model_config): expected [4, 1, 3, 3], found [8, 1, 3, 3]"),
    "a layer missing": (lambda m, t: drop_layer(m, t, "blocks.1.attn.proj"),
                        "needs ['blocks.1.attn.proj'], which the export lacks"),
    "a layer too many": (lambda m, t: m["layers"].__setitem__("blocks.7.attn.q", copy.deepcopy(m["layers"]["head"])),
                         "layers: ['blocks.7.attn.q'] are not layers of config 'saformer-2-64'"),
    "a neuron missing": (lambda m, t: m["neurons"].pop("blocks.0.lif_mlp_in"),
                         "neurons: the network of config 'saformer-2-64' needs ['blocks.0.lif_mlp_in']"),
    "rounding edited": (lambda m, t: m["rounding"].__setitem__("runtime", "round half up"), "rounding: expected"),
    "unknown dataset": (lambda m, t: m.__setitem__("dataset", "mnist"), "dataset: expected one of"),
    "classes vs dataset": (lambda m, t: m["model_config"].__setitem__("num_classes", 100),
                           "model_config.num_classes (classes of dataset 'digits'): expected 10, found 100"),
    "config invalid": (lambda m, t: m["model_config"].__setitem__("n_agg", 3), "N'=3 must divide"),
    "a field of the wrong type": (lambda m, t: m["layers"]["head"].__setitem__("to_membrane", 0),
                                  "'to_membrane' must be a boolean, found integer"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_export_that_breaks_the_contract_is_refused(case, export_parts, tmp_path):
    edit, message = CASES[case]
    manifest, tensors = copy.deepcopy(export_parts[0]), dict(export_parts[1])
    edit(manifest, tensors)
    if case == "a JSON list":
        manifest = [manifest]
    with pytest.raises(ExportError) as exc:
        load_export(rewrite(tmp_path, manifest, tensors))
    assert message in str(exc.value), str(exc.value)
    assert MANIFEST in str(exc.value) or TENSORS in str(exc.value)  # names the file


def test_an_edited_copy_with_no_change_is_accepted(export_parts, tmp_path):
    """The positive control of the cases above: the rewrite itself breaks nothing."""
    manifest, tensors = copy.deepcopy(export_parts[0]), dict(export_parts[1])
    ex = load_export(rewrite(tmp_path, manifest, tensors))
    assert ex.manifest["content_hash"] == export_parts[0]["content_hash"]


def test_an_unknown_schema_version_is_named(export_parts, tmp_path):
    manifest = copy.deepcopy(export_parts[0])
    manifest["schema_version"] = 3
    with pytest.raises(ExportError, match=re.escape("unknown schema version 3")):
        load_export(rewrite(tmp_path, manifest, dict(export_parts[1])))


def test_the_golden_model_reads_out_shift(export_parts):
    """The golden model takes the accumulator-to-membrane shift from the export's out_shift (as the
    RTL does), so the field it is validated against is the field every consumer uses."""
    manifest, tensors = copy.deepcopy(export_parts[0]), {k: v.astype(np.int64) for k, v in export_parts[1].items()}
    x = np.random.default_rng(0).integers(0, 17, (2, 1, 8, 8))
    _, tr0 = GoldenModel(IntegerExport(copy.deepcopy(manifest), tensors)).forward(x, trace=True)
    manifest["layers"]["sps.convs.0"]["out_shift"] -= 2  # bypasses load_export on purpose
    _, tr = GoldenModel(IntegerExport(manifest, tensors)).forward(x, trace=True)
    drive0, drive = tr0["sps.lifs.0.x"], tr["sps.lifs.0.x"]
    assert np.any(drive0) and not np.array_equal(drive, drive0)
