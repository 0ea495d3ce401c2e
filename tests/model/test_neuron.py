"""LIF against hand-worked sequences and its closed form; the fused BPTT against autograd."""

import math

import pytest
import torch

from saformer.errors import ConfigError
from saformer.model.neuron import (LIF, SURROGATE_GRADS, SURROGATE_PRIMALS, lif_multistep,
                                   lif_multistep_reference)


def spikes(xs, tau=2.0, v_th=1.0, fn=lif_multistep):
    return fn(torch.tensor(xs, dtype=torch.float64)[:, None], tau, v_th)[:, 0].tolist()


@pytest.mark.parametrize("fn", [lif_multistep, lif_multistep_reference])
def test_hand_worked_sequences(fn):
    # tau = 2: H = (V + X) / 2.
    # X=1 each step: H = .5, .75, .875, .9375 -> never reaches 1.
    assert spikes([1, 1, 1, 1], fn=fn) == [0, 0, 0, 0]
    # X=2: H = 1 (tie fires), reset; H = 0; H = 1 fires; H = 1 fires.
    assert spikes([2, 0, 2, 2], fn=fn) == [1, 0, 1, 1]
    # X=1.5: H = .75, 1.125 fires, .75, 1.125 fires.
    assert spikes([1.5, 1.5, 1.5, 1.5], fn=fn) == [0, 1, 0, 1]
    # Negative drive pulls V below 0 and delays the next spike: H = -1, .5, 1.25 (fires).
    assert spikes([-2, 2, 2, 0], fn=fn) == [0, 0, 1, 0]
    # The attention neuron: V_th = 0.5, X = 1 fires at once every step.
    assert spikes([1, 1, 1], v_th=0.5, fn=fn) == [1, 1, 1]
    # tau = 4: H = V + (X - V)/4: X=4 -> H=1 fires at once.
    assert spikes([4, 2, 2], tau=4.0, fn=fn) == [1, 0, 0]


@pytest.mark.parametrize("tau", [2.0, 3.0, 4.0])
@pytest.mark.parametrize("x", [1.05, 1.3, 1.7, 2.5, 6.0])
def test_constant_drive_matches_closed_form(tau, x):
    """Under constant drive X, H[t] = X (1 - (1 - 1/tau)^t) until the first spike at
    t* = ceil(log(1 - V_th/X) / log(1 - 1/tau)); the hard reset makes the train periodic in t*."""
    period = math.ceil(math.log(1 - 1.0 / x) / math.log(1 - 1 / tau) - 1e-12)
    steps = 4 * period + 3
    expected = [1.0 if (t + 1) % period == 0 else 0.0 for t in range(steps)]
    assert spikes([x] * steps, tau=tau) == expected


@pytest.mark.parametrize("surrogate", ["sigmoid", "atan"])
def test_fused_equals_reference_in_value_and_gradient(surrogate):
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(6, 5, 7, generator=gen, dtype=torch.float64) * 1.5 + 0.8)
    upstream = torch.randn(6, 5, 7, generator=gen, dtype=torch.float64)
    grads = []
    outs = []
    for fn in (lif_multistep, lif_multistep_reference):
        xi = x.clone().requires_grad_(True)
        out = fn(xi, 2.0, 1.0, surrogate, 4.0)
        (out * upstream).sum().backward()
        outs.append(out.detach())
        grads.append(xi.grad)
    assert outs[0].sum() > 0, "the sequence should spike somewhere"
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["sigmoid", "atan"])
def test_surrogate_gradient_is_derivative_of_its_primal(name):
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)
    eps = 1e-6
    fd = (SURROGATE_PRIMALS[name](x + eps, 3.0) - SURROGATE_PRIMALS[name](x - eps, 3.0)) / (2 * eps)
    torch.testing.assert_close(SURROGATE_GRADS[name](x, 3.0), fd, rtol=1e-6, atol=1e-8)


def test_unknown_surrogate_is_rejected_with_its_name():
    with pytest.raises(ConfigError, match="unknown surrogate 'relu'"):
        LIF(surrogate="relu")
