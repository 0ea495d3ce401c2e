"""Quantization-aware training, the integer export and the integer golden model (issue 3).

Empty until that stage lands; the package exists so the layout shows the flow.
"""
