"""saformer-fpga: SAFormer from training to verified FPGA hardware.

Stages, one subpackage each (see README.md for the flow):

- :mod:`saformer.model`   float SAFormer (LIF, SPS, SASA + DWC, MLP, head), baselines, training.
- :mod:`saformer.quant`   quantization-aware training, integer export, integer golden model.
- :mod:`saformer.hls`     hls4ml flow for the synaptic layers.
- :mod:`saformer.rtl_sim` hand-written SASA datapath and its testbenches.
"""

__version__ = "0.1.0"
