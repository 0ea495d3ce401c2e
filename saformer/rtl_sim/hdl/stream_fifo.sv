// stream_fifo: a DEPTH-beat FIFO of WIDTH-bit beats, the residual branch's buffer (it holds a
// value stream while its partner goes through a LIF, engines and the SASA core).
//
// Stream format: s_data / m_data WIDTH bits, passed unchanged and in order.
// Memory: DEPTH x WIDTH, written at the tail, read at the head into the output register (a
//   registered read: block RAM or LUT RAM, by the hardware config's memory style).
// Boundaries: s_ready = (fewer than DEPTH beats held) and m_valid / m_data are registers.
// Latency and cycle model: a beat leaves 2 cycles after it enters (memory, then output register);
//   stall-free, B beats take B + 2 cycles.
`default_nettype none

module stream_fifo #(
    parameter int WIDTH = 8,
    parameter int DEPTH = 16        // beats held in memory (the output register holds one more); >= 2
) (
    input  wire logic               clk,
    input  wire logic               rst,
    input  wire logic               s_valid,
    output logic                    s_ready,
    input  wire logic [WIDTH-1:0]   s_data,
    output logic                    m_valid,
    input  wire logic               m_ready,
    output logic [WIDTH-1:0]        m_data
);
    localparam int AW = DEPTH > 1 ? $clog2(DEPTH) : 1;
    localparam int NW = $clog2(DEPTH + 1);

    generate
        if (DEPTH < 2) begin : g_bad_depth
            $error("stream_fifo %m: DEPTH=%0d; at least 2 (one beat of memory would halve the throughput)", DEPTH);
        end
    endgenerate

    logic [WIDTH-1:0] mem [DEPTH];
    logic [AW-1:0] wr, rd;
    logic [NW-1:0] count;                       // beats in memory

    assign s_ready = count != NW'(DEPTH);
    wire push = s_valid && s_ready;
    wire pop = count != '0 && (!m_valid || m_ready);

    always_ff @(posedge clk) begin
        if (push) mem[wr] <= s_data;
        if (pop) m_data <= mem[rd];
    end

    always_ff @(posedge clk) begin
        if (rst) begin
            wr <= '0;
            rd <= '0;
            count <= '0;
            m_valid <= 1'b0;
        end else begin
            if (push) wr <= wr == AW'(DEPTH - 1) ? '0 : wr + 1'b1;
            if (pop) rd <= rd == AW'(DEPTH - 1) ? '0 : rd + 1'b1;
            count <= count + NW'(push) - NW'(pop);
            if (pop) m_valid <= 1'b1;
            else if (m_ready) m_valid <= 1'b0;
        end
    end
endmodule

`default_nettype wire
