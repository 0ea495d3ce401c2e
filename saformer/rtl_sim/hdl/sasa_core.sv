// sasa_core: the addition-only SASA datapath of SAFormer (docs/integer_contract.md, "SASA";
// docs/rtl.md for the schedule).
//
// Computes, for each time step t of a sample, from the Q and K spikes of one attention layer:
//   score[d] = sum over windows of qcount * kcount   (each Q spike adds its window's K count)
//   M[d]     = LIF_a(score[d])                        membrane per channel across time steps
//   F[n, d]  = to_membrane(bias[d] + sum of the DWC weights where K spikes in the 3x3 window)
//   O[n, d]  = LIF_o(saturate((M[d] & K[n, d]) << MEM_FRAC + F[n, d]))
// with no multiplier: the score grows by (q ? kcount : 0) + (k ? qcount : 0) + (q & k) per token,
// which sums to qcount * kcount over a window.
//
// Streams (valid/ready), token-major within a time step: for t, for n in 0..N-1, for g in 0..D/P-1:
//   s_data = {K[n, gP +: P], Q[n, gP +: P]}      m_data = O[n, gP +: P]
// Schedule: the input pass of step t+1 runs while step t is emitted (K and the mask are double
// buffered), so the stall-free interval is N*D/P cycles per step. LIF_a and LIF_o are both the
// library's lif_unit (membranes in its memory). The output pass computes LIF_o's drive into a
// register, and the output leaves through a skid_buffer: s_ready and m_valid / m_data are
// registers, and m_ready reaches nothing but the skid buffer. The first output beat is accepted N*D/P + 3 cycles after
// the first input beat; a sample of T steps completes in (T + 1) * N * D / P + 3 cycles
// (saformer/rtl_sim/core.py, cycle_model). Samples follow each other without a gap; neuron states
// restart at t = 0.
`default_nettype none

module sasa_core #(
    parameter int N = 16,            // tokens per time step (GRID_H * GRID_W)
    parameter int N_AGG = 4,         // N': aggregation windows of N / N_AGG consecutive tokens
    parameter int GRID_H = 4,        // token grid height (DWC neighbourhood)
    parameter int GRID_W = 4,        // token grid width
    parameter int D = 64,            // channels
    parameter int T = 4,             // time steps per sample
    parameter int P = 8,             // channels per beat (lanes)
    parameter int MEM_BITS = 16,     // membrane width (signed)
    parameter int MEM_FRAC = 8,      // membrane fractional bits
    parameter int THETA_A = 8,       // LIF_a threshold in count units: ceil(V_th,a * w^2)
    parameter int THETA_O = 128,     // LIF_o threshold in membrane units
    parameter bit DWC = 1'b1,        // depthwise-conv branch present
    parameter int ACC_BITS = 32,     // DWC accumulator and bias width (signed)
    parameter int W_BITS = 8,        // DWC weight width (signed): the ROM stores them at this width
    parameter int DWC_SHIFT = 0,     // DWC acc_frac - MEM_FRAC (negative: exact left shift)
    parameter DWC_FILE = "",         // $readmemh: D*9 weights (tap-major per channel), W_BITS wide
    parameter DWC_BIAS_FILE = ""     // $readmemh: D biases, ACC_BITS wide (two's complement hex)
) (
    input  wire logic              clk,
    input  wire logic              rst,       // synchronous, active high
    input  wire logic [2*P-1:0]    s_data,
    input  wire logic              s_valid,
    output logic                   s_ready,
    output logic [P-1:0]           m_data,
    output logic                   m_valid,
    input  wire logic              m_ready
);
    localparam int G = D / P;                             // beats per token
    localparam int BEATS = N * G;                         // beats per time step
    localparam int WIN = N / N_AGG;                       // tokens per window
    localparam int CNT_BITS = $clog2(WIN + 1);
    localparam int SCORE_BITS = $clog2(N * WIN + 1) + 1;  // score <= N * w, with a spare bit
    // LIF_a's width (signed, as lif_unit's): holds every score and the threshold, non-negative
    localparam int A_BITS = (SCORE_BITS > $clog2(THETA_A + 1) ? SCORE_BITS : $clog2(THETA_A + 1)) + 1;
    localparam int UP = DWC_SHIFT < 0 ? -DWC_SHIFT : 0;   // headroom for a left shift
    localparam int WIDE = ACC_BITS + UP;
    localparam int TB = T > 1 ? $clog2(T) : 1;
    localparam int BB = $clog2(BEATS) > 0 ? $clog2(BEATS) : 1;
    localparam int GB = $clog2(G) > 0 ? $clog2(G) : 1;
    localparam int RB = $clog2(D * 9) > 0 ? $clog2(D * 9) : 1;
    localparam int DB = $clog2(D) > 0 ? $clog2(D) : 1;

    generate
        if (D % P != 0) begin : g_bad_lanes
            $error("sasa_core %m: D=%0d is not a multiple of P=%0d", D, P);
        end
        if (ACC_BITS < MEM_BITS || W_BITS > ACC_BITS) begin : g_bad_acc
            $error("sasa_core %m: need W_BITS=%0d <= ACC_BITS=%0d and MEM_BITS=%0d <= ACC_BITS", W_BITS, ACC_BITS, MEM_BITS);
        end
        if (N % N_AGG != 0 || GRID_H * GRID_W != N) begin : g_bad_tokens
            $error("sasa_core %m: N=%0d must equal GRID_H*GRID_W and be a multiple of N_AGG=%0d", N, N_AGG);
        end
    endgenerate

    // ---- the DWC branch's integers: weights at their own width, biases at the accumulator's ----
    logic signed [W_BITS-1:0] dwc_w [D * 9];
    logic signed [ACC_BITS-1:0] dwc_b [D];
    initial begin
        for (int i = 0; i < D * 9; i++) dwc_w[i] = '0;
        for (int i = 0; i < D; i++) dwc_b[i] = '0;
        if (DWC) begin
            $readmemh(DWC_FILE, dwc_w);
            $readmemh(DWC_BIAS_FILE, dwc_b);
        end
    end

    // ---- state, one entry per group of P channels (addresses are counters: no multiplier) -------
    // one-dimensional memories of flat words (bank 1 after bank 0): what synthesis maps best
    logic [P-1:0]            kbuf [2 * BEATS];   // K spikes of two time steps
    logic [P-1:0]            mbuf [2 * G];       // channel masks of two time steps
    logic [P*CNT_BITS-1:0]   qcnt [G];           // Q / K counts of the current window
    logic [P*CNT_BITS-1:0]   kcnt [G];
    logic [P*SCORE_BITS-1:0] score [G];          // w^2 * a, growing over the time step

    // input side: position of the next beat
    logic [BB-1:0] a_beat;                      // token * G + group
    logic [GB-1:0] a_g;
    logic          a_first_token, a_last_token;
    logic [CNT_BITS-1:0] a_wpos;                // token position inside its window
    logic [TB-1:0] a_t;
    logic          a_bank;
    // output side
    logic [BB-1:0] b_beat;
    logic [GB-1:0] b_g;
    logic [DB-1:0] b_dbase;                     // first channel of the group
    logic [RB-1:0] b_wbase;                     // and its first weight
    logic [$clog2(GRID_H + 1)-1:0] b_row;
    logic [$clog2(GRID_W + 1)-1:0] b_col;
    logic [TB-1:0] b_t;
    logic          b_bank;
    logic [1:0]    inflight;                    // steps whose input is done and output is not
    logic          y_valid;                     // LIF_o's drive, registered, into lif_unit
    logic [P*MEM_BITS-1:0] y_data;
    logic          lif_ready;

    localparam int KAB = $clog2(2 * BEATS);     // K buffer address
    localparam int MAB = $clog2(2 * G);         // mask buffer address
    function automatic logic [KAB-1:0] kaddr(input logic bank, input logic [BB-1:0] beat);
        kaddr = bank ? KAB'(BEATS) + KAB'(beat) : KAB'(beat);
    endfunction
    function automatic logic [MAB-1:0] maddr(input logic bank, input logic [GB-1:0] g);
        maddr = bank ? MAB'(G) + MAB'(g) : MAB'(g);
    endfunction

    wire a_fire = s_valid && s_ready;
    wire a_last_beat = a_fire && a_beat == BB'(BEATS - 1);
    wire b_fire = inflight != 2'd0 && (!y_valid || lif_ready);
    wire b_last_beat = b_fire && b_beat == BB'(BEATS - 1);
    assign s_ready = !rst && inflight != 2'd2;

    // ---- input side: counts, score, LIF_a, K buffer: one lane per channel of the beat ------------
    logic [P*CNT_BITS-1:0]   qc_next, kc_next;
    logic [P*SCORE_BITS-1:0] score_next;
    logic [P*A_BITS-1:0]     a_drive;            // the step's final scores, into LIF_a
    wire [P*CNT_BITS-1:0]   qcnt_rd = qcnt[a_g];
    wire [P*CNT_BITS-1:0]   kcnt_rd = kcnt[a_g];
    wire [P*SCORE_BITS-1:0] score_rd = score[a_g];
    for (genvar l = 0; l < P; l++) begin : g_in_lane
        wire q = s_data[l];
        wire k = s_data[P + l];
        wire [CNT_BITS-1:0] qc = a_wpos == '0 ? '0 : qcnt_rd[l*CNT_BITS +: CNT_BITS];
        wire [CNT_BITS-1:0] kc = a_wpos == '0 ? '0 : kcnt_rd[l*CNT_BITS +: CNT_BITS];
        wire [SCORE_BITS-1:0] sc_prev = a_first_token ? '0 : score_rd[l*SCORE_BITS +: SCORE_BITS];
        // (qc + q)(kc + k) - qc kc = q kc + k qc + q k: a spike selects a count to add
        wire [SCORE_BITS-1:0] sc = sc_prev + (q ? SCORE_BITS'(kc) : '0) + (k ? SCORE_BITS'(qc) : '0)
                                   + SCORE_BITS'(q & k);
        assign qc_next[l*CNT_BITS +: CNT_BITS] = qc + CNT_BITS'(q);
        assign kc_next[l*CNT_BITS +: CNT_BITS] = kc + CNT_BITS'(k);
        assign score_next[l*SCORE_BITS +: SCORE_BITS] = sc;
        assign a_drive[l*A_BITS +: A_BITS] = A_BITS'(sc);   // zero-extended: a score is a count
    end

    // LIF_a: the library's LIF unit, one neuron per channel, driven by the last token's beats (the
    // step's final scores). With G >= 3 the drive is registered first, so the score adders and
    // LIF_a's update are two register-to-register paths, not one; the mask then reaches the mask
    // buffer two cycles after its beat (one with G < 3, driven directly). The output side reads a
    // group's mask no earlier than G cycles after that beat, so only G = 1 needs a bypass.
    logic          mask_valid;
    logic [P-1:0]  mask_data;
    logic [GB-1:0] mask_g;
    logic          mask_bank;
    /* verilator lint_off UNUSEDSIGNAL */
    logic          lif_a_ready;                  // always 1: its m_ready is tied high
    /* verilator lint_on UNUSEDSIGNAL */
    logic              lif_a_valid;              // LIF_a's input beat, and the group and bank it masks
    logic [P*A_BITS-1:0] lif_a_drive;
    logic [GB-1:0]     lif_a_g;
    logic              lif_a_bank;
    if (G >= 3) begin : g_drive_reg
        always_ff @(posedge clk) begin
            lif_a_valid <= !rst && a_fire && a_last_token;
            if (a_fire && a_last_token) begin
                lif_a_drive <= a_drive;
                lif_a_g <= a_g;
                lif_a_bank <= a_bank;
            end
        end
    end else begin : g_drive_direct
        assign lif_a_valid = a_fire && a_last_token;
        assign lif_a_drive = a_drive;
        assign lif_a_g = a_g;
        assign lif_a_bank = a_bank;
    end
    lif_unit #(.WIDTH(A_BITS), .LANES(P), .NEURONS(D), .T(T), .THETA(THETA_A)) u_lif_a (
        .clk, .rst, .s_valid(lif_a_valid), .s_ready(lif_a_ready), .s_data(lif_a_drive),
        .m_valid(mask_valid), .m_ready(1'b1), .m_data(mask_data));

    always_ff @(posedge clk) begin
        if (a_fire) begin
            kbuf[kaddr(a_bank, a_beat)] <= s_data[2*P-1:P];
            qcnt[a_g] <= qc_next;
            kcnt[a_g] <= kc_next;
            score[a_g] <= score_next;
        end
        if (lif_a_valid) begin
            mask_g <= lif_a_g;
            mask_bank <= lif_a_bank;
        end
        if (mask_valid) mbuf[maddr(mask_bank, mask_g)] <= mask_data;
    end

    always_ff @(posedge clk) begin
        if (rst) begin
            a_beat <= '0; a_g <= '0; a_first_token <= 1'b1; a_last_token <= N == 1;
            a_wpos <= '0; a_t <= '0; a_bank <= 1'b0;
        end else if (a_fire) begin
            a_beat <= a_last_beat ? '0 : a_beat + 1'b1;
            if (a_g != GB'(G - 1)) begin
                a_g <= a_g + 1'b1;
            end else begin
                a_g <= '0;
                a_wpos <= a_wpos == CNT_BITS'(WIN - 1) ? '0 : a_wpos + 1'b1;
                a_first_token <= a_last_beat;
                // the next token is the last one when this beat ends token N-2
                a_last_token <= a_last_beat ? N == 1 : a_beat == BB'((N - 1) * G - 1);
                if (a_last_beat) begin
                    a_bank <= !a_bank;
                    a_t <= a_t == TB'(T - 1) ? '0 : a_t + 1'b1;
                end
            end
        end
    end

    // ---- output side: DWC, mask, LIF_o: one lane per channel of the beat ---------------------------
    // the membrane range as explicit bit patterns (Yosys 0.70 evaluates -(N)'(x) as +x)
    localparam logic signed [WIDE:0] MEM_HI = {{(WIDE + 2 - MEM_BITS){1'b0}}, {(MEM_BITS - 1){1'b1}}};
    localparam logic signed [WIDE:0] MEM_LO = {{(WIDE + 2 - MEM_BITS){1'b1}}, {(MEM_BITS - 1){1'b0}}};

    function automatic logic signed [MEM_BITS-1:0] saturate(input logic signed [WIDE:0] x);
        saturate = x > MEM_HI ? MEM_HI[MEM_BITS-1:0] : x < MEM_LO ? MEM_LO[MEM_BITS-1:0] : x[MEM_BITS-1:0];
    endfunction

    // the neighbours of this beat's token that lie inside the grid (zero padding elsewhere)
    logic [8:0] in_grid;
    for (genvar tap = 0; tap < 9; tap++) begin : g_inside
        localparam int DR = tap / 3 - 1;
        localparam int DC = tap % 3 - 1;
        assign in_grid[tap] = (DR >= 0 || b_row != '0) && (DR <= 0 || b_row != ($bits(b_row))'(GRID_H - 1))
                             && (DC >= 0 || b_col != '0) && (DC <= 0 || b_col != ($bits(b_col))'(GRID_W - 1));
    end

    wire [P-1:0]           k_rd = kbuf[kaddr(b_bank, b_beat)];
    wire [P-1:0]           m_rd = (G == 1 && mask_valid && mask_bank == b_bank) ? mask_data : mbuf[maddr(b_bank, b_g)];
    logic [P-1:0]          k_nb [9];             // K of the 3x3 neighbours (offsets are constants)
    for (genvar tap = 0; tap < 9; tap++) begin : g_nb
        localparam int OFFSET = ((tap / 3 - 1) * GRID_W + (tap % 3 - 1)) * G;
        assign k_nb[tap] = kbuf[kaddr(b_bank, BB'(int'(b_beat) + OFFSET))];
    end

    // LIF_o: the library's LIF unit (membranes of all N*D neurons in its memory), then a skid buffer
    logic o_valid, o_ready;
    logic [P-1:0] o_data;
    lif_unit #(.WIDTH(MEM_BITS), .LANES(P), .NEURONS(N * D), .T(T), .THETA(THETA_O)) u_lif_o (
        .clk, .rst, .s_valid(y_valid), .s_ready(lif_ready), .s_data(y_data),
        .m_valid(o_valid), .m_ready(o_ready), .m_data(o_data));
    skid_buffer #(.WIDTH(P)) u_out (
        .clk, .rst, .s_valid(o_valid), .s_ready(o_ready), .s_data(o_data), .m_valid, .m_ready, .m_data);

    always_ff @(posedge clk) begin
        if (rst) begin
            b_beat <= '0; b_g <= '0; b_dbase <= '0; b_wbase <= '0; b_row <= '0; b_col <= '0;
            b_t <= '0; b_bank <= 1'b0; y_valid <= 1'b0; y_data <= '0; inflight <= 2'd0;
        end else begin
            inflight <= inflight + {1'b0, a_last_beat} - {1'b0, b_last_beat};
            if (b_fire) begin
                // LIF_o's drive, P lanes: masked K plus the DWC (the bias plus the weight of every
                // tap whose neighbour spikes: an adder tree), saturated. Computed here, under b_fire,
                // rather than in continuous logic: the same hardware, and a Verilated model that
                // does no lane arithmetic in a cycle that emits nothing.
                for (int l = 0; l < P; l++) begin : lane
                    logic signed [WIDE:0] masked_k, dwc_sum, acc, y;
                    masked_k = (m_rd[l] && k_rd[l]) ? (WIDE + 1)'(1 << MEM_FRAC) : '0;
                    dwc_sum = (WIDE + 1)'(dwc_b[DB'(l) + b_dbase]);
                    for (int tap = 0; tap < 9; tap++)
                        if (in_grid[tap] && k_nb[tap][l]) dwc_sum = dwc_sum + (WIDE + 1)'(dwc_w[RB'(l * 9 + tap) + b_wbase]);
                    acc = DWC_SHIFT >= 0 ? dwc_sum >>> DWC_SHIFT : dwc_sum <<< UP;
                    y = DWC ? masked_k + (WIDE + 1)'(saturate(acc)) : masked_k;
                    y_data[l*MEM_BITS +: MEM_BITS] <= saturate(y);
                end
                y_valid <= 1'b1;
                b_beat <= b_last_beat ? '0 : b_beat + 1'b1;
                if (b_g != GB'(G - 1)) begin
                    b_g <= b_g + 1'b1;
                    b_dbase <= b_dbase + DB'(P);
                    b_wbase <= b_wbase + RB'(P * 9);
                end else begin
                    b_g <= '0; b_dbase <= '0; b_wbase <= '0;
                    if (b_col != ($bits(b_col))'(GRID_W - 1)) begin
                        b_col <= b_col + 1'b1;
                    end else begin
                        b_col <= '0;
                        b_row <= b_row == ($bits(b_row))'(GRID_H - 1) ? '0 : b_row + 1'b1;
                    end
                    if (b_last_beat) begin
                        b_bank <= !b_bank;
                        b_t <= b_t == TB'(T - 1) ? '0 : b_t + 1'b1;
                    end
                end
            end else if (lif_ready) begin
                y_valid <= 1'b0;
            end
        end
    end
endmodule

`default_nettype wire
