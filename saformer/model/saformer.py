"""SAFormer: spike patch splitting, encoder blocks with membrane shortcuts, head (DESIGN.md §1)."""

from __future__ import annotations

import torch
from torch import nn

from saformer.config import ModelConfig
from saformer.errors import ShapeError
from saformer.model.attention import LinearBN, build_attention, make_lif


def over_time(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a per-frame module to a (T, B, ...) sequence by folding T into the batch."""
    y = module(x.flatten(0, 1))
    return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


def is_static_input(cfg: ModelConfig, shape: tuple[int, ...], what: str = "") -> bool:
    """Validate an input shape: True for static images (B, C, H, W), False for event frames
    (B, T, C, H, W); anything else is a ShapeError naming both forms and the actual shape."""
    frame = (cfg.in_channels, cfg.height, cfg.width)
    shape = tuple(shape)
    if len(shape) == 4 and shape[1:] == frame:
        return True
    if len(shape) == 5 and shape[2:] == frame and shape[1] == cfg.time_steps:
        return False
    dims = ", ".join(map(str, frame))
    raise ShapeError(f"{cfg.label}{what} expects images (B, {dims}) or event frames "
                     f"(B, {cfg.time_steps}, {dims}); got {shape}")


class ConvBN(nn.Sequential):
    """Conv3x3 (no bias) + BatchNorm2d; BN folds into the conv at export."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))


class SPS(nn.Module):
    """Spike patch splitting: images (or event frames) -> membrane tokens U0 (T, B, N, D).

    conv_i -> BN -> [MaxPool(3, 2, 1) if i in pool_layers] -> LIF, for i = 1..4; conv5 is the
    relative-position branch on conv4's spikes, added to conv4's (pooled) membrane.

    ``conv(name, c_in, c_out)`` and ``lif()`` build the layers (float Conv-BN and LIF by default;
    the QAT model passes its quantized ones and overrides :meth:`merge`).
    """

    def __init__(self, cfg: ModelConfig, conv=None, lif=None) -> None:
        super().__init__()
        conv = conv or (lambda _name, c_in, c_out: ConvBN(c_in, c_out))
        lif = lif or (lambda: make_lif(cfg))
        widths = (cfg.in_channels, *cfg.sps_channels)
        self.convs = nn.ModuleList(conv(f"sps.convs.{i}", widths[i], widths[i + 1]) for i in range(4))
        self.lifs = nn.ModuleList(lif() for _ in range(4))
        self.pooled = tuple(i + 1 in cfg.pool_layers for i in range(4))
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.rpe = conv("sps.rpe", cfg.dim, cfg.dim)
        self.time_steps = cfg.time_steps

    def merge(self, membrane: torch.Tensor, rpe: torch.Tensor) -> torch.Tensor:
        """U0 = conv4's membrane + the relative-position branch."""
        return membrane + rpe

    def forward(self, x: torch.Tensor, static: bool) -> torch.Tensor:
        """x: (B, C, H, W) real image if ``static`` (direct encoding), else (T, B, C, H, W) frames."""
        if static:
            # The first conv sees the same image at every step: compute it once, repeat over T.
            # (BN's batch statistics are the same for T identical copies, so this is exact.)
            y = self.convs[0](x)
            if self.pooled[0]:
                y = self.pool(y)
            y = y.unsqueeze(0).expand(self.time_steps, *y.shape)
        else:
            y = over_time(self.convs[0], x)
            if self.pooled[0]:
                y = over_time(self.pool, y)
        for i in range(1, 4):
            y = over_time(self.convs[i], self.lifs[i - 1](y))
            if self.pooled[i]:
                y = over_time(self.pool, y)
        u = self.merge(y, over_time(self.rpe, self.lifs[3](y)))  # membrane-level relative position
        return u.flatten(3).transpose(2, 3)  # (T, B, D, h, w) -> (T, B, N, D), row-major tokens


class MLP(nn.Module):
    """BN(Linear_{hD->D}(LIF(BN(Linear_{D->hD}(S)))))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hidden = cfg.dim * cfg.mlp_ratio
        self.fc1, self.lif, self.fc2 = LinearBN(cfg.dim, hidden), make_lif(cfg), LinearBN(hidden, cfg.dim)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.lif(self.fc1(s)))


class EncoderBlock(nn.Module):
    """U' = U + Attn(LIF(U)); U'' = U' + MLP(LIF(U')). U stays real-valued (membrane shortcut)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.lif_attn_in, self.attn = make_lif(cfg), build_attention(cfg)
        self.lif_mlp_in, self.mlp = make_lif(cfg), MLP(cfg)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        u = u + self.attn(self.lif_attn_in(u))
        return u + self.mlp(self.lif_mlp_in(u))


class SAFormer(nn.Module):
    """The whole network: SPS -> L encoder blocks -> LIF -> mean over tokens and time -> Linear.

    Input: static images (B, C, H, W), repeated T times, or event frames (B, T, C, H, W).
    Output: class logits (B, num_classes).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.sps = SPS(cfg)
        self.blocks = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.depth))
        self.head_lif = make_lif(cfg)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        static = is_static_input(self.cfg, x.shape)
        u = self.sps(x if static else x.transpose(0, 1), static=static)
        for block in self.blocks:
            u = block(u)
        features = self.head_lif(u).mean(dim=(0, 2))  # rate over time steps and tokens: (B, D)
        return self.head(features)
