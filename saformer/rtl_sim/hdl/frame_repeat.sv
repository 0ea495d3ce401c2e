// frame_repeat: a static image's first conv runs once, its LIF needs the frame at every one of the
//   T steps: this block passes each frame of BEATS beats straight through while storing it, then
//   replays it TIMES - 1 more times, then takes the next frame.
//
// Stream format: s_data / m_data WIDTH bits (a frame's membranes, in the engine's beat order).
// Memory: BEATS x WIDTH, written on the pass-through, read with a registered read (block RAM).
// Boundaries: the output leaves through a skid_buffer; s_ready is a function of registers.
// Latency and cycle model: stall-free, a frame takes TIMES * BEATS + 1 cycles (one for the first
//   replayed read), frames follow back to back, and the last beat leaves 1 cycle after the last
//   input-side cycle: frames * (TIMES * BEATS + 1) + 1 - (TIMES == 1 ? frames : 0) in all.
`default_nettype none

module frame_repeat #(
    parameter int WIDTH = 8,
    parameter int BEATS = 16,       // beats per frame
    parameter int TIMES = 4         // passes of every frame (the first is the pass-through)
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
    localparam int IW = BEATS > 1 ? $clog2(BEATS) : 1;
    localparam int TW = TIMES > 1 ? $clog2(TIMES) : 1;

    logic [WIDTH-1:0] mem [BEATS];
    logic [IW-1:0] widx, ridx;
    logic [TW-1:0] pass;                        // replay pass, 1 .. TIMES-1
    logic writing;                              // the pass-through of a new frame
    logic reading;                              // replay reads still to issue
    logic r_valid;                              // the registered read
    logic [WIDTH-1:0] r_data;
    logic o_ready;

    wire o_valid = writing ? s_valid : r_valid;
    wire [WIDTH-1:0] o_data = writing ? s_data : r_data;
    assign s_ready = writing && o_ready && !rst;
    wire take = s_valid && s_ready;
    wire issue = reading && (!r_valid || o_ready);
    wire last_read = issue && ridx == IW'(BEATS - 1) && pass == TW'(TIMES - 1);

    skid_buffer #(.WIDTH(WIDTH)) u_out (.clk, .rst, .s_valid(o_valid), .s_ready(o_ready), .s_data(o_data),
                                        .m_valid, .m_ready, .m_data);

    always_ff @(posedge clk) begin
        if (take) mem[widx] <= s_data;
        if (issue) r_data <= mem[ridx];
    end

    always_ff @(posedge clk) begin
        if (rst) begin
            widx <= '0; ridx <= '0; pass <= TW'(1); writing <= 1'b1; reading <= 1'b0; r_valid <= 1'b0;
        end else begin
            if (take) begin
                widx <= widx == IW'(BEATS - 1) ? '0 : widx + 1'b1;
                if (widx == IW'(BEATS - 1) && TIMES > 1) begin
                    writing <= 1'b0;
                    reading <= 1'b1;
                end
            end
            if (issue) begin
                r_valid <= 1'b1;
                if (ridx != IW'(BEATS - 1)) begin
                    ridx <= ridx + 1'b1;
                end else begin
                    ridx <= '0;
                    pass <= pass == TW'(TIMES - 1) ? TW'(1) : pass + 1'b1;
                end
                if (last_read) reading <= 1'b0;
            end else if (!writing && o_ready) begin
                r_valid <= 1'b0;
                if (!reading) writing <= 1'b1;  // the last replayed beat is leaving
            end
        end
    end
endmodule

`default_nettype wire
