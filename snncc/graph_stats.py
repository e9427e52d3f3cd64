"""Static per-node counts: parameters and multiply-accumulates of the float ANN."""

from __future__ import annotations

import numpy as np

from snncc.ir import Graph, Node


def node_macs(graph: Graph, node: Node) -> int:
    """Multiply-accumulates one sample costs at this node in the ANN."""
    out_shape = graph.values[node.output].shape
    if node.op == "conv":
        _, cin_g, kh, kw = node.params["weight"].shape
        return int(np.prod(out_shape)) * cin_g * kh * kw
    if node.op == "dense":
        return int(node.params["weight"].size)
    if node.op == "affine":
        return int(np.prod(out_shape))
    return 0


def node_param_count(node: Node) -> int:
    return int(sum(np.asarray(p).size for p in node.params.values()))


def graph_totals(graph: Graph) -> dict[str, int]:
    return {
        "params": sum(node_param_count(n) for n in graph.nodes),
        "macs": sum(node_macs(graph, n) for n in graph.nodes),
    }
