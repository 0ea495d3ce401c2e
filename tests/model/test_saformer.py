"""The whole network: shapes, static-image encoding, gradients to every parameter, every variant trains."""

import pytest
import torch

from saformer.config import CONFIGS, get_config
from saformer.errors import ConfigError, ShapeError
from saformer.model.saformer import SAFormer

SEED = 7
VARIANTS = {
    "sasa": {},
    "sasa-no-dwc": {"dwc": False},
    "sasa-no-agg": {"n_agg": 16},
    "ssa": {"attention": "ssa"},
    "sdsa": {"attention": "sdsa"},
}


def digits_cfg(**kw):
    return get_config("saformer-2-64").replace(dim=32, **kw)


def batch(cfg, b=8, seed=SEED):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(b, cfg.in_channels, cfg.height, cfg.width, generator=gen) * 2
    y = torch.randint(0, cfg.num_classes, (b,), generator=gen)
    return x, y


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_reach_every_parameter(variant):
    torch.manual_seed(SEED)
    cfg = digits_cfg(**VARIANTS[variant])
    model = SAFormer(cfg)
    # BN biases of +1 make every LIF fire at a useful rate: at this small width SSA's attention
    # neuron is silent at init (Q K^T V * 0.125 stays below 0.5), and a silent neuron passes no
    # gradient to the layer after it, which would hide a broken path as well.
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            torch.nn.init.constant_(m.bias, 1.0)
    x, y = batch(cfg, b=16)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"no gradient reached {missing}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_a_step(variant):
    torch.manual_seed(SEED)
    cfg = digits_cfg(**VARIANTS[variant])
    model = SAFormer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, y = batch(cfg, b=16)
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0], f"loss did not fall on a fixed batch: {losses}"
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_static_image_encoding_equals_repeating_the_frames():
    """Computing conv1 once and repeating it over T equals feeding T identical frames."""
    torch.manual_seed(SEED)
    cfg = digits_cfg()
    model = SAFormer(cfg).double()
    x, _ = batch(cfg)
    x = x.double()
    frames = x.unsqueeze(1).expand(-1, cfg.time_steps, -1, -1, -1)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        torch.testing.assert_close(model(x), model(frames), rtol=1e-10, atol=1e-10)


def test_event_frame_config_runs():
    cfg = get_config("saformer-2-256").replace(dim=16, heads=4, time_steps=2, depth=1)
    model = SAFormer(cfg).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 2, 2, 128, 128))
    assert out.shape == (2, 11)


def test_wrong_input_shape_names_expected_and_actual():
    model = SAFormer(digits_cfg())
    with pytest.raises(ShapeError, match=r"expects images \(B, 1, 8, 8\).*got \(2, 3, 8, 8\)"):
        model(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ShapeError, match=r"event frames \(B, 4, 1, 8, 8\).*got \(2, 3, 1, 8, 8\)"):
        model(torch.zeros(2, 3, 1, 8, 8))


def test_named_configs_and_their_geometry():
    assert {"saformer-4-384", "saformer-2-256", "saformer-2-64"} <= set(CONFIGS)
    c = get_config("saformer-4-384")
    assert (c.depth, c.dim, c.time_steps, c.num_tokens, c.window) == (4, 384, 4, 64, 4)
    d = get_config("saformer-2-256")
    assert (d.depth, d.dim, d.time_steps, d.in_channels, d.num_tokens) == (2, 256, 16, 2, 64)


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unknown config 'saformer-9-9'"):
        get_config("saformer-9-9")
    with pytest.raises(ConfigError, match=r"N'=3 must divide the token count N=16.*\[1, 2, 4, 8, 16\]"):
        get_config("saformer-2-64").replace(n_agg=3)
    with pytest.raises(ConfigError, match="N'=32 must divide"):
        get_config("saformer-2-64").replace(n_agg=32)
    with pytest.raises(ConfigError, match="dim D=60 must be divisible by 8"):
        get_config("saformer-2-64").replace(dim=60)
    with pytest.raises(ConfigError, match="input 30x30 is not divisible by 4"):
        get_config("saformer-4-384").replace(height=30, width=30)
    with pytest.raises(ConfigError, match="attention must be one of"):
        get_config("saformer-2-64").replace(attention="softmax")
    with pytest.raises(ConfigError, match="unknown model config field"):
        get_config("saformer-2-64").replace(colour="red")
