// lane_gearbox: a dense stream of IN_LANES values a beat re-beaten as OUT_LANES values a beat, the
// values and their order unchanged. It lets an engine run at the lanes its load needs while the
// stream it feeds (a residual stream, SASA's {K, Q}) runs at its own (docs/accelerator.md, "Lanes
// per engine").
//
// Stream format
//   s_data  IN_LANES x WIDTH-bit values, value 0 of the beat in the low bits.
//   m_data  OUT_LANES x WIDTH-bit values, same order: the stream's k-th value is the same value on
//           both sides. The values go through in groups of L = lcm(IN_LANES, OUT_LANES): L/IN_LANES
//           input beats, then L/OUT_LANES output beats; a stream must hold whole groups (an engine's
//           output does: both lanes divide its channels, so L does).
// Registers: a fill register (L values, shifted in at the top) and a drain register (L values,
//   shifted out at the bottom). The last input beat of a group goes straight to the drain register
//   when it is free (or frees in that cycle); else the group waits in the fill register.
// Boundaries: s_ready, m_valid and m_data come from registers only.
// Latency and cycle model (K_IN = L/IN_LANES, K_OUT = L/OUT_LANES): a group's first output beat
//   leaves the cycle after its last input beat; groups overlap, one every max(K_IN, K_OUT) cycles.
//   Stall-free, G groups take K_IN + K_OUT + (G - 1) * max(K_IN, K_OUT) cycles from the first input
//   to the last output (saformer.rtl_sim.blocks).
`default_nettype none

module lane_gearbox #(
    parameter int WIDTH = 16,       // bits per value
    parameter int IN_LANES = 4,
    parameter int OUT_LANES = 2
) (
    input  wire logic                          clk,
    input  wire logic                          rst,
    input  wire logic                          s_valid,
    output logic                               s_ready,
    input  wire logic [IN_LANES*WIDTH-1:0]     s_data,
    output logic                               m_valid,
    input  wire logic                          m_ready,
    output logic [OUT_LANES*WIDTH-1:0]         m_data
);
    function automatic int gcd(input int a, input int b);
        int x, y, r;
        x = a;
        y = b;
        while (y != 0) begin
            r = x % y;
            x = y;
            y = r;
        end
        gcd = x;
    endfunction

    localparam int L = IN_LANES / gcd(IN_LANES, OUT_LANES) * OUT_LANES;  // values per group
    localparam int K_IN = L / IN_LANES;
    localparam int K_OUT = L / OUT_LANES;
    localparam int IW = IN_LANES * WIDTH;
    localparam int OW = OUT_LANES * WIDTH;
    localparam int KIW = $clog2(K_IN + 1);
    localparam int KOW = K_OUT > 1 ? $clog2(K_OUT) : 1;

    logic [L*WIDTH-1:0] fill, drain;
    logic [KIW-1:0] filled;                  // input beats in the fill register (K_IN: a whole group waits)
    logic [KOW-1:0] sent;                    // output beats of the drain register already taken

    assign s_ready = filled != KIW'(K_IN);
    wire take = s_valid && s_ready;
    wire give = m_valid && m_ready;
    wire drain_frees = !m_valid || (m_ready && sent == KOW'(K_OUT - 1));
    wire group_in = take && filled == KIW'(K_IN - 1);  // this beat completes a group
    assign m_data = drain[OW-1:0];

    // the fill register with this beat shifted in at the top (after K_IN beats: the group, value 0
    // lowest); constant shifts, called only on a taken beat
    function automatic logic [L*WIDTH-1:0] shifted_in(input logic [L*WIDTH-1:0] f, input logic [IW-1:0] beat);
        shifted_in = (f >> IW) | ((L*WIDTH)'(beat) << ((L - IN_LANES) * WIDTH));
    endfunction

    always_ff @(posedge clk) begin
        if (rst) begin
            filled <= '0;
            sent <= '0;
            m_valid <= 1'b0;
        end else begin
            if (give) begin
                sent <= sent + 1'b1;
                drain <= drain >> OW;
                if (sent == KOW'(K_OUT - 1)) begin
                    sent <= '0;
                    m_valid <= 1'b0;
                end
            end
            if (group_in && drain_frees) begin              // straight to the drain register
                drain <= shifted_in(fill, s_data);
                m_valid <= 1'b1;
                sent <= '0;
                filled <= '0;
            end else if (filled == KIW'(K_IN) && drain_frees) begin  // the waiting group moves on
                drain <= fill;
                m_valid <= 1'b1;
                sent <= '0;
                filled <= '0;
            end else if (take) begin
                fill <= shifted_in(fill, s_data);
                filled <= filled + 1'b1;
            end
        end
    end
endmodule

`default_nettype wire
