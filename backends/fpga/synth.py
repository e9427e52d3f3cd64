"""Synthesize an emitted FPGA folder with yosys; write synth_report.json.

One yosys run per family: read the RTL, elaborate and ``proc``, assert that no
latch was inferred and that ``check`` finds no multi-driven or undriven net, then
``synth_<family>`` without flattening (so every core keeps its own module) and ``stat -json``.
Cells are counted per core (recursively through its memories and neuron) and in total,
and classified as LUT / FF / BRAM / DSP for the family.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import tempfile
from pathlib import Path

from snncc.backends.fpga.sim import need_tool
from snncc.errors import SnnccError
from snncc.outdir import write_text
from snncc.signals import run_child

FAMILIES = {
    "ice40": "synth_ice40 -noflatten -top {top}",
    "ecp5": "synth_ecp5 -nodsp -noflatten -top {top}",
    "xc7": "synth_xilinx -family xc7 -top {top}",  # keeps the hierarchy unless -flatten
}
LATCH_CELLS = ("$dlatch", "$adlatch", "$dlatchsr", "$_DLATCH_N_", "$_DLATCH_P_")


# Per family: (cell name pattern, resource, amount) in order, the first match counts.  Carry
# cells, muxes and I/O buffers are not counted.  Distributed RAM counts the LUTs it occupies.
CELLS = {
    "ice40": [("SB_LUT4", "lut", 1), ("SB_DFF*", "ff", 1), ("SB_RAM40_4K*", "bram", 1), ("SB_MAC16", "dsp", 1)],
    "ecp5": [("LUT4", "lut", 1), ("TRELLIS_DPR16X4", "lut", 4), ("TRELLIS_FF", "ff", 1), ("DP16KD", "bram", 1),
             ("MULT18X18*", "dsp", 1)],
    "xc7": [("LUT[1-6]", "lut", 1), ("RAM*X1S", "lut", 1), ("RAM*X1D", "lut", 2), ("RAM32M", "lut", 4),
            ("RAM64M", "lut", 4), ("FD[RSCP]E", "ff", 1), ("FD[RSCP]E_1", "ff", 1), ("RAMB36E1", "bram", 1),
            ("RAMB18E1", "bram", 0.5), ("DSP48*", "dsp", 1)],
}


def classify(cell: str, family: str) -> tuple[str, float] | None:
    """(resource, amount) of one primitive cell, or None for cells not counted (carry, muxes, IO)."""
    for pattern, kind, amount in CELLS[family]:
        if fnmatch.fnmatchcase(cell, pattern):
            return kind, amount
    return None


def _totals(module: str, modules: dict, family: str, memo: dict) -> dict:
    if module in memo:
        return memo[module]
    out = {"lut": 0.0, "ff": 0.0, "bram": 0.0, "dsp": 0.0}
    for cell, count in modules[module].get("num_cells_by_type", {}).items():
        if cell.lstrip("\\") in modules:
            sub = _totals(cell.lstrip("\\"), modules, family, memo)
            for k in out:
                out[k] += sub[k] * count
            continue
        kind = classify(cell, family)
        if kind:
            out[kind[0]] += kind[1] * count
    memo[module] = out
    return out


def synthesize(out_dir: Path, family: str = "ice40", *, yosys: str = "yosys", timeout: float | None = None) -> dict:
    """Run yosys on ``out_dir``; write and return ``synth_report.json`` (per family key)."""
    if family not in FAMILIES:
        raise SnnccError(f"option --family must be one of {', '.join(FAMILIES)}, got {family!r}")
    out_dir = Path(out_dir)
    netlist_path = out_dir / "netlist.json"
    if not netlist_path.is_file():
        raise SnnccError(f"{out_dir} holds no netlist.json (compile with --target fpga first)")
    netlist = json.loads(netlist_path.read_text())
    exe = need_tool(yosys)
    top = f"{netlist['name']}_top"
    rtl = sorted(str(p.relative_to(out_dir)) for p in (out_dir / "rtl").glob("*.v"))
    with tempfile.TemporaryDirectory(prefix="snncc_synth_") as tmp:
        stat_json = Path(tmp) / "stat.json"
        latch_txt = Path(tmp) / "latches.txt"
        script = "; ".join([
            "read_verilog -defer " + " ".join(rtl),
            f"hierarchy -check -top {top}",
            "proc",
            f"tee -q -o {latch_txt} select -count " + " ".join(f"t:{c}" for c in LATCH_CELLS),
            "check -assert",
            FAMILIES[family].format(top=top),
            f"tee -q -o {stat_json} stat -json",
        ])
        try:
            proc = run_child([exe, "-q", "-p", script], cwd=out_dir, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SnnccError(f"yosys ran past {timeout} s") from None
        if proc.returncode != 0:
            msg = [ln for ln in (proc.stderr + proc.stdout).splitlines() if "ERROR" in ln or "rror" in ln]
            raise SnnccError(f"yosys failed for {family}: {(msg or ['(no message)'])[0].strip()}")
        latches = _count(latch_txt.read_text())
        modules = {k.lstrip("\\"): v for k, v in _modules(stat_json.read_text()).items()}
    if latches:
        raise SnnccError(f"yosys inferred {latches} latch(es) in {out_dir}/rtl")
    names = {m: m.lstrip("\\") for m in modules}
    memo: dict = {}
    cores = {}
    for core in netlist["cores"]:
        key = next((m for m, n in names.items() if n == core["name"]), None)
        if key is not None:
            cores[core["name"]] = _rounded(_totals(key, modules, family, memo))
    top_key = next(m for m, n in names.items() if n == top)
    report = {"family": family, "top": top, "yosys": _version(exe), "latches": 0, "multi_driven": 0,
              "total": _rounded(_totals(top_key, modules, family, memo)), "cores": cores,
              "estimate": netlist["estimate"].get("families", {}).get(family, netlist["estimate"]["resources"])}
    path = out_dir / "synth_report.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    if not isinstance(old, dict) or old.get("schema_version") != 1:
        old = {"schema_version": 1, "families": {}}
    old["families"][family] = report
    write_text(path, json.dumps(old, indent=1, sort_keys=True) + "\n")
    return report


def _modules(text: str) -> dict:
    """The "modules" object of ``stat -json`` (yosys 0.23 appends a text hierarchy after it)."""
    start = text.index("{", text.index('"modules"'))
    return json.JSONDecoder().raw_decode(text, start)[0]


def _count(text: str) -> int:
    m = re.search(r"(\d+)\s+objects", text)
    return int(m.group(1)) if m else 0


def _rounded(d: dict) -> dict:
    return {k: (int(v) if float(v).is_integer() else v) for k, v in d.items()}


def _version(exe: str) -> str:
    try:
        return subprocess.run([exe, "-V"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
