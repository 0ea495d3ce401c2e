"""The hls4ml flow for the synaptic layers (issue 5).

Empty until that stage lands; the package exists so the layout shows the flow.
"""
