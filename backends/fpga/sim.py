"""Simulate an emitted FPGA folder and compare it with the integer runtime.

``simulate`` copies the folder to a temporary directory, writes the samples and the
integer runtime's outputs as tb/*.mem, and runs the self-checking testbench under
Icarus Verilog or Verilator.  The testbench itself compares every output word; this
module parses its PASS/FAIL line and the simulated cycles per inference.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snncc.backends.fpga.emit import write_tb_data
from snncc.errors import SnnccError
from snncc.ir import Graph
from snncc.signals import run_child

INSTALL = "apt-get install -y iverilog verilator yosys (or run .ci/setup)"
SIMULATORS = ("auto", "iverilog", "verilator")


@dataclass
class SimResult:
    ok: bool
    simulator: str
    samples: int
    words: int
    cycles: list[int] = field(default_factory=list)
    estimate: int = 0
    message: str = ""
    predicted: list[int] = field(default_factory=list)  # event-driven: the exact data-dependent model

    def summary(self) -> str:
        cyc = f"{self.cycles[0]} simulated cycles per inference" if self.cycles else "no cycles"
        if len(set(self.cycles)) > 1:
            cyc = f"{min(self.cycles)}..{max(self.cycles)} simulated cycles per inference"
        head = "bit-exact" if self.ok else "MISMATCH"
        est = f"netlist estimate {self.estimate}"
        if self.predicted:
            same = "equal" if self.predicted == self.cycles else "DIFFER FROM"
            est = (f"event-driven: {same} the data-dependent model ({min(self.predicted)}..{max(self.predicted)}, "
                   f"mean {sum(self.predicted) / len(self.predicted):.0f}), bound {self.estimate}")
        return (f"{head}: {self.samples} samples, {self.words} output words ({self.simulator}); "
                f"{cyc}, {est}" + ("" if self.ok else f"; {self.message}"))


def need_tool(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SnnccError(f"{tool} not found; install it: {INSTALL}")
    return path


def pick_simulator(choice: str = "auto") -> str:
    """``auto``: iverilog (starts in seconds; Verilator's C++ build costs more than it saves on small runs)."""
    if choice not in SIMULATORS:
        raise SnnccError(f"option --simulator must be one of {', '.join(SIMULATORS)}, got {choice!r}")
    if choice == "auto":
        if shutil.which("iverilog") and shutil.which("vvp"):
            return "iverilog"
        if shutil.which("verilator"):
            return "verilator"
        raise SnnccError(f"no Verilog simulator found (iverilog or verilator); install one: {INSTALL}")
    need_tool(choice)
    if choice == "iverilog":
        need_tool("vvp")
    return choice


def simulate(graph: Graph, out_dir: Path, x_q: np.ndarray, *, simulator: str = "auto", seed: int = 1,
             timeout: float | None = None, reference: np.ndarray | None = None) -> SimResult:
    """Run ``x_q`` (int8, (n, *shape)) through the RTL in ``out_dir``; compare with ``run_int``."""
    sim = pick_simulator(simulator)
    out_dir = Path(out_dir)
    netlist = json.loads((out_dir / "netlist.json").read_text())
    rtl = sorted(p.name for p in (out_dir / "rtl").glob("*.v"))
    with tempfile.TemporaryDirectory(prefix="snncc_fpga_sim_") as tmp:
        work = Path(tmp)
        for sub in ("rtl", "mem", "tb"):
            shutil.copytree(out_dir / sub, work / sub)
        write_tb_data(graph, netlist, work, np.asarray(x_q), seed=seed, reference=reference)
        sources = ["tb/tb.v"] + [f"rtl/{n}" for n in rtl]
        if sim == "iverilog":
            build = [need_tool("iverilog"), "-g2005", "-I", "tb", "-o", "tb.vvp", *sources]
            run = [need_tool("vvp"), "-n", "tb.vvp"]
        else:
            build = [need_tool("verilator"), "--binary", "--timing", "-Wno-fatal", "-Wno-lint", "-Wno-style",
                     "-Itb", "--top-module", "tb", "--Mdir", "obj", "-o", "tb_bin", "-j", "2", *sources]
            run = ["obj/tb_bin"]
        proc = run_child(build, cwd=work)
        if proc.returncode != 0:
            raise SnnccError(f"{sim} could not build the testbench: {_first_error(proc)}")
        try:
            proc = run_child(run, cwd=work, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SnnccError(f"{sim} simulation ran past {timeout} s") from None
    text = proc.stdout + proc.stderr
    cycles = [int(m.group(1)) for m in re.finditer(r"^CYCLES \d+ (\d+)", text, re.M)]
    passed = re.search(r"^PASS ", text, re.M) is not None and proc.returncode == 0
    fail = re.search(r"^FAIL .*$", text, re.M)
    predicted = []
    if netlist.get("event_driven"):
        from snncc.backends.fpga.estimate import event_cycles

        predicted = [int(c) for c in event_cycles(graph, netlist, np.asarray(x_q))]
    return SimResult(ok=passed, simulator=sim, samples=len(x_q), words=len(x_q) * netlist["output"]["words"],
                     cycles=cycles, estimate=int(netlist["estimate"]["cycles"]), predicted=predicted,
                     message=fail.group(0) if fail else ("" if passed else text.strip()[-300:]))


def _first_error(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    errs = [ln for ln in lines if "rror" in ln]
    return (errs or lines or ["no output"])[0]
