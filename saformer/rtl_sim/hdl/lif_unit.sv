// lif_unit: the integer LIF neuron of the contract (tau = 2), LANES neurons a cycle, membranes in memory.
//
//   H = (V + X) >>> 1;   S = (H >= THETA);   V <= S ? 0 : H        (V = 0 at the first step of a sample)
//
// Stream format
//   s_data  LANES x WIDTH-bit signed drives X, lane 0 in the low bits. Beats come step-major: for each
//           of the T steps of a sample, the NEURONS / LANES beats of that step in neuron order.
//   m_data  LANES spikes, lane 0 = bit 0, one beat per input beat, in the same order.
//   valid/ready on both sides; a beat moves when valid && ready.
// Memory: V of every neuron lives in a DEPTH = NEURONS/LANES word x (LANES*WIDTH) memory (LUT RAM or
//   block RAM), written at the beat's address; the first step of a sample uses 0 instead.
//   DEPTH >= 3: the words are read two beats ahead, in order (one registered read per taken beat,
//   into the memory's read register, then into a fabric register), so the update reads a register:
//   the block RAM's clock-to-output is not on the read-modify-write path (on the ECP5 that path was
//   the accelerator's critical one). A word read ahead is never rewritten before its use: the writes
//   in between go to the two words before it. DEPTH < 3 (a few words) reads in the cycle of use.
// Latency and cycle model: one output register; s_ready = !m_valid || m_ready (full throughput).
//   Stall-free, the output of input beat i is accepted one cycle after it: B beats take B + 1 cycles.
//   The read-ahead changes neither (it moves on the taken beats only).
// H stays within WIDTH bits (V and X are WIDTH-bit; the shift removes the carry): no saturation.
module lif_unit #(
    parameter int WIDTH = 16,
    parameter int LANES = 4,
    parameter int NEURONS = 16,  // neurons per time step; a multiple of LANES
    parameter int T = 4,
    parameter int THETA = 256
) (
    input  logic                     clk,
    input  logic                     rst,
    input  logic                     s_valid,
    output logic                     s_ready,
    input  logic [LANES*WIDTH-1:0]   s_data,
    output logic                     m_valid,
    input  logic                     m_ready,
    output logic [LANES-1:0]         m_data
);
    localparam int DEPTH = NEURONS / LANES;
    localparam int AW = DEPTH > 1 ? $clog2(DEPTH) : 1;
    localparam int SW = T > 1 ? $clog2(T) : 1;
    localparam logic signed [WIDTH-1:0] THETA_W = WIDTH'(THETA);

    // DEPTH >= 3: vmem, whose read (two words ahead) never meets the write of its cycle: no_rw_check
    // tells Yosys so, else it delays every write a cycle to emulate read-before-write (128 FFs and a
    // bypass at 8 lanes x 16 bits). DEPTH < 3: vsmall, read in the cycle of use.
    /* verilator lint_off UNUSEDSIGNAL */  // one of the two is never read
    (* no_rw_check *) logic [LANES*WIDTH-1:0] vmem [DEPTH >= 3 ? DEPTH : 1];
    logic [LANES*WIDTH-1:0] vsmall [DEPTH >= 3 ? 1 : DEPTH];
    /* verilator lint_on UNUSEDSIGNAL */
    logic [AW-1:0] addr;
    logic [SW-1:0] step;

    assign s_ready = !m_valid || m_ready;
    wire take = s_valid && s_ready;

    logic [LANES*WIDTH-1:0] v_now;  // V of the beat at addr (0 at a sample's first step)
    if (DEPTH >= 3) begin : g_ahead
        logic [LANES*WIDTH-1:0] v_next, v_held;  // the memory's read register (addr + 1), then addr
        logic [AW-1:0] addr_ahead;               // addr + 2 (mod DEPTH): the word read on a take
        // the next beat starts a sample: v_held loads 0 instead (no step mux on the update's path)
        wire next_first = addr == AW'(DEPTH - 1) ? step == SW'(T - 1) : step == '0;
        always_ff @(posedge clk) begin
            if (rst) addr_ahead <= AW'(2);
            else if (take) addr_ahead <= addr_ahead == AW'(DEPTH - 1) ? '0 : addr_ahead + 1'b1;
            // zeroing written as a synchronous reset over the enable, so it maps onto the flip-flops'
            // reset pin (FDRE R, TRELLIS_FF LSR) rather than a LUT per bit
            if (rst || (take && next_first)) v_held <= '0;
            else if (take) v_held <= v_next;
            if (take) v_next <= vmem[addr_ahead];
        end
        assign v_now = v_held;
    end else begin : g_direct
        assign v_now = step == '0 ? '0 : vsmall[addr[0]];
    end

    // the neuron update, LANES lanes; called only on a taken beat (the same hardware, and a
    // Verilated model that does no lane arithmetic in an idle cycle)
    function automatic logic [LANES*WIDTH+LANES-1:0] update(input logic [LANES*WIDTH-1:0] v, input logic [LANES*WIDTH-1:0] x);
        logic [LANES*WIDTH-1:0] v_new;
        logic [LANES-1:0] spikes;
        for (int l = 0; l < LANES; l++) begin
            /* verilator lint_off UNUSEDSIGNAL */  // sum[0] is what the shift drops (floor)
            logic signed [WIDTH:0] sum;
            /* verilator lint_on UNUSEDSIGNAL */
            logic signed [WIDTH-1:0] h;
            sum = {v[l*WIDTH +: WIDTH][WIDTH-1], v[l*WIDTH +: WIDTH]} + {x[l*WIDTH +: WIDTH][WIDTH-1], x[l*WIDTH +: WIDTH]};
            h = sum[WIDTH:1];  // arithmetic shift right by one: floor((V + X) / 2)
            spikes[l] = h >= THETA_W;
            v_new[l*WIDTH +: WIDTH] = spikes[l] ? '0 : h;
        end
        update = {spikes, v_new};
    endfunction

    always_ff @(posedge clk) begin
        if (rst) begin
            addr <= '0;
            step <= '0;
            m_valid <= 1'b0;
            m_data <= '0;
        end else begin
            if (m_valid && m_ready) m_valid <= 1'b0;
            if (take) begin : neurons
                logic [LANES*WIDTH+LANES-1:0] u;
                u = update(v_now, s_data);
                if (DEPTH >= 3) vmem[addr] <= u[LANES*WIDTH-1:0];
                else vsmall[addr[0]] <= u[LANES*WIDTH-1:0];
                m_valid <= 1'b1;
                m_data <= u[LANES*WIDTH +: LANES];
                if (addr == AW'(DEPTH - 1)) begin
                    addr <= '0;
                    step <= (step == SW'(T - 1)) ? '0 : step + 1'b1;
                end else begin
                    addr <= addr + 1'b1;
                end
            end
        end
    end
endmodule
