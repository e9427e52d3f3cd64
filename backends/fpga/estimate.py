"""Analytical cycle and resource estimates for the netlist (per core and in total).

Cycles follow the core state machines in ``verilog.py`` exactly (the testbench
measures them; ``snncc verify --target fpga`` prints both).  Resources are a model
of what yosys maps the cores to, calibrated against yosys 0.23 ``synth_ice40``
(LUT4, SB_DFF*, 4 kbit EBR); see docs/fpga.md for the model and its error.
"""

from __future__ import annotations

import math

import numpy as np

from snncc.backends.fpga.netlist import window_geometry

EBR_BITS = 4096  # iCE40 embedded block RAM
EBR_SHAPES = ((256, 16), (512, 8), (1024, 4), (2048, 2))  # depth x width modes
MIN_ROM_DEPTH = 256  # yosys 0.23 keeps shallower ROMs in LUTs; every RAM (sync read) goes to EBR


def core_cycles(core: dict) -> int:
    """Cycles from the sequencer's start pulse to the core's done state, inclusive."""
    if core["kind"] == "window":
        geo = window_geometry(core)
        _, OH, OW = core["geometry"]["out_shape"]
        epi = 1 if geo["parallel"] else core["lanes"] + 1  # one cycle for all lanes, or one per lane + 1
        return 2 + geo["ob"] * OH * OW * (geo["taps"] + 2 + epi)
    C, H, W = core["geometry"]["in_shape"]
    return C * H * W + 3


def ebr_count(depth: int, width: int) -> int:
    """iCE40 EBRs for one memory: the cheapest mode that tiles depth x width."""
    best = None
    for d, w in EBR_SHAPES:
        n = math.ceil(depth / d) * math.ceil(width / w)
        best = n if best is None else min(best, n)
    return best


def _mem_in_bram(depth: int, width: int, kind: str = "ram") -> bool:
    return kind == "ram" or depth >= MIN_ROM_DEPTH


def core_resources(core: dict) -> dict:
    """LUT4 / FF / EBR / DSP model of one core (DSP: 0, the ice40 flow maps multipliers to LUTs)."""
    w = core["widths"]
    aw = w["acc"]
    xw = max(w["in"])
    p = core["lanes"]
    ep = core["epilogue"]
    # state machine, counters, address arithmetic (yosys ice40, measured on the digits CNN)
    counters = {"mac": 360, "sum": 260, "max": 260}.get(core["reduce"], 120)
    lut = counters
    ff = 140 + 2 * aw if core["kind"] == "window" else 40 + aw
    q = 1 if core.get("diagonal") else core["banks"]["in"][0]  # input channels per lane and cycle
    par = core.get("parallel", False)
    if core["kind"] == "window":
        if core["reduce"] == "mac":
            wb = w["weight"]
            # shift-add arrays, the adder tree of q products, the accumulator and its enable/clear logic
            lut += p * (q * wb * xw + (q - 1) * aw + 4 * aw)
        else:
            lut += p * (aw + 2)
        ff += p * aw
        if p > 1 and not par:
            lut += (p - 1) * aw  # lane mux into the one epilogue
        elif par and core["reduce"] == "mac":
            lut += p * aw  # the bias adders of the lanes
    else:
        lut += aw * len(w["in"])
        if core["reduce"] == "affine":
            lut += xw * aw
    if ep["kind"] == "neuron":
        nw = max(ep["sum_bits"], ep["membrane_bits"]) + 2
        lut += (p if par else 1) * nw * (2 * ep["levels"] * (2 if ep["signed"] else 1) + 3)
        ff += 0
    elif ep["kind"] == "acc":
        lut += w["out"] + 1
    bram = 0
    for m in core["memories"]:
        if _mem_in_bram(m["depth"], m["width"], m["kind"]):
            bram += ebr_count(m["depth"], m["width"])
        elif m["kind"] == "rom":
            lut += math.ceil(m["depth"] / 16) * m["width"]  # LUT4 as 16x1 ROM
        else:
            ff += m["depth"] * m["width"]
            lut += m["depth"] * m["width"] // 2
    return {"lut": int(lut), "ff": int(ff), "bram": int(bram), "dsp": 0}


def annotate(netlist: dict) -> None:
    """Add ``cycles`` and ``resources`` to every core and the totals to the netlist."""
    T = netlist["timesteps"]
    total = {"lut": 0, "ff": 0, "bram": 0, "dsp": 0}
    per_step = 0
    for core in netlist["cores"]:
        core["cycles"] = core_cycles(core)
        per_step += core["cycles"]
        core["resources"] = core_resources(core)
        for k in total:
            total[k] += core["resources"][k]
    top = {"lut": 150, "ff": 150, "bram": 0, "dsp": 0}
    for b in netlist["buffers"]:
        q = b["banks"]
        if q == 1:
            top["bram"] += ebr_count(b["depth"], b["width"])
        else:  # one word of q banks with a per-bank write mask: only the 256 x 16 mode has a bit mask
            top["bram"] += math.ceil(b["depth"] // q / 256) * math.ceil(q * b["width"] / 16)
        top["lut"] += 2 * math.ceil(math.log2(max(2, b["depth"]))) * max(0, len(b["readers"]) - 1)
    for k in total:
        total[k] += top[k]
    compute = T * per_step
    io = netlist["input"]["words"] + 3 * netlist["output"]["words"]
    netlist["estimate"] = {
        "cycles_per_timestep": per_step,
        "cycles": compute,
        "io_cycles": io,
        "latency_us_at_100mhz": (compute + io) / 100.0,
        "resources": total,
        "top": top,
        "model": "ice40 LUT4/SB_DFF/EBR (4 kbit); cycles exact for the emitted state machines",
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
