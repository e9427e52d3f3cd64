"""The loop structure of a window core, shared by the netlist, the cycle model and the Verilog."""

from __future__ import annotations


def window_geometry(core: dict) -> dict:
    """The loop bounds of a window core in its input's bank-row space (a bank row holds Q channels).

    ``taps`` per output block: (input blocks of a group) x KH x KW; a diagonal core (pool,
    depthwise x1) reads one block whose lane l is bank l.  Shared by verilog.py and estimate.py."""
    g = core["geometry"]
    C = g["in_shape"][0]
    O = g["out_shape"][0]
    q = core["banks"]["in"][0]
    p = core["lanes"]
    if core["diagonal"]:
        igb, obg, gstep = 1, 1, 1
    else:
        igb, obg, gstep = C // g["group"] // q, O // g["group"] // p, C // g["group"] // q
    return {"igb": igb, "ob": O // p, "obg": obg, "gstep": gstep, "taps": igb * g["kernel"][0] * g["kernel"][1],
            "parallel": core["parallel"]}
