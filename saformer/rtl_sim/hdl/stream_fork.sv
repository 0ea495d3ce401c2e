// stream_fork: one stream to two consumers, each getting every beat once, in order (an eager fork:
//   a consumer that is ready takes the beat at once and the other may take it later).
//
// Stream format: s_data, m0_data, m1_data WIDTH bits, passed unchanged.
// Boundaries: each output leaves through a skid_buffer, so m0_ready / m1_ready reach nothing
//   combinationally; s_ready is a function of the skid buffers' registers and the fork's two
//   taken flags.
// Latency and cycle model: one cycle (the skid buffers); stall-free, B beats take B + 1 cycles at
//   each output.
`default_nettype none

module stream_fork #(
    parameter int WIDTH = 8
) (
    input  wire logic               clk,
    input  wire logic               rst,
    input  wire logic               s_valid,
    output logic                    s_ready,
    input  wire logic [WIDTH-1:0]   s_data,
    output logic                    m0_valid,
    input  wire logic               m0_ready,
    output logic [WIDTH-1:0]        m0_data,
    output logic                    m1_valid,
    input  wire logic               m1_ready,
    output logic [WIDTH-1:0]        m1_data
);
    logic taken0, taken1;                       // this beat already went to output 0 / 1
    logic r0, r1;                               // the skid buffers' (registered) readies
    wire v0 = s_valid && !taken0;
    wire v1 = s_valid && !taken1;
    assign s_ready = (taken0 || r0) && (taken1 || r1);

    always_ff @(posedge clk) begin
        if (rst || (s_valid && s_ready)) begin
            taken0 <= 1'b0;
            taken1 <= 1'b0;
        end else begin
            if (v0 && r0) taken0 <= 1'b1;
            if (v1 && r1) taken1 <= 1'b1;
        end
    end

    skid_buffer #(.WIDTH(WIDTH)) u_out0 (.clk, .rst, .s_valid(v0), .s_ready(r0), .s_data,
                                         .m_valid(m0_valid), .m_ready(m0_ready), .m_data(m0_data));
    skid_buffer #(.WIDTH(WIDTH)) u_out1 (.clk, .rst, .s_valid(v1), .s_ready(r1), .s_data,
                                         .m_valid(m1_valid), .m_ready(m1_ready), .m_data(m1_data));
endmodule

`default_nettype wire
