"""SAFormer's stateful spiking layers as hls4ml extension layers (hls4ml's extension API).

Two layers keep state between calls of the generated top function, so an hls4ml model runs one
time step per call and a sample is T calls in a row (the state resets itself at the first of
every T calls, as a step counter in hardware would):

- ``LIFStep``: the integer LIF of the contract (H = (V + X) >> 1, fire at H >= theta, reset to 0).
- ``SpikeCountStep``: per-channel spike counts summed over tokens and over the sample's steps so
  far: what the head accumulates its weights over.

Each exists three times, as the extension API asks: a torch module (the graph node the PyTorch
front end sees, and a reference implementation with the same state rules), an hls4ml IR layer
with its parser, and the HLS templates plus ``nnet_utils/nnet_saformer.h``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

HEADER = Path(__file__).parent / "nnet_utils" / "nnet_saformer.h"


class _Stepwise(torch.nn.Module):
    """State that lives across forward calls and resets at the first of every T calls."""

    def __init__(self, time_steps: int) -> None:
        super().__init__()
        self.time_steps = time_steps
        self.step = 0
        self.state: torch.Tensor | None = None

    def advance(self) -> bool:
        """True when this call is the first step of a sample."""
        first = self.step == 0
        self.step = (self.step + 1) % self.time_steps
        return first


def _hls_module_base():
    import hls4ml.utils.torch

    return hls4ml.utils.torch.HLS4MLModule


class LIFStep(_Stepwise):
    """One time step of the integer LIF on values in the membrane format (x = integer * 2^-frac)."""

    def __init__(self, theta: int, frac: int, time_steps: int) -> None:
        super().__init__(time_steps)
        self.theta, self.frac = theta, frac

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_int = torch.round(x * 2 ** self.frac).long()
        v = torch.zeros_like(x_int) if self.advance() or self.state is None else self.state
        h = (v + x_int) >> 1
        s = h >= self.theta
        self.state = torch.where(s, torch.zeros_like(h), h)
        return s.to(x.dtype)


class SpikeCountStep(_Stepwise):
    """Spikes (B, C, H, W) -> running per-channel counts (B, C) over tokens and the steps so far."""

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        counts = s.sum(dim=(2, 3))
        if not self.advance() and self.state is not None:
            counts = counts + self.state
        self.state = counts
        return counts


# ---- hls4ml: IR layers, parsers, templates ------------------------------------------------------
_REGISTERED: set[str] = set()
_CLASSES: dict[str, type] = {}


def _hls_classes() -> dict[str, type]:
    """The torch leaf modules and hls4ml classes, built once hls4ml is imported (it is optional)."""
    if _CLASSES:
        return _CLASSES
    import hls4ml
    from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
    from hls4ml.model.attributes import Attribute
    from hls4ml.model.layers import Layer
    from hls4ml.model.types import FixedPrecisionType, IntegerPrecisionType

    base = _hls_module_base()

    class HLSLIFStep(LIFStep, base):
        """LIFStep as a leaf module the hls4ml tracer does not trace through."""

    class HLSSpikeCountStep(SpikeCountStep, base):
        """SpikeCountStep as a leaf module the hls4ml tracer does not trace through."""

    class SaformerLIF(Layer):
        _expected_attributes = [Attribute("n_in"), Attribute("theta", value_type=float), Attribute("time_steps")]

        def initialize(self):
            self.add_output_variable(self.get_input_variable().shape,
                                     precision=IntegerPrecisionType(width=1, signed=False))

    class SaformerSpikeCount(Layer):
        _expected_attributes = [Attribute("n_tokens"), Attribute("n_chan"), Attribute("time_steps"),
                                Attribute("count_bits")]

        def initialize(self):
            self.add_output_variable([self.get_attr("n_chan")],
                                     precision=IntegerPrecisionType(width=self.get_attr("count_bits"), signed=False))

    def parse_lif(operation, layer_name, input_names, input_shapes, node, class_object, data_reader, config):
        layer = {"class_name": "SaformerLIF", "name": layer_name, "inputs": input_names,
                 "n_in": int(np.prod(input_shapes[0][1:])),
                 "theta": class_object.theta / 2 ** class_object.frac, "time_steps": class_object.time_steps}
        return layer, list(input_shapes[0])

    def parse_count(operation, layer_name, input_names, input_shapes, node, class_object, data_reader, config):
        shape = input_shapes[0]  # channels first: [batch, C, H, W]
        if len(shape) != 4:
            raise ValueError(f"layer '{layer_name}': SpikeCountStep takes (C, H, W) spikes, got {shape[1:]}")
        n_tokens = int(shape[2] * shape[3])
        bits = (n_tokens * class_object.time_steps).bit_length()
        layer = {"class_name": "SaformerSpikeCount", "name": layer_name, "inputs": input_names,
                 "n_tokens": n_tokens, "n_chan": int(shape[1]), "time_steps": class_object.time_steps,
                 "count_bits": bits}
        return layer, [shape[0], shape[1]]

    lif_config = """struct config{index} : nnet::saformer_lif_config {{
    static const unsigned n_in = {n_in};
    static const unsigned time_steps = {time_steps};
    static constexpr double theta = {theta};
    typedef {accum_t} accum_t;
}};
"""
    count_config = """struct config{index} : nnet::saformer_spike_count_config {{
    static const unsigned n_tokens = {n_tokens};
    static const unsigned n_chan = {n_chan};
    static const unsigned time_steps = {time_steps};
}};
"""
    include = ["nnet_utils/nnet_saformer.h"]

    class LIFConfigTemplate(LayerConfigTemplate):
        def __init__(self):
            super().__init__(SaformerLIF)

        def format(self, node):
            params = self._default_config_params(node)
            p = node.get_input_variable().type.precision
            if not isinstance(p, FixedPrecisionType) or not p.signed:
                raise ValueError(f"layer '{node.name}': the LIF input must be a signed ap_fixed membrane, "
                                 f"got {p}")
            params["accum_t"] = f"ap_fixed<{p.width + 1},{p.integer + 1}>"
            params["theta"] = repr(float(node.get_attr("theta")))
            return self.template.format(**params)

    LIFConfigTemplate.template = lif_config

    class LIFFunctionTemplate(FunctionCallTemplate):
        def __init__(self):
            super().__init__(SaformerLIF, include_header=include)
            self.template = "nnet::saformer_lif<{input_t}, {output_t}, {config}>({input}, {output});"

        def format(self, node):
            return self.template.format(**self._default_function_params(node))

    class CountConfigTemplate(LayerConfigTemplate):
        def __init__(self):
            super().__init__(SaformerSpikeCount)
            self.template = count_config

        def format(self, node):
            return self.template.format(**self._default_config_params(node))

    class CountFunctionTemplate(FunctionCallTemplate):
        def __init__(self):
            super().__init__(SaformerSpikeCount, include_header=include)
            self.template = "nnet::saformer_spike_count<{input_t}, {output_t}, {config}>({input}, {output});"

        def format(self, node):
            return self.template.format(**self._default_function_params(node))

    hls4ml.converters.register_pytorch_layer_handler("HLSLIFStep", parse_lif)
    hls4ml.converters.register_pytorch_layer_handler("HLSSpikeCountStep", parse_count)
    hls4ml.model.layers.register_layer("SaformerLIF", SaformerLIF)
    hls4ml.model.layers.register_layer("SaformerSpikeCount", SaformerSpikeCount)
    _CLASSES.update(lif=HLSLIFStep, count=HLSSpikeCountStep,
                    templates=(LIFConfigTemplate, LIFFunctionTemplate, CountConfigTemplate, CountFunctionTemplate))
    return _CLASSES


def register_extensions(backend_name: str) -> None:
    """Register the layers with hls4ml and their templates and header with ``backend_name`` (idempotent)."""
    classes = _hls_classes()
    if backend_name in _REGISTERED:
        return
    import hls4ml

    backend = hls4ml.backends.get_backend(backend_name)
    for template in classes["templates"]:
        backend.register_template(template)
    backend.register_source(HEADER)
    _REGISTERED.add(backend_name)


def lif_module(theta: int, frac: int, time_steps: int) -> torch.nn.Module:
    return _hls_classes()["lif"](theta, frac, time_steps)


def spike_count_module(time_steps: int) -> torch.nn.Module:
    return _hls_classes()["count"](time_steps)
