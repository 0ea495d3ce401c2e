"""The hand-written SASA datapath (hdl/sasa_core.sv) and its verification.

- :mod:`~saformer.rtl_sim.core`   parameters, checks, ROM file, cycle model
- :mod:`~saformer.rtl_sim.sim`    Verilator builds and cocotb runs (tb/sasa_core_tb.py)
- :mod:`~saformer.rtl_sim.fast`   the pyverilator fast path
- :mod:`~saformer.rtl_sim.cosim`  every SASA layer of an export against the golden model
- :mod:`~saformer.rtl_sim.synth`  Yosys synthesis and resource counts
- :mod:`~saformer.rtl_sim.blocks` the block library (LIF unit, saturating add, ...): registry with
  parameter checks, cycle models and golden functions, one lint / build / simulate runner
- :mod:`~saformer.rtl_sim.tb.streams` reusable cocotb valid/ready driver and monitor
"""
