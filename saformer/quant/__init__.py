"""Quantization-aware training, the integer export and the integer golden model.

- :mod:`~saformer.quant.fixed_point` the contract's primitives (integers and float emulation)
- :mod:`~saformer.quant.qat`         the QAT model (Brevitas weights, integer-exact eval)
- :mod:`~saformer.quant.fold`        BN folding from the float model
- :mod:`~saformer.quant.export`      the versioned integer artifact and its validation
- :mod:`~saformer.quant.golden`      the numpy integer golden model
- :mod:`~saformer.quant.stages`      the quantize / export / golden commands
"""
