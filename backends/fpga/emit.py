"""Write the FPGA target folder: netlist.json, mem/, rtl/, tb/, Makefile.

Layout of ``snncc compile --target fpga -o out/``::

    netlist.json           the fixed-point netlist (schema: netlist.schema.json)
    netlist.schema.json    its JSON Schema (a copy, for CI scripts)
    mem/*.mem              weight and parameter ROM images ($readmemh hex, exact width)
    rtl/*.v                one module per core, <name>_top.v, snncc_lib.v
    tb/tb.v                self-checking testbench; tb/input.mem, tb/expected.mem, tb/tb_config.vh
    Makefile               sim, sim-verilator, synth-ice40, synth-ecp5, synth-xc7
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from snncc.backends.fpga.netlist import build_netlist, hex_lines
from snncc.backends.fpga.verilog import emit_rtl
from snncc.ir import Graph

TEMPLATES = Path(__file__).parent / "templates"
SCHEMA_PATH = Path(__file__).parent / "netlist.schema.json"
TB_SEED = 1


def emit_fpga(graph: Graph, out_dir: Path, *, name: str, lanes: int = 1,
              samples: np.ndarray | None = None, event_driven: bool = False) -> dict:
    """Write the target into ``out_dir`` (exists, empty); return a summary for report.json."""
    out_dir = Path(out_dir)
    netlist, roms = build_netlist(graph, lanes=lanes, name=name, event_driven=event_driven)
    (out_dir / "mem").mkdir()
    (out_dir / "rtl").mkdir()
    (out_dir / "tb").mkdir()
    (out_dir / "netlist.json").write_text(json.dumps(netlist, indent=1, sort_keys=True) + "\n")
    (out_dir / "netlist.schema.json").write_text(SCHEMA_PATH.read_text())
    for mem in netlist["memories"]:
        if mem["init"]:
            (out_dir / mem["init"]).write_text(hex_lines(roms[mem["name"]], mem["width"]))
    for fname, text in emit_rtl(netlist).items():
        (out_dir / "rtl" / fname).write_text(text)
    (out_dir / "rtl" / "snncc_lib.v").write_text((TEMPLATES / "snncc_lib.v").read_text())
    (out_dir / "tb" / "tb.v").write_text((TEMPLATES / "tb.v").read_text())
    x_q = tb_inputs(graph, samples)
    write_tb_data(graph, netlist, out_dir, x_q)
    (out_dir / "Makefile").write_text((TEMPLATES / "Makefile").read_text().replace("@TOP@", f"{name}_top"))
    return {"netlist": "netlist.json", "top": f"{name}_top", "lanes": lanes, "event_driven": event_driven,
            "cycles": netlist["estimate"]["cycles"], "resources": netlist["estimate"]["resources"],
            "notes": netlist["notes"]}


def tb_inputs(graph: Graph, samples: np.ndarray | None = None, *, n_random: int = 2, seed: int = 0) -> np.ndarray:
    """int8 test inputs: all -128, all 127, ``n_random`` uniform random, then ``samples`` (already int8)."""
    shape = tuple(graph.shape(graph.inputs[0]))
    rng = np.random.default_rng(seed)
    parts = [np.full((1,) + shape, -128, np.int8), np.full((1,) + shape, 127, np.int8),
             rng.integers(-128, 128, size=(n_random,) + shape).astype(np.int8)]
    if samples is not None and len(samples):
        parts.append(np.asarray(samples, dtype=np.int8).reshape((-1,) + shape))
    return np.concatenate(parts)


def write_tb_data(graph: Graph, netlist: dict, out_dir: Path, x_q: np.ndarray, *, seed: int = TB_SEED,
                  reference: np.ndarray | None = None) -> np.ndarray:
    """tb/input.mem, tb/expected.mem and tb/tb_config.vh; return the expected outputs:
    ``reference`` (the caller's integer-runtime outputs) or the integer runtime's own."""
    from snncc.sim.int_runtime import run_int

    if reference is None:
        reference = run_int(graph, x_q)[graph.outputs[0]]
    out = np.asarray(reference).reshape(len(x_q), -1).astype(np.int64)
    tb = Path(out_dir) / "tb"
    (tb / "input.mem").write_text(hex_lines([int(v) & 0xFF for v in x_q.reshape(-1)], 8))
    (tb / "expected.mem").write_text(hex_lines([int(v) & 0xFFFFFFFF for v in out.reshape(-1)], 32))
    nin, nout = netlist["input"]["words"], netlist["output"]["words"]
    per_sample = netlist["estimate"]["cycles"] + 4 * (nin + 3 * nout) + 64
    (tb / "tb_config.vh").write_text(
        f"`ifndef TOP\n`define TOP {netlist['name']}_top\n`endif\n"
        f"localparam NIN = {nin};\nlocalparam NOUT = {nout};\nlocalparam NSAMP = {len(x_q)};\n"
        f"localparam SEED = {seed};\nlocalparam MAX_TICKS = {per_sample * len(x_q) + 1000};\n")
    return out
