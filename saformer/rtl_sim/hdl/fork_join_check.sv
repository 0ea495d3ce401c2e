// fork_join_check: a one-in, one-out wrapper for testing stream_fork, stream_fifo and stream_join
//   together (the library's bench drives one stream): the input is forked, each copy goes through a
//   FIFO (DEPTH beats and 2 beats: unequal slack, equal latency), and the two are joined:
//   m_data = {x, x} for every input beat x, in order, whatever the stalls.
// Cycle model: stall-free, B beats take B + 4 cycles (fork 1, FIFO 2, join 1).
`default_nettype none

module fork_join_check #(
    parameter int WIDTH = 8,
    parameter int DEPTH = 4
) (
    input  wire logic                 clk,
    input  wire logic                 rst,
    input  wire logic                 s_valid,
    output logic                      s_ready,
    input  wire logic [WIDTH-1:0]     s_data,
    output logic                      m_valid,
    input  wire logic                 m_ready,
    output logic [2*WIDTH-1:0]        m_data
);
    logic a_valid, a_ready, b_valid, b_ready, f_valid, f_ready, g_valid, g_ready;
    logic [WIDTH-1:0] a_data, b_data, f_data, g_data;
    stream_fork #(.WIDTH(WIDTH)) u_fork (.clk, .rst, .s_valid, .s_ready, .s_data,
        .m0_valid(a_valid), .m0_ready(a_ready), .m0_data(a_data),
        .m1_valid(b_valid), .m1_ready(b_ready), .m1_data(b_data));
    stream_fifo #(.WIDTH(WIDTH), .DEPTH(DEPTH)) u_fifo (.clk, .rst, .s_valid(a_valid), .s_ready(a_ready),
        .s_data(a_data), .m_valid(f_valid), .m_ready(f_ready), .m_data(f_data));
    stream_fifo #(.WIDTH(WIDTH), .DEPTH(2)) u_fifo_b (.clk, .rst, .s_valid(b_valid), .s_ready(b_ready),
        .s_data(b_data), .m_valid(g_valid), .m_ready(g_ready), .m_data(g_data));
    stream_join #(.W0(WIDTH), .W1(WIDTH)) u_join (.clk, .rst, .s0_valid(f_valid), .s0_ready(f_ready), .s0_data(f_data),
        .s1_valid(g_valid), .s1_ready(g_ready), .s1_data(g_data), .m_valid, .m_ready, .m_data);
endmodule

`default_nettype wire
