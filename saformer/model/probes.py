"""Attention probes: does the attention carry information on this data? (issue 13)

A probe runs the model with its attention disabled one way, so that the accuracy it keeps says
what the attention adds:

    "model"        the model as trained
    "zero_output"  every attention core's output spikes are 0 (its projection adds only its bias)
    "mask_ones"    the channel mask is forced open (LIF_a fires always: every K spike passes)

The same three are defined on the integer golden model (saformer.quant.golden); on a QAT model the
hooks here reproduce the golden model's probed logits bit for bit (tested), so the float, QAT and
integer diagnostics mean the same thing. Each attention class names its two neurons:
``output_neuron`` (whose spikes feed the output projection) and ``mask_neuron`` (None where the
variant has no mask: SSA). Forward hooks replace those neurons' outputs: the model code is untouched.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

ATTENTION_PROBES = ("model", "zero_output", "mask_ones")


def attention_cores(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every attention core: the modules that name an output neuron."""
    return [(name, m) for name, m in model.named_modules() if hasattr(m, "output_neuron")]


def has_mask(model: nn.Module) -> bool:
    cores = attention_cores(model)
    return bool(cores) and all(m.mask_neuron is not None for _, m in cores)


@contextmanager
def attention_probe(model: nn.Module, probe: str) -> Iterator[None]:
    """Run ``model`` under ``probe`` (one of ATTENTION_PROBES) inside the ``with`` block."""
    if probe not in ATTENTION_PROBES:
        raise ValueError(f"attention probe {probe!r}: choose one of {ATTENTION_PROBES}")
    cores = attention_cores(model)
    if probe != "model" and not cores:
        raise ValueError(f"attention probe {probe!r}: the model has no attention core")
    if probe == "mask_ones" and not has_mask(model):
        raise ValueError("attention probe 'mask_ones': this attention variant has no channel mask")
    handles = []
    if probe != "model":
        fill = torch.zeros_like if probe == "zero_output" else torch.ones_like
        for _, core in cores:
            neuron = getattr(core, core.output_neuron if probe == "zero_output" else core.mask_neuron)
            handles.append(neuron.register_forward_hook(lambda _m, _inputs, out: fill(out)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
