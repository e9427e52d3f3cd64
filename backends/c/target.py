"""The C target's interface (backends/__init__.py): ``emit`` writes the library, ``verify``
builds it with the host compiler and compares every output with the integer runtime,
``check_tools`` fails fast when the compiler is missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snncc.backends.c.emit import name_problem, named_files  # noqa: F401  (the target interface)
from snncc.ir import Graph

LABEL = "C"


def emit(graph: Graph, out_dir: Path, *, name: str, spike_rates: dict[str, float] | None = None, **_) -> dict:
    """Write the library into ``out_dir``; return what the report records about it."""
    from snncc.backends.c.emit import memory_summary, write_c

    _, plan = write_c(graph, out_dir, name=name, spike_rates=spike_rates)
    return {"c_memory": memory_summary(plan)}


def flash_bytes(graph: Graph) -> int:
    """The bytes of the const tables ``emit`` writes for ``graph`` (what --prune-target-flash counts)."""
    from snncc.backends.c.emit import c_memory

    return int(c_memory(graph)["weight_bytes"])


def check_tools(*, cc: str = "cc", **_) -> None:
    from snncc.backends.c.verify_c import find_compiler

    find_compiler(cc)


def verify(graph: Graph, out_dir: Path, x_q: np.ndarray, *, reference: np.ndarray, cc: str = "cc", **_):
    """Build the emitted library on the host and compare it, bit for bit, with ``reference``."""
    from snncc.backends import Check, passed
    from snncc.backends.c.verify_c import compare_c

    cmp = compare_c(graph, Path(out_dir), x_q, cc=cc)  # checks every graph output, not only the first
    if cmp.ok:
        return passed("{outputs} outputs of {samples} samples bit-exact", outputs=cmp.samples * cmp.outputs,
                      samples=cmp.samples)
    table = [(cmp.diverging_node or "?", cmp.diverging_op or "?", "first node whose output differs")]
    return Check(False, cmp.summary(), table)
