"""cocotb testbenches (run by saformer.rtl_sim.sim on Verilator)."""
