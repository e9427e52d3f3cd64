"""The QONNX target's interface (backends/__init__.py): ``emit`` writes ``<name>.onnx`` in the
QONNX dialect (backends/qonnx/emit.py), ``verify`` runs it with qonnx's own executor and
compares every output with the integer runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snncc.errors import SnnccError
from snncc.ir import Graph
from snncc.irio import name_problem  # noqa: F401  (the target interface)

LABEL = "QONNX (qonnx execute_onnx)"
EXTRA = "pip install 'snncc[qonnx]'"


def named_files(name: str) -> tuple[str, ...]:
    return (f"{name}.onnx",)


def check_tools(*, options=None, **_) -> None:
    """The extra is installed, and the compile ``options`` (when given) have a QONNX form."""
    if options is not None:
        from snncc.backends.qonnx.emit import check_timesteps

        check_timesteps(options.timesteps)
    try:
        import qonnx.core.onnx_exec  # noqa: F401
    except ImportError:
        raise SnnccError(f"qonnx needs the qonnx package, which is not installed: {EXTRA}", option="target") from None


def emit(graph: Graph, out_dir: Path, *, name: str, spike_rates: dict[str, float] | None = None, **_) -> dict:
    from snncc.backends.qonnx.emit import write_qonnx

    check_tools()
    write_qonnx(graph, Path(out_dir) / f"{name}.onnx")
    return {}


def verify(graph: Graph, out_dir: Path, x_q: np.ndarray, *, reference: np.ndarray, **_):
    """Run the file with qonnx's executor; every output, divided by its scale, must equal
    the integer runtime's out_q."""
    from snncc.backends import Check
    from snncc.backends.qonnx.emit import run_qonnx, to_out_q

    path = next(Path(out_dir).glob("*.onnx"))
    logits = run_qonnx(path, x_q)[0]
    out = to_out_q(logits, graph.meta["output_scales"][graph.outputs[0]]).reshape(reference.shape)
    bad = np.argwhere(out != reference)
    if len(bad):
        s, o = bad[0]
        return Check(False, f"{len(bad)} mismatches; first at sample {s} output {o}")
    return Check(True, f"{reference.size} outputs of {len(x_q)} samples bit-exact (as out_q = logits / scale)")
