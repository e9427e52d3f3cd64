// Self-checking testbench for the snncc FPGA top (generated folder, tb/).
// Reads tb/input.mem (int8 words, NIN per sample) and tb/expected.mem (int32 words,
// NOUT per sample) written from the integer runtime, drives the input stream and the
// output ready with random back-pressure, compares every output word and TLAST, and
// prints PASS or FAIL with the first mismatch ($fatal: non-zero exit code).
`timescale 1ns/1ps
`default_nettype none
module tb;
`include "tb_config.vh"
    reg clk = 1'b0;
    reg rst = 1'b1;
    always #5 clk = ~clk;
    reg  [7:0]  s_tdata = 8'd0;
    reg         s_tvalid = 1'b0, s_tlast = 1'b0;
    wire        s_tready;
    wire [31:0] m_tdata;
    wire        m_tvalid, m_tlast;
    reg         m_tready = 1'b0;
    wire        busy, tlast_error;
    wire [31:0] cycles;
    `TOP dut (.clk(clk), .rst(rst), .s_axis_tdata(s_tdata), .s_axis_tvalid(s_tvalid), .s_axis_tready(s_tready),
              .s_axis_tlast(s_tlast), .m_axis_tdata(m_tdata), .m_axis_tvalid(m_tvalid), .m_axis_tready(m_tready),
              .m_axis_tlast(m_tlast), .busy(busy), .cycles(cycles), .tlast_error(tlast_error));
    reg [7:0]  inmem  [0:NIN*NSAMP-1];
    reg [31:0] expmem [0:NOUT*NSAMP-1];
    integer seed = SEED;
    integer in_idx = 0, out_idx = 0, errors = 0, ticks = 0;
    wire in_fire = s_tvalid && s_tready;
    wire out_fire = m_tvalid && m_tready;
    integer in_next, r_in, r_out;
    initial begin
        $readmemh("tb/input.mem", inmem);
        $readmemh("tb/expected.mem", expmem);
        repeat (4) @(posedge clk);
        rst <= 1'b0;
    end
    always @(posedge clk) begin
        ticks <= ticks + 1;
        if (ticks > MAX_TICKS) begin
            $display("FAIL timeout after %0d cycles: %0d of %0d output words seen", ticks, out_idx, NOUT*NSAMP);
            $fatal(1, "timeout");
        end
        if (!rst) begin
            // input stream: hold data while tvalid && !tready (AXI4-Stream rule)
            r_in = $random(seed);
            r_out = $random(seed);
            in_next = in_idx + (in_fire ? 1 : 0);
            in_idx <= in_next;
            if (!s_tvalid || in_fire) begin
                if (in_next < NIN*NSAMP && (r_in & 3) != 0) begin
                    s_tvalid <= 1'b1;
                    s_tdata <= inmem[in_next];
                    s_tlast <= ((in_next % NIN) == NIN - 1);
                end else begin
                    s_tvalid <= 1'b0;
                    s_tlast <= 1'b0;
                end
            end
            m_tready <= (r_out & 3) != 0;
            if (out_fire) begin
                if (m_tdata !== expmem[out_idx] || m_tlast !== ((out_idx % NOUT) == NOUT - 1)) begin
                    if (errors == 0)
                        $display("FAIL first mismatch: sample %0d word %0d got %0d (tlast %0d) expected %0d",
                                 out_idx / NOUT, out_idx % NOUT, $signed(m_tdata), m_tlast,
                                 $signed(expmem[out_idx]));
                    errors = errors + 1;
                end
                if ((out_idx % NOUT) == NOUT - 1)
                    $display("CYCLES %0d %0d", out_idx / NOUT, cycles);
                out_idx <= out_idx + 1;
                if (out_idx + 1 == NOUT*NSAMP) begin
                    if (errors == 0 && !tlast_error) begin
                        $display("PASS %0d samples, %0d output words", NSAMP, NOUT*NSAMP);
                        $finish;
                    end else begin
                        $display("FAIL %0d mismatching words of %0d (tlast_error %0d)", errors, NOUT*NSAMP,
                                 tlast_error);
                        $fatal(1, "mismatch");
                    end
                end
            end
        end
    end
endmodule
