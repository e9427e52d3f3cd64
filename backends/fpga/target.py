"""The FPGA target's interface (backends/__init__.py): ``emit`` writes netlist.json, the
ROM images, the Verilog and its testbench; ``verify`` simulates them (Icarus Verilog, or
Verilator for long runs) and compares every output word with the integer runtime.

Target options: ``lanes`` and ``event_driven`` (compile and verify), ``simulator`` (verify), ``samples``
(int8 inputs the emitted testbench runs besides the extremes and random ones).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from snncc.ir import Graph

LABEL = "Verilog"
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def named_files(name: str) -> tuple[str, ...]:
    """The files named after the model (in rtl/)."""
    return (f"rtl/{name}_top.v",)


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot prefix the Verilog module names, or None."""
    if not _NAME_RE.match(name) or name.lower().startswith("snncc"):
        return "is not a Verilog identifier (ASCII letters, digits, _; not starting with a digit or 'snncc')"
    if name == "tb":
        return "is the testbench's module name"
    return None


def emit(graph: Graph, out_dir: Path, *, name: str, lanes: int = 1, samples: np.ndarray | None = None,
         event_driven: bool = False, **_) -> dict:
    from snncc.backends.fpga.emit import emit_fpga

    return {"fpga": emit_fpga(graph, Path(out_dir), name=name, lanes=lanes, samples=samples,
                              event_driven=event_driven)}


def check_tools(*, lanes: int = 1, simulator: str = "auto", **_) -> None:
    from snncc.backends.fpga.netlist import check_lanes
    from snncc.backends.fpga.sim import pick_simulator

    check_lanes(lanes)
    pick_simulator(simulator)


def verify(graph: Graph, out_dir: Path, x_q: np.ndarray, *, reference: np.ndarray, simulator: str = "auto", **_):
    """Simulate what ``emit`` wrote on ``x_q``; every output word must equal ``reference``."""
    import json

    from snncc.backends import Check
    from snncc.backends.fpga.sim import simulate
    from snncc.backends.fpga.verify import choose_simulator

    cycles = json.loads((Path(out_dir) / "netlist.json").read_text())["estimate"]["cycles"]
    res = simulate(graph, Path(out_dir), x_q, simulator=choose_simulator(simulator, cycles * len(x_q)),
                   reference=reference)
    return Check(res.ok, res.summary())
