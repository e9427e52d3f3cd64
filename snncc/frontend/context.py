"""The state shared by the per-op importers while one ONNX graph becomes IR.

ONNX values fall into two kinds: *constants* (initializers, Constant outputs and
everything folded from them, held as numpy arrays) and *activations* (values that
depend on a graph input; each maps to one IR value with a per-sample shape).
Importers read their inputs through this context and emit IR nodes with ``emit``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from snncc.errors import SnnccError
from snncc.ir import Graph, Node, Value, infer_shape

# Stand-ins for a symbolic batch size while folding Shape chains.  Every Shape of an
# activation is evaluated twice, once per stand-in; a folded constant that differs
# between the two runs depends on the batch size (see folding.py).
BATCH_A = 1_000_003
BATCH_B = 1_000_033


def check_finite(arr: np.ndarray, key: str, error) -> None:
    """The one check that a parameter holds no NaN/inf (also after float32 rounding);
    ``error(message)`` makes the SnnccError naming the node."""
    bad = ~np.isfinite(arr)
    if bad.any():
        kind = "NaN" if np.isnan(arr).any() else "inf"
        raise error(f"parameter {key!r} holds {kind} ({int(bad.sum())} of {arr.size} values); "
                    "the model's weights are broken (a diverged training run, or a BatchNorm with "
                    "var + epsilon <= 0)")


class ImportContext:
    def __init__(self, graph: Graph, opset: int, batch: int | None,
                 node_names: list[str], consumers: dict[str, list[onnx.NodeProto]],
                 graph_outputs: set[str], value_names: set[str]):
        self.graph = graph
        self.opset = opset
        self.batch = batch  # static batch size, or None when symbolic
        self.node_names = node_names  # unique IR-side name per ONNX node index
        self.consumers = consumers  # ONNX value name -> consuming ONNX nodes
        self.graph_outputs = graph_outputs
        self.consts: dict[str, np.ndarray] = {}
        self.alt: dict[str, np.ndarray] = {}  # batch-dependent constants, run B
        self.acts: dict[str, str] = {}  # ONNX value name -> IR value name
        # Names the ONNX graph will claim later are reserved, so helper nodes and
        # values never take them first.
        self._reserved_nodes = set(node_names)
        self._reserved_values = set(value_names)
        self._nodes_taken: set[str] = set()
        self._values_taken = set(graph.values)
        self.index = -1  # index of the ONNX node being imported
        self.onnx_node: onnx.NodeProto | None = None

    # --- naming -----------------------------------------------------------
    @property
    def name(self) -> str:
        """The IR name of the ONNX node being imported."""
        return self.node_names[self.index]

    @staticmethod
    def _claim(base: str, taken: set[str], reserved: set[str], own: bool) -> str:
        """``base`` itself when it is free (and reserved for this caller if
        ``own``), else ``base_1``, ``base_2``... avoiding reserved names."""
        if base and base not in taken and (own or base not in reserved):
            taken.add(base)
            return base
        i = 1
        while f"{base}_{i}" in taken or f"{base}_{i}" in reserved:
            i += 1
        taken.add(f"{base}_{i}")
        return f"{base}_{i}"

    def error(self, message: str) -> SnnccError:
        op = self.onnx_node.op_type if self.onnx_node is not None else None
        return SnnccError(message, node=self.name, op=op)

    # --- inputs -----------------------------------------------------------
    def is_const(self, name: str) -> bool:
        return name in self.consts

    def is_act(self, name: str) -> bool:
        return name in self.acts

    def const(self, name: str, what: str = "input") -> np.ndarray:
        """A constant input; refuse activations and batch-dependent values."""
        if name not in self.consts:
            raise self.error(f"{what} {name!r} must be a constant (an initializer or folded value)")
        if name in self.alt:
            raise self.error(f"{what} {name!r} depends on the dynamic batch size")
        return self.consts[name]

    def act(self, name: str) -> str:
        if name not in self.acts:
            raise self.error(f"input {name!r} must be an activation, not a constant")
        return self.acts[name]

    def shape(self, name: str) -> tuple[int, ...]:
        """Per-sample shape of an activation."""
        return self.graph.values[self.act(name)].shape

    def attr(self, key: str, default: Any = None) -> Any:
        for a in self.onnx_node.attribute:
            if a.name == key:
                return onnx.helper.get_attribute_value(a)
        return default

    def optional_input(self, i: int) -> str | None:
        ins = self.onnx_node.input
        return ins[i] if len(ins) > i and ins[i] else None

    def real_consumers(self, value: str) -> list[onnx.NodeProto]:
        """Consumers of an ONNX value that read its data (not only its shape)."""
        return [n for n in self.consumers.get(value, []) if n.op_type not in ("Shape", "Size")]

    def used_outputs(self) -> list[str]:
        """Indices > 0 of the current node's outputs that anything reads."""
        out = []
        for name in list(self.onnx_node.output)[1:]:
            if name and (self.consumers.get(name) or name in self.graph_outputs):
                out.append(name)
        return out

    # --- outputs ----------------------------------------------------------
    def emit(self, op: str, inputs: list[str], attrs: dict | None = None,
             params: dict[str, np.ndarray] | None = None, *, suffix: str | None = None,
             output: str | None = None) -> str:
        """Append an IR node and return its output value name.

        With ``output`` (an ONNX value name) the node produces that ONNX value;
        ``suffix`` marks helper nodes (``<name>_<suffix>``) that one ONNX node
        needs besides its main node.
        """
        params = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in (params or {}).items()}
        for key, arr in params.items():
            check_finite(arr, key, self.error)
        base = self.name if suffix is None else f"{self.name}_{suffix}"
        node_name = self._claim(base, self._nodes_taken, self._reserved_nodes, suffix is None)
        if output:
            value = self._claim(output, self._values_taken, self._reserved_values, True)
        else:
            value = self._claim(node_name, self._values_taken, self._reserved_values, False)
        node = Node(name=node_name, op=op, inputs=list(inputs), output=value,
                    attrs=dict(attrs or {}),
                    params=params,
                    origin=f"{self.onnx_node.op_type}:{self.onnx_node.name}")
        shape = infer_shape(self.graph, node)
        self.graph.values[value] = Value(value, tuple(int(s) for s in shape), "float32")
        self.graph.nodes.append(node)
        if output:
            self.acts[output] = value
        return value

    def alias(self, onnx_value: str, ir_value: str) -> None:
        """Make an ONNX value stand for an existing IR value (dropped ops)."""
        self.acts[onnx_value] = ir_value

    def rename_output(self, node: Node, onnx_value: str) -> None:
        """Let an emitted node produce ``onnx_value`` instead (its old output has no
        other reader); ONNX names that pointed at the old value follow it."""
        old = node.output
        new = self._claim(onnx_value, self._values_taken, self._reserved_values, True)
        node.output = new
        self.graph.values[new] = Value(new, self.graph.values.pop(old).shape, "float32")
        for key, value in self.acts.items():
            if value == old:
                self.acts[key] = new
        self.acts[onnx_value] = new

    def producer(self, ir_value: str) -> Node | None:
        for node in reversed(self.graph.nodes):
            if node.output == ir_value:
                return node
        return None
