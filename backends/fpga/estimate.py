"""Analytical cycle and resource estimates for the netlist (per core and in total).

Cycles follow the core state machines in ``verilog.py`` exactly (the testbench
measures them; ``snncc verify --target fpga`` prints both).  Resources are a model
of what yosys maps the cores to, calibrated against yosys 0.23 ``synth_ice40``
(LUT4, SB_DFF*, 4 kbit EBR); see docs/fpga.md for the model and its error.
"""

from __future__ import annotations

import math

import numpy as np

from snncc.backends.fpga.geometry import window_geometry

EBR_SHAPES = ((256, 16), (512, 8), (1024, 4), (2048, 2))  # iCE40 4 kbit EBR: depth x width modes
DP16KD_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))  # ECP5 18 kbit
RAMB18_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))  # 7-series, 0.5 each
RAMB36_SHAPES = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36), (512, 72))


def _tiles(depth: int, width: int, shapes) -> int:
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in shapes)


def _tiles18k(depth: int, width: int, shapes) -> int:
    """18 kbit blocks (ECP5 DP16KD, 7-series RAMB18): yosys packs a memory of words up to a 9-bit byte
    wide by its bits, parity bits included (the digits CNN's 4608x4 ROM takes one RAMB18; with 8-bit
    weights its 4608x8 and 9216x8 ROMs take 2 and 4 DP16KD, not 3 and 5)."""
    tiles = _tiles(depth, width, shapes)
    return min(tiles, math.ceil(depth * width / 18432)) if width <= 9 else tiles


def _banked18k(depth: int, width: int, banks: int) -> int:
    """18 kbit blocks for a banked buffer (one write-enable per bank): ECP5's DP16KD and the 7-series
    RAMB18 have one enable per 9-bit byte, so each bank takes whole bytes, four to a 36-bit word of 512
    (yosys memory_libmap: the 128x16x4 buffer of the digits CNN at lanes 16 is 4 DP16KD)."""
    if banks == 1:
        return _tiles18k(depth, width, DP16KD_SHAPES)
    per_bank = math.ceil(width / banks / 9)  # bytes per bank
    return min(math.ceil(depth / 512) * math.ceil(banks * per_bank / 4), math.ceil(depth / 1024) * banks * per_bank)


def _dpr16x4_cost(depth: int, width: int, banks: int) -> float:
    """memory_libmap's cost of a RAM in ECP5 TRELLIS_DPR16X4 (16x4, cost 4 each): the cells, half a unit
    per read-mux and write-demux input over 16-word slices, 2 for the emulated read register."""
    slices = math.ceil(depth / 16)
    cost = 4 * slices * math.ceil(width / 4) + 0.5 * (slices - 1) * width + 2
    return cost + (0.5 * slices * banks if slices > 1 else 0)


def _lutram_sdp_cost(depth: int, width: int, banks: int) -> float:
    """memory_libmap's cost of a RAM in 7-series LUT RAM ($__XILINX_LUTRAM_SDP_, 64x3 per RAM64M, cost 8
    with widthscale 7): 1 per cell and 7 per 3 bits, half a unit per read-mux / write-demux input over
    64-word slices, 2 for the emulated read register."""
    slices = math.ceil(depth / 64)
    cost = slices * math.ceil(width / 3) + 7 * slices * width / 3 + 0.5 * (slices - 1) * width + 2
    return cost + (0.5 * slices * banks if slices > 1 else 0)


# What yosys 0.23 does with each family.  The logic of a core is counted in iCE40 LUT4 by kind
# (``logic_parts``) and scaled per family: ``ctrl``, ``arith``, ``mul``, ``neuron``, ``flags`` (ECP5
# -nodsp: 1.05, but LUT multipliers 2.6 times the iCE40 ones; 7-series LUT6: adders 0.55, window
# control 0.85, LUT multipliers 1.4; neurons as measured alone), ``lut_scale`` for the top module.
# Where a memory goes and what a memory in LUTs costs: iCE40 and ECP5 memories and 7-series RAMs
# go where memory_libmap puts them (``place``): the cheapest of soft logic (its cost per bit: 1/16
# for a ROM, 1 for a RAM), LUT RAM (ECP5 TRELLIS_DPR16X4, 7-series RAM64M; RAMs only: ``prune_rom``)
# and block RAM
# (``bram_cost`` per block + 2 for the emulated read register), as in the family's brams.txt /
# lutrams.txt.
FAMILY_MODELS = {
    "ice40": dict(lut_scale=1.0, ctrl_scale=1.0, arith_scale=1.0, mul_scale=1.0, neuron_scale=1.3,
                  flags_scale=1.0, bram_cost=64, lutram=None,
                  bram=lambda d, w, banks: (math.ceil(d / 256) * math.ceil(w / 16) if banks > 1  # masked
                                            else _tiles(d, w, EBR_SHAPES)),
                  rom_lut=lambda d, w: math.ceil(d / 16) * w, ram_lut=lambda d, w: d * w // 2, dsp=False),
    # -nodsp: LUT multipliers map far worse: 2.6 per core on the digits CNN at lanes 4 (at lanes 1
    # and 16 its cores imply 2.67 and 2.7)
    "ecp5": dict(lut_scale=1.05, ctrl_scale=1.05, arith_scale=1.05, mul_scale=2.6, neuron_scale=1.4,
                 flags_scale=2.0,
                 bram_cost=128, lutram=_dpr16x4_cost, bram=_banked18k,
                 # a ROM in logic: each bit a function of the address bits, 2^(a-4) LUT4 for a > 4 (the
                 # PFU muxes join them; measured 1984 LUT4 for 18x1024 and 4038 for 36x1024)
                 rom_lut=lambda d, w: 2 ** max(0, (d - 1).bit_length() - 4) * w,
                 ram_lut=lambda d, w: math.ceil(d / 16) * math.ceil(w / 4) * 4, dsp=False),  # TRELLIS_DPR16X4
    # xc7, per core (yosys synth_xilinx, digits CNN at lanes 4, 4- and 8-bit): adders take about 0.55 of
    # their LUT4 count in LUT6, LUT multipliers about 1.4 times theirs (2.8 times wb x xw), window control
    # 0.85 (the LUT6 count it had as 0.55 of the iCE40 control before that was re-measured at lanes 1)
    "xc7": dict(lut_scale=0.55, ctrl_scale=0.85, arith_scale=0.55, mul_scale=1.4, neuron_scale=1.2,
                flags_scale=1.15,
                # RAMs by memory_libmap's cost (258 per RAMB36, counted 1).  ROMs: synth_xilinx keeps ROMs of
                # 1024x4 and 1536x4 in logic, which a logic cost of 1/16 per bit would not (mobilenetv2 at
                # lanes 1: 10.5 BRAM against 6.5); 1/64 per bit (a LUT6 holds 64) matches every ROM of
                # mobilenetv2 at lanes 1 and resnet8 at lanes 16 but the 72-word ones (72x32, 72x64: RAMB18)
                bram_cost=258, lutram=_lutram_sdp_cost,
                rom_in_bram=lambda d, w: d * w / 64 > 258 * min(0.5 * _tiles18k(d, w, RAMB18_SHAPES),
                                                                 _tiles(d, w, RAMB36_SHAPES)) + 2,
                bram=lambda d, w, banks: (_banked18k(d, w, banks) / 2 if banks > 1 else  # 9-bit write-enable bytes
                                          min(0.5 * _tiles18k(d, w, RAMB18_SHAPES), _tiles(d, w, RAMB36_SHAPES))),
                rom_lut=lambda d, w: math.ceil(d / 64) * w,
                ram_lut=lambda d, w: math.ceil(d / 64) * math.ceil(w / 3) * 4, dsp=True),  # RAM64M
}


def place(family: str, kind: str, depth: int, width: int, banks: int = 1) -> str:
    """Where yosys puts a memory on ``family``: "bram", "lutram" or "logic" (LUTs and flip-flops).

    iCE40 and ECP5 memories and 7-series RAMs follow memory_libmap's choice: the cheapest option, soft
    logic unless another costs strictly less than its (integer) cost.  ``width`` is the whole word
    (banks x bank width)."""
    fam = FAMILY_MODELS[family]
    if kind == "rom" and "rom_in_bram" in fam:
        return "bram" if fam["rom_in_bram"](depth, width) else "logic"
    best, where = math.floor(depth * width / 16 if kind == "rom" else depth * width), "logic"
    if fam["lutram"] and kind == "ram" and fam["lutram"](depth, width, banks) < best:
        best, where = fam["lutram"](depth, width, banks), "lutram"
    if fam["bram_cost"] * fam["bram"](depth, width, banks) + 2 < best:
        where = "bram"
    return where


def core_cycles(core: dict) -> int:
    """Cycles from the sequencer's start pulse to the core's done state, inclusive."""
    if core["kind"] == "window":
        geo = window_geometry(core)
        _, OH, OW = core["geometry"]["out_shape"]
        epi = 1 if geo["parallel"] else core["lanes"] + 1  # one cycle for all lanes, or one per lane + 1
        return 2 + geo["ob"] * OH * OW * (geo["taps"] + 2 + epi)
    C, H, W = core["geometry"]["out_shape"]  # eltwise and move: one output element per cycle
    return C * H * W + 3


def ebr_count(depth: int, width: int) -> int:
    """iCE40 EBRs for one memory: the cheapest mode that tiles depth x width."""
    return _tiles(depth, width, EBR_SHAPES)


def _memory(family: str, kind: str, depth: int, width: int, banks: int = 1) -> dict:
    fam = FAMILY_MODELS[family]
    where = place(family, kind, depth, width, banks)
    if where == "bram":
        return {"bram": fam["bram"](depth, width, banks)}
    if where == "lutram":
        return {"lut": fam["ram_lut"](depth, width)}
    if kind == "rom":
        # A ROM in logic: a bit column is a pattern of ``depth`` bits; constant columns fold away and equal
        # ones share their logic and output flip-flop (opt_merge), so at most 2^depth - 2 columns are built
        # (a 2-word parameter ROM of 416 bits costs a few cells, not 416).
        cols = min(width, 2 ** min(depth, 30) - 2)
        return {"lut": fam["rom_lut"](depth, cols), "ff": cols}
    return {"lut": depth * width // 2, "ff": depth * width}  # a RAM in flip-flops and write decode


# iCE40 LUT4 of a window core's control by its reduce (fitted on per-core yosys figures, see core_resources)
WINDOW_CONTROL = {"mac": 190, "sum": 160, "max": 160}


def logic_parts(core: dict, dsp: bool = False) -> dict:
    """A core's logic in iCE40 LUT4 by kind: ``ctrl`` (state machine, counters, address arithmetic,
    lane muxes), ``arith`` (adders, accumulators), ``mul`` (LUT multipliers), ``neuron`` (the
    compare/subtract chain of each neuron, by the formula; ``neuron_scale`` is the measured ratio),
    ``flags`` (event-driven flag lookups); ``dsp`` (DSP48s when ``dsp`` is true) and ``ff``."""
    w = core["widths"]
    aw = w["acc"]
    xw = max(w["in"])
    p = core["lanes"]
    ep = core["epilogue"]
    # State machine, counters, address arithmetic: a window core's (per-core yosys ice40 figures of the
    # digits CNN at lanes 1 and 4, resnet8 and mobilenetv2 at lanes 1); an eltwise core has one counter
    # whatever it reduces (an add's reduce is "sum" too, but it has no window loops).
    ctrl = WINDOW_CONTROL.get(core["reduce"], 120) if core["kind"] == "window" else 120
    arith = mul = flags = neuron = n_dsp = 0
    ff = 70 + 2 * aw if core["kind"] == "window" else 40 + aw
    q = 1 if core.get("diagonal") else core["banks"]["in"][0]  # input channels per lane and cycle
    par = core.get("parallel", False)
    if core["kind"] == "window":
        if core["reduce"] == "mac":
            wb = w["weight"]
            if dsp and wb + xw >= 9:  # synth_xilinx maps every $mul of 9+ output bits to a DSP48
                # and xilinx_dsp packs the adders after it (the tree, the accumulator with its clear and
                # enable) into the DSP48s' post-adders and P registers: 8x4 products, 4 to a lane, take
                # 4 DSP48E1 and 14 LUT2 alone
                n_dsp += p * q
            else:
                mul += p * q * 2 * wb * xw  # shift-add arrays: 2 LUT4 per partial-product bit
                arith += p * ((q - 1) * aw + 4 * aw)  # adder tree, accumulator and its enable/clear logic
        else:
            arith += p * (aw + 2)
        ff += p * aw
        if p > 1 and not par:
            ctrl += (p - 1) * aw  # lane mux into the one epilogue
        elif par and core["reduce"] == "mac":
            arith += p * aw  # the bias adders of the lanes
    elif core["kind"] == "move":
        ctrl = 60 + 12 * len(w["in"]) + aw * len(w["in"])  # counters, source address, input select
        ff = 40 + aw
    else:
        arith += aw * len(w["in"])
        if core["reduce"] == "affine":
            mul += xw * aw
    if ep["kind"] == "neuron":
        nw = max(ep["sum_bits"], ep["membrane_bits"] if ep.get("saturates", True) else 0) + 2
        neuron = (p if par else 1) * nw * (2 * ep["levels"] * (2 if ep["signed"] else 1) + 3)
    elif ep["kind"] == "acc":
        arith += w["out"] + 1
    if core.get("event_driven"):  # KW lookups into the input's flag register (one bit per bank row)
        C, H, W = core["geometry"]["in_shape"]
        flags = 1.1 * core["geometry"]["kernel"][1] * (C * H * W // core["banks"]["in"][0])
    return {"ctrl": ctrl, "arith": arith, "mul": mul, "neuron": neuron, "flags": flags, "dsp": n_dsp, "ff": ff}


def core_resources(core: dict, family: str = "ice40") -> dict:
    """LUT / FF / block RAM / DSP model of one core for ``family`` (the logic counted in iCE40 LUT4
    and scaled per kind; the memories placed by the family's rules)."""
    fam = FAMILY_MODELS[family]
    parts = logic_parts(core, fam["dsp"])
    lut = sum(parts[k] * fam[f"{k}_scale"] for k in ("ctrl", "arith", "mul", "neuron", "flags"))
    ff = parts["ff"]
    bram = 0.0
    for m in core["memories"]:
        got = _memory(family, m["kind"], m["depth"], m["width"])
        bram += got.get("bram", 0)
        lut += got.get("lut", 0)
        ff += got.get("ff", 0)
    return {"lut": int(round(lut)), "ff": int(round(ff)), "bram": _num(bram), "dsp": int(parts["dsp"])}


def _num(x: float):
    return int(x) if float(x).is_integer() else float(x)


def annotate(netlist: dict) -> None:
    """Add ``cycles`` and ``resources`` (iCE40) to every core and the totals, per family, to the netlist."""
    T = netlist["timesteps"]
    per_step = 0
    for core in netlist["cores"]:
        core["cycles"] = core_cycles(core)
        per_step += core["cycles"]
        core["resources"] = core_resources(core)
    families = {}
    for family, fam in FAMILY_MODELS.items():
        total = {"lut": 0, "ff": 0, "bram": 0, "dsp": 0}
        for core in netlist["cores"]:
            res = core["resources"] if family == "ice40" else core_resources(core, family)
            for k in total:
                total[k] += res[k]
        top = {"lut": 150 * fam["lut_scale"], "ff": 70, "bram": 0, "dsp": 0}
        for b in netlist["buffers"]:
            q = b["banks"]
            got = _memory(family, "ram", b["depth"] // q, q * b["width"], q)
            top["bram"] += got.get("bram", 0)
            top["lut"] += got.get("lut", 0)
            top["ff"] += got.get("ff", 0)
            top["lut"] += 2 * math.ceil(math.log2(max(2, b["depth"]))) * max(0, len(b["readers"]) - 1)
            if b.get("flags"):  # the non-zero flag register of an event-driven reader's input
                top["ff"] += b["depth"] // q
                top["lut"] += 2 * (b["depth"] // q) * fam["flags_scale"]  # its write decode and update
        for k in total:
            total[k] = _num(round(total[k] + top[k], 1)) if k == "bram" else int(round(total[k] + top[k]))
        families[family] = total
        if family == "ice40":
            ice40_top = {k: (int(round(v)) if k != "bram" else _num(v)) for k, v in top.items()}
    compute = T * per_step
    io = netlist["input"]["words"] + 3 * netlist["output"]["words"]
    netlist["estimate"] = {
        "cycles_per_timestep": per_step,
        "cycles": compute,
        "io_cycles": io,
        "latency_us_at_100mhz": (compute + io) / 100.0,
        "resources": families["ice40"],
        "families": families,
        "top": ice40_top,
        "model": "ice40 LUT4/SB_DFF/EBR (4 kbit); ecp5 and xc7 scaled from it per logic kind; memories "
                 "placed by yosys memory_libmap's cost (xc7 ROMs: a threshold); "
                 "cycles exact for the emitted state machines"
                 + (" (event-driven: the bound; the data decide)" if netlist.get("event_driven") else ""),
    }


def event_cycles(graph, netlist: dict, x_q: np.ndarray) -> np.ndarray:
    """Exact compute cycles per sample of an event-driven netlist (int64, one per row of ``x_q``).

    Follows the event-driven tap issue in ``verilog.py``: per output pixel and kernel row of an
    input block, max(1, non-zero in-bounds taps) cycles, where a tap is non-zero when any bank of
    its bank row is; the other cores keep their fixed counts.  The frames come from the integer
    runtime, one run per timestep (it reports a value at the last step of a run)."""
    from snncc.sim.int_runtime import run_int

    x_q = np.asarray(x_q)
    n, T = len(x_q), netlist["timesteps"]
    bufs = {b["name"]: b for b in netlist["buffers"]}
    ev = [c for c in netlist["cores"] if c.get("event_driven")]
    values = sorted({bufs[c["inputs"][0]]["value"] for c in ev} - {netlist["input"]["value"]})
    total = np.zeros(n, np.int64)
    for t in range(1, T + 1):
        frames = run_int(graph, x_q, capture=values, timesteps=t) if values else {}
        frames[netlist["input"]["value"]] = x_q
        for core in netlist["cores"]:
            if not core.get("event_driven"):
                total += core["cycles"]
                continue
            buf = bufs[core["inputs"][0]]
            total += _event_core_cycles(core, np.asarray(frames[buf["value"]]).reshape(n, -1), buf["banks"])
    return total


def _event_core_cycles(core: dict, frame: np.ndarray, banks: int) -> np.ndarray:
    g = core["geometry"]
    C, H, W = g["in_shape"]
    _, OH, OW = g["out_shape"]
    KH, KW = g["kernel"]
    SH, SW = g["strides"]
    PT, PL = g["pads"][0], g["pads"][1]
    DH, DW = g["dilations"]
    n = len(frame)
    nz = (frame.reshape(n, C // banks, banks, H, W) != 0).any(axis=2)  # (n, blocks, H, W)
    ph, pw = PT + (OH - 1) * SH + (KH - 1) * DH + 1, PL + (OW - 1) * SW + (KW - 1) * DW + 1
    pad = np.zeros((n, C // banks, max(ph, PT + H), max(pw, PL + W)), np.int64)
    pad[:, :, PT:PT + H, PL:PL + W] = nz
    per_block = np.zeros((n, C // banks), np.int64)
    for ky in range(KH):
        row = np.zeros((n, C // banks, OH, OW), np.int64)
        for kx in range(KW):
            y0, x0 = ky * DH, kx * DW
            row += pad[:, :, y0:y0 + (OH - 1) * SH + 1:SH, x0:x0 + (OW - 1) * SW + 1:SW]
        per_block += np.maximum(row, 1).sum(axis=(2, 3))
    geo = window_geometry(core)
    epi = 1 if geo["parallel"] else core["lanes"] + 1
    cycles = np.full(n, 2 + geo["ob"] * OH * OW * (2 + epi), np.int64)
    for ob in range(geo["ob"]):
        if core["diagonal"]:
            blocks = [ob]
        else:
            grp = ob // geo["obg"]
            blocks = list(range(grp * geo["igb"], (grp + 1) * geo["igb"]))
        cycles += per_block[:, blocks].sum(axis=1)
    return cycles
