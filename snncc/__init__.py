"""snncc: an ANN-to-SNN deployment compiler.

Public API::

    import snncc
    graph = snncc.load_onnx("model.onnx")   # float IR
    y = snncc.run(graph, x)                 # float reference runtime
    result = snncc.compile_model("model.onnx", calib="calib.npz", target="c", output="out")
"""

from __future__ import annotations

__version__ = "0.1.0"

from snncc.errors import SnnccError
from snncc.ir import Graph, Node, Value
from snncc.options import CompileOptions

__all__ = ["Graph", "Node", "Value", "CompileOptions", "SnnccError", "load_onnx", "run", "compile_model",
           "__version__"]


def load_onnx(path) -> Graph:
    """Load an ONNX file into the float IR (constants folded, shapes static)."""
    from snncc.frontend.onnx_import import load_onnx as _load

    return _load(path)


def run(graph: Graph, x):
    """Run the float IR on a batch ``x`` (N, ...) with the numpy reference runtime."""
    from snncc.sim.float_runtime import run as _run

    return _run(graph, x)


def compile_model(model_path, **kwargs):
    """Compile an ONNX file; see :func:`snncc.compiler.compile_model`."""
    from snncc.compiler import compile_model as _compile

    return _compile(model_path, **kwargs)
