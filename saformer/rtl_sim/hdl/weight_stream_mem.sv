// weight_stream_mem: a model of the external memory behind a syn_engine's weight stream port
// (WEIGHT_PORT = 1), for simulation: the engine's weights (the same WEIGHT_FILE its ROM would read)
// served as bursts of BURST words with a fixed latency, so that a generated top with streamed
// weights is simulated bit-exact and its cycles predicted (saformer.rtl_sim.cycle_model).
//
// Request stream: r_addr, a burst's first word; taken whenever fewer than 4 bursts wait (r_ready
//   from a register). Output stream: m_data, one word a beat, the bursts in request order.
// Latency: a burst's first word shows LATENCY cycles after its request moved (LATENCY >= 2: the
//   request is queued first), or the cycle after the burst before it has left, whichever is later;
//   then a word a cycle while m_ready holds. STALL_PERCENT > 0 withholds a word on that share of
//   cycles (an LFSR, seeded by SEED), for tests that stall the weight stream too.
// Boundaries: r_ready, m_valid and m_data come from registers only.
`default_nettype none

module weight_stream_mem #(
    parameter int WORDS = 16,
    parameter int WIDTH = 8,
    parameter int BURST = 1,        // words per request
    parameter int LATENCY = 16,     // cycles from a request to its first word
    parameter int STALL_PERCENT = 0,
    parameter int SEED = 1,
    parameter WEIGHT_FILE = ""
) (
    input  wire logic             clk,
    input  wire logic             rst,
    input  wire logic             r_valid,
    output logic                  r_ready,
    input  wire logic [AW-1:0]    r_addr,
    output logic                  m_valid,
    input  wire logic             m_ready,
    output logic [WIDTH-1:0]      m_data
);
    localparam int AW = WORDS > 1 ? $clog2(WORDS) : 1;
    localparam int BW = $clog2(BURST + 1);

    logic [WIDTH-1:0] mem [WORDS];
    initial begin
        for (int i = 0; i < WORDS; i++) mem[i] = '0;
        if (WEIGHT_FILE != "") $readmemh(WEIGHT_FILE, mem);
    end

    // requests waiting, each with the cycle from which its first word may show
    logic [AW-1:0] q_addr [4];
    logic [31:0] q_due [4];
    logic [1:0] q_rd, q_wr;
    logic [2:0] q_count;
    logic [31:0] now;
    logic [AW-1:0] addr;                                  // the next word of the burst being sent
    logic [BW-1:0] left;                                  // its words still to send
    logic [15:0] lfsr;

    assign r_ready = q_count != 3'd4;
    wire push = r_valid && r_ready;
    wire hold = STALL_PERCENT > 0 && 32'(lfsr[6:0]) * 100 < 32'(STALL_PERCENT) * 128;
    wire slot = !m_valid || m_ready;                      // the output register is free this cycle
    wire more = left != '0;
    wire start = !more && q_count != 3'd0 && now + 1 >= q_due[q_rd];
    wire send = slot && !hold && (more || start);

    always_ff @(posedge clk) begin
        if (rst) begin
            q_rd <= '0;
            q_wr <= '0;
            q_count <= '0;
            now <= '0;
            left <= '0;
            addr <= '0;
            m_valid <= 1'b0;
            lfsr <= 16'(SEED) | 16'd1;
        end else begin
            now <= now + 1;
            lfsr <= {lfsr[14:0], lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]};
            if (push) begin
                q_addr[q_wr] <= r_addr;
                q_due[q_wr] <= now + 32'(LATENCY);
                q_wr <= q_wr + 1'b1;
            end
            if (slot) m_valid <= send;
            if (send) begin
                if (start) begin
                    m_data <= mem[q_addr[q_rd]];
                    addr <= q_addr[q_rd] + 1'b1;
                    left <= BW'(BURST - 1);
                    q_rd <= q_rd + 1'b1;
                end else begin
                    m_data <= mem[addr];
                    addr <= addr + 1'b1;
                    left <= left - 1'b1;
                end
            end
            q_count <= q_count + 3'(push) - 3'(send && start);
        end
    end
endmodule

`default_nettype wire
