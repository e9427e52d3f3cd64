"""Static analysis shared by ``calibrate`` and ``convert``: what each value becomes in the SNN.

Every value of the float graph is either

- ``levels``: spike levels (neuron outputs, and data movement of levels; the graph
  input counts as levels with scale 1). Their real value is ``z * scale``, and the
  scale is folded into the synaptic ops that read them.
- ``current``: outputs of synaptic ops, adds of currents, and data movement of
  currents. Neurons integrate them; graph outputs accumulate them.

A conv/dense that reads a current (a linear bottleneck, a join with no ReLU after
it) gets a signed neuron where that current is produced, before any data movement:
those ``signed_sites`` need calibration statistics like ReLU outputs do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from snncc import ops
from snncc.errors import SnnccError
from snncc.ir import Graph, Node
from snncc.unionfind import UnionFind


@dataclass
class Plan:
    kind: dict[str, str] = field(default_factory=dict)  # value -> "levels" | "current"
    signed_sites: list[str] = field(default_factory=list)  # currents read by a synaptic op
    relus: list[str] = field(default_factory=list)  # relu output values (unsigned neurons)
    level_adds: list[str] = field(default_factory=list)  # adds of levels (SEW spike + spike)
    identity_relus: list[str] = field(default_factory=list)  # unclipped ReLU of non-negative levels: dropped
    dropped_softmax: list[Node] = field(default_factory=list)


def is_scale_affine(node: Node) -> bool:
    """An affine with zero shift: on levels it is only a rescale, folded downstream."""
    return node.op == "affine" and not np.any(np.asarray(node.params["shift"]))


def plan(graph: Graph) -> Plan:
    """Classify every value; raise ``SnnccError`` naming the node for anything unsupported.

    A conv/dense reading a current asks for a signed neuron at the current's origin
    (before any data movement); the classification is redone until no new site appears.
    """
    sites: set[str] = set()
    prod = graph.producers()
    while True:
        p, requests = _classify(graph, sites)
        new: set[str] = set()
        for v in requests:
            new |= _origins(v, p, prod)
        if new <= sites:
            p.signed_sites = sorted(sites, key=_order(graph))
            return p
        sites |= new


def _origins(v: str, p: Plan, prod: dict) -> set[str]:
    """The currents that flow, through data movement only, into current value ``v``."""
    node = prod.get(v)
    if node is None or node.op not in ops.DATA_MOVEMENT:
        return {v}
    out: set[str] = set()
    for i in node.inputs:
        if p.kind[i] == "current":
            out |= _origins(i, p, prod)
    return out


def _classify(graph: Graph, sites: set[str]) -> tuple[Plan, set[str]]:
    p = Plan()
    consumers = graph.consumer_map()
    outputs = set(graph.outputs)
    for name in graph.inputs:
        p.kind[name] = "levels"

    def lv(v: str) -> bool:  # levels, or a current that has a signed neuron
        return p.kind[v] == "levels" or v in sites

    requests: set[str] = set()
    nonneg: set[str] = set()  # levels that are >= 0 (from unsigned neurons, through max/sum/moves)
    for node in graph.nodes:
        ins = [p.kind[v] for v in node.inputs]
        op = node.op
        if op == "relu":
            p.kind[node.output] = "levels"
            nonneg.add(node.output)
            if node.inputs[0] in nonneg and node.attrs.get("max") is None and not node.attrs.get("barrier"):
                p.identity_relus.append(node.output)  # relu(relu(x)) = relu(x)
            else:
                p.relus.append(node.output)
        elif op in ops.SYNAPTIC:
            if op == "affine" and ins[0] == "levels" and is_scale_affine(node):
                p.kind[node.output] = "levels"  # a rescale of levels (e.g. avgpool's 1/k)
                if node.inputs[0] in nonneg and (np.asarray(node.params["scale"]) > 0).all():
                    nonneg.add(node.output)
            else:
                if op in ops.WEIGHTED and not lv(node.inputs[0]):
                    requests.add(node.inputs[0])
                p.kind[node.output] = "current"
        elif op == "add":
            feeds_neuron = any(c.op == "relu" for c in consumers.get(node.output, []))
            if "current" in ins or feeds_neuron or node.output in outputs:
                p.kind[node.output] = "current"
            else:
                p.kind[node.output] = "levels"
                p.level_adds.append(node.output)
                if all(v in nonneg for v in node.inputs):
                    nonneg.add(node.output)
        elif op in ops.DATA_MOVEMENT:
            p.kind[node.output] = "levels" if all(lv(v) for v in node.inputs) else "current"
            if all(v in nonneg for v in node.inputs) and p.kind[node.output] == "levels":
                nonneg.add(node.output)
        elif op == "softmax":
            if node.output not in outputs or consumers.get(node.output):
                raise SnnccError("softmax is supported only as the final op of the network", node=node.name, op=op)
            p.kind[node.output] = ins[0]
            p.dropped_softmax.append(node)
        elif op == "neuron":
            raise SnnccError("the graph is already converted (stage snn)", node=node.name, op=op)
        else:
            raise SnnccError("convert cannot map this op onto spiking neurons", node=node.name, op=op)
    return p, requests


def populations(graph: Graph, p: Plan) -> list[list[str]]:
    """Neuron populations whose thresholds move together: the inputs of spike + spike joins
    (union-find through channel-preserving ops), and every other neuron alone. Graph order."""
    uf = UnionFind(list(p.relus) + list(p.signed_sites))
    source: dict[str, str | None] = {v: v for v in uf.parent}  # levels value -> a neuron it comes from
    prod = graph.producers()
    for node in graph.nodes:
        if node.output in source:
            continue
        keep = ((node.op in ops.DATA_MOVEMENT and ops.channel_identity(node.op)) or node.output in p.identity_relus
                or (node.op == "affine" and is_scale_affine(node)))
        if keep and node.inputs[0] in source:
            source[node.output] = source[node.inputs[0]]
        elif node.output in p.level_adds:
            srcs = [source.get(v) for v in node.inputs]
            if any(s is None for s in srcs):
                bad = node.inputs[srcs.index(None)]
                where = prod.get(bad)
                raise SnnccError(f"a spike + spike join needs both inputs straight from neurons; input {bad!r}"
                                 f" comes from {where.op if where else 'the graph input'}",
                                 node=node.name, op=node.op)
            uf.union(srcs)
            source[node.output] = srcs[0]
    # residual pass (sparse mode): keep the threshold sharing a SEW join imposes (attrs["theta_group"])
    tied: dict[str, str] = {}
    for node in graph.nodes:
        key = node.attrs.get("theta_group") if node.op == "relu" else None
        if key is not None:
            uf.union([node.output, tied.setdefault(key, node.output)])
    order = {v: i for i, v in enumerate(uf.parent)}
    return sorted((sorted(g, key=order.get) for g in uf.classes().values()), key=lambda g: order[g[0]])


def _order(graph: Graph):
    pos = {name: -1 for name in graph.inputs}
    for i, node in enumerate(graph.nodes):
        pos[node.output] = i
    return lambda v: pos.get(v, -1)


def calibrated_values(graph: Graph) -> list[str]:
    """Values ``calibrate`` collects statistics for, in graph order (no error checks).

    The graph input (input scale), every ReLU output, every signed-neuron site, and
    every add (residual joins: barrier thresholds).
    """
    try:
        p = plan(graph)
        sites = set(p.relus) | set(p.signed_sites)
    except SnnccError:  # convert will report it; still calibrate what is recognizable
        sites = {n.output for n in graph.nodes if n.op == "relu"}
    sites |= {n.output for n in graph.nodes if n.op == "add"}
    sites |= set(graph.inputs)
    return sorted(sites, key=_order(graph))
