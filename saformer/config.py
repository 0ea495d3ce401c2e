"""Model and training configurations: the one place for every architectural number.

A model config is named ``saformer-L-D`` (L encoder blocks, D channels) and fixes T, N' and the
input geometry too. Later stages (quantization, golden model, hls4ml, RTL parameters) read the
same frozen :class:`ModelConfig`, so no number is typed twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from saformer.errors import ConfigError

ATTENTIONS = ("sasa", "ssa", "sdsa")
GOLDEN_BACKENDS = ("numpy", "torch")  # the integer golden model: numpy (the definition) or torch (any device)
SURROGATES = ("sigmoid", "atan")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one SAFormer (or a baseline with the attention swapped).

    Tensor layout inside the model: spikes and membranes are (T, B, N, D) with N = grid_h * grid_w
    tokens in row-major order over the token grid.
    """

    name: str
    depth: int  # L: encoder blocks
    dim: int  # D: embedding channels (SPS widths are D/8, D/4, D/2, D, D)
    time_steps: int  # T
    in_channels: int  # 3 for RGB, 1 for digits, 2 for DVS polarities
    height: int  # input image height
    width: int  # input image width
    num_classes: int
    n_agg: int  # N': token count after SASA's aggregation (N' = N means no aggregation)
    attention: str = "sasa"  # one of ATTENTIONS
    dwc: bool = True  # SASA's depthwise-conv branch
    heads: int = 8  # heads of the SSA / SDSA baselines (SASA works per channel)
    mlp_ratio: int = 4
    tau: float = 2.0  # LIF time constant; 2 makes the update a shift in hardware
    v_threshold: float = 1.0
    v_threshold_attn: float = 0.5  # LIF_a (SASA/SDSA mask) and SSA's attention neuron
    surrogate: str = "sigmoid"
    surrogate_alpha: float = 4.0
    pool_layers: tuple[int, ...] = (3, 4)  # SPS convs (1..4) followed by MaxPool(3, 2, 1)

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists; normalise before validating.
        object.__setattr__(self, "pool_layers", tuple(int(p) for p in self.pool_layers))
        self.validate()

    # ---- derived geometry -------------------------------------------------------------------
    @property
    def grid_h(self) -> int:
        return self.height // 2 ** len(self.pool_layers)

    @property
    def grid_w(self) -> int:
        return self.width // 2 ** len(self.pool_layers)

    @property
    def label(self) -> str:
        """The name, with every field that differs from the named config's: a run of saformer-4-384
        overridden to two blocks of 64 channels must not print as saformer-4-384 (the class count,
        which the data set sets, is left out)."""
        base = CONFIGS.get(self.name)
        if base is None:
            return self.name
        changed = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                   if f.name not in ("name", "num_classes") and getattr(self, f.name) != getattr(base, f.name)]
        return f"{self.name} ({', '.join(changed)})" if changed else self.name

    @property
    def num_tokens(self) -> int:
        """N: tokens after SPS."""
        return self.grid_h * self.grid_w

    @property
    def window(self) -> int:
        """w = N / N': tokens per aggregation window."""
        return self.num_tokens // self.n_agg

    @property
    def sps_channels(self) -> tuple[int, ...]:
        d = self.dim
        return (d // 8, d // 4, d // 2, d, d)

    def validate(self) -> None:
        """Reject configs the model cannot build, naming the field and the rule."""
        where = f"config '{self.name}'"
        for key in ("depth", "dim", "time_steps", "in_channels", "height", "width",
                    "num_classes", "n_agg", "heads", "mlp_ratio"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
        if self.attention not in ATTENTIONS:
            raise ConfigError(f"{where}: attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.surrogate not in SURROGATES:
            raise ConfigError(f"{where}: surrogate must be one of {SURROGATES}, got {self.surrogate!r}")
        if self.dim % 8:
            raise ConfigError(f"{where}: dim D={self.dim} must be divisible by 8 (SPS widths D/8, D/4, D/2)")
        if self.attention != "sasa" and self.dim % self.heads:  # SASA works per channel: no heads
            raise ConfigError(f"{where}: dim D={self.dim} is not divisible by heads={self.heads} "
                              f"(the {self.attention.upper()} baseline splits D into heads)")
        if self.tau <= 1.0:
            raise ConfigError(f"{where}: tau must be > 1, got {self.tau}")
        if self.v_threshold <= 0 or self.v_threshold_attn <= 0:
            raise ConfigError(f"{where}: thresholds must be positive")
        if len(set(self.pool_layers)) != len(self.pool_layers) or not all(1 <= p <= 4 for p in self.pool_layers):
            raise ConfigError(f"{where}: pool_layers must be distinct SPS conv indices in 1..4, got {self.pool_layers}")
        scale = 2 ** len(self.pool_layers)
        if self.height % scale or self.width % scale:
            raise ConfigError(
                f"{where}: input {self.height}x{self.width} is not divisible by {scale} "
                f"({len(self.pool_layers)} max-pool stages in SPS)")
        n = self.num_tokens
        if self.n_agg > n or n % self.n_agg:
            raise ConfigError(
                f"{where}: N'={self.n_agg} must divide the token count N={n} "
                f"({self.grid_h}x{self.grid_w} grid); choose N' among {divisors(n)}")

    # ---- conversions ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pool_layers"] = list(self.pool_layers)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return _from_dict(cls, data, "model")

    def replace(self, **overrides: Any) -> "ModelConfig":
        """A copy with fields overridden (``None`` values are ignored), validated again."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown model config field(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **overrides)


def _from_dict(cls, data: dict[str, Any], what: str):
    """Build a config dataclass from JSON, refusing fields it does not know (a newer file, a typo)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} config field(s) {unknown}; known: {sorted(known)}")
    return cls(**data)


def divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


# ---- named configs ----------------------------------------------------------------------------
CONFIGS: dict[str, ModelConfig] = {
    # CIFAR-10/100: 32x32 RGB, two pools -> 8x8 = 64 tokens, windows of 4 tokens.
    "saformer-4-384": ModelConfig(
        name="saformer-4-384", depth=4, dim=384, time_steps=4, in_channels=3, height=32, width=32,
        num_classes=10, n_agg=16, heads=12),
    # DVS128 Gesture / CIFAR10-DVS: 128x128 event frames, four pools -> 8x8 = 64 tokens.
    "saformer-2-256": ModelConfig(
        name="saformer-2-256", depth=2, dim=256, time_steps=16, in_channels=2, height=128, width=128,
        num_classes=11, n_agg=16, heads=16, pool_layers=(1, 2, 3, 4)),
    # scikit-learn digits: 8x8 grey, one pool -> 4x4 = 16 tokens, windows of 4 tokens.
    "saformer-2-64": ModelConfig(
        name="saformer-2-64", depth=2, dim=64, time_steps=4, in_channels=1, height=8, width=8,
        num_classes=10, n_agg=4, heads=4, pool_layers=(4,)),
}


def get_config(name: str) -> ModelConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(f"unknown config {name!r}; known configs: {sorted(CONFIGS)}") from None


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run (AdamW + cosine schedule + label smoothing)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    seed: int = 0
    augment: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.lr <= 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        if not self.weight_decay >= 0 or not self.warmup_epochs >= 0:
            raise ConfigError(f"weight decay and warm-up epochs must be >= 0, got {self.weight_decay}, "
                              f"{self.warmup_epochs}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **overrides: Any) -> "TrainConfig":
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class DatasetDefaults:
    """What a data set implies when the user names nothing else."""

    config: str
    num_classes: int
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, batch_size=64, lr=1e-3))
    qat: TrainConfig | None = None  # QAT fine-tuning from a float run; default: derived from train

    def __post_init__(self) -> None:
        if self.qat is None:  # half the epochs at a third of the learning rate, short warm-up
            t = self.train
            object.__setattr__(self, "qat", t.replace(epochs=max(1, t.epochs // 2), lr=t.lr / 3, warmup_epochs=0.5))


DATASET_DEFAULTS: dict[str, DatasetDefaults] = {
    "digits": DatasetDefaults("saformer-2-64", 10, TrainConfig(epochs=20, batch_size=32, lr=3e-3, warmup_epochs=1.0)),
    "cifar10": DatasetDefaults("saformer-4-384", 10, TrainConfig(epochs=300, batch_size=64, lr=5e-4, weight_decay=0.06)),
    "cifar100": DatasetDefaults("saformer-4-384", 100, TrainConfig(epochs=300, batch_size=64, lr=5e-4, weight_decay=0.06)),
    "dvsgesture": DatasetDefaults("saformer-2-256", 11, TrainConfig(epochs=200, batch_size=16, lr=1e-3)),
    "cifar10dvs": DatasetDefaults("saformer-2-256", 10, TrainConfig(epochs=200, batch_size=16, lr=1e-3)),
}


@dataclass(frozen=True)
class QuantConfig:
    """Bit widths and fixed-point formats of the integer contract (docs/integer_contract.md).

    Weights are signed ``weight_bits`` integers with a power-of-two scale per tensor (Brevitas
    fixed point), per-layer overrides by layer name; membranes and the residual stream are signed
    ``membrane_bits`` fixed point with ``membrane_frac`` fractional bits, saturating; the image
    entering the first conv is signed ``input_bits`` fixed point with ``input_frac`` fractional bits.
    """

    weight_bits: int = 8
    layer_weight_bits: tuple[tuple[str, int], ...] = ()  # (layer name, bits) overrides
    input_bits: int = 8
    input_frac: int = 4
    membrane_bits: int = 16
    membrane_frac: int = 8
    accumulator_bits: int = 32  # biases and accumulators; export checks no sum can overflow it

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_weight_bits", tuple((str(n), int(b)) for n, b in self.layer_weight_bits))
        for name, bits in (("weight_bits", self.weight_bits), *self.layer_weight_bits):
            if not 2 <= bits <= 16:
                raise ConfigError(f"weight bit width of {name!r} must be in 2..16, got {bits}")
        if not 2 <= self.input_bits <= 16:
            raise ConfigError(f"input_bits must be in 2..16, got {self.input_bits}")
        if not 0 <= self.input_frac < 16:
            raise ConfigError(f"input_frac must be in 0..15, got {self.input_frac}")
        if not 8 <= self.membrane_bits <= 32 or not 1 <= self.membrane_frac < self.membrane_bits - 1:
            raise ConfigError(f"membrane format Q{self.membrane_bits}.{self.membrane_frac} is out of range "
                              "(8..32 bits, 1..bits-2 fractional)")
        if not 16 <= self.accumulator_bits <= 48:
            raise ConfigError(f"accumulator_bits must be in 16..48, got {self.accumulator_bits}")

    def bits_for(self, layer: str) -> int:
        return dict(self.layer_weight_bits).get(layer, self.weight_bits)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layer_weight_bits"] = [list(p) for p in self.layer_weight_bits]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "QuantConfig":
        return _from_dict(cls, data, "quant")


# Fractional bits of the quantized input image per data set: digits (k/16) are exact at 4;
# normalised CIFAR (about -2.5..2.7) keeps 5 inside 8 bits; DVS event counts are integers.
INPUT_FRAC = {"digits": 4, "cifar10": 5, "cifar100": 5, "dvsgesture": 0, "cifar10dvs": 0}


# ---- hardware ---------------------------------------------------------------------------------
XILINX_FAMILIES = {"xc7": "7-series (e.g. xc7a100t)", "xcup": "UltraScale+ (e.g. xczu7ev)"}  # synth_xilinx -family
# how Yosys maps the designs' memories (membranes, weights, spike buffers): its ram_style attribute
MEMORY_STYLES = {"auto": "Yosys's choice by size", "block": "block RAM (BRAM / DP16KD)",
                 "distributed": "LUT RAM", "registers": "flip-flops"}
ECP5_DEVICES = {"LFE5U-25F": "--25k", "LFE5U-45F": "--45k", "LFE5U-85F": "--85k"}  # nextpnr-ecp5 flags
# block RAMs (DP16KD, 18 kbit each) per device (Lattice ECP5 family data sheet, FPGA-DS-02012)
ECP5_DP16KD = {"LFE5U-25F": 56, "LFE5U-45F": 108, "LFE5U-85F": 208}
DP16KD_BITS = 18 * 1024


# cycles from a weight burst's request to its first word that the memory model (weight_stream_mem.sv)
# takes: its request is queued first
WEIGHT_LATENCY_RANGE = (2, 4096)


@dataclass(frozen=True)
class HardwareConfig:
    """What is hardware, not model: the same export runs at any of these settings.

    Every hardware stage (hls's mixed check, rtl, synth, the flow) reads one of these, and each
    run directory records the one it used (``hardware.json`` in a flow run, a ``hardware`` entry
    in rtl.json / synth.json / hls.json).
    """

    lanes: int = 8  # SASA core: channels per beat (P); must divide D
    family: str = "xc7"  # Yosys synth_xilinx family for resource counts
    xilinx_part: str | None = None  # hls4ml's part (None: hls4ml's default)
    ecp5_device: str = "LFE5U-85F"  # place and route (nextpnr-ecp5)
    ecp5_package: str = "CABGA381"
    clock_mhz: float = 100.0  # target clock of place and route, and of latency figures
    memory_style: str = "auto"  # one of MEMORY_STYLES, for every memory of a synthesized design
    # The accelerator's per-layer lanes: (synaptic node, lanes) pairs that override ``lanes`` for
    # those engines (each must divide the layer's outputs); chosen by saformer.rtl_sim.balance.
    engine_lanes: tuple[tuple[str, int], ...] = ()
    # Steps of spikes buffered in front of every engine (a stream_fifo), so that its producer
    # drains a frame at full speed while the engine is still on the last one; 0: none
    engine_fifo_steps: int = 1
    # Synaptic layers whose weights stream in from external memory (the engine's weight stream
    # port, a burst per spike) instead of an on-chip ROM, for weights that do not fit the part;
    # ("all",): every synaptic layer
    weight_stream: tuple[str, ...] = ()
    # that memory's latency in cycles (a burst's request to its first word), in simulation (its
    # model, weight_stream_mem.sv) and in the cycle model
    weight_stream_latency: int = 32
    # A register on every synaptic engine's output (syn_engine OUT_REG), so that the next block's
    # logic starts from a flip-flop: for parts whose LUT RAM read is slow (on the ECP5 that read was
    # the 4-lane digits top's critical path). It costs a LUT and a flip-flop per output bit (about
    # 17k of each at the CIFAR top's 1,075 lanes); the cycles are the same either way.
    engine_output_register: bool = True

    def __post_init__(self) -> None:
        # JSON brings lists back: store the pairs as tuples, so the config stays hashable
        object.__setattr__(self, "engine_lanes", tuple(tuple(p) if isinstance(p, (list, tuple)) else p
                                                       for p in (self.engine_lanes or ())))
        if isinstance(self.weight_stream, list):
            object.__setattr__(self, "weight_stream", tuple(self.weight_stream))
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.lanes, int) or isinstance(self.lanes, bool) or self.lanes < 1:
            raise ConfigError(f"hardware config: lanes must be a positive integer, got {self.lanes!r}")
        if not isinstance(self.engine_fifo_steps, int) or not 0 <= self.engine_fifo_steps <= 8:
            raise ConfigError(f"hardware config: engine_fifo_steps must be an integer in [0, 8], got {self.engine_fifo_steps!r}")
        names = []
        for pair in self.engine_lanes:
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)
                    and isinstance(pair[1], int) and not isinstance(pair[1], bool) and pair[1] >= 1):
                raise ConfigError(f"hardware config: engine_lanes takes pairs of a layer name and a positive lanes count, got {pair!r}")
            names.append(pair[0])
        if len(set(names)) != len(names):
            raise ConfigError(f"hardware config: engine_lanes names a layer twice: {sorted(names)}")
        if not isinstance(self.weight_stream, tuple) or not all(isinstance(n, str) and n for n in self.weight_stream):
            raise ConfigError(f"hardware config: weight_stream takes synaptic layer names (or 'all'), got {self.weight_stream!r}")
        if len(set(self.weight_stream)) != len(self.weight_stream):
            raise ConfigError(f"hardware config: weight_stream names a layer twice: {sorted(self.weight_stream)}")
        lo, hi = WEIGHT_LATENCY_RANGE
        if (not isinstance(self.weight_stream_latency, int) or isinstance(self.weight_stream_latency, bool)
                or not lo <= self.weight_stream_latency <= hi):
            raise ConfigError(f"hardware config: weight_stream_latency must be an integer in [{lo}, {hi}] cycles, "
                              f"got {self.weight_stream_latency!r}")
        if not isinstance(self.engine_output_register, bool):
            raise ConfigError(f"hardware config: engine_output_register must be true or false, got {self.engine_output_register!r}")
        if self.family not in XILINX_FAMILIES:
            raise ConfigError(f"hardware config: family {self.family!r}; known: {sorted(XILINX_FAMILIES)}")
        if self.ecp5_device not in ECP5_DEVICES:
            raise ConfigError(f"hardware config: ECP5 device {self.ecp5_device!r}; known: {sorted(ECP5_DEVICES)}")
        if self.memory_style not in MEMORY_STYLES:
            raise ConfigError(f"hardware config: memory_style {self.memory_style!r}; known: {list(MEMORY_STYLES)}")
        if not (isinstance(self.clock_mhz, (int, float)) and 0 < self.clock_mhz <= 1000):
            raise ConfigError(f"hardware config: clock_mhz must be in (0, 1000], got {self.clock_mhz!r}")

    def streams_weights(self, layer: str) -> bool:
        """Whether ``layer``'s engine takes its weights on the weight stream port."""
        return layer in self.weight_stream or self.weight_stream == ("all",)

    def lanes_of(self, layer: str) -> int | None:
        """The lanes engine_lanes gives ``layer``, or None (then: the largest divisor up to ``lanes``)."""
        return dict(self.engine_lanes).get(layer)

    @property
    def ecp5_flag(self) -> str:
        return ECP5_DEVICES[self.ecp5_device]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HardwareConfig":
        return _from_dict(cls, data, "hardware")

    def replace(self, **overrides: Any) -> "HardwareConfig":
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})
