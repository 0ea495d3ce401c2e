// maxpool: MaxPool(3, stride 2, padding 1) on membranes, comparisons only (the contract's
// golden.maxpool3x3s2), LANES channels a cycle, streaming: a 3x3 window is the max of three column
// maxima, kept as running partial maxima in small memories (no frame buffer).
//
// Stream format
//   s_data  LANES x WIDTH-bit signed membranes, lane 0 low. A frame is H rows x W columns, row-major;
//           each position is C / LANES beats, channels in order (the order syn_engine emits).
//   m_data  the pooled frame, (H/2) x (W/2) positions, same packing and order.
// How: column 2k-1, 2k, 2k+1 make output column k (a partial max of the even column, and the odd
//   column carried to the next window); rows likewise, on the row-complete maxima of odd columns.
//   Padding is "take the first value", never a constant.
// Memories: each pair of partial results lives in one memory of two banks, because the two are
//   never needed in the same beat: an even column reads the carried odd column (bank 1) and writes
//   its partial max (bank 0), an odd column reads that partial max and carries itself. Columns:
//   2 banks of C/LANES words (by chunk); rows: 2 banks of (W/2) x C/LANES words (by output column
//   and chunk), bank 0 the max of rows 2k-1, 2k (written on even rows), bank 1 the odd row's column
//   maxima (written on odd rows). A beat writes one bank; the other is read a beat ahead into a
//   register (LUT RAM read asynchronously, so the compares start from flip-flops).
// Timing: a beat's three maxima share their compares, all three made side by side on the read-ahead
//   registers and the input (column word vs input, row word vs input, row word vs column word), then
//   selected: one compare deep from a register to a memory write. (A memory read feeding two chained
//   compares was the digits top's critical path on the ECP5: 54 -> 84 MHz for this block alone at
//   8 lanes, C 64, 8x8.)
// Latency and cycle model: an output beat leaves with the input beat of the window's last row and
//   column (odd row, odd column) through one output register; s_ready = !m_valid || m_ready. The last
//   input beat of a frame makes its last output, so stall-free B input beats take B + 1 cycles.
`default_nettype none

module maxpool #(
    parameter int WIDTH = 16,
    parameter int LANES = 4,
    parameter int C = 8,        // channels, a multiple of LANES
    parameter int H = 4,        // input rows (even)
    parameter int W = 4         // input columns (even)
) (
    input  wire logic                     clk,
    input  wire logic                     rst,
    input  wire logic                     s_valid,
    output logic                          s_ready,
    input  wire logic [LANES*WIDTH-1:0]   s_data,
    output logic                          m_valid,
    input  wire logic                     m_ready,
    output logic [LANES*WIDTH-1:0]        m_data
);
    localparam int CH = C / LANES;
    localparam int VDEPTH = (W / 2) * CH;
    localparam int CHW = CH > 1 ? $clog2(CH) : 1;
    localparam int VW = VDEPTH > 1 ? $clog2(VDEPTH) : 1;
    localparam int RW = H > 1 ? $clog2(H) : 1;
    localparam int XW = W > 1 ? $clog2(W) : 1;
    localparam int BW = LANES * WIDTH;
    localparam int CAW = $clog2(2 * CH);      // the memories' address widths (two banks each)
    localparam int VAW = $clog2(2 * VDEPTH);

    // LUT RAM (an asynchronous read into a register): a block RAM's unregistered output is slow
    (* ram_style = "distributed" *) logic [BW-1:0] col_mem [2 * CH];      // bank 0: max of columns 2k-1, 2k; bank 1: column 2k+1
    (* ram_style = "distributed" *) logic [BW-1:0] row_mem [2 * VDEPTH];  // bank 0: max of rows 2k-1, 2k; bank 1: row 2k+1's maxima
    logic [BW-1:0] c_q, r_q;  // the next beat's column word and the next odd-column beat's row word, read ahead

    logic [CHW-1:0] chunk;
    logic [XW-1:0] col;
    logic [RW-1:0] row;
    logic [VW-1:0] vaddr;

    assign s_ready = !m_valid || m_ready;
    wire take = s_valid && s_ready;
    wire odd_col = col[0];
    wire odd_row = row[0];
    // the read-ahead: a beat reads the bank the other parity wrote, at the next beat's address (the
    // column word) or the next odd-column beat's (the row word). Only with one chunk (CH = 1), or one
    // row word (VDEPTH = 1), is that the word this beat writes: then the write is forwarded instead.
    wire last_chunk = chunk == CHW'(CH - 1);
    wire row_end = last_chunk && col == XW'(W - 1);
    wire [CHW-1:0] chunk_next = last_chunk ? '0 : chunk + 1'b1;
    wire [VW-1:0] vaddr_next = vaddr == VW'(VDEPTH - 1) ? '0 : vaddr + 1'b1;
    wire odd_col_next = last_chunk ? !odd_col : odd_col;
    wire odd_row_next = row_end ? !odd_row : odd_row;      // of the next odd-column beat (W even)
    // bank 1 starts at word CH (VDEPTH): the bank bit above the index when CH (VDEPTH) is a power of
    // two above 1, else an add; from registers, off the compare's path
    logic [CAW-1:0] c_waddr, c_raddr;
    logic [VAW-1:0] r_waddr, r_raddr;
    generate
        if (CH > 1 && (1 << CHW) == CH) begin : g_col_concat
            assign c_waddr = {odd_col, chunk};
            assign c_raddr = {!odd_col_next, chunk_next};
        end else begin : g_col_add
            assign c_waddr = CAW'(chunk) + (odd_col ? CAW'(CH) : '0);
            assign c_raddr = CAW'(chunk_next) + (odd_col_next ? '0 : CAW'(CH));
        end
        if (VDEPTH > 1 && (1 << VW) == VDEPTH) begin : g_row_concat
            assign r_waddr = {odd_row, vaddr};
            assign r_raddr = {!odd_row_next, vaddr_next};
        end else begin : g_row_add
            assign r_waddr = VAW'(vaddr) + (odd_row ? VAW'(VDEPTH) : '0);
            assign r_raddr = VAW'(vaddr_next) + (odd_row_next ? '0 : VAW'(VDEPTH));
        end
    endgenerate

    // one beat's window arithmetic, LANES lanes: {pooled, row_write, col_write}. Called only on a
    // taken beat: the same hardware, and a Verilated model that does no lane arithmetic when idle.
    //   c  the column bank read: the carried column 2k-1 (even column) or the max of 2k-1, 2k (odd)
    //   r  the row bank read (odd columns): row 2k-1's maxima (even row) or the max of 2k-1, 2k (odd)
    // h = max(c, x) is the even column's partial max (the odd column's row-complete max); the 3x3
    // maximum is max(r, c, x), which is r when r beats both, else h.
    function automatic logic [3*BW-1:0] window(input logic [BW-1:0] x_word, input logic [BW-1:0] c_word_in,
                                               input logic [BW-1:0] r_word_in, input logic first_col,
                                               input logic first_row, input logic odd_c, input logic odd_r);
        logic [BW-1:0] col_w, row_w, pooled;
        for (int l = 0; l < LANES; l++) begin
            logic signed [WIDTH-1:0] x, c, r, h, m3;
            logic c_gt_x, r_gt_x, r_gt_c;
            x = x_word[l*WIDTH +: WIDTH];
            c = c_word_in[l*WIDTH +: WIDTH];
            r = r_word_in[l*WIDTH +: WIDTH];
            c_gt_x = c > x;                      // the three compares, side by side
            r_gt_x = r > x;
            r_gt_c = r > c;
            h = c_gt_x ? c : x;
            m3 = r_gt_x && r_gt_c ? r : h;
            col_w[l*WIDTH +: WIDTH] = odd_c ? x : (first_col ? x : h);
            row_w[l*WIDTH +: WIDTH] = odd_r || first_row ? h : m3;
            pooled[l*WIDTH +: WIDTH] = m3;
        end
        window = {pooled, row_w, col_w};
    endfunction

    always_ff @(posedge clk) begin
        if (rst) begin
            chunk <= '0;
            col <= '0;
            row <= '0;
            vaddr <= '0;
            m_valid <= 1'b0;
            m_data <= '0;
        end else begin
            if (m_valid && m_ready) m_valid <= 1'b0;
            if (take) begin : beat
                logic [3*BW-1:0] w;
                w = window(s_data, c_q, r_q, col == '0, row == '0, odd_col, odd_row);
                col_mem[c_waddr] <= w[0 +: BW];
                c_q <= CH == 1 ? w[0 +: BW] : col_mem[c_raddr];
                if (odd_col) begin
                    row_mem[r_waddr] <= w[BW +: BW];
                    r_q <= VDEPTH == 1 ? w[BW +: BW] : row_mem[r_raddr];
                end
                if (odd_col && odd_row) begin
                    m_valid <= 1'b1;
                    m_data <= w[2*BW +: BW];
                end
                if (odd_col) vaddr <= vaddr_next;
                chunk <= chunk_next;
                if (last_chunk) begin
                    if (col == XW'(W - 1)) begin
                        col <= '0;
                        row <= row == RW'(H - 1) ? '0 : row + 1'b1;
                    end else begin
                        col <= col + 1'b1;
                    end
                end
            end
        end
    end
endmodule
