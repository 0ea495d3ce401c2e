"""The hand-written SASA datapath in SystemVerilog and its testbenches (issue 4).

Empty until that stage lands; the package exists so the layout shows the flow.
"""
