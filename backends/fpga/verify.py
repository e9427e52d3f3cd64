"""`snncc verify --target fpga`: the RTL against the integer runtime, every output of every sample."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from snncc.backends.fpga.emit import emit_fpga
from snncc.backends.fpga.sim import pick_simulator, simulate
from snncc.ir import Graph

# Above this many simulated cycles, Verilator's build (about a minute) pays for itself.
VERILATOR_ABOVE_CYCLES = 20_000_000


def choose_simulator(choice: str, cycles_total: int) -> str:
    """``auto``: iverilog for short runs, Verilator (when present) for long ones."""
    import shutil

    if choice == "auto" and cycles_total > VERILATOR_ABOVE_CYCLES and shutil.which("verilator"):
        return "verilator"
    return pick_simulator(choice)


def verify_fpga(int_graph: Graph, x_q: np.ndarray, *, lanes: int = 1, simulator: str = "auto"):
    """Emit the target into a temporary folder and simulate ``x_q``; return (ok, detail)."""
    pick_simulator(simulator)  # a missing simulator fails before the emit
    with tempfile.TemporaryDirectory(prefix="snncc-verify-fpga-") as tmp:
        out = Path(tmp) / "fpga"
        out.mkdir()
        info = emit_fpga(int_graph, out, name="model", lanes=lanes)
        sim = choose_simulator(simulator, info["cycles"] * len(x_q))
        res = simulate(int_graph, out, x_q, simulator=sim)
    return res
