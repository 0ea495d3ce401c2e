// skid_buffer: a two-entry register slice that cuts every combinational path between its sides
// (valid, ready and data are all registered), at full throughput. Put between blocks whose ready
// is combinational (lif_unit, sat_add, maxpool: s_ready = !m_valid || m_ready) to stop a chain of
// them from becoming one long ready path.
//
// Stream format: s_data / m_data are WIDTH bits, passed unchanged and in order.
// Latency and cycle model: one cycle; s_ready = the skid register is empty. Stall-free, B beats take
//   B + 1 cycles; under back-pressure one beat lands in the skid register and s_ready falls the next
//   cycle.
`default_nettype none

module skid_buffer #(
    parameter int WIDTH = 8
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
    logic skid_valid;
    logic [WIDTH-1:0] skid_data;

    assign s_ready = !skid_valid;

    always_ff @(posedge clk) begin
        if (rst) begin
            m_valid <= 1'b0;
            skid_valid <= 1'b0;
            m_data <= '0;
            skid_data <= '0;
        end else if (m_valid && !m_ready) begin
            // the output is held; an input accepted now (skid empty) waits in the skid register
            if (s_valid && s_ready) begin
                skid_valid <= 1'b1;
                skid_data <= s_data;
            end
        end else begin
            // the output register is free or being emptied: refill it, from the skid register first
            if (skid_valid) begin
                m_valid <= 1'b1;
                m_data <= skid_data;
                skid_valid <= 1'b0;
            end else begin
                m_valid <= s_valid;
                if (s_valid) m_data <= s_data;
            end
        end
    end
endmodule
