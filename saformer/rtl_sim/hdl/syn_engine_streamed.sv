// syn_engine_streamed: a one-in, one-out wrapper for testing a syn_engine with its weight stream
//   port (WEIGHT_PORT = 1) against the external memory model weight_stream_mem (the library's bench
//   drives one stream): the same streams and outputs as syn_engine with its ROM, the weights
//   arriving LATENCY cycles after each request (STALL_PERCENT of the memory's cycles withheld).
// Cycle model: syn_engine's with the weight port's terms (its header; saformer.rtl_sim.blocks).
`default_nettype none

module syn_engine_streamed #(
    parameter int IN = 16,
    parameter int OUT = 16,
    parameter int LANES = 4,
    parameter int KERNEL = 1,
    parameter int H = 1,
    parameter int W = 1,
    parameter int W_BITS = 8,
    parameter int ACC_BITS = 24,
    parameter int MEM_BITS = 16,
    parameter int OUT_SHIFT = 0,
    parameter int VALUE_BITS = 0,
    parameter int LATENCY = 16,
    parameter int STALL_PERCENT = 0,
    parameter WEIGHT_FILE = "",
    parameter BIAS_FILE = ""
) (
    input  wire logic                        clk,
    input  wire logic                        rst,
    input  wire logic                        s_valid,
    output logic                             s_ready,
    input  wire logic [EVW-1:0]              s_data,
    output logic                             m_valid,
    input  wire logic                        m_ready,
    output logic [LANES*MEM_BITS-1:0]        m_data
);
    localparam int CW = IN > 1 ? $clog2(IN) : 1;
    localparam int YW = (KERNEL == 3 && H > 1) ? $clog2(H) : 1;
    localparam int XW = (KERNEL == 3 && W > 1) ? $clog2(W) : 1;
    localparam int EVW = CW + XW + YW + VALUE_BITS + 2;
    localparam int WDEPTH = IN * KERNEL * KERNEL * (OUT / LANES);
    localparam int WAW = WDEPTH > 1 ? $clog2(WDEPTH) : 1;

    logic wr_valid, wr_ready, w_valid, w_ready;
    logic [WAW-1:0] wr_addr;
    logic [LANES*W_BITS-1:0] w_data;

    syn_engine #(.IN(IN), .OUT(OUT), .LANES(LANES), .KERNEL(KERNEL), .H(H), .W(W), .W_BITS(W_BITS),
                 .ACC_BITS(ACC_BITS), .MEM_BITS(MEM_BITS), .OUT_SHIFT(OUT_SHIFT), .VALUE_BITS(VALUE_BITS),
                 .WEIGHT_PORT(1), .BIAS_FILE(BIAS_FILE)) u_engine (
        .clk, .rst, .s_valid, .s_ready, .s_data, .m_valid, .m_ready, .m_data,
        .wr_valid, .wr_ready, .wr_addr, .w_valid, .w_ready, .w_data);
    weight_stream_mem #(.WORDS(WDEPTH), .WIDTH(LANES * W_BITS), .BURST(KERNEL * KERNEL * (OUT / LANES)),
                        .LATENCY(LATENCY), .STALL_PERCENT(STALL_PERCENT), .WEIGHT_FILE(WEIGHT_FILE)) u_mem (
        .clk, .rst, .r_valid(wr_valid), .r_ready(wr_ready), .r_addr(wr_addr),
        .m_valid(w_valid), .m_ready(w_ready), .m_data(w_data));
endmodule

`default_nettype wire
