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
//   Padding is "take the first value", never a constant. Memories: 2 x C/LANES words (columns),
//   2 x (W/2) x C/LANES words (rows), read in the cycle they are written (LUT RAM or registers).
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

    logic [BW-1:0] col_part [CH];      // max of columns 2k-1, 2k (this row)
    logic [BW-1:0] col_carry [CH];     // column 2k+1, the left neighbour of the next window
    logic [BW-1:0] row_part [VDEPTH];  // max of rows 2k-1, 2k (per output column and chunk)
    logic [BW-1:0] row_carry [VDEPTH]; // row 2k+1's column maxima, for the next window

    logic [CHW-1:0] chunk;
    logic [XW-1:0] col;
    logic [RW-1:0] row;
    logic [VW-1:0] vaddr;

    assign s_ready = !m_valid || m_ready;
    wire take = s_valid && s_ready;
    wire odd_col = col[0];
    wire odd_row = row[0];

    function automatic logic [WIDTH-1:0] smax(input logic [WIDTH-1:0] a, input logic [WIDTH-1:0] b);
        smax = $signed(a) > $signed(b) ? a : b;
    endfunction

    // one beat's window arithmetic, LANES lanes: {pooled, v_even, h_done, h_even}. Called only on a
    // taken beat: the same hardware, and a Verilated model that does no lane arithmetic when idle.
    function automatic logic [4*BW-1:0] window(input logic [BW-1:0] x_word, input logic [BW-1:0] c_carry,
                                               input logic [BW-1:0] c_part, input logic [BW-1:0] r_carry,
                                               input logic [BW-1:0] r_part, input logic first_col, input logic first_row);
        logic [BW-1:0] h_even, h_done, v_even, pooled;
        for (int l = 0; l < LANES; l++) begin
            logic [WIDTH-1:0] x;
            x = x_word[l*WIDTH +: WIDTH];
            h_even[l*WIDTH +: WIDTH] = first_col ? x : smax(c_carry[l*WIDTH +: WIDTH], x);
            h_done[l*WIDTH +: WIDTH] = smax(c_part[l*WIDTH +: WIDTH], x);
            v_even[l*WIDTH +: WIDTH] = first_row ? h_done[l*WIDTH +: WIDTH]
                                                 : smax(r_carry[l*WIDTH +: WIDTH], h_done[l*WIDTH +: WIDTH]);
            pooled[l*WIDTH +: WIDTH] = smax(r_part[l*WIDTH +: WIDTH], h_done[l*WIDTH +: WIDTH]);
        end
        window = {pooled, v_even, h_done, h_even};
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
                logic [4*BW-1:0] w;
                w = window(s_data, col_carry[chunk], col_part[chunk], row_carry[vaddr], row_part[vaddr],
                           col == '0, row == '0);
                if (!odd_col) begin
                    col_part[chunk] <= w[0 +: BW];                 // h_even
                end else begin
                    col_carry[chunk] <= s_data;
                    if (!odd_row) row_part[vaddr] <= w[2*BW +: BW];  // v_even
                    else row_carry[vaddr] <= w[BW +: BW];         // h_done
                end
                if (odd_col && odd_row) begin
                    m_valid <= 1'b1;
                    m_data <= w[3*BW +: BW];                      // pooled
                end
                if (odd_col) vaddr <= vaddr == VW'(VDEPTH - 1) ? '0 : vaddr + 1'b1;
                if (chunk == CHW'(CH - 1)) begin
                    chunk <= '0;
                    if (col == XW'(W - 1)) begin
                        col <= '0;
                        row <= row == RW'(H - 1) ? '0 : row + 1'b1;
                    end else begin
                        col <= col + 1'b1;
                    end
                end else begin
                    chunk <= chunk + 1'b1;
                end
            end
        end
    end
endmodule
