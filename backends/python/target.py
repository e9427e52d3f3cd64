"""Python target: the integer IR saved as ``<name>.json`` + ``<name>.npz`` (snncc/irio.py),
run by the integer runtime (snncc/sim/int_runtime.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snncc.ir import Graph
from snncc.irio import name_problem, named_files  # noqa: F401  (the target interface)

LABEL = "python target"


def emit(graph: Graph, out_dir: Path, *, name: str, spike_rates: dict[str, float] | None = None, **_) -> dict:
    from snncc.irio import save_ir

    save_ir(graph, Path(out_dir) / name)
    return {}


def check_tools(**_) -> None:
    """Nothing to install: the runtime is numpy."""


def verify(graph: Graph, out_dir: Path, x_q: np.ndarray, *, reference: np.ndarray, **_):
    """Reload the saved IR and run it; every output must equal ``reference``."""
    from snncc.backends import Check, passed
    from snncc.irio import load_ir
    from snncc.sim.int_runtime import run_int

    names = sorted(Path(out_dir).glob("*.json"))
    reloaded = load_ir(names[0].with_suffix(""))
    out = run_int(reloaded, x_q)[reloaded.outputs[0]].reshape(reference.shape)
    bad = np.argwhere(out != reference)
    if len(bad):
        s, o = bad[0]
        return Check(False, f"{len(bad)} mismatches; first at sample {s} output {o}")
    return passed("{outputs} outputs of {samples} samples bit-exact (saved and reloaded IR)",
                  outputs=int(reference.size), samples=len(x_q))



