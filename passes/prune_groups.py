"""Dependency groups for channel pruning: which channels must be removed together.

A node of the channel graph is ``(value, channel)`` (channel = axis 0 of the value's
per-sample shape, a feature for rank-1 values).  The op table's channel map
(``ops.channel_links``) adds the edges: an ``add`` ties the channel on every branch and
on the shortcut, a depthwise conv ties its input channel to its output channels,
concat maps channel offsets, flatten ties a channel to its C*H*W block of features,
channel_shuffle ties through its permutation (and keeps its groups equal).  A conv or
dense reads its input channels as weight columns and starts fresh output channels.

A connected component is a *group*: removing it removes every channel in it, the
weight rows that produce them and the weight columns that read them.  A group is
frozen (never removed) when it touches the graph input, a graph output (the last
synaptic layer), or an op that cannot be pruned through (softmax, a grouped conv).
Groups over the same set of values form a *family*, what a per-layer ratio counts.

Values joined by channel-identity ops of one width (add, ReLU, pools, pads) share one
set of channel nodes, so a ResNet's stage is built once, not once per value: the same
components, a fraction of the graph (ResNet-50: 0.50 s -> 0.19 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from snncc import ops
from snncc.ir import Graph


@dataclass
class Group:
    members: list[tuple[str, int]]  # (value, channel), sorted
    values: frozenset[str]


@dataclass
class Groups:
    groups: list[Group]  # prunable groups only, in a deterministic order
    families: dict[frozenset[str], list[int]] = field(default_factory=dict)  # values -> group indices
    columns: dict[str, list[str]] = field(default_factory=dict)  # value -> conv/dense nodes reading its columns

    def family_of(self, value: str) -> frozenset[str] | None:
        return next((f for f in self.families if value in f), None)


def build(graph: Graph) -> Groups:
    """The prunable groups of ``graph`` (float IR)."""
    order = {v: i for i, v in enumerate(list(graph.inputs) + [n.output for n in graph.nodes])}
    home = _same_channels(graph, order)
    g = nx.Graph()
    frozen: set[tuple[str, int]] = set()
    for name in set(home.values()):
        g.add_nodes_from((name, c) for c in range(_channels(graph.shape(name))))
    for name in list(graph.inputs) + list(graph.outputs):
        frozen.update((home[name], c) for c in range(_channels(graph.shape(name))))
    columns: dict[str, list[str]] = {}
    for node in graph.nodes:
        if _identity(graph, node):
            continue  # its values share one home: channel c is one node of the channel graph
        ins = [graph.shape(v) for v in node.inputs]
        links = ops.channel_links(node, ins, graph.shape(node.output))
        if links.frozen:
            for v in list(node.inputs) + [node.output]:
                frozen.update((home[v], c) for c in range(_channels(graph.shape(v))))
            continue
        if links.columns:
            columns.setdefault(node.inputs[0], []).append(node.name)
        slot = {k: home[v] for k, v in enumerate(node.inputs)}
        slot["out"] = home[node.output]
        g.add_edges_from(((slot[a], ca), (slot[b], cb)) for (a, ca), (b, cb) in links.pairs)
    values_of: dict[str, list[str]] = {}
    for v in order:
        values_of.setdefault(home[v], []).append(v)
    groups = []
    for comp in nx.connected_components(g):
        if frozen.isdisjoint(comp):
            members = sorted(((v, c) for h, c in comp for v in values_of[h]), key=lambda m: (order[m[0]], m[1]))
            groups.append(Group(members, frozenset(v for v, _ in members)))
    groups.sort(key=lambda gr: (order[gr.members[0][0]], gr.members[0][1]))
    families: dict[frozenset[str], list[int]] = {}
    for i, gr in enumerate(groups):
        families.setdefault(gr.values, []).append(i)
    return Groups(groups, families, columns)


def _identity(graph: Graph, node) -> bool:
    """Output channel c reads channel c of every input, all of one width (an add, a ReLU, a pool)."""
    width = _channels(graph.shape(node.output))
    return ops.channel_identity(node.op) and all(_channels(graph.shape(v)) == width for v in node.inputs)


def _same_channels(graph: Graph, order: dict) -> dict[str, str]:
    """value -> the first value (in graph order) of its class under channel-identity ops: the
    channel graph then has one node per channel of a class, not of every value (a ResNet's
    stage of adds and ReLUs is one class), and the same components."""
    vg = nx.Graph()
    vg.add_nodes_from(order)
    vg.add_edges_from((v, node.output) for node in graph.nodes if _identity(graph, node) for v in node.inputs)
    return {v: first for comp in nx.connected_components(vg) for first in [min(comp, key=order.get)] for v in comp}


def _channels(shape) -> int:
    return int(shape[0]) if len(shape) else 1
