"""residual: find the residual joins and put Sparse-ResNet barrier neurons on them.

A residual join is an ``add`` whose inputs come from paths that fork from one
common value (one path may be the identity). Each join is classified:

- ``post_add_relu``: every reader of the join is a ReLU (classic ResNet). The
  currents add in one shared scale and that ReLU's neuron is the barrier:
  nothing to do.
- ``spike_spike``: every input carries non-negative levels (ReLU outputs, their
  max-pooling or data movement, or an earlier spike + spike sum; SEW-ResNet) and
  no ReLU follows. ``--residual sparse`` inserts a barrier: a ``relu`` with
  ``attrs["barrier"] = True`` right after the add. It is the identity on the ANN
  (the sum is >= 0), and ``convert`` turns it into an unsigned N-level neuron whose
  thresholds come from the join output's statistics times ``attrs["barrier_scale"]``
  (``--barrier-scale``). ``--residual sew`` keeps the integer sum of levels.
- ``linear``: some input is a current (a linear bottleneck, a pre-activation
  stream) and no ReLU follows. The add gets ``attrs["barrier"] = True``: where
  ``convert`` puts a signed neuron on that current, the neuron is the join's
  (signed) barrier. Its thresholds are calibrated like any signed neuron.
- ``output``: the join is a graph output (logits); its current is accumulated.

The pass runs after ``calibrate``: the statistics of a join output are also those
of its barrier (the ReLU is the identity there), so they are copied, not recomputed.
``graph.meta["residual_joins"]`` lists every join in graph order as
``{"node", "kind", "action", "fork", "inputs", "barrier"}``.
"""

from __future__ import annotations

import copy

import networkx as nx

from snncc import ops
from snncc.errors import SnnccError
from snncc.ir import Graph, Node
from snncc.pass_context import PassContext
from snncc.passes.convert_plan import plan, populations


def value_graph(graph: Graph) -> nx.DiGraph:
    """Value-level DAG: an edge from every input value of a node to its output value."""
    g = nx.DiGraph()
    g.add_nodes_from(graph.inputs)
    for node in graph.nodes:
        g.add_node(node.output)
        g.add_edges_from((v, node.output) for v in node.inputs)
    return g


def fork_of(graph: Graph, vg: nx.DiGraph, node: Node) -> str | None:
    """The latest value every input of ``node`` depends on (itself included), or None."""
    common = None
    for v in node.inputs:
        reach = nx.ancestors(vg, v) | {v}
        common = reach if common is None else common & reach
    if not common:
        return None
    pos = {v: -1 for v in graph.inputs}
    pos.update({n.output: i for i, n in enumerate(graph.nodes)})
    return max(sorted(common), key=lambda v: pos[v])


def find_joins(graph: Graph) -> list[dict]:
    """Every residual join, in graph order, classified (no rewrite).

    Raises ``SnnccError`` naming the node for a join whose inputs differ in shape.
    """
    vg = value_graph(graph)
    levels = ops.value_kinds(graph).spike_sums  # >= 0: ReLU outputs, level-keeping moves, sums
    consumers = graph.consumer_map()
    outputs = set(graph.outputs)
    joins = []
    for node in graph.nodes:
        if node.op != "add" or len(node.inputs) < 2:
            continue
        shapes = [tuple(graph.values[v].shape) for v in node.inputs]
        if any(s != shapes[0] for s in shapes):
            raise SnnccError(f"residual join inputs have mismatched shapes {[list(s) for s in shapes]}",
                             node=node.name, op=node.op)
        fork = fork_of(graph, vg, node)
        if fork is None:  # independent inputs: a plain sum, not a residual join
            continue
        readers = consumers.get(node.output, [])
        if node.output in outputs:
            kind = "output"
        elif readers and all(r.op == "relu" for r in readers):
            kind = "post_add_relu"
        elif all(v in levels for v in node.inputs):
            kind = "spike_spike"
        else:
            kind = "linear"
        joins.append({"node": node.name, "kind": kind, "fork": fork, "inputs": list(node.inputs)})
    return joins


def run(graph: Graph, ctx: PassContext) -> Graph:
    graph = graph.copy()
    mode = ctx.options.residual
    scale = float(ctx.options.barrier_scale)
    joins = find_joins(graph)
    if mode == "sparse" and any(j["kind"] == "spike_spike" for j in joins):
        _tie_sew_thresholds(graph)
    for join in joins:
        node = graph.node(join["node"])
        join["barrier"] = None
        if join["kind"] == "spike_spike" and mode == "sparse":
            join["barrier"] = _insert_barrier(graph, node, scale)
            join["action"] = f"inserted unsigned barrier neuron (threshold x {scale:g})"
        elif join["kind"] == "spike_spike":
            join["action"] = "kept the integer sum of levels (sew)"
        elif join["kind"] == "linear":
            node.attrs["barrier"] = True
            join["action"] = "signed barrier where the join current feeds a synaptic layer"
        elif join["kind"] == "post_add_relu":
            join["action"] = "none: the post-add neuron is the barrier"
        else:
            join["action"] = "none: the join current is a graph output"
    graph.meta["residual_joins"] = joins
    return graph


def _insert_barrier(graph: Graph, add: Node, scale: float) -> str:
    """Put ``relu(barrier)`` after ``add``; every former reader of the add reads it."""
    if add.output not in graph.stats:
        raise SnnccError("no calibration statistics for this residual join; "
                         "run the calibrate pass before residual", node=add.name, op=add.op)
    name = graph.unique_name(add.name + "/barrier")
    out = graph.unique_name(add.output + "/barrier")
    graph.replace_uses(add.output, out)
    barrier = Node(name, "relu", [add.output], out, {"max": None, "barrier": True, "barrier_scale": scale},
                   origin=add.origin)
    graph.insert_after(add, barrier)
    stats = copy.deepcopy(graph.stats[add.output])
    if isinstance(stats, dict) and "kind" in stats:
        stats["kind"] = "relu"
    graph.stats[out] = stats
    return name


def _tie_sew_thresholds(graph: Graph) -> None:
    """Give the neurons feeding SEW joins the thresholds they share in sew mode.

    ``convert`` must equalize the thresholds of levels added together (sew mode).
    Keeping the same sharing in sparse mode (``attrs["theta_group"]``, read by
    ``convert_plan.populations``) makes the barriers the only difference between the
    two modes, so a barrier can only remove events at its join.
    """

    relus = {n.output: n for n in graph.nodes if n.op == "relu"}
    for members in populations(graph, plan(graph)):
        if len(members) > 1:
            for v in members:
                if v in relus:
                    relus[v].attrs["theta_group"] = members[0]


def scale_barriers(graph: Graph, thetas: dict) -> dict:
    """``thetas`` with each barrier ReLU's thresholds times its ``barrier_scale`` (called by convert)."""
    out = dict(thetas)
    for node in graph.nodes:
        if node.op == "relu" and node.attrs.get("barrier") and node.output in out:
            out[node.output] = out[node.output] * float(node.attrs.get("barrier_scale", 1.0))
    return out
