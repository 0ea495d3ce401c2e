// syn_engine: the event-driven synaptic engine, one layer on spikes (linear / 1x1, or 3x3 conv with
// zero padding 1 and stride 1), additions only (docs/integer_contract.md, "Synaptic layers").
//
// For every input spike (channel c at position (y, x)) it adds the weight rows of c into the output
// accumulators, LANES output channels a cycle; an input without a spike costs nothing. With
// VALUE_BITS > 0 it is the first conv, on the image: an event carries a signed input value and adds
// weight * value, the one place where the network multiplies (LANES multipliers; zeros still skip).
// At the end
// of a group (one position of a linear layer, one time step's frame of a 3x3 conv) it drains the
// group's accumulators as membranes:
//   out[o] = saturate_MEM(shift(acc[o] + bias[o], OUT_SHIFT))   (floor; OUT_SHIFT < 0 shifts left)
// and clears them for the next group. Accumulators do not saturate: the export proves they fit
// ACC_BITS (saformer.quant.export's accumulator check), and the runner refuses weights that do not.
//
// Input stream: one beat per spike event, s_data = {last, empty, [value,] y, x, c} (c in the low bits;
//   y, x are 1-bit and ignored for KERNEL 1; value, VALUE_BITS signed, only when VALUE_BITS > 0). `last` closes the group after this event; a group
//   without spikes is one beat with `empty` set (an empty beat always closes the group).
// Output stream: m_data = LANES membranes (MEM_BITS each, lane 0 low), OUT/LANES beats per position,
//   positions row-major (y, x), so a drained group is the layer's output at one step in (pos, ch)
//   order: the order lif_unit takes its drives in.
// Memories: weights WEIGHT_FILE ($readmemh, IN*TAPS*CH words of LANES*W_BITS bits, word
//   (c*TAPS + tap)*CH + chunk, tap = ky*3 + kx, lane l = output chunk*LANES + l), or with WEIGHT_PORT
//   those words streamed in from outside (below); biases BIAS_FILE
//   (CH words of LANES*ACC_BITS), accumulators POS*CH words of LANES*ACC_BITS (one read and one
//   write port, read registered: block RAM); a write to the word being read is forwarded. The
//   weight ROM is read a step ahead (the event's next word, or the first word of the event being
//   taken) into its block RAM's read register, then a fabric register, so the add starts from a
//   flip-flop; the cycles are the same.
// Cycle model (stall-free): a group with e spikes takes 1 + e*TAPS*CH + POS*CH cycles (one to load
//   its first beat, TAPS*CH per spike, one drain read per output beat; out-of-range taps of border
//   spikes are issued as no-ops), groups follow back to back, and the last output beat leaves 2
//   cycles after the last drain read: total = sum over groups + 2 (saformer.rtl_sim.blocks).
// Widths: ACC_BITS need only hold the layer's worst case (the export's acc_bits_needed), which may
//   be narrower than MEM_BITS; the drain sign-extends before it shifts and saturates.
// Boundaries: s_ready and m_valid come from registers only, m_data too with OUT_REG = 1 (the 4-deep
//   output FIFO keeps its oldest beat in a head register); with OUT_REG = 0 m_data is the FIFO's
//   LUT RAM read at a registered pointer. m_ready reaches nothing combinationally (drain reads are
//   issued while the FIFO has room).
//
// Weight stream port (WEIGHT_PORT = 1, for weights that do not fit on chip): no weight ROM. A spike
//   event's weights are one burst of BURST = TAPS*CH words from external memory, requested on
//   wr_valid / wr_ready / wr_addr (the burst's first word, c*TAPS*CH, in WEIGHT_FILE's order) and
//   taken in order on w_valid / w_ready / w_data, one word per update cycle (out-of-range taps
//   included), so the engine reads what the ROM held. The request of the event at the head of the
//   input is issued while the event before it still works (one event of look-ahead: a memory
//   latency up to about BURST cycles is hidden); the head is taken only once its request is out,
//   an empty beat included (one cycle after it shows). At most two bursts are outstanding. Here
//   s_ready also reads w_valid (the last update of an event takes the next event); w_valid comes from
//   the memory, which sees nothing of s_*, so no loop. Bandwidth: LANES*W_BITS bits per update cycle.
//   Cycle model (a memory that shows a burst's first word L cycles after taking its request, then a
//   word a cycle): an event shown at cycle o and taken at a >= o + 1 consumes its words from
//   max(a + 1, o + 1 + L) on (saformer.rtl_sim.cycle_model; hdl/weight_stream_mem.sv is that memory).
`default_nettype none

module syn_engine #(
    parameter int IN = 16,          // input channels
    parameter int OUT = 16,         // output channels, a multiple of LANES
    parameter int LANES = 4,        // output channels per cycle
    parameter int KERNEL = 1,       // 1: linear / 1x1; 3: 3x3 conv, padding 1, stride 1
    parameter int H = 1,            // frame height (KERNEL 3)
    parameter int W = 1,            // frame width (KERNEL 3)
    parameter int W_BITS = 8,       // weight width (signed)
    parameter int ACC_BITS = 24,    // accumulator and bias width (signed)
    parameter int MEM_BITS = 16,    // membrane width (signed)
    parameter int OUT_SHIFT = 0,    // acc_frac - mem_frac of the layer (negative: exact left shift)
    parameter int VALUE_BITS = 0,   // 0: spikes; > 0: events carry a signed input value (the first conv)
    parameter int WEIGHT_PORT = 0,  // 0: weights in an on-chip ROM; 1: streamed in (wr_* / w_*)
    parameter int OUT_REG = 1,      // 1: m_data from a register (+1 LUT and FF per output bit); 0: from LUT RAM
    parameter WEIGHT_FILE = "",
    parameter BIAS_FILE = ""
) (
    input  wire logic                        clk,
    input  wire logic                        rst,
    input  wire logic                        s_valid,
    output logic                             s_ready,
    input  wire logic [EVW-1:0]              s_data,
    output logic                             m_valid,
    input  wire logic                        m_ready,
    output logic [LANES*MEM_BITS-1:0]        m_data,
    // the weight stream port (WEIGHT_PORT = 1; tied off and ignored otherwise)
    output logic                             wr_valid,
    input  wire logic                        wr_ready,
    output logic [WAW-1:0]                   wr_addr,
    input  wire logic                        w_valid,
    output logic                             w_ready,
    input  wire logic [LANES*W_BITS-1:0]     w_data
);
    localparam int CH = OUT / LANES;                       // beats per position
    localparam int TAPS = KERNEL * KERNEL;
    localparam int POS = KERNEL == 3 ? H * W : 1;          // positions per group
    localparam int CW = IN > 1 ? $clog2(IN) : 1;
    localparam int YW = (KERNEL == 3 && H > 1) ? $clog2(H) : 1;
    localparam int XW = (KERNEL == 3 && W > 1) ? $clog2(W) : 1;
    localparam int VB = VALUE_BITS > 0 ? VALUE_BITS : 1;
    localparam int EVW = CW + XW + YW + VALUE_BITS + 2;
    localparam int WDEPTH = IN * TAPS * CH;
    localparam int WAW = WDEPTH > 1 ? $clog2(WDEPTH) : 1;
    localparam int ADEPTH = POS * CH;
    localparam int AAW = ADEPTH > 1 ? $clog2(ADEPTH) : 1;
    localparam int CHW = CH > 1 ? $clog2(CH) : 1;
    localparam int UP = OUT_SHIFT < 0 ? -OUT_SHIFT : 0;    // headroom of a left shift
    // acc + bias, shifted, with at least one bit above the membrane's sign (the saturation test reads
    // it): an accumulator sized to its layer's worst case (engine_from_export) can be narrower
    localparam int WIDE = ACC_BITS + 1 + UP > MEM_BITS + 1 ? ACC_BITS + 1 + UP : MEM_BITS + 1;
    localparam int AW = LANES * ACC_BITS;

    // a constant multiple as shifts and adds (no multiplier is inferred)
    function automatic logic [31:0] cmul(input logic [31:0] v, input logic [31:0] k);
        logic [31:0] r;
        r = '0;
        for (int b = 0; b < 32; b++) if (k[b]) r = r + (v << b);
        cmul = r;
    endfunction

    // ---- memories ------------------------------------------------------------------------------
    logic [AW-1:0] brom [CH];
    logic [AW-1:0] acc [ADEPTH];
    // zeros first (the accumulators' are the contract's start); the weight ROM's zeros only in
    // simulation, where a file may be short: synthesis reads the whole file, and Yosys unrolls an
    // init loop word by word (minutes for a CIFAR-size ROM)
    initial begin
        for (int i = 0; i < CH; i++) brom[i] = '0;
        for (int i = 0; i < ADEPTH; i++) acc[i] = '0;
        if (BIAS_FILE != "") $readmemh(BIAS_FILE, brom);
    end

    // ---- accumulate: walk the taps and output chunks of the current spike -----------------------
    wire s_last = s_data[EVW-1];
    wire s_empty = s_data[EVW-2];
    wire [YW-1:0] s_y = s_data[CW+XW +: YW];
    wire [XW-1:0] s_x = s_data[CW +: XW];
    wire [CW-1:0] s_c = s_data[CW-1:0];
    logic [VB-1:0] s_value;
    generate
        if (VALUE_BITS > 0) begin : g_value
            assign s_value = s_data[CW+XW+YW +: VB];
        end else begin : g_spike
            assign s_value = '0;
        end
    endgenerate

    logic draining, busy, ev_last;
    logic [YW-1:0] ey;
    logic [XW-1:0] ex;
    logic [VB-1:0] ev_value, b_value;
    logic [1:0] ky, kx;
    logic [CHW-1:0] chunk;
    logic [WAW-1:0] waddr;
    logic [AAW+1:0] ebase;                                 // (ey*W + ex)*CH

    // an update cycle: busy, with its weight word here (always, from the ROM; when w_valid, streamed)
    logic head_requested;                                 // the weight port's look-ahead (1 without it)
    wire step = busy && (WEIGHT_PORT == 0 || w_valid);
    wire last_chunk = chunk == CHW'(CH - 1);
    wire last_update = step && last_chunk && kx == 2'(KERNEL - 1) && ky == 2'(KERNEL - 1);
    assign s_ready = !draining && (!busy || (last_update && !ev_last)) && head_requested;
    wire take = s_valid && s_ready;

    // target of this tap: (ey + 1 - ky, ex + 1 - kx); its address offset is a constant per tap
    logic signed [AAW+2:0] toff;
    logic in_range;
    always_comb begin
        toff = '0;
        in_range = 1'b1;
        if (KERNEL == 3) begin  // constants selected per tap: no multiplier
            case (ky)
                2'd0: toff = (AAW+3)'(W * CH);
                2'd1: toff = '0;
                default: toff = -(AAW+3)'(W * CH);
            endcase
            case (kx)
                2'd0: toff = toff + (AAW+3)'(CH);
                2'd1: ;
                default: toff = toff - (AAW+3)'(CH);
            endcase
            if (ky == 2'd0 && int'(ey) == H - 1) in_range = 1'b0;
            if (ky == 2'd2 && ey == '0) in_range = 1'b0;
            if (kx == 2'd0 && int'(ex) == W - 1) in_range = 1'b0;
            if (kx == 2'd2 && ex == '0) in_range = 1'b0;
        end
    end
    /* verilator lint_off UNUSEDSIGNAL */  // in range, the target address fits AAW bits
    wire signed [AAW+2:0] target = $signed({1'b0, ebase}) + toff + $signed({1'b0, (AAW+2)'(chunk)});
    /* verilator lint_on UNUSEDSIGNAL */
    wire upd_issue = step && in_range;

    // ---- drain: read each accumulator word, add the bias, shift, saturate ------------------------
    logic [AAW-1:0] daddr;
    logic [CHW-1:0] dchunk;
    logic [2:0] fifo_count;
    logic b_update, b_drain;                               // stage B holds an update / a drain read
    wire drain_issue = draining && (32'(fifo_count) + 32'(b_drain) < 4);
    wire last_drain = drain_issue && daddr == AAW'(ADEPTH - 1);

    wire rd_en = upd_issue || drain_issue;
    wire [AAW-1:0] rd_addr = draining ? daddr : AAW'(target);

    // ---- stage B: the registered reads, the add, the write back ---------------------------------
    logic [AAW-1:0] b_addr;
    logic [AW-1:0] a_q, b_bias, fwd_val;
    logic [LANES*W_BITS-1:0] w_q;
    logic fwd;
    wire [AW-1:0] base = fwd ? fwd_val : a_q;
    wire b_wen = b_update || b_drain;

    // Stage B's arithmetic as functions, called only in the branches that use them: the same logic
    // in hardware, and a Verilated model that does no lane arithmetic in a cycle without work.
    function automatic logic [AW-1:0] accumulate(input logic [AW-1:0] a_word, input logic [LANES*W_BITS-1:0] w_word,
                                                 input logic [VB-1:0] value);
        for (int l = 0; l < LANES; l++) begin
            logic signed [W_BITS-1:0] w;
            logic signed [ACC_BITS-1:0] term;
            w = w_word[l*W_BITS +: W_BITS];
            if (VALUE_BITS > 0) term = ACC_BITS'(w) * ACC_BITS'($signed(value));  // the first conv only
            else term = ACC_BITS'(w);
            accumulate[l*ACC_BITS +: ACC_BITS] = a_word[l*ACC_BITS +: ACC_BITS] + term;
        end
    endfunction

    function automatic logic [LANES*MEM_BITS-1:0] membranes(input logic [AW-1:0] a_word, input logic [AW-1:0] b_word);
        for (int l = 0; l < LANES; l++) begin
            logic signed [WIDE-1:0] sum, shifted;
            sum = WIDE'($signed(a_word[l*ACC_BITS +: ACC_BITS])) + WIDE'($signed(b_word[l*ACC_BITS +: ACC_BITS]));
            shifted = OUT_SHIFT >= 0 ? sum >>> OUT_SHIFT : sum <<< UP;
            // in range when the bits above the membrane's sign all equal it; else saturate by the sign
            // (no comparators: Yosys + ABC folded the comparator form to a constant at WIDE <= MEM_BITS + 2)
            if (&shifted[WIDE-1:MEM_BITS-1] || !(|shifted[WIDE-1:MEM_BITS-1])) membranes[l*MEM_BITS +: MEM_BITS] = shifted[MEM_BITS-1:0];
            else if (shifted[WIDE-1]) membranes[l*MEM_BITS +: MEM_BITS] = {1'b1, {(MEM_BITS-1){1'b0}}};
            else membranes[l*MEM_BITS +: MEM_BITS] = {1'b0, {(MEM_BITS-1){1'b1}}};
        end
    endfunction

    // reads are enabled only when their word is used: an update's weights, a drain's biases
    always_ff @(posedge clk) begin
        if (rd_en) a_q <= acc[rd_addr];
        if (b_wen) begin : write_back  // an update writes acc + term, a drain clears the word (forwarded)
            logic [AW-1:0] wdata;
            wdata = b_update ? accumulate(base, w_q, b_value) : '0;
            acc[b_addr] <= wdata;
            fwd_val <= wdata;
        end
        if (drain_issue) b_bias <= brom[dchunk];
    end

    // ---- output FIFO (4 deep) ----------------------------------------------------------------------
    // A LUT RAM of 4 words. OUT_REG = 1 keeps the oldest beat in a head register (m_head) instead, so
    // a consumer's logic starts from a flip-flop: a drained beat goes straight into the head when the
    // head is free (empty, or popped now) and the RAM holds nothing, else into the RAM, which refills
    // the head as it is popped; the RAM then holds at most 3 beats (fifo_count counts all 4), so equal
    // pointers mean empty. Both give the same cycles. The head costs a 2:1 mux and a flip-flop per
    // output bit: worth it where the LUT RAM read is slow (the ECP5), not on UltraScale+.
    logic [LANES*MEM_BITS-1:0] fifo [4];
    logic [1:0] rd_ptr, wr_ptr;
    // (membranes() is called where a beat is written, not as a wire: Verilator would evaluate a
    // wire every cycle, every lane, which slowed the whole top's simulation by a fifth)
    wire pop = m_valid && m_ready;
    logic ram_write, ram_read;

    always_ff @(posedge clk) if (ram_write) fifo[wr_ptr] <= membranes(base, b_bias);
    always_ff @(posedge clk) begin
        if (rst) begin
            rd_ptr <= '0;
            wr_ptr <= '0;
        end else begin
            if (ram_write) wr_ptr <= wr_ptr + 1'b1;
            if (ram_read) rd_ptr <= rd_ptr + 1'b1;
        end
    end

    generate
        if (OUT_REG != 0) begin : g_head
            logic [LANES*MEM_BITS-1:0] m_head;
            logic m_head_valid;
            wire m_head_free = !m_head_valid || pop;
            wire ram_empty = rd_ptr == wr_ptr;
            assign ram_write = b_drain && !(m_head_free && ram_empty);
            assign ram_read = m_head_free && !ram_empty;
            assign m_valid = m_head_valid;
            assign m_data = m_head;
            always_ff @(posedge clk) begin
                if (ram_read) m_head <= fifo[rd_ptr];
                else if (m_head_free && b_drain) m_head <= membranes(base, b_bias);
            end
            always_ff @(posedge clk) begin
                if (rst) m_head_valid <= 1'b0;
                else if (m_head_free) m_head_valid <= ram_read || b_drain;
            end
        end else begin : g_ram
            assign ram_write = b_drain;
            assign ram_read = pop;
            assign m_valid = fifo_count != 3'd0;
            assign m_data = fifo[rd_ptr];
        end
    endgenerate

    always_ff @(posedge clk) begin
        if (rst) begin
            draining <= 1'b0;
            busy <= 1'b0;
            ev_last <= 1'b0;
            ey <= '0;
            ev_value <= '0;
            b_value <= '0;
            ex <= '0;
            ky <= '0;
            kx <= '0;
            chunk <= '0;
            waddr <= '0;
            ebase <= '0;
            daddr <= '0;
            dchunk <= '0;
            b_update <= 1'b0;
            b_drain <= 1'b0;
            b_addr <= '0;
            fwd <= 1'b0;
            fifo_count <= '0;
        end else begin
            // stage B of the next cycle, and the forward of this cycle's write to that read
            b_update <= upd_issue;
            b_drain <= drain_issue;
            b_addr <= rd_addr;
            b_value <= ev_value;
            fwd <= b_wen && rd_en && b_addr == rd_addr;

            if (step) begin
                waddr <= waddr + 1'b1;
                if (last_chunk) begin
                    chunk <= '0;
                    if (kx == 2'(KERNEL - 1)) begin
                        kx <= '0;
                        ky <= ky + 1'b1;
                    end else begin
                        kx <= kx + 1'b1;
                    end
                end else begin
                    chunk <= chunk + 1'b1;
                end
                if (last_update) begin
                    busy <= 1'b0;
                    if (ev_last) draining <= 1'b1;
                end
            end
            if (take) begin
                if (s_empty) begin
                    draining <= 1'b1;
                end else begin
                    busy <= 1'b1;
                    ev_last <= s_last;
                    ey <= s_y;
                    ev_value <= s_value;
                    ex <= s_x;
                    ky <= '0;
                    kx <= '0;
                    chunk <= '0;
                    waddr <= WAW'(cmul(32'(s_c), TAPS * CH));
                    ebase <= (AAW+2)'(cmul(32'(s_y), W * CH) + cmul(32'(s_x), CH));
                    if (KERNEL != 3) ebase <= '0;
                end
            end
            if (drain_issue) begin
                daddr <= last_drain ? '0 : daddr + 1'b1;
                dchunk <= dchunk == CHW'(CH - 1) ? '0 : dchunk + 1'b1;
                if (last_drain) draining <= 1'b0;
            end

            fifo_count <= fifo_count + 3'(b_drain) - 3'(pop);
        end
    end

    // ---- weights: the ROM, or the stream port ------------------------------------------------------
    generate
        if (WEIGHT_PORT == 0) begin : g_rom
            logic [LANES*W_BITS-1:0] wrom [WDEPTH];
            // zeros only in simulation, where a file may be short: synthesis reads the whole file, and
            // Yosys unrolls an init loop word by word (minutes for a CIFAR-size ROM)
            initial begin
`ifndef SYNTHESIS
                for (int i = 0; i < WDEPTH; i++) wrom[i] = '0;
`endif
                if (WEIGHT_FILE != "") $readmemh(WEIGHT_FILE, wrom);
            end
            // read a step ahead: the ROM's own read register (a block RAM's output, slow on the ECP5:
            // 5.6 ns clock to out) takes the next step's word, then a fabric register holds it for
            // stage B, so the add starts from a flip-flop. The next step is the event's next word, or
            // the first word of the event taken now (its channel on s_data).
            logic [LANES*W_BITS-1:0] w_ahead;
            wire ahead_en = (take && !s_empty) || (step && !last_update);
            wire [WAW-1:0] ahead_addr = take ? WAW'(cmul(32'(s_c), TAPS * CH)) : waddr + 1'b1;
            always_ff @(posedge clk) if (ahead_en) w_ahead <= wrom[ahead_addr];
            always_ff @(posedge clk) if (upd_issue) w_q <= w_ahead;
            assign head_requested = 1'b1;
            assign wr_valid = 1'b0;
            assign wr_addr = '0;
            assign w_ready = 1'b0;
            /* verilator lint_off UNUSEDSIGNAL */
            wire unused_port = &{1'b0, wr_ready, w_valid, w_data};
            /* verilator lint_on UNUSEDSIGNAL */
        end else begin : g_port
            logic req_valid;
            logic [WAW-1:0] req_addr;
            // the head event's request goes out once the request register is free; an empty beat
            // needs none, but is marked the same way (s_ready then comes from registers alone)
            wire req_issue = s_valid && !head_requested && (!req_valid || wr_ready);
            always_ff @(posedge clk) begin
                if (rst) begin
                    head_requested <= 1'b0;
                    req_valid <= 1'b0;
                    req_addr <= '0;
                end else begin
                    if (req_valid && wr_ready) req_valid <= 1'b0;
                    if (req_issue) begin
                        head_requested <= 1'b1;
                        if (!s_empty) begin
                            req_valid <= 1'b1;
                            req_addr <= WAW'(cmul(32'(s_c), TAPS * CH));
                        end
                    end
                    if (take) head_requested <= 1'b0;
                end
            end
            always_ff @(posedge clk) if (upd_issue) w_q <= w_data;
            assign wr_valid = req_valid;
            assign wr_addr = req_addr;
            assign w_ready = busy;
            /* verilator lint_off UNUSEDSIGNAL */
            wire unused_rom = &{1'b0, waddr};  // the ROM's address walk, kept in step for a shared datapath
            /* verilator lint_on UNUSEDSIGNAL */
        end
    endgenerate
endmodule
