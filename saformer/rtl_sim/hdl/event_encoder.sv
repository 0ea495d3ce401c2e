// event_encoder: turns a dense stream (a lif_unit's spikes, or the image's quantized values) into
// the event stream of a syn_engine: one beat per non-zero element, grouped as the engine drains.
//
// Input stream: s_data = LANES elements of VB bits (VB = 1 for spikes; VALUE_BITS signed values
//   otherwise), lane 0 in the low bits, beats in (position, channel chunk) order: IN / LANES beats
//   per position, positions row-major. A group is one step's frame of H*W positions (KERNEL 3),
//   or GROUP positions (KERNEL 1: one token for a linear layer; a sample's T*N tokens for the head,
//   whose accumulators span the sample).
// Output stream: syn_engine's events, {last, empty, [value,] y, x, c} (c in the low bits; y, x
//   1-bit zeros for KERNEL 1), elements in input order (lowest lane first); `last` marks the
//   group's final event, and a group without events is one beat with `last` and `empty`.
// How: a beat is held while its non-zero lanes are peeled off one per cycle, the lowest first;
//   the newest event waits in a register until the next one (or the group's end) says whether it
//   is the last. The output leaves through a skid_buffer: s_ready and m_valid / m_data are
//   registers or functions of registers, and m_ready reaches nothing combinationally.
// Cycle model (stall-free): a beat with e events takes max(e, 1) cycles, one more if it ends a
//   group and e > 0 (the flush); the last event leaves 2 cycles after the stream's last cycle:
//   total = sum over beats of cost + 2 (saformer/rtl_sim/blocks.py).
`default_nettype none

module event_encoder #(
    parameter int IN = 16,          // channels per position, a multiple of LANES
    parameter int LANES = 4,        // elements per input beat
    parameter int KERNEL = 1,       // the engine's kernel: 3 gives events a (y, x) position in an H x W frame
    parameter int H = 1,
    parameter int W = 1,
    parameter int GROUP = 1,        // KERNEL 1: positions per group
    parameter int VALUE_BITS = 0    // 0: spikes; > 0: signed values, carried in the events (the first conv)
) (
    input  wire logic                  clk,
    input  wire logic                  rst,
    input  wire logic                  s_valid,
    output logic                       s_ready,
    input  wire logic [LANES*VB-1:0]   s_data,
    output logic                       m_valid,
    input  wire logic                  m_ready,
    output logic [EVW-1:0]             m_data
);
    localparam int VB = VALUE_BITS > 0 ? VALUE_BITS : 1;
    localparam int POS = KERNEL == 3 ? H * W : GROUP;      // positions per group
    localparam int CW = IN > 1 ? $clog2(IN) : 1;
    localparam int YW = (KERNEL == 3 && H > 1) ? $clog2(H) : 1;
    localparam int XW = (KERNEL == 3 && W > 1) ? $clog2(W) : 1;
    localparam int EVW = CW + XW + YW + VALUE_BITS + 2;    // = syn_engine's event width
    localparam int EB = EVW - 2;                           // an event without last / empty
    localparam int LW = LANES > 1 ? $clog2(LANES) : 1;
    localparam int PW = POS > 1 ? $clog2(POS) : 1;

    generate
        if (IN % LANES != 0) begin : g_bad_lanes
            $error("event_encoder %m: IN=%0d is not a multiple of LANES=%0d", IN, LANES);
        end
        if (KERNEL != 1 && KERNEL != 3) begin : g_bad_kernel
            $error("event_encoder %m: KERNEL=%0d (1 or 3)", KERNEL);
        end
    endgenerate

    // position of the next input beat
    logic [CW-1:0]  in_cbase;                // first channel of the beat (a counter: no multiplier)
    logic [PW-1:0]  in_pos;
    logic [YW-1:0]  in_y;
    logic [XW-1:0]  in_x;
    wire in_last_chunk = in_cbase == CW'(IN - LANES);
    wire in_group_end = in_last_chunk && in_pos == PW'(POS - 1);

    // the held beat: lanes still to emit, its values, where it is, and whether it ends its group
    logic [LANES-1:0]    a_mask;
    logic [LANES*VB-1:0] a_data;
    logic [CW-1:0]       a_cbase;
    logic [YW-1:0]       a_y;
    logic [XW-1:0]       a_x;
    logic                a_end;
    logic                pend_valid;          // the newest event, until we know if it is the last
    logic [EB-1:0]       pend;

    logic [LANES-1:0] nonzero;
    if (VALUE_BITS > 0) begin : g_values
        for (genvar l = 0; l < LANES; l++) begin : g_nz
            assign nonzero[l] = s_data[l*VB +: VB] != '0;
        end
    end else begin : g_spikes
        assign nonzero = s_data;  // a spike is its own flag
    end

    // the lowest lane still to emit: its one-hot, whose index bit b is the OR over the lanes that
    // have bit b set (LW OR trees over constant masks, no priority chain)
    function automatic logic [LW*LANES-1:0] lanes_with_bit();
        for (int b = 0; b < LW; b++)
            for (int l = 0; l < LANES; l++) lanes_with_bit[b*LANES + l] = ((l >> b) & 1) == 1;
    endfunction
    localparam logic [LW*LANES-1:0] LANES_WITH_BIT = lanes_with_bit();
    function automatic logic [LW-1:0] lowest_lane(input logic [LANES-1:0] mask);
        logic [LANES-1:0] onehot;
        onehot = mask & (~mask + 1'b1);
        for (int b = 0; b < LW; b++) lowest_lane[b] = |(onehot & LANES_WITH_BIT[b*LANES +: LANES]);
    endfunction
    wire [LANES-1:0] mask_rest = a_mask & (a_mask - 1'b1);  // the mask without its lowest bit

    logic o_valid, o_ready;
    logic [EVW-1:0] o_data;
    wire extract = a_mask != '0 && (!pend_valid || o_ready);
    wire flush = a_mask == '0 && a_end && o_ready;
    always_comb begin
        o_valid = 1'b0;
        o_data = '0;
        if (a_mask != '0) begin
            o_valid = pend_valid;
            o_data = {2'b00, pend};
        end else if (a_end) begin
            o_valid = 1'b1;
            o_data = pend_valid ? {2'b10, pend} : {2'b11, EB'(0)};
        end
    end
    // free at the end of this cycle: nothing held, its end flushed, or its last event peeled off
    assign s_ready = !rst && ((a_mask == '0 && (!a_end || o_ready)) || (mask_rest == '0 && !a_end && extract));
    wire take = s_valid && s_ready;

    skid_buffer #(.WIDTH(EVW)) u_out (.clk, .rst, .s_valid(o_valid), .s_ready(o_ready), .s_data(o_data),
                                      .m_valid, .m_ready, .m_data);

    always_ff @(posedge clk) begin
        if (rst) begin
            in_cbase <= '0; in_pos <= '0; in_y <= '0; in_x <= '0;
            a_mask <= '0; a_end <= 1'b0; pend_valid <= 1'b0;
            a_data <= '0; a_cbase <= '0; a_y <= '0; a_x <= '0; pend <= '0;
        end else begin
            if (extract) begin : peel  // the event of the lowest lane left: {[value,] y, x, channel}
                logic [LW-1:0] lane;
                logic [VB-1:0] value;
                lane = lowest_lane(a_mask);
                value = '0;
                if (VALUE_BITS > 0)  // a mux over constant part-selects (no index multiply)
                    for (int l = 0; l < LANES; l++)
                        if (lane == LW'(l)) value = a_data[l*VB +: VB];
                pend <= EB'({value, a_y, a_x, a_cbase + CW'(lane)});  // spikes: the value bit drops out
                pend_valid <= 1'b1;
                a_mask <= mask_rest;
            end
            if (flush) begin
                pend_valid <= 1'b0;
                a_end <= 1'b0;
            end
            if (take) begin
                a_mask <= nonzero;
                a_data <= s_data;
                a_cbase <= in_cbase;
                a_y <= in_y;
                a_x <= in_x;
                a_end <= in_group_end;
                if (!in_last_chunk) begin
                    in_cbase <= in_cbase + CW'(LANES);
                end else begin
                    in_cbase <= '0;
                    in_pos <= in_pos == PW'(POS - 1) ? '0 : in_pos + 1'b1;
                    if (KERNEL == 3) begin
                        if (in_x != XW'(W - 1)) begin
                            in_x <= in_x + 1'b1;
                        end else begin
                            in_x <= '0;
                            in_y <= in_y == YW'(H - 1) ? '0 : in_y + 1'b1;
                        end
                    end
                end
            end
        end
    end
endmodule

`default_nettype wire
