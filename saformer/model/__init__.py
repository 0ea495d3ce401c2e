"""The float SAFormer: LIF neurons, SPS, SASA + DWC, MLP, head; SSA/SDSA baselines; training."""

from saformer.model.attention import SASA, SDSA, SSA
from saformer.model.neuron import LIF
from saformer.model.saformer import SAFormer

__all__ = ["LIF", "SASA", "SDSA", "SSA", "SAFormer"]
