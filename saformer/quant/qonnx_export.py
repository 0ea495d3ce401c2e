"""QONNX export of the quantized synaptic layers (Brevitas ``export_qonnx``), each checked to load.

One ONNX file per layer: a Brevitas layer carrying the exported integer weight (as its quantized
weight) and the exported bias (as float at the accumulator scale). Each file is loaded back with
qonnx, cleaned, executed on a random spike input (the image for the first conv), and its output
compared with the golden model's accumulator for the same input: equal, since every value is an
integer times a power of two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from saformer.quant.export import ExportError, IntegerExport
from saformer.quant.golden import conv3x3, linear
from saformer.quant.qat import QuantSAFormer, synapse_layers


def _require():
    try:
        import onnx  # noqa: F401
        import onnxoptimizer  # noqa: F401
        from brevitas.export import export_qonnx
        from qonnx.core import onnx_exec
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.util.cleanup import cleanup_model
    except ImportError as exc:
        raise ExportError(f"QONNX export needs onnx, onnxoptimizer and qonnx ({exc}); install "
                          "'saformer-fpga[qonnx]' or pass --no-qonnx") from None
    return export_qonnx, ModelWrapper, cleanup_model, onnx_exec


@torch.no_grad()
def export_qonnx_layers(model: QuantSAFormer, ex: IntegerExport, out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Write ``<layer>.onnx`` for every synaptic layer; returns per-layer load/execute results."""
    export_qonnx, ModelWrapper, cleanup_model, onnx_exec = _require()
    import brevitas.nn as qnn
    from brevitas.quant import Int8WeightPerTensorFixedPoint

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    results: dict[str, Any] = {}
    for name, syn in synapse_layers(model).items():
        spec = ex.layer(name)
        src = syn.layer
        common = dict(bias=True, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=syn.weight_bits)
        if syn.kind == "conv":
            layer = qnn.QuantConv2d(src.in_channels, src.out_channels, 3, padding=1, groups=src.groups, **common)
            x_int = rng.integers(0, 2, (1, src.in_channels, 5, 5))
        else:
            layer = qnn.QuantLinear(src.in_features, src.out_features, **common)
            x_int = rng.integers(0, 2, (1, src.in_features))
        if spec["in_frac"]:  # the image: signed input integers
            lo = -(1 << (ex.qcfg.input_bits - 1))
            x_int = rng.integers(lo, -lo, x_int.shape)
        layer.weight.copy_(src.weight.float())
        layer.bias.copy_(torch.from_numpy(ex.bias(name) * 2.0 ** -spec["acc_frac"]).float())
        layer.eval()
        if not np.array_equal(layer.quant_weight().int().numpy(), ex.weight(name)):
            raise ExportError(f"layer '{name}': the QONNX layer's integer weight differs from the export")
        path = out_dir / f"{name}.onnx"
        x = torch.from_numpy(x_int * 2.0 ** -spec["in_frac"]).float()
        export_qonnx(layer, args=x, export_path=str(path), dynamo=False)
        wrapped = cleanup_model(ModelWrapper(str(path)))
        got = next(iter(onnx_exec.execute_onnx(wrapped, {wrapped.graph.input[0].name: x.numpy()}).values()))
        w, b = ex.weight(name), ex.bias(name)
        acc = conv3x3(x_int, w, b, spec["groups"]) if syn.kind == "conv" else linear(x_int, w, b)
        want = acc * 2.0 ** -spec["acc_frac"]
        results[name] = {"file": path.name, "ops": [n.op_type for n in wrapped.graph.node],
                         "loads": True, "equals_golden_accumulator": bool(np.array_equal(got.astype(np.float64), want))}
    return results
