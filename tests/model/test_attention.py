"""SASA against an independent computation of DESIGN.md §1, its additive identity, and its linear cost."""

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from saformer.config import get_config
from saformer.model.attention import SASA, SDSA, SSA, aggregate_tokens

SEED = 1234


def small_config(**kw):
    base = dict(dim=16, n_agg=4, heads=4)  # digits grid: 4x4 = 16 tokens, windows of 4
    base.update(kw)
    return get_config("saformer-2-64").replace(**base)


def randomize_bn(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Give every BN non-trivial statistics so that the eval-mode formula is really exercised."""
    for m in module.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.3 + 0.4)


def np_lif(x: np.ndarray, tau: float, v_th: float) -> np.ndarray:
    """LIF over axis 0, element by element, straight from the three equations."""
    v = np.zeros(x.shape[1:])
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        h = v + (x[t] - v) / tau
        out[t] = h >= v_th
        v = np.where(out[t] > 0, 0.0, h)
    return out


def np_linear_bn(x: np.ndarray, lbn) -> np.ndarray:
    w = lbn.linear.weight.detach().double().numpy()
    bn = lbn.bn
    y = x @ w.T
    g, b = bn.weight.detach().double().numpy(), bn.bias.detach().double().numpy()
    mu, var = bn.running_mean.double().numpy(), bn.running_var.double().numpy()
    return (y - mu) / np.sqrt(var + bn.eps) * g + b


def direct_sasa(s: np.ndarray, m: SASA, cfg, seen: dict | None = None) -> np.ndarray:
    """SASA of DESIGN.md §1 with explicit loops: windows, products, 3x3 taps with zero padding.
    ``seen`` receives the mask and O spikes (a comparison must see them fire)."""
    T, B, N, D = s.shape
    q = np_lif(np_linear_bn(s, m.q), cfg.tau, cfg.v_threshold)
    k = np_lif(np_linear_bn(s, m.k), cfg.tau, cfg.v_threshold)
    w = N // cfg.n_agg
    a = np.zeros((T, B, 1, D))
    for t in range(T):
        for b in range(B):
            for d in range(D):
                for j in range(cfg.n_agg):
                    qa = q[t, b, j * w:(j + 1) * w, d].mean()
                    ka = k[t, b, j * w:(j + 1) * w, d].mean()
                    a[t, b, 0, d] += qa * ka
    mask = np_lif(a, cfg.tau, cfg.v_threshold_attn)
    y = mask * k
    if cfg.dwc:
        kern = m.dwc.weight.detach().double().numpy()[:, 0]  # (D, 3, 3)
        bn = m.dwc_bn
        hh, ww = cfg.grid_h, cfg.grid_w
        f = np.zeros_like(k)
        for n in range(N):
            r, c = divmod(n, ww)
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < hh and 0 <= cc < ww:
                        f[:, :, n, :] += k[:, :, rr * ww + cc, :] * kern[:, dr + 1, dc + 1]
        g, bb = bn.weight.detach().double().numpy(), bn.bias.detach().double().numpy()
        mu, var = bn.running_mean.double().numpy(), bn.running_var.double().numpy()
        y = y + (f - mu) / np.sqrt(var + bn.eps) * g + bb
    o = np_lif(y, cfg.tau, cfg.v_threshold_attn)
    if seen is not None:
        seen.update(mask=mask, o=o)
    return np_linear_bn(o, m.proj)


@pytest.mark.parametrize("dwc", [True, False])
@pytest.mark.parametrize("n_agg", [1, 4, 16])
def test_sasa_matches_direct_computation(dwc, n_agg):
    cfg = small_config(dwc=dwc, n_agg=n_agg)
    gen = torch.Generator().manual_seed(SEED)
    m = SASA(cfg).double().eval()
    for p in m.parameters():
        p.data.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.6)
    randomize_bn(m, gen)
    ramp = torch.linspace(-1.0, 3.0, cfg.dim, dtype=torch.float64)  # Q, K rates from ~0 to ~1 across channels
    m.q.bn.bias.data.copy_(ramp)
    m.k.bn.bias.data.copy_(ramp)
    s = (torch.rand(cfg.time_steps, 3, cfg.num_tokens, cfg.dim, generator=gen) < 0.3).double()
    with torch.no_grad():
        got = m(s).numpy()
    seen = {}
    want = direct_sasa(s.numpy(), m, cfg, seen)
    for name, spikes in seen.items():  # the comparison sees the mask and O fire, on some channels only
        assert 0.03 < spikes.mean() < 0.7, (name, spikes.mean())
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_aggregation_equals_adaptive_avg_pool():
    gen = torch.Generator().manual_seed(SEED)
    x = torch.rand(2, 3, 64, 8, generator=gen, dtype=torch.float64)
    for n_agg in (1, 2, 16, 64):
        ref = torch.nn.functional.adaptive_avg_pool1d(x.flatten(0, 1).transpose(1, 2), n_agg)
        ref = ref.transpose(1, 2).reshape(2, 3, n_agg, 8)
        torch.testing.assert_close(aggregate_tokens(x, n_agg), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_agg", [1, 2, 4, 8, 16])
def test_additive_identity(n_agg):
    """w^2 * a[d] = sum over windows, over the Q spikes of the window, of the window's K count."""
    cfg = small_config(n_agg=n_agg)
    m = SASA(cfg).double()
    gen = torch.Generator().manual_seed(SEED + n_agg)
    q = (torch.rand(4, 2, 16, cfg.dim, generator=gen) < 0.4).double()
    k = (torch.rand(4, 2, 16, cfg.dim, generator=gen) < 0.4).double()
    w = 16 // n_agg
    scaled = (w * w * m.attention_score(q, k)).squeeze(2).numpy()
    assert np.all(scaled == np.round(scaled)), "w^2 * a must be an integer"
    qn, kn = q.numpy().astype(np.int64), k.numpy().astype(np.int64)
    additions = np.zeros((4, 2, cfg.dim), dtype=np.int64)
    for j in range(n_agg):
        kcount = kn[:, :, j * w:(j + 1) * w, :].sum(axis=2)
        for n in range(j * w, (j + 1) * w):  # each Q spike adds its window's K count
            additions += np.where(qn[:, :, n, :] == 1, kcount, 0)
    np.testing.assert_array_equal(scaled.astype(np.int64), additions)


class OpCounter(TorchDispatchMode):
    """Counts work per aten op: FLOPs for matmul/conv (torch's formulas), output size otherwise."""

    def __init__(self):
        super().__init__()
        self.flop_registry = FlopCounterMode().flop_registry
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        if packet in self.flop_registry:
            self.total += self.flop_registry[packet](*args, **kwargs, out_val=out)
        else:
            for t in torch.utils._pytree.tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self.total += t.numel()
        return out


def count_ops(cls, grid: int) -> int:
    cfg = small_config(height=grid * 2, width=grid * 2, n_agg=grid * grid // 4)
    torch.manual_seed(SEED)
    m = cls(cfg).eval()
    s = (torch.rand(cfg.time_steps, 1, cfg.num_tokens, cfg.dim) < 0.3).float()
    with torch.no_grad(), OpCounter() as counter:
        m(s)
    return counter.total


def second_difference(cls) -> int:
    """Deviation from an affine cost over N = 16, 64, 256 tokens (grids 4x4, 8x8, 16x16)."""
    c1, c2, c3 = count_ops(cls, 4), count_ops(cls, 8), count_ops(cls, 16)
    # N quadruples each step: an affine cost a*N + b gives c3 - c2 == 4 * (c2 - c1) exactly.
    return (c3 - c2) - 4 * (c2 - c1)


def test_sasa_cost_is_linear_in_tokens_and_ssa_is_not():
    assert second_difference(SASA) == 0
    assert second_difference(SDSA) == 0
    assert second_difference(SSA) > 0  # Q K^T is quadratic: the check can fail
