"""Integer exports built without training, with weights chosen to reach what trained models never
reach: saturation of every membrane-format value (synaptic outputs, pools, residual adds, LIF
drives), and the event-frame input path. The equivalence checks of every level run on them.

A weight tensor is set to integers times 2^-weight_frac with one entry at the largest magnitude,
so Brevitas' power-of-two scale is exactly 2^-weight_frac; a small ``weight_frac`` makes one spike
worth thousands of membrane units, so sums saturate in both directions while others stay inside.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from saformer.config import INPUT_FRAC, ModelConfig, QuantConfig, get_config
from saformer.quant.export import build_export, load_export, write_export
from saformer.quant.fixed_point import int_range, quantize_input
from saformer.quant.qat import QuantSAFormer, synapse_layers
from saformer.quant.validate import IMAGE_LAYER

class Crafted(NamedTuple):
    cfg: ModelConfig
    qcfg: QuantConfig
    dataset: str
    weight_frac: int  # below the membrane's fractional bits: exact left shifts; above: floors


# Static images at the default formats, every shift an exact left shift; event frames at Q12.4 with
# 24-bit accumulators and 12-bit weights, every synaptic shift a floor (a right shift by 2).
STATIC = Crafted(get_config("saformer-2-64").replace(name="crafted-static", depth=1, dim=32), QuantConfig(),
                 "digits", 2)
FRAMES = Crafted(get_config("saformer-2-64").replace(name="crafted-frames", depth=1, dim=32, in_channels=2,
                                                     num_classes=11),
                 QuantConfig(weight_bits=12, input_frac=INPUT_FRAC["dvsgesture"], membrane_bits=12, membrane_frac=4,
                             accumulator_bits=24), "dvsgesture", 6)


@torch.no_grad()
def crafted_model(cfg: ModelConfig, qcfg: QuantConfig, weight_frac: int, seed: int) -> QuantSAFormer:
    rng = np.random.default_rng(seed)
    model = QuantSAFormer(cfg, qcfg).double().eval()
    for name, syn in synapse_layers(model).items():
        wf = weight_frac - 2 if name == IMAGE_LAYER else weight_frac  # the image is small: conv1 saturates too
        top = (1 << (syn.weight_bits - 1)) - 1
        w = rng.integers(-top, top + 1, tuple(syn.layer.weight.shape))
        w.flat[0] = top  # pins the scale: max |w| = top * 2^-weight_frac
        syn.layer.weight.copy_(torch.from_numpy(w * 2.0 ** -wf))
        assert syn.weight_frac() == wf, name
        acc_frac = syn.acc_frac
        bias = rng.integers(-(1 << 12), 1 << 12, syn.bias.shape[0]) * 2.0 ** (max(acc_frac - qcfg.membrane_frac, 0) - acc_frac)
        syn.bias.copy_(torch.from_numpy(bias))
    return model


def crafted_export(spec: Crafted, out: Path, seed: int = 0):
    """Writes the export of a crafted model to ``out``; returns (QAT model, IntegerExport)."""
    model = crafted_model(spec.cfg, spec.qcfg, spec.weight_frac, seed)
    manifest, tensors = build_export(model, spec.dataset, {"source_run": "tests/crafted.py"})
    write_export(out, manifest, tensors)
    return model, load_export(out)


def crafted_inputs(spec: Crafted, images: int, seed: int = 1) -> tuple[torch.Tensor, np.ndarray]:
    """Real-valued inputs and their quantized integers: digits-like images, or event-count frames
    (B, T, 2, H, W) whose counts reach past the input range (the input saturates too)."""
    cfg, qcfg = spec.cfg, spec.qcfg
    rng = np.random.default_rng(seed)
    if cfg.in_channels == 2:
        counts = rng.poisson(3.0, (images, cfg.time_steps, 2, cfg.height, cfg.width)) * (rng.random((images, cfg.time_steps, 2, cfg.height, cfg.width)) < 0.4)
        counts.flat[:: 97] = 400  # beyond the 8-bit range: saturated at the input
        x = counts.astype(np.float64)
    else:
        x = rng.integers(0, 17, (images, 1, cfg.height, cfg.width)) / 16.0
    x_int = quantize_input(x, qcfg.input_bits, qcfg.input_frac)
    return torch.from_numpy(x), x_int


def membrane_keys(traces: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """Trace keys in membrane format by the kind of value they hold."""
    kinds: dict[str, list[str]] = {"synaptic output": [], "pool": [], "residual add": [], "SASA drive": []}
    for key in traces:
        if key in ("sps.lifs.2.x", "sps.lifs.3.x"):
            kinds["pool"].append(key)  # the digits geometry pools after convs 3 and 4
        elif key.endswith(("u0", "u_attn", "u_out")):
            kinds["residual add"].append(key)
        elif key.endswith("lif_o.x"):
            kinds["SASA drive"].append(key)
        elif key.endswith(".x") and not key.endswith(("lif_a.x", "lif_attn_in.x", "lif_mlp_in.x", "head_lif.x")):
            kinds["synaptic output"].append(key)
    return kinds


def saturation_reach(traces: dict[str, np.ndarray], mem_bits: int) -> dict[str, dict[str, float]]:
    """Per membrane-format trace: the share of values at the top, at the bottom, and inside."""
    lo, hi = int_range(mem_bits)
    reach = {}
    for keys in membrane_keys(traces).values():
        for key in keys:
            v = traces[key]
            reach[key] = {"top": float((v == hi).mean()), "bottom": float((v == lo).mean()),
                          "inside": float(((v > lo) & (v < hi)).mean())}
    return reach
