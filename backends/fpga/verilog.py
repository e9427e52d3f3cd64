"""netlist.json -> synthesizable Verilog-2001 (rtl/*.v).

Everything here reads only the netlist dict: one module per core (``window`` and
``eltwise`` generators), and the top module with the AXI4-Stream ports, the frame
buffers, the core sequencer, the ``busy`` flag and the cycle counter.  The shared
memories and the neuron live in ``templates/snncc_lib.v``.
"""

from __future__ import annotations

from snncc.backends.fpga.geometry import window_geometry
from snncc.backends.fpga.netlist import sbits


def clog2(n: int) -> int:
    """Address width for ``n`` words (at least 1)."""
    return max(1, (int(n) - 1).bit_length())


def _sx(expr: str, width: int) -> str:
    return f"$signed({expr})" if width else expr


def _param_fields(core: dict, word: str, lane: str = "") -> dict[str, tuple[str, int]]:
    """Fields of the parameter ROM word (LSB first); ``lane`` (a genvar) picks that lane's fields of a
    parallel-epilogue word, which holds the lanes' field sets one after another."""
    out = {}
    pw = sum(f["bits"] for f in core["params"])
    pos = 0
    for f in core["params"]:
        base = f"{lane}*{pw} + {pos}" if lane else f"{pos}"
        out[f["name"]] = (f"$signed({word}[{base} +: {f['bits']}])", f["bits"])
        pos += f["bits"]
    return out


def _neuron(ep: dict, value: str, value_bits: int, theta: str, indent: str) -> str:
    """The snncc_neuron instance: v_prev, v_next and z are declared by the caller.  Its internal
    width holds v + I, k*theta for k <= N and, only when the proven v + I range exceeds B bits
    (``saturates``), the saturation bounds +-2^(B-1)."""
    sw, tw = ep["state_bits"], ep["theta_bits"]
    sat = ep.get("saturates", True)
    nw = max(ep["sum_bits"], ep["membrane_bits"] if sat else 0, tw + clog2(ep["levels"] + 1) + 1, sw,
             value_bits) + 2
    return (f"{indent}snncc_neuron #(.CW({value_bits}), .SW({sw}), .TW({tw}), .NW({nw}), .B({ep['membrane_bits']}), "
            f".N({ep['levels']}), .SIGNED({int(ep['signed'])}), .SHIFT({ep['membrane_shift']}), "
            f".ZW({ep['level_bits']}), .SAT({int(sat)})) neuron (.cur({value}), .v_prev(v_prev), .theta({theta}), "
            f".v_next(v_next), .z(z));")


def _epilogue(core: dict, value: str, value_bits: int, out_addr: str = "ep_widx", out_mask: str = "1'b1",
              banks: int = 1) -> str:
    """Verilog for the per-element epilogue.

    Inputs (declared by the caller): ``ep_ridx`` the element index whose state is read
    this cycle, ``ep_go``/``ep_widx`` the element processed this cycle (its reads were
    issued one cycle earlier), ``prm`` the parameter ROM word of its channel, ``value``.
    """
    ep = core["epilogue"]
    ow = core["widths"]["out"]
    depth = core["geometry"]["out_shape"][0] * core["geometry"]["out_shape"][1] * core["geometry"]["out_shape"][2]
    aw = clog2(depth)
    lines = []
    if ep["kind"] == "neuron":
        f = _param_fields(core, "prm")
        sw = ep["state_bits"]
        lines += [
            f"    wire signed [{sw - 1}:0] v_next;",
            f"    wire signed [{ep['level_bits'] - 1}:0] z;",
        ]
        if ep["stored"]:
            lines += [
                f"    wire [{sw - 1}:0] v_rd;",
                f"    snncc_ram #(.W({sw}), .D({depth}), .AW({aw})) mem_v (.clk(clk), .we(ep_go), "
                f".waddr(ep_widx), .wdata(v_next), .raddr(ep_ridx), .rdata(v_rd));",
                f"    wire signed [{sw - 1}:0] v_prev = first ? {f['v_init'][0]} : $signed(v_rd);",
            ]
        else:  # T = 1: the membrane starts at v_init and is not kept
            lines.append(f"    wire signed [{sw - 1}:0] v_prev = {f['v_init'][0]};")
        lines += [_neuron(ep, value, value_bits, f["theta"][0], "    "), f"    wire signed [{ow - 1}:0] result = z;"]
    elif ep["kind"] == "acc":
        w = max(ow, value_bits) + 1
        lines += [
            "    assign acc_raddr = ep_ridx;",
            f"    wire signed [{w - 1}:0] acc_prev = first ? {w}'sd0 : $signed(acc_rdata);",
            f"    wire signed [{w - 1}:0] acc_sum = acc_prev + {value};",
            f"    wire signed [{ow - 1}:0] result = acc_sum[{ow - 1}:0];",
        ]
    else:
        w = max(ow, value_bits)
        lines += [
            f"    wire signed [{w - 1}:0] result_w = {value};",
            f"    wire signed [{ow - 1}:0] result = result_w[{ow - 1}:0];",
        ]
    lines += [
        "    assign out_we = ep_go;",
        f"    assign out_mask = {out_mask};",
        f"    assign out_addr = {out_addr};",
        "    assign out_data = result;" if banks == 1 else f"    assign out_data = {{{banks}{{result}}}};",
    ]
    return "\n".join(lines)


def _epilogue_parallel(core: dict, values: str, value_bits: int) -> str:
    """The epilogue of all P lanes in one cycle (the output buffer has P banks).

    ``values`` holds the P lane values; ``ep_ridx``/``ep_widx`` are the bank-row index
    (output block, pixel) read this cycle / written by ``ep_go``; ``prm`` holds the P
    lanes' parameters; the membrane RAM word holds the P lanes' membranes."""
    ep = core["epilogue"]
    P = core["lanes"]
    ow = core["widths"]["out"]
    O, OH, OW = core["geometry"]["out_shape"]
    depth = O * OH * OW // P
    aw = clog2(depth)
    lines = [f"    wire [{P * ow - 1}:0] results;"]
    if ep["kind"] == "neuron":
        sw = ep["state_bits"]
        lines.append(f"    wire [{P * sw - 1}:0] v_next_all;")
        if ep["stored"]:
            lines.append(f"    wire [{P * sw - 1}:0] v_rd;")
            lines.append(f"    snncc_ram #(.W({P * sw}), .D({depth}), .AW({aw})) mem_v (.clk(clk), .we(ep_go), "
                         f".waddr(ep_widx), .wdata(v_next_all), .raddr(ep_ridx), .rdata(v_rd));")
    lines.append(f"    genvar m;\n    generate for (m = 0; m < {P}; m = m + 1) begin : ep_lane")
    lines.append(f"        wire signed [{value_bits - 1}:0] value = {values}[m*{value_bits} +: {value_bits}];")
    if ep["kind"] == "neuron":
        f = _param_fields(core, "prm", "m")
        lines.append(f"        wire signed [{sw - 1}:0] v_next;\n        wire signed [{ep['level_bits'] - 1}:0] z;")
        if ep["stored"]:
            lines.append(f"        wire signed [{sw - 1}:0] v_prev = first ? {f['v_init'][0]} : "
                         f"$signed(v_rd[m*{sw} +: {sw}]);")
        else:
            lines.append(f"        wire signed [{sw - 1}:0] v_prev = {f['v_init'][0]};")
        lines += [
            _neuron(ep, "value", value_bits, f["theta"][0], "        "),
            f"        assign v_next_all[m*{sw} +: {sw}] = v_next;",
            f"        wire signed [{ow - 1}:0] result = z;",
        ]
    else:
        w = max(ow, value_bits)
        lines += [f"        wire signed [{w - 1}:0] result_w = value;",
                  f"        wire signed [{ow - 1}:0] result = result_w[{ow - 1}:0];"]
    lines += [f"        assign results[m*{ow} +: {ow}] = result;", "    end endgenerate",
              "    assign out_we = ep_go;", f"    assign out_mask = {{{P}{{1'b1}}}};",
              "    assign out_addr = ep_widx;", "    assign out_data = results;"]
    return "\n".join(lines)


def _ports(core: dict, netlist: dict) -> tuple[str, list[str]]:
    bufs = {b["name"]: b for b in netlist["buffers"]}
    ports = ["input wire clk", "input wire rst", "input wire start", "input wire first", "output wire done"]
    for j, b in enumerate(core["inputs"]):
        buf = bufs[b]
        ports += [f"output wire [{clog2(buf['depth'] // buf['banks']) - 1}:0] in{j}_addr",
                  f"input wire [{buf['banks'] * buf['width'] - 1}:0] in{j}_data"]
        if core.get("event_driven"):
            ports.append(f"input wire [{buf['depth'] // buf['banks'] - 1}:0] in{j}_nz")
    out = bufs[core["output"]]
    oaw = clog2(out["depth"] // out["banks"])
    ports += ["output wire out_we", f"output wire [{out['banks'] - 1}:0] out_mask",
              f"output wire [{oaw - 1}:0] out_addr", f"output wire [{out['banks'] * out['width'] - 1}:0] out_data"]
    if core["epilogue"]["kind"] == "acc":
        ports += [f"output wire [{oaw - 1}:0] acc_raddr", f"input wire [{out['width'] - 1}:0] acc_rdata"]
    return ",\n    ".join(ports), ports


def _param_rom(core: dict, addr: str) -> str:
    mem = next((m for m in core["memories"] if m["name"].endswith("_p")), None)
    if mem is None:
        return "    wire [0:0] prm = 1'b0;"
    aw = clog2(mem["depth"])
    return (f"    wire [{mem['width'] - 1}:0] prm;\n"
            f"    wire [{aw - 1}:0] prm_addr = {addr};\n"
            f"    snncc_rom #(.W({mem['width']}), .D({mem['depth']}), .AW({aw}), "
            f".INIT(\"{mem['init']}\")) rom_p (.clk(clk), .addr(prm_addr), .data(prm));")


def _xs(core: dict, slot: str) -> str:
    """Input bank ``slot`` of ``in0_data`` as a signed operand; a proven non-negative one gets a
    constant 0 sign bit, which lets synthesis drop that row of the multiplier."""
    xw = core["widths"]["in"][0]
    if core["widths"].get("in_unsigned", [False])[0] and xw > 1:
        return f"$signed({{1'b0, in0_data[{slot}*{xw} +: {xw - 1}]}})"
    return f"$signed(in0_data[{slot}*{xw} +: {xw}])"


def _event_taps(core: dict, cwc: int, cwa: int, in_aw: int) -> str:
    """Event-driven tap issue: the KW taps of the current kernel row are looked up in the input's
    non-zero flags at once; each cycle issues the lowest pending non-zero tap, and a row with
    none left moves on (an all-zero row costs one cycle, a row with n non-zero taps n cycles)."""
    g = core["geometry"]
    H, W = g["in_shape"][1], g["in_shape"][2]
    KW, DW = g["kernel"][1], g["dilations"][1]
    kb = clog2(KW) + 1
    v = [f"""
    reg [{KW - 1}:0] done_k;
    wire row_in = (iy >= 0) && (iy < {H});
    wire [{KW - 1}:0] nzk;
    genvar k;
    generate for (k = 0; k < {KW}; k = k + 1) begin : tapk
        wire signed [{cwc + 1}:0] ixk = ix0 + k*{DW};
        wire signed [{cwa + 1}:0] ak = rowaddr + ixk;
        assign nzk[k] = row_in && (ixk >= 0) && (ixk < {W}) && in0_nz[ak[{in_aw - 1}:0]];
    end endgenerate
    wire [{KW - 1}:0] pend = nzk & ~done_k;
    wire [{KW - 1}:0] pick = pend & (~pend + 1'b1);
    wire [{KW - 1}:0] rest = pend & ~pick;
    reg [{kb - 1}:0] kk;
    integer b;
    always @* begin
        kk = 0;
        for (b = {KW - 1}; b >= 0; b = b - 1) if (pick[b]) kk = b;
    end
    wire issue = (state == S_MAC) && (pend != 0);
    wire signed [{cwa + 1}:0] a_issue = rowaddr + ix0 + $signed({{1'b0, kk}})*{DW};
    assign in0_addr = issue ? a_issue[{in_aw - 1}:0] : {in_aw}'d0;
    wire [{clog2(window_geometry(core)['taps']) + 1}:0] tap_now = tap + kk;"""]
    return "".join(v)


def _event_step(core: dict) -> str:
    g = core["geometry"]
    W = g["in_shape"][2]
    KH, KW = g["kernel"]
    DH = g["dilations"][0]
    HW = g["in_shape"][1] * W
    igb = window_geometry(core)["igb"]
    return f"""begin
                if (rest != 0) done_k <= done_k | pick;
                else begin  // the row is done: the next kernel row (tap counts rows x KW)
                    done_k <= 0;
                    tap <= tap + {KW};
                    if (ky != {KH - 1}) begin
                        ky <= ky + 1'b1; iy <= iy + {DH}; rowaddr <= rowaddr + {DH * W};
                    end else begin
                        ky <= 0; iy <= iy0;
                        ic <= ic + 1'b1; cbase <= cbase + {HW}; rowaddr <= cbase + {HW} + row0;
                    end
                    if ((ky == {KH - 1}) && (ic == {igb - 1})) state <= S_DRAIN;
                end
            end"""


def window_core(core: dict, netlist: dict) -> str:
    g = core["geometry"]
    C, H, W = g["in_shape"]
    O, OH, OW = g["out_shape"]
    KH, KW = g["kernel"]
    SH, SWD = g["strides"]
    PT, PL = g["pads"][0], g["pads"][1]
    DH, DW = g["dilations"]
    G = g["group"]
    P = core["lanes"]
    Q = core["banks"]["in"][0]
    diag = core["diagonal"]
    ev = core.get("event_driven", False)
    geo = window_geometry(core)
    IGB, OB, OBG, TAPS, par = geo["igb"], geo["ob"], geo["obg"], geo["taps"], geo["parallel"]
    HW, OHW = H * W, OH * OW
    xw = core["widths"]["in"][0]
    aw = core["widths"]["acc"]
    red = core["reduce"]
    in_aw = clog2(C * H * W // Q)
    # Signed width for window coordinates and row addresses (may go negative in padding).
    # (coordinates iy/ix and bank-row addresses, each bounded over every value the counters take)
    cwc = sbits(-max(PT, PL) - 1, max(H, W, (OH - 1) * SH + (KH - 1) * DH, (OW - 1) * SWD + (KW - 1) * DW)
                + max(SH, SWD) + 1)
    cwa = sbits(-(PT * W + PL) - 1, C * H * W // Q + HW + (KH * DH + SH + PT + 1) * W + KW * DW + SWD + PL + 1)
    ports, _ = _ports(core, netlist)
    out_depth = O * OHW
    oaw = clog2(out_depth // (P if par else 1))  # the index of ep_ridx/ep_widx: bank row or element
    lane_w = f"{P * aw - 1}:0"
    epi_last = 0 if par else P  # the epilogue state lasts 1 cycle (parallel) or P + 1 (one lane per cycle)
    v: list[str] = [f"// {core['name']}: {core['op']} {C}x{H}x{W} -> {O}x{OH}x{OW}, kernel {KH}x{KW}, "
                    f"group {G}, {P} lane(s), {Q} input bank(s){' (diagonal)' if diag else ''}, reduce {red}, "
                    f"epilogue {core['epilogue']['kind']}{' (parallel)' if par else ''}",
                    f"module {core['name']} (\n    {ports}\n);"]
    if ev:
        tap_issue, d_inb, mac_step = _event_taps(core, cwc, cwa, in_aw), "1'b1", _event_step(core)
    else:
        tap_issue = f"""
    assign in0_addr = (state == S_MAC && inb) ? addr_s[{in_aw - 1}:0] : {in_aw}'d0;
    wire issue = (state == S_MAC);
    wire [{clog2(OB * TAPS) + 1}:0] tap_now = tap;"""
        d_inb = "inb"
        mac_step = f"""begin
                tap <= tap + 1'b1;
                if (kx != {KW - 1}) begin
                    kx <= kx + 1'b1; ix <= ix + {DW};
                end else begin
                    kx <= 0; ix <= ix0;
                    if (ky != {KH - 1}) begin
                        ky <= ky + 1'b1; iy <= iy + {DH}; rowaddr <= rowaddr + {DH * W};
                    end else begin
                        ky <= 0; iy <= iy0;
                        ic <= ic + 1'b1; cbase <= cbase + {HW}; rowaddr <= cbase + {HW} + row0;
                    end
                end
                if (last_tap) state <= S_DRAIN;
            end"""
    v.append(f"""    localparam S_IDLE = 3'd0, S_SETUP = 3'd1, S_MAC = 3'd2, S_DRAIN = 3'd3,
               S_EPI = 3'd4, S_DONE = 3'd5;
    reg [2:0] state;
    assign done = (state == S_DONE);
    // output block / pixel counters
    reg [{clog2(OB)}:0] ob;
    reg [{clog2(OBG)}:0] gsub;
    reg [{clog2(OH)}:0] oy;
    reg [{clog2(OW)}:0] ox;
    reg signed [{cwc - 1}:0] iy0, ix0, iy, ix;
    reg signed [{cwa - 1}:0] row0, rowaddr, gbase, cbase;
    reg [{clog2(OHW)}:0] pix;
    reg [{clog2(out_depth) + 1}:0] obase_ohw, eidx, orow;
    reg [{clog2(O)}:0] obase;
    // tap counters (ic counts input blocks of Q channels)
    reg [{clog2(IGB)}:0] ic;
    reg [{clog2(KH)}:0] ky;
    reg [{clog2(KW)}:0] kx;
    reg [{clog2(TAPS)}:0] tap;
    reg [{clog2(OB * TAPS) + 1}:0] wbase;
    reg [{clog2(P + 1)}:0] e;
    wire inb = (iy >= 0) && (iy < {H}) && (ix >= 0) && (ix < {W});
    wire signed [{cwa - 1}:0] addr_s = rowaddr + ix;
    wire last_tap = (kx == {KW - 1}) && (ky == {KH - 1}) && (ic == {IGB - 1});{tap_issue}
    wire last_pix = (ox == {OW - 1}) && (oy == {OH - 1});
    // pipeline: data arrives one cycle after its address
    reg d_tap, d_inb, ep_go;
    reg [{oaw - 1}:0] ep_widx;
    reg [{clog2(P)}:0] d_lane;
    wire [{oaw - 1}:0] ep_ridx = {'orow + pix' if par else f'eidx[{oaw - 1}:0]'};""")
    if red == "mac":
        wmem = next(m for m in core["memories"] if m["name"].endswith("_w"))
        wb = core["widths"]["weight"]
        v.append(f"""    wire [{wmem['width'] - 1}:0] wrd;
    wire [{clog2(wmem['depth']) - 1}:0] waddr = wbase + tap_now;
    snncc_rom #(.W({wmem['width']}), .D({wmem['depth']}), .AW({clog2(wmem['depth'])}),
        .INIT("{wmem['init']}")) rom_w (.clk(clk), .addr(waddr), .data(wrd));""")
    v.append(f"    wire [{lane_w}] accv;")
    v.append(f"    genvar l;\n    generate for (l = 0; l < {P}; l = l + 1) begin : lane")
    v.append(f"        reg signed [{aw - 1}:0] acc;")
    xsel = "l" if diag else "0"
    v.append(f"        wire signed [{xw - 1}:0] x = {_xs(core, xsel)};")
    if red == "mac":
        # the lane's products at their own width (wb + xw bits), then summed at the accumulator's width
        # (every partial sum fits it, see netlist); Q input channels per tap unless diagonal
        nq = 1 if diag else Q
        v.append(f"        wire [{nq * (wb + xw) - 1}:0] prods;")
        v.append(f"        genvar j;\n        for (j = 0; j < {nq}; j = j + 1) begin : mul")
        xj = "x" if nq == 1 else _xs(core, "j")
        v.append(f"            wire signed [{wb + xw - 1}:0] pr = $signed(wrd[(l*{nq} + j)*{wb} +: {wb}]) * {xj};")
        v.append(f"            assign prods[j*{wb + xw} +: {wb + xw}] = pr;\n        end")
        v.append(f"        reg signed [{aw - 1}:0] dot;\n        integer i;")
        v.append(f"        always @* begin\n            dot = {aw}'sd0;\n            for (i = 0; i < {nq}; i = i + 1)")
        v.append(f"                dot = dot + $signed(prods[i*{wb + xw} +: {wb + xw}]);\n        end")
    if red == "max":
        v.append("        reg have;")
    v.append("        always @(posedge clk) begin")
    v.append("            if (state == S_SETUP) begin")
    v.append(f"                acc <= {aw}'sd0;")
    if red == "max":
        v.append("                have <= 1'b0;")
    v.append("            end else if (d_tap && d_inb) begin")
    if red == "mac":
        v.append("                acc <= acc + dot;")
    elif red == "sum":
        v.append("                acc <= acc + x;")
    else:
        v.append("                if (!have || x > acc) acc <= x;")
        v.append("                have <= 1'b1;")
    v.append("            end")
    v.append("        end")
    v.append(f"        assign accv[l*{aw} +: {aw}] = acc;")
    v.append("    end endgenerate")
    if par:
        v.append(_param_rom(core, "ob"))
        vb = aw
        v.append(f"    wire [{P * vb - 1}:0] values;")
        v.append(f"    generate for (l = 0; l < {P}; l = l + 1) begin : lane_value")
        if red == "mac":
            f = _param_fields(core, "prm", "l")
            v.append(f"        assign values[l*{vb} +: {vb}] = $signed(accv[l*{aw} +: {aw}]) + {f['bias'][0]};")
        else:
            v.append(f"        assign values[l*{vb} +: {vb}] = accv[l*{aw} +: {aw}];")
        v.append("    end endgenerate")
        v.append(_epilogue_parallel(core, "values", vb))
    else:
        v.append(f"    wire signed [{aw - 1}:0] lane_acc = accv[d_lane*{aw} +: {aw}];")
        v.append(_param_rom(core, "obase + e"))
        vb = aw
        if red == "mac":
            f = _param_fields(core, "prm")
            v.append(f"    wire signed [{vb - 1}:0] value = lane_acc + {f['bias'][0]};")
        else:
            v.append(f"    wire signed [{vb - 1}:0] value = lane_acc;")
        R = core["banks"]["out"]
        if R > 1:  # one lane per cycle into its bank of the bank row (output block, pixel)
            v.append(f"    reg [{clog2(out_depth // R) - 1}:0] ep_wrow;\n"
                     f"    always @(posedge clk) ep_wrow <= orow + pix;")
            v.append(_epilogue(core, "value", vb, "ep_wrow", f"{R}'d1 << d_lane", R))
        else:
            v.append(_epilogue(core, "value", vb))
    v.append(f"""    always @(posedge clk) begin
        d_tap <= issue;
        d_inb <= {d_inb};
        ep_go <= (state == S_EPI) && (e < {P});
        ep_widx <= ep_ridx;
        d_lane <= e[{clog2(P)}:0];
        if (rst) begin
            state <= S_IDLE;
            ep_go <= 1'b0;
            d_tap <= 1'b0;
        end else case (state)
            S_IDLE: if (start) begin
                state <= S_SETUP;
                ob <= 0; gsub <= 0; oy <= 0; ox <= 0; pix <= 0;
                iy0 <= -{PT}; ix0 <= -{PL}; row0 <= -{PT * W}; gbase <= 0;
                obase <= 0; obase_ohw <= 0; orow <= 0; wbase <= 0;
            end
            S_SETUP: begin
                ic <= 0; ky <= 0; kx <= 0; tap <= 0;{' done_k <= 0;' if ev else ''}
                iy <= iy0; ix <= ix0; cbase <= gbase; rowaddr <= gbase + row0;
                state <= S_MAC;
            end
            S_MAC: {mac_step}
            S_DRAIN: begin
                e <= 0;
                eidx <= obase_ohw + pix;
                state <= S_EPI;
            end
            S_EPI: begin
                e <= e + 1'b1;
                eidx <= eidx + {OHW};
                if (e == {epi_last}) begin
                    state <= S_SETUP;
                    if (ox != {OW - 1}) begin
                        ox <= ox + 1'b1; ix0 <= ix0 + {SWD}; pix <= pix + 1'b1;
                    end else begin
                        ox <= 0; ix0 <= -{PL};
                        if (oy != {OH - 1}) begin
                            oy <= oy + 1'b1; iy0 <= iy0 + {SH}; row0 <= row0 + {SH * W}; pix <= pix + 1'b1;
                        end else begin
                            oy <= 0; iy0 <= -{PT}; row0 <= -{PT * W}; pix <= 0;
                            ob <= ob + 1'b1; obase <= obase + {P}; obase_ohw <= obase_ohw + {P * OHW};
                            orow <= orow + {OHW};
                            wbase <= wbase + {TAPS};
                            if (gsub != {OBG - 1}) gsub <= gsub + 1'b1;
                            else begin gsub <= 0; gbase <= gbase + {geo['gstep'] * HW}; end
                            if (ob == {OB - 1}) state <= S_DONE;
                        end
                    end
                end
            end
            default: state <= S_IDLE;
        endcase
    end
endmodule
""")
    return "\n".join(v)


def _counting_fsm(n: int, aw: int, init: str, step: str, latch: str = "") -> str:
    """The always block of an eltwise or move core: S_IDLE -> S_RUN for ``n`` cycles (``i``
    counts, ``step`` advances the core's own counters, reset by ``init``) -> S_DRAIN ->
    S_DONE; the epilogue's write follows each read by one cycle (``ep_go``/``ep_widx``, and
    any ``latch`` lines), then ``endmodule``."""
    return f"""    always @(posedge clk) begin
        ep_go <= (state == S_RUN);
        ep_widx <= i[{aw - 1}:0];
{latch}        if (rst) begin
            state <= S_IDLE;
            ep_go <= 1'b0;
        end else case (state)
            S_IDLE: if (start) begin
                state <= S_RUN; i <= 0; {init}
            end
            S_RUN: begin
                i <= i + 1'b1;
{step}
                if (i == {n - 1}) state <= S_DRAIN;
            end
            S_DRAIN: state <= S_DONE;
            default: state <= S_IDLE;
        endcase
    end
endmodule
"""


def eltwise_core(core: dict, netlist: dict) -> str:
    C, H, W = core["geometry"]["in_shape"]
    n, HW = C * H * W, H * W
    aw_i = clog2(n)
    ports, _ = _ports(core, netlist)
    vb = core["widths"]["acc"]
    red = core["reduce"]
    v = [f"// {core['name']}: {core['op']} over {C}x{H}x{W}, epilogue {core['epilogue']['kind']}",
         f"module {core['name']} (\n    {ports}\n);",
         f"""    localparam S_IDLE = 2'd0, S_RUN = 2'd1, S_DRAIN = 2'd2, S_DONE = 2'd3;
    reg [1:0] state;
    assign done = (state == S_DONE);
    reg [{aw_i}:0] i;
    reg [{clog2(C)}:0] c;
    reg [{clog2(HW)}:0] pix;
    reg ep_go;
    reg [{aw_i - 1}:0] ep_widx;
    wire [{aw_i - 1}:0] ep_ridx = i[{aw_i - 1}:0];"""]
    for j in range(len(core["inputs"])):
        v.append(f"    assign in{j}_addr = i[{aw_i - 1}:0];")
    v.append(_param_rom(core, "c"))
    terms = [f"$signed(in{j}_data)" for j in range(len(core["inputs"]))]
    if red == "affine":
        f = _param_fields(core, "prm")
        expr = f"{terms[0]} * {f['scale'][0]} + {f['shift'][0]}"
    else:
        expr = " + ".join(terms)
    v.append(f"    wire signed [{vb - 1}:0] value = {expr};")
    v.append(_epilogue(core, "value", vb))
    v.append(_counting_fsm(n, aw_i, "c <= 0; pix <= 0;",
                           f"""                if (pix != {HW - 1}) pix <= pix + 1'b1;
                else begin pix <= 0; c <= c + 1'b1; end"""))
    return "\n".join(v)


def move_core(core: dict, netlist: dict) -> str:
    """concat / pad / channel_shuffle: one output element per cycle, read from its source
    (or zero in the padding); the write follows the read by one cycle, as in eltwise cores."""
    g = core["geometry"]
    C, OH, OW = g["out_shape"]
    n = C * OH * OW
    op = core["op"]
    ports, _ = _ports(core, netlist)
    ow = core["widths"]["out"]
    ni = len(core["inputs"])
    aw_o = clog2(n)
    v = [f"// {core['name']}: {op} -> {C}x{OH}x{OW}",
         f"module {core['name']} (\n    {ports}\n);",
         f"""    localparam S_IDLE = 2'd0, S_RUN = 2'd1, S_DRAIN = 2'd2, S_DONE = 2'd3;
    reg [1:0] state;
    assign done = (state == S_DONE);
    reg [{aw_o}:0] i;
    reg ep_go, d_valid;
    reg [{aw_o - 1}:0] ep_widx;"""]
    if op == "concat":
        sizes = [a * b * c for a, b, c in g["in_shapes"]]
        kw = clog2(max(sizes) + 1)
        v.append(f"    reg [{kw}:0] k;  // index within input sel\n    reg [{clog2(ni + 1)}:0] sel, d_sel;")
        v.append("    wire valid = 1'b1;")
        for j, sz in enumerate(sizes):
            v.append(f"    assign in{j}_addr = k[{clog2(sz) - 1}:0];")
        last = " : ".join(f"(sel == {j}) ? (k == {sz - 1})" for j, sz in enumerate(sizes)) + " : 1'b1"
        step = f"""                if ({last}) begin k <= 0; sel <= sel + 1'b1; end
                else k <= k + 1'b1;"""
        init = "k <= 0; sel <= 0;"
        data = "0"
        for j in reversed(range(ni)):
            data = f"(d_sel == {j}) ? $signed(in{j}_data) : {data}"
        extra_d = "d_sel <= sel;"
    else:
        Ci, H, W = g["in_shape"]
        HW = H * W
        cw = sbits(-max(OH, OW) - 1, C * HW + max(OH, OW) * (W + 1) + 2)
        v.append(f"    reg [{clog2(OH)}:0] oy;\n    reg [{clog2(OW)}:0] ox;\n"
                 f"    reg signed [{cw - 1}:0] cb, ry, rx, rw;")
        if op == "pad":
            t, lft = g["pads"][0], g["pads"][1]
            v.append(f"    wire valid = (ry >= 0) && (ry < {H}) && (rx >= 0) && (rx < {W});")
            v.append(f"    wire signed [{cw - 1}:0] src = cb + rw + rx;")
            init = f"oy <= 0; ox <= 0; cb <= 0; ry <= -{t}; rx <= -{lft}; rw <= -{t * W};"
            step = f"""                if (ox != {OW - 1}) begin ox <= ox + 1'b1; rx <= rx + 1; end
                else begin
                    ox <= 0; rx <= -{lft};
                    if (oy != {OH - 1}) begin oy <= oy + 1'b1; ry <= ry + 1; rw <= rw + {W}; end
                    else begin oy <= 0; ry <= -{t}; rw <= -{t * W}; cb <= cb + {HW}; end
                end"""
        else:  # channel_shuffle: output channel c = a*G + b reads input channel b*(C/G) + a
            G = g["group"]
            v.append(f"    reg [{clog2(G)}:0] gb;\n    reg [{clog2(C)}:0] ga;")
            v.append("    wire valid = 1'b1;")
            v.append(f"    wire signed [{cw - 1}:0] src = cb + rx;")
            init = "oy <= 0; ox <= 0; gb <= 0; ga <= 0; cb <= 0; rx <= 0;"
            step = f"""                if (rx != {HW - 1}) rx <= rx + 1;
                else begin
                    rx <= 0;
                    if (gb != {G - 1}) begin gb <= gb + 1'b1; cb <= cb + {C // G * HW}; end
                    else begin gb <= 0; ga <= ga + 1'b1; cb <= (ga + 1) * {HW}; end
                end"""
        v.append(f"    assign in0_addr = valid ? src[{clog2(Ci * HW) - 1}:0] : {clog2(Ci * HW)}'d0;")
        data = "$signed(in0_data)"
        extra_d = ""
    v.append(f"    wire signed [{ow - 1}:0] result = d_valid ? {data} : {ow}'sd0;")
    v.append("""    assign out_we = ep_go;
    assign out_mask = 1'b1;
    assign out_addr = ep_widx;
    assign out_data = result;""")
    v.append(_counting_fsm(n, aw_o, init, step, latch=f"""        d_valid <= valid;
        {extra_d}
"""))
    return "\n".join(v)


CORE_GENERATORS = {"window": window_core, "eltwise": eltwise_core, "move": move_core}


def top_module(netlist: dict) -> str:
    name = netlist["name"]
    cores = netlist["cores"]
    bufs = netlist["buffers"]
    T = netlist["timesteps"]
    nin, nout = netlist["input"]["words"], netlist["output"]["words"]
    out_buf = next(b for b in bufs if b["name"] == netlist["output"]["buffer"])
    ncore = len(cores)
    cwid = clog2(ncore + 1)
    v = [f"// {name}_top: snncc integer SNN, {ncore} cores, T={T}, lanes={netlist['lanes']}.",
         "// AXI4-Stream in: int8 input words in C order (TLAST on the last); AXI4-Stream out: the int32",
         "// output accumulators (TLAST on the last).  busy is high from the first input word to the last",
         "// output word; cycles counts the compute cycles of the last inference.",
         f"""module {name}_top (
    input  wire        clk,
    input  wire        rst,
    input  wire [7:0]  s_axis_tdata,
    input  wire        s_axis_tvalid,
    output wire        s_axis_tready,
    input  wire        s_axis_tlast,
    output reg  [31:0] m_axis_tdata,
    output reg         m_axis_tvalid,
    input  wire        m_axis_tready,
    output reg         m_axis_tlast,
    output wire        busy,
    output reg  [31:0] cycles,
    output reg         tlast_error
);
    localparam S_IN = 3'd0, S_KICK = 3'd1, S_RUN = 3'd2, S_OUTA = 3'd3, S_OUTB = 3'd4, S_OUTC = 3'd5;
    reg [2:0] state;
    reg [{clog2(nin)}:0] in_cnt;
    reg [{clog2(nout)}:0] out_cnt;
    reg [{cwid - 1}:0] cur;
    reg [{clog2(T + 1)}:0] t;
    wire first = (t == 0);
    assign s_axis_tready = (state == S_IN);
    assign busy = (state != S_IN) || (in_cnt != 0);
    wire in_fire = s_axis_tvalid && s_axis_tready;"""]
    # buffers
    for b in bufs:
        q, n = b["banks"], b["name"]
        aw = clog2(b["depth"] // q)
        v.append(f"    // buffer {n}: {b['depth']} x {b['width']} bits ({b['role']}), {q} bank(s): "
                 f"channel c in bank c mod {q}")
        v.append(f"    wire {n}_we;\n    wire [{q - 1}:0] {n}_mask;\n    wire [{aw - 1}:0] {n}_waddr, {n}_raddr;")
        v.append(f"    wire [{q * b['width'] - 1}:0] {n}_wdata, {n}_rdata;")
        if q == 1:
            v.append(f"    snncc_ram #(.W({b['width']}), .D({b['depth']}), .AW({aw})) buf_{n} (.clk(clk), "
                     f".we({n}_we), .waddr({n}_waddr), .wdata({n}_wdata), .raddr({n}_raddr), .rdata({n}_rdata));")
        else:
            v.append(f"    snncc_ram_banked #(.W({b['width']}), .Q({q}), .D({b['depth'] // q}), .AW({aw})) buf_{n} "
                     f"(.clk(clk), .we({n}_we), .mask({n}_mask), .waddr({n}_waddr), .wdata({n}_wdata), "
                     f".raddr({n}_raddr), .rdata({n}_rdata));")
    for b in bufs:
        if not b.get("flags"):
            continue
        q, n, w = b["banks"], b["name"], b["width"]
        bits = ", ".join(f"{{{w}{{{n}_mask[{k}]}}}}" for k in reversed(range(q)))
        v.append(f"    // {n}_nz: one bit per bank row, set when a bank of it is non-zero (event-driven readers)\n"
                 f"    reg [{b['depth'] // q - 1}:0] {n}_nz;\n"
                 f"    wire [{q * w - 1}:0] {n}_wbits = {n}_wdata & {{{bits}}};\n"
                 f"    always @(posedge clk) if ({n}_we) {n}_nz[{n}_waddr] <= "
                 f"({n}_mask[0] ? 1'b0 : {n}_nz[{n}_waddr]) | (|{n}_wbits);")
    v.append(f"    assign in_we = in_fire;\n    assign in_mask = 1'b1;\n"
             f"    assign in_waddr = in_cnt[{clog2(nin) - 1}:0];\n    assign in_wdata = s_axis_tdata;")
    # cores
    read_src: dict[str, list[tuple[str, str]]] = {b["name"]: [] for b in bufs}
    v.append(f"    wire [{ncore - 1}:0] done;")
    for k, core in enumerate(cores):
        conns = [".clk(clk)", ".rst(rst)", f".start(state == S_KICK && cur == {k})", ".first(first)",
                 f".done(done[{k}])"]
        for j, b in enumerate(core["inputs"]):
            aw = clog2(next(x["depth"] // x["banks"] for x in bufs if x["name"] == b))
            v.append(f"    wire [{aw - 1}:0] c{k}_in{j}_addr;")
            conns += [f".in{j}_addr(c{k}_in{j}_addr)", f".in{j}_data({b}_rdata)"]
            if core.get("event_driven"):
                conns.append(f".in{j}_nz({b}_nz)")
            read_src[b].append((f"cur == {k}", f"c{k}_in{j}_addr"))
        ob = core["output"]
        conns += [f".out_we({ob}_we)", f".out_mask({ob}_mask)", f".out_addr({ob}_waddr)",
                  f".out_data({ob}_wdata)"]
        if core["epilogue"]["kind"] == "acc":
            aw = clog2(next(x["depth"] for x in bufs if x["name"] == ob))
            v.append(f"    wire [{aw - 1}:0] c{k}_acc_raddr;")
            conns += [f".acc_raddr(c{k}_acc_raddr)", f".acc_rdata({ob}_rdata)"]
            read_src[ob].append((f"cur == {k}", f"c{k}_acc_raddr"))
        v.append(f"    {core['name']} u_{core['name']} ({', '.join(conns)});")
    out_aw = clog2(out_buf["depth"])
    read_src[out_buf["name"]].insert(0, ("state >= S_OUTA", f"out_cnt[{out_aw - 1}:0]"))
    for b in bufs:
        srcs = read_src[b["name"]]
        aw = clog2(b["depth"] // b["banks"])
        expr = f"{aw}'d0"
        for cond, sig in reversed(srcs):
            expr = f"({cond}) ? {sig} : {expr}"
        v.append(f"    assign {b['name']}_raddr = {expr};")
    ow = out_buf["width"]
    ext = f"{{{{{32 - ow}{{{out_buf['name']}_rdata[{ow - 1}]}}}}, {out_buf['name']}_rdata}}" if ow < 32 \
        else f"{out_buf['name']}_rdata"
    v.append(f"""    always @(posedge clk) begin
        if (rst) begin
            state <= S_IN; in_cnt <= 0; out_cnt <= 0; cur <= 0; t <= 0;
            m_axis_tvalid <= 1'b0; m_axis_tlast <= 1'b0; m_axis_tdata <= 32'd0;
            cycles <= 32'd0; tlast_error <= 1'b0;
        end else begin
            if (state == S_KICK || state == S_RUN) cycles <= cycles + 1'b1;
            case (state)
                S_IN: if (in_fire) begin
                    if (s_axis_tlast != (in_cnt == {nin - 1})) tlast_error <= 1'b1;
                    if (in_cnt == {nin - 1}) begin
                        in_cnt <= 0; state <= S_KICK; cur <= 0; t <= 0; cycles <= 32'd0;
                    end else in_cnt <= in_cnt + 1'b1;
                end
                S_KICK: state <= S_RUN;
                S_RUN: if (done[cur]) begin
                    if (cur == {ncore - 1}) begin
                        cur <= 0;
                        if (t == {T - 1}) begin
                            state <= S_OUTA; out_cnt <= 0;
                        end else begin
                            t <= t + 1'b1; state <= S_KICK;
                        end
                    end else begin
                        cur <= cur + 1'b1; state <= S_KICK;
                    end
                end
                S_OUTA: state <= S_OUTB;
                S_OUTB: begin
                    m_axis_tdata <= {ext};
                    m_axis_tlast <= (out_cnt == {nout - 1});
                    m_axis_tvalid <= 1'b1;
                    state <= S_OUTC;
                end
                S_OUTC: if (m_axis_tready) begin
                    m_axis_tvalid <= 1'b0;
                    m_axis_tlast <= 1'b0;
                    if (out_cnt == {nout - 1}) begin
                        state <= S_IN; t <= 0;
                    end else begin
                        out_cnt <= out_cnt + 1'b1; state <= S_OUTA;
                    end
                end
                default: state <= S_IN;
            endcase
        end
    end
endmodule
""")
    return "\n".join(v)


def emit_rtl(netlist: dict) -> dict[str, str]:
    """File name -> Verilog text for every generated module."""
    files = {}
    for core in netlist["cores"]:
        files[f"{core['name']}.v"] = "`default_nettype none\n" + CORE_GENERATORS[core["kind"]](core, netlist)
    files[f"{netlist['name']}_top.v"] = "`default_nettype none\n" + top_module(netlist)
    return files
