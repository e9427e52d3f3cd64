// snncc FPGA library: plain-array memories (block RAM is inferred) and the
// multi-level integrate-and-fire neuron as integer compares and subtracts.
// Verilog-2001, no vendor primitives.  Generated designs instantiate these.
`default_nettype none

// One write port, one synchronous read port (data one cycle after the address).
// The generated cores never use a word read in the cycle it is written, so the RAM
// needs no read-during-write logic (no_rw_check: yosys maps it to a bare block RAM).
module snncc_ram #(parameter W = 8, parameter D = 16, parameter AW = 4) (
    input  wire          clk,
    input  wire          we,
    input  wire [AW-1:0] waddr,
    input  wire [W-1:0]  wdata,
    input  wire [AW-1:0] raddr,
    output reg  [W-1:0]  rdata
);
    (* no_rw_check *) reg [W-1:0] mem [0:D-1];
    always @(posedge clk) begin
        if (we) mem[waddr] <= wdata;
        rdata <= mem[raddr];
    end
endmodule

// A banked frame buffer: Q banks of W bits side by side in one word (channel c of a
// pixel in bank c mod Q); a write stores the banks whose mask bit is set.
module snncc_ram_banked #(parameter W = 8, parameter Q = 2, parameter D = 16, parameter AW = 4) (
    input  wire          clk,
    input  wire          we,
    input  wire [Q-1:0]  mask,
    input  wire [AW-1:0] waddr,
    input  wire [Q*W-1:0] wdata,
    input  wire [AW-1:0] raddr,
    output reg  [Q*W-1:0] rdata
);
    (* no_rw_check *) reg [Q*W-1:0] mem [0:D-1];
    genvar k;
    generate for (k = 0; k < Q; k = k + 1) begin : bank
        always @(posedge clk) if (we && mask[k]) mem[waddr][k*W +: W] <= wdata[k*W +: W];
    end endgenerate
    always @(posedge clk) rdata <= mem[raddr];
endmodule

// Read-only memory initialised from a $readmemh image (mem/*.mem).
module snncc_rom #(parameter W = 8, parameter D = 16, parameter AW = 4, parameter INIT = "") (
    input  wire          clk,
    input  wire [AW-1:0] addr,
    output reg  [W-1:0]  data
);
    reg [W-1:0] mem [0:D-1];
    initial $readmemh(INIT, mem);
    always @(posedge clk) data <= mem[addr];
endmodule

// v = sat_B(v_prev + cur); z = clamp(floor(v / theta), lo, N); v -= z * theta;
// then v = floor(v / 2^SHIFT) * 2^SHIFT.  floor(v / theta) >= k  <=>  v >= k*theta,
// and floor(v / theta) <= -k  <=>  v < -(k-1)*theta, so the level is a count of
// threshold compares (exact for any theta > 0, no division, no reciprocal).
module snncc_neuron #(
    parameter CW = 16,      // current width
    parameter SW = 16,      // stored membrane width (proven by range analysis)
    parameter TW = 8,       // theta width
    parameter NW = 24,      // internal width: holds v_prev + cur, N*theta and 2^(B-1)
    parameter B = 16,       // membrane saturation width
    parameter N = 4,        // levels
    parameter SIGNED = 0,
    parameter SHIFT = 0,
    parameter ZW = 4,
    parameter SAT = 1       // 0: the proven v + I range fits B bits, so saturation is the identity
) (
    input  wire signed [CW-1:0] cur,
    input  wire signed [SW-1:0] v_prev,
    input  wire signed [TW-1:0] theta,
    output reg  signed [SW-1:0] v_next,
    output reg  signed [ZW-1:0] z
);
    localparam integer LB = (SAT != 0) ? B : 2;  // NW need not hold 2^(B-1) when there is no saturation
    localparam [NW-1:0] VMAX = {{(NW-LB+1){1'b0}}, {(LB-1){1'b1}}};
    localparam [NW-1:0] VMIN = {{(NW-LB+1){1'b1}}, {(LB-1){1'b0}}};
    reg signed [NW-1:0] s, m, r;
    reg signed [ZW-1:0] zc;
    integer k;
    always @* begin
        s = cur;
        s = s + v_prev;
        if (SAT != 0) begin
            if (s > $signed(VMAX)) s = $signed(VMAX);
            else if (s < $signed(VMIN)) s = $signed(VMIN);
        end
        zc = 0;
        r = s;
        m = 0;
        for (k = 0; k < N; k = k + 1) begin
            m = m + theta;
            if (s >= m) begin
                zc = zc + 1;
                r = r - theta;
            end
        end
        if (SIGNED != 0) begin
            m = 0;
            for (k = 0; k < N; k = k + 1) begin
                if (s < -m) begin
                    zc = zc - 1;
                    r = r + theta;
                end
                m = m + theta;
            end
        end
        if (SHIFT > 0) r = (r >>> SHIFT) <<< SHIFT;
        v_next = r[SW-1:0];
        z = zc;
    end
endmodule
