"""BN folding: a trained float SAFormer -> the weights and biases of the QAT model.

For a layer y = W x (+ b) followed by BN in eval mode,

    BN(y) = gamma * (y - mean) / sqrt(var + eps) + beta = W' x + b'
    W' = W * g,   b' = beta + (b - mean) * g,   g = gamma / sqrt(var + eps)   (per output channel)
"""

from __future__ import annotations

import torch
from torch import nn

from saformer.model.attention import LinearBN
from saformer.model.saformer import ConvBN, SAFormer
from saformer.quant.qat import QuantSAFormer, QuantSynapse


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.modules.batchnorm._BatchNorm
            ) -> tuple[torch.Tensor, torch.Tensor]:
    g = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    b = torch.zeros_like(bn.running_mean) if bias is None else bias.detach()
    w = weight.detach() * g.view(-1, *([1] * (weight.dim() - 1)))
    return w, bn.bias.detach() + (b - bn.running_mean) * g


def float_layers(model: SAFormer) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Folded (weight, bias) of every synaptic layer, named as in the QAT model."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, m in model.named_modules():
        if isinstance(m, ConvBN):
            out[name] = fold_bn(m[0].weight, m[0].bias, m[1])
        elif isinstance(m, LinearBN):
            out[name] = fold_bn(m.linear.weight, m.linear.bias, m.bn)
    for i, block in enumerate(model.blocks):
        attn = block.attn
        if getattr(attn, "dwc", None) is not None:
            out[f"blocks.{i}.attn.dwc"] = fold_bn(attn.dwc.weight, attn.dwc.bias, attn.dwc_bn)
    out["head"] = (model.head.weight.detach(), model.head.bias.detach())
    return out


@torch.no_grad()
def load_folded(qat: QuantSAFormer, model: SAFormer) -> None:
    """Copy the folded float weights into the QAT model (which quantizes them on the fly)."""
    folded = float_layers(model)
    targets = {name: m for name, m in qat.named_modules() if isinstance(m, QuantSynapse)}
    if set(folded) != set(targets):
        raise RuntimeError(f"folding mismatch: float {sorted(set(folded) ^ set(targets))}")
    for name, (w, b) in folded.items():
        targets[name].layer.weight.copy_(w)
        targets[name].bias.copy_(b)


@torch.no_grad()
def calibrate_bn(model: SAFormer, x: torch.Tensor) -> None:
    """Set every BN's running statistics from one batch (momentum 1): a from-scratch QAT start
    whose folded layers already normalise their outputs."""
    saved = {}
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved[m] = m.momentum
            m.momentum = 1.0
    model.train()
    model(x)
    for m, momentum in saved.items():
        m.momentum = momentum
    model.eval()
