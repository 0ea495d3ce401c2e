"""Leaky integrate-and-fire neurons with surrogate gradients (DESIGN.md §1).

The update, split as SpikingJelly splits it (charge / fire / reset), hard reset to 0:

    H[t] = V[t-1] + (X[t] - V[t-1]) / tau      charge
    S[t] = 1 if H[t] >= V_th else 0            fire (ties fire)
    V[t] = H[t] * (1 - S[t])                   reset

Two implementations of the multi-step loop over T, equal in value and gradient (tested):
:func:`lif_multistep_reference` lets autograd trace every step, :class:`LIFMultiStepFunction`
runs the loop once forward and once backward by hand (back-propagation through time with the
surrogate), which saves the autograd graph of T x 5 small ops: the training hot spot.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from saformer.errors import ConfigError


# ---- surrogate gradients: pure functions, an autograd Function, and a registry ----------------
def sigmoid_surrogate_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """d/dx sigmoid(alpha * x): the spike's gradient under the sigmoid surrogate."""
    sg = torch.sigmoid(alpha * x)
    return alpha * sg * (1.0 - sg)


def atan_surrogate_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """d/dx (atan(pi/2 * alpha * x) / pi + 1/2): the spike's gradient under the atan surrogate."""
    return (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * x) ** 2)


def sigmoid_surrogate_primal(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.sigmoid(alpha * x)


def atan_surrogate_primal(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.atan(math.pi / 2.0 * alpha * x) / math.pi + 0.5


SURROGATE_GRADS = {"sigmoid": sigmoid_surrogate_grad, "atan": atan_surrogate_grad}
SURROGATE_PRIMALS = {"sigmoid": sigmoid_surrogate_primal, "atan": atan_surrogate_primal}


def surrogate_grad_fn(name: str):
    try:
        return SURROGATE_GRADS[name]
    except KeyError:
        raise ConfigError(f"unknown surrogate {name!r}; known: {sorted(SURROGATE_GRADS)}") from None


class SpikeFunction(torch.autograd.Function):
    """Heaviside forward (x >= 0 fires), surrogate derivative backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: str, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate, ctx.alpha = surrogate, alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_out * SURROGATE_GRADS[ctx.surrogate](x, ctx.alpha), None, None


# ---- the LIF update as pure functions ---------------------------------------------------------
def lif_step(x: torch.Tensor, v: torch.Tensor, tau: float, v_threshold: float,
             surrogate: str = "sigmoid", alpha: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One time step: returns (spikes, membrane after reset)."""
    h = v + (x - v) / tau
    s = SpikeFunction.apply(h - v_threshold, surrogate, alpha)
    return s, h * (1.0 - s)


def lif_multistep_reference(x_seq: torch.Tensor, tau: float, v_threshold: float,
                            surrogate: str = "sigmoid", alpha: float = 4.0) -> torch.Tensor:
    """Multi-step LIF over dim 0 (T), autograd through every step. The readable reference."""
    v = torch.zeros_like(x_seq[0])
    spikes = []
    for t in range(x_seq.shape[0]):
        s, v = lif_step(x_seq[t], v, tau, v_threshold, surrogate, alpha)
        spikes.append(s)
    return torch.stack(spikes)


class LIFMultiStepFunction(torch.autograd.Function):
    """Multi-step LIF with a hand-written backward pass through time.

    Backward, with sg[t] the surrogate derivative at H[t] - V_th and the reset not detached:
        dL/dH[t] = dL/dS[t] * sg[t] + dL/dV[t] * (1 - S[t] - H[t] * sg[t])
        dL/dV[t-1] = dL/dH[t] * (1 - 1/tau)
        dL/dX[t]   = dL/dH[t] / tau
    """

    @staticmethod
    def forward(ctx, x_seq: torch.Tensor, tau: float, v_threshold: float, surrogate: str,
                alpha: float, frac: int | None = None) -> torch.Tensor:
        v = torch.zeros_like(x_seq[0])
        h_seq = torch.empty_like(x_seq)
        s_seq = torch.empty_like(x_seq)
        decay = 1.0 - 1.0 / tau
        grid = None if frac is None else 2.0 ** frac
        for t in range(x_seq.shape[0]):
            h = v * decay + x_seq[t] / tau
            if grid is not None:  # the integer contract's H = (V + X) >> 1, straight-through
                h = torch.floor(h * grid) / grid
            s = (h >= v_threshold).to(x_seq.dtype)
            v = h * (1.0 - s)
            h_seq[t], s_seq[t] = h, s
        ctx.save_for_backward(h_seq, s_seq)
        ctx.tau, ctx.v_threshold, ctx.surrogate, ctx.alpha = tau, v_threshold, surrogate, alpha
        return s_seq

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor):
        h_seq, s_seq = ctx.saved_tensors
        tau, grad_fn = ctx.tau, SURROGATE_GRADS[ctx.surrogate]
        decay = 1.0 - 1.0 / tau
        grad_x = torch.empty_like(h_seq)
        grad_v = torch.zeros_like(h_seq[0])
        for t in range(h_seq.shape[0] - 1, -1, -1):
            h, s = h_seq[t], s_seq[t]
            sg = grad_fn(h - ctx.v_threshold, ctx.alpha)
            grad_h = grad_s[t] * sg + grad_v * (1.0 - s - h * sg)
            grad_x[t] = grad_h / tau
            grad_v = grad_h * decay
        return grad_x, None, None, None, None, None


def lif_multistep(x_seq: torch.Tensor, tau: float, v_threshold: float,
                  surrogate: str = "sigmoid", alpha: float = 4.0, frac: int | None = None) -> torch.Tensor:
    """Multi-step LIF over dim 0 (T): the fused path used by the model.

    With ``frac``, H is floored to the 2^-frac grid each step (the integer contract's shift;
    the QAT model's neurons), with a straight-through gradient.
    """
    return LIFMultiStepFunction.apply(x_seq, tau, v_threshold, surrogate, alpha, frac)


class LIF(nn.Module):
    """Multi-step LIF layer: input (T, ...) membrane drive, output (T, ...) spikes in {0, 1}.

    Stateless between calls: each call is a whole sequence starting from V = 0, so no reset call is
    needed between samples. Hooks on these modules are how firing rates are measured.
    """

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, surrogate: str = "sigmoid",
                 alpha: float = 4.0, frac: int | None = None) -> None:
        super().__init__()
        surrogate_grad_fn(surrogate)  # validate the name here, not deep in backward
        self.tau, self.v_threshold, self.surrogate, self.alpha = tau, v_threshold, surrogate, alpha
        self.frac = frac  # None: float neuron; an int: H floored to the 2^-frac grid (QAT)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return lif_multistep(x_seq, self.tau, self.v_threshold, self.surrogate, self.alpha, self.frac)

    def extra_repr(self) -> str:
        grid = "" if self.frac is None else f", frac={self.frac}"
        return f"tau={self.tau}, v_threshold={self.v_threshold}, surrogate={self.surrogate}(alpha={self.alpha}){grid}"
