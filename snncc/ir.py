"""The snncc intermediate representation.

A :class:`Graph` is a list of :class:`Node` in topological order.  Every node has
exactly one output value.  Shapes are *per sample*: the batch dimension is implicit
and never stored, so a conv output is ``(C, H, W)`` and a dense output ``(F,)``.
Weights live on the node (``node.params``) as numpy arrays, not as graph inputs.

The op set is small and fixed (see the table in snncc/ops.py and docs/ir.md).  The ONNX frontend maps
ONNX ops onto it; passes rewrite it; backends read it.  The same dataclasses hold
the float ANN, the float SNN (after ``convert``) and the integer SNN (after
``quantize``); ``graph.stage`` says which.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from snncc.errors import SnnccError
from snncc.ops import TABLE as OPS
from snncc.ops import infer_shape

STAGES = ("float", "snn", "int")


@dataclass
class Value:
    """A tensor flowing between nodes: per-sample shape and dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass
class Node:
    name: str  # unique within the graph; generated or from ONNX (untrusted text)
    op: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    origin: str = ""  # "OnnxOp:original_name" for messages; never emitted as code


@dataclass
class Graph:
    name: str
    inputs: list[str]
    outputs: list[str]
    nodes: list[Node]
    values: dict[str, Value]
    stage: str = "float"
    # Free-form, JSON-friendly metadata: timesteps, input_scale, notes, etc.
    meta: dict[str, Any] = field(default_factory=dict)
    # Activation statistics from calibration, keyed by value name.
    stats: dict[str, Any] = field(default_factory=dict)

    # --- lookups -------------------------------------------------------
    def producer(self, value: str) -> Node | None:
        for node in self.nodes:
            if node.output == value:
                return node
        return None

    def producers(self) -> dict[str, Node]:
        return {n.output: n for n in self.nodes}

    def consumers(self, value: str) -> list[Node]:
        return [n for n in self.nodes if value in n.inputs]

    def consumer_map(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {v: [] for v in self.values}
        for node in self.nodes:
            for name in node.inputs:
                out.setdefault(name, []).append(node)
        return out

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def shape(self, value: str) -> tuple[int, ...]:
        return self.values[value].shape

    def copy(self) -> Graph:
        """A deep copy, except read-only arrays in ``stats`` (calibrate freezes its statistics):
        every pass copies the graph, and a ResNet-50's statistics take about a GB."""
        return copy.deepcopy(self, {id(a): a for a in _frozen_arrays(self.stats)})

    def unique_name(self, base: str) -> str:
        """A node/value name not used yet, derived from ``base``."""
        used = {n.name for n in self.nodes} | set(self.values)
        if base not in used:
            return base
        i = 1
        while f"{base}_{i}" in used:
            i += 1
        return f"{base}_{i}"

    # --- structure ----------------------------------------------------------
    def to_networkx(self) -> nx.DiGraph:
        g = nx.DiGraph()
        prod = self.producers()
        for node in self.nodes:
            g.add_node(node.name)
            for value in node.inputs:
                if value in prod:
                    g.add_edge(prod[value].name, node.name)
        return g

    def toposort(self) -> None:
        """Reorder ``nodes`` topologically, stable with respect to current order."""
        order = {n.name: i for i, n in enumerate(self.nodes)}
        g = self.to_networkx()
        try:
            names = list(nx.lexicographical_topological_sort(g, key=lambda n: order[n]))
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(g)
            first = self.node(cycle[0][0])
            raise SnnccError("graph has a cycle through " + " -> ".join(a for a, _ in cycle),
                             node=first.name, op=first.op) from None
        by_name = {n.name: n for n in self.nodes}
        self.nodes = [by_name[n] for n in names]

    def remove_unused(self) -> None:
        """Drop nodes whose output reaches no graph output, and stale values."""
        live = set(self.outputs)
        keep: list[Node] = []
        for node in reversed(self.nodes):
            if node.output in live:
                keep.append(node)
                live.update(node.inputs)
        self.nodes = list(reversed(keep))
        used = set(self.inputs) | {n.output for n in self.nodes}
        self.values = {k: v for k, v in self.values.items() if k in used}

    def replace_uses(self, old: str, new: str) -> None:
        """Make every consumer of ``old`` read ``new`` (graph outputs too)."""
        for node in self.nodes:
            node.inputs = [new if v == old else v for v in node.inputs]
        self.outputs = [new if v == old else v for v in self.outputs]

    # --- edits ----------------------------------------------------------------
    def insert_after(self, anchor: Node, node: Node) -> None:
        """Put ``node`` right after ``anchor``; a new output value gets the inferred shape
        and the dtype of the node's first input.  Readers are not rewired."""
        if node.output not in self.values:
            src = self.values[node.inputs[0]]
            self.values[node.output] = Value(node.output, tuple(infer_shape(self, node)), src.dtype)
        at = next(i for i, n in enumerate(self.nodes) if n is anchor)
        self.nodes.insert(at + 1, node)

    def remove_node(self, node: Node) -> None:
        """Drop ``node`` (its readers must already read something else)."""
        self.nodes = [n for n in self.nodes if n is not node]

    def rename_output(self, node: Node, new: str, *, move_uses: bool = True) -> None:
        """Let ``node`` produce the value ``new`` (same shape and dtype).

        With ``move_uses`` every reader (and graph output) of the old value follows and
        the old value is dropped; without, the old value stays for a new producer."""
        old = node.output
        node.output = new
        self.values[new] = Value(new, self.values[old].shape, self.values[old].dtype)
        if move_uses:
            self.replace_uses(old, new)
            self.values.pop(old, None)

    def verify(self) -> None:
        """Check the invariants every pass must keep; raise SnnccError if broken."""
        if self.stage not in STAGES:
            raise SnnccError(f"unknown IR stage {self.stage!r}")
        seen_nodes: set[str] = set()
        defined = set(self.inputs)
        for name in self.inputs:
            if name not in self.values:
                raise SnnccError(f"graph input {name!r} has no value info")
        for node in self.nodes:
            if node.op not in OPS:
                raise SnnccError("unknown op in IR", node=node.name, op=node.op)
            if node.name in seen_nodes:
                raise SnnccError("duplicate node name", node=node.name, op=node.op)
            seen_nodes.add(node.name)
            for value in node.inputs:
                if value not in defined:
                    raise SnnccError(f"input {value!r} is used before it is produced "
                                     "(not topologically sorted, or a cycle)",
                                     node=node.name, op=node.op)
            if node.output in defined:
                raise SnnccError(f"value {node.output!r} has more than one producer",
                                 node=node.name, op=node.op)
            if node.output not in self.values:
                raise SnnccError(f"output {node.output!r} has no value info",
                                 node=node.name, op=node.op)
            for key in OPS[node.op].params:
                if key not in node.params:
                    raise SnnccError(f"missing param {key!r}", node=node.name, op=node.op)
            expected = infer_shape(self, node)
            actual = self.values[node.output].shape
            if tuple(expected) != tuple(actual):
                raise SnnccError(f"shape mismatch: recorded {actual}, inferred {expected}",
                                 node=node.name, op=node.op)
            if self.stage == "int":
                for key, arr in node.params.items():
                    if key in _INT_STAGE_FLOAT_PARAMS:
                        continue
                    if not np.issubdtype(np.asarray(arr).dtype, np.integer):
                        raise SnnccError(f"param {key!r} is not integer in the integer IR",
                                         node=node.name, op=node.op)
            defined.add(node.output)
        for name in self.outputs:
            if name not in defined:
                raise SnnccError(f"graph output {name!r} is never produced")

    def dump(self) -> str:
        """A readable text listing of the graph, one node per line."""
        lines = [f"graph {self.name} (stage={self.stage})"]
        for name in self.inputs:
            v = self.values[name]
            lines.append(f"  input  {name}: {v.dtype}{list(v.shape)}")
        for node in self.nodes:
            v = self.values[node.output]
            attrs = ", ".join(f"{k}={_short(a)}" for k, a in sorted(node.attrs.items()))
            params = ", ".join(f"{k}:{a.dtype}{list(a.shape)}" for k, a in sorted(node.params.items()))
            ins = ", ".join(node.inputs)
            line = f"  {node.output}: {v.dtype}{list(v.shape)} = {node.op}({ins})"
            if attrs:
                line += f" [{attrs}]"
            if params:
                line += f" {{{params}}}"
            lines.append(line + f"  # {node.name}")
        lines.append("  outputs: " + ", ".join(self.outputs))
        for key in sorted(self.meta):
            lines.append(f"  meta {key} = {_short(self.meta[key])}")
        return "\n".join(lines)


# Scales kept on integer-stage nodes for reports only; backends never read them.
_INT_STAGE_FLOAT_PARAMS = frozenset({"scale_real", "theta_real"})


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        if value.size <= 4:
            return repr(value.tolist())
        return f"array{list(value.shape)}"
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"[{len(value)} items]"
    return repr(value)


def freeze(a: np.ndarray) -> np.ndarray:
    """Mark ``a`` read-only, so that graph copies share it (``Graph.copy``)."""
    a.setflags(write=False)
    return a


def _frozen_arrays(obj):
    if isinstance(obj, np.ndarray):
        if not obj.flags.writeable:
            yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _frozen_arrays(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _frozen_arrays(v)
