"""Per-layer firing rates, measured with forward hooks on every LIF module.

The energy report (SOPs = firing rate x T x FLOPs) needs the rate of the spikes entering each
synaptic layer; every such input is the output of one LIF module, so rates are keyed by the LIF's
module name (e.g. ``blocks.0.attn.lif_q``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from saformer.model.neuron import LIF


class FiringRateMonitor:
    """Accumulates spike counts and element counts per LIF module while active."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.spikes: dict[str, float] = {}
        self.elements: dict[str, int] = {}

    def _hook(self, name: str):
        def hook(_module: nn.Module, _inputs, output: torch.Tensor) -> None:
            self.spikes[name] = self.spikes.get(name, 0.0) + float(output.detach().sum())
            self.elements[name] = self.elements.get(name, 0) + output.numel()
        return hook

    @contextmanager
    def recording(self) -> Iterator["FiringRateMonitor"]:
        handles = [m.register_forward_hook(self._hook(name))
                   for name, m in self.model.named_modules() if isinstance(m, LIF)]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def rates(self) -> dict[str, float]:
        """Fraction of (neuron, time step) pairs that fired, per LIF module."""
        return {name: self.spikes[name] / self.elements[name] for name in self.spikes}
