// stream_join: two streams in step, one beat of each into one beat {s1, s0} (s0 in the low bits):
//   the residual add's operands, the SASA core's {K, Q}.
//
// Stream format: s0_data W0 bits, s1_data W1 bits; m_data = {s1_data, s0_data}.
// Boundaries: the output leaves through a skid_buffer (m_ready reaches nothing combinationally);
//   each s_ready is the skid buffer's registered ready and the other side's valid.
// Latency and cycle model: one cycle; stall-free, B beat pairs take B + 1 cycles.
`default_nettype none

module stream_join #(
    parameter int W0 = 8,
    parameter int W1 = 8
) (
    input  wire logic               clk,
    input  wire logic               rst,
    input  wire logic               s0_valid,
    output logic                    s0_ready,
    input  wire logic [W0-1:0]      s0_data,
    input  wire logic               s1_valid,
    output logic                    s1_ready,
    input  wire logic [W1-1:0]      s1_data,
    output logic                    m_valid,
    input  wire logic               m_ready,
    output logic [W0+W1-1:0]        m_data
);
    logic ready;
    assign s0_ready = ready && s1_valid;
    assign s1_ready = ready && s0_valid;
    skid_buffer #(.WIDTH(W0 + W1)) u_out (.clk, .rst, .s_valid(s0_valid && s1_valid), .s_ready(ready),
                                          .s_data({s1_data, s0_data}), .m_valid, .m_ready, .m_data);
endmodule

`default_nettype wire
