// sat_add: the saturating residual add of the contract, LANES values a cycle: Y = clip(A + B, WIDTH bits).
//
// Stream format
//   s_data  {B beat, A beat}: each LANES x WIDTH-bit signed values, lane 0 in the low bits (A in the
//           low LANES*WIDTH bits).
//   m_data  LANES x WIDTH-bit signed sums, same lane order. valid/ready on both sides.
// Latency and cycle model: one output register; s_ready = !m_valid || m_ready (full throughput).
//   Stall-free, B beats take B + 1 cycles from the first input to the last output accepted.
module sat_add #(
    parameter int WIDTH = 16,
    parameter int LANES = 4
) (
    input  logic                     clk,
    input  logic                     rst,
    input  logic                     s_valid,
    output logic                     s_ready,
    input  logic [2*LANES*WIDTH-1:0] s_data,
    output logic                     m_valid,
    input  logic                     m_ready,
    output logic [LANES*WIDTH-1:0]   m_data
);
    localparam logic signed [WIDTH-1:0] MAX = {1'b0, {(WIDTH-1){1'b1}}};
    localparam logic signed [WIDTH-1:0] MIN = {1'b1, {(WIDTH-1){1'b0}}};

    assign s_ready = !m_valid || m_ready;

    // the saturating sums of one beat, LANES lanes; called only on a taken beat (the same hardware,
    // and a Verilated model that does no lane arithmetic when idle)
    function automatic logic [LANES*WIDTH-1:0] sums(input logic [2*LANES*WIDTH-1:0] ab);
        for (int l = 0; l < LANES; l++) begin
            logic signed [WIDTH-1:0] a, b;
            logic signed [WIDTH:0] sum;
            a = ab[l*WIDTH +: WIDTH];
            b = ab[(LANES + l)*WIDTH +: WIDTH];
            sum = {a[WIDTH-1], a} + {b[WIDTH-1], b};
            // overflow iff the two top bits differ; the sign of the WIDTH+1-bit sum picks the bound
            sums[l*WIDTH +: WIDTH] = (sum[WIDTH] != sum[WIDTH-1]) ? (sum[WIDTH] ? MIN : MAX) : sum[WIDTH-1:0];
        end
    endfunction

    always_ff @(posedge clk) begin
        if (rst) begin
            m_valid <= 1'b0;
            m_data <= '0;
        end else begin
            if (m_valid && m_ready) m_valid <= 1'b0;
            if (s_valid && s_ready) begin
                m_valid <= 1'b1;
                m_data <= sums(s_data);
            end
        end
    end
endmodule
