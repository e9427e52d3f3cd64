"""canonicalize: fold BatchNorm/affines into Conv/Dense, drop no-ops, fold pads,
rewrite AvgPool as SumPool plus a scale."""

from __future__ import annotations

from snncc.ir import Graph
from snncc.options import CompileOptions


def run(graph: Graph, options: CompileOptions) -> Graph:
    graph = graph.copy()
    return graph
