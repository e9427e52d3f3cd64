"""The one graph walker that every evaluator of the IR uses.

``walk`` runs ``step(i, node, env)`` for the nodes in order, stores its result under
the node's output and frees every value at its last use unless it is kept.  The
float runtime, the float SNN simulator, the integer runtime, the quantized-ANN
oracle and the interval range analysis differ only in their ``step``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from snncc.errors import SnnccError
from snncc.ir import Graph, Node

Step = Callable[[int, Node, dict], Any]


def last_uses(graph: Graph) -> dict[str, int]:
    """value -> index of the last node that reads it."""
    last: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            last[v] = i
    return last


def walk(graph: Graph, env: dict, step: Step, *, keep: Iterable[str] = (), start: int = 0,
         stop: int | None = None, on_value: Callable[[str, Any], None] | None = None,
         release: Callable[[dict, str], None] | None = None, last: dict[str, int] | None = None) -> dict:
    """Evaluate ``graph.nodes[start:stop]`` into ``env`` (changed in place, returned).

    Graph outputs and ``keep`` survive; any other value is dropped (``release``,
    default ``env.pop``) once the last node that reads it has run.
    """
    keep = set(keep) | set(graph.outputs)
    last = last if last is not None else last_uses(graph)
    stop = len(graph.nodes) if stop is None else stop
    for i in range(start, stop):
        node = graph.nodes[i]
        env[node.output] = step(i, node, env)
        if on_value:
            on_value(node.output, env[node.output])
        for v in node.inputs:
            if last.get(v) == i and v not in keep:
                if release:
                    release(env, v)
                else:
                    env.pop(v, None)
    return env


def static_values(graph: Graph) -> set[str]:
    """Values that depend only on the graph input (no neuron upstream): with direct
    encoding they are the same at every timestep, so they are computed once."""
    static = set(graph.inputs)
    for node in graph.nodes:
        if node.op != "neuron" and all(v in static for v in node.inputs):
            static.add(node.output)
    return static


def batch_input(graph: Graph, x, dtype, name: str | None = None) -> np.ndarray:
    """The input as (N, *shape) of ``dtype``; a single sample gets its batch axis."""
    name = name or graph.inputs[0]
    arr = np.asarray(x, dtype=dtype)
    want = tuple(graph.values[name].shape)
    if arr.ndim == len(want):
        arr = arr[None]
    if tuple(arr.shape[1:]) != want:
        raise SnnccError(f"input {name!r} has shape {list(arr.shape)}, "
                         f"the model expects [N, {', '.join(map(str, want))}]")
    return arr
