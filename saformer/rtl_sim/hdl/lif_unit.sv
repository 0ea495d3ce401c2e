// lif_unit: the integer LIF neuron of the contract (tau = 2), LANES neurons a cycle, membranes in memory.
//
//   H = (V + X) >>> 1;   S = (H >= THETA);   V <= S ? 0 : H        (V = 0 at the first step of a sample)
//
// Stream format
//   s_data  LANES x WIDTH-bit signed drives X, lane 0 in the low bits. Beats come step-major: for each
//           of the T steps of a sample, the NEURONS / LANES beats of that step in neuron order.
//   m_data  LANES spikes, lane 0 = bit 0, one beat per input beat, in the same order.
//   valid/ready on both sides; a beat moves when valid && ready.
// Memory: V of every neuron lives in a NEURONS/LANES x (LANES*WIDTH) memory (LUT RAM or block RAM),
//   read and written at the beat's address; the first step of a sample reads 0 instead.
// Latency and cycle model: one output register; s_ready = !m_valid || m_ready (full throughput).
//   Stall-free, the output of input beat i is accepted one cycle after it: B beats take B + 1 cycles.
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

    logic [LANES*WIDTH-1:0] vmem [DEPTH];
    logic [AW-1:0] addr;
    logic [SW-1:0] step;

    assign s_ready = !m_valid || m_ready;
    wire take = s_valid && s_ready;

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
                u = update(step == '0 ? '0 : vmem[addr], s_data);  // V = 0 at a sample's first step
                vmem[addr] <= u[LANES*WIDTH-1:0];
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
