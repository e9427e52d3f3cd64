"""Static analysis shared by ``calibrate`` and ``convert``: what each value becomes in the SNN.

Every value of the float graph is what ``ops.value_kinds`` says it is:

- ``levels`` (or ``input``, levels of scale 1): spike levels (ReLU outputs, and data
  movement of levels). Their real value is ``z * scale``, and the scale is folded into
  the synaptic ops that read them.
- ``current``: outputs of synaptic ops, adds of currents, and data movement of
  currents. Neurons integrate them; graph outputs accumulate them.

A conv/dense that reads a current (a linear bottleneck, a join with no ReLU after
it) gets a signed neuron where that current is produced, before any data movement:
those ``signed_sites`` need calibration statistics like ReLU outputs do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from snncc import ops
from snncc.errors import SnnccError
from snncc.ir import Graph, Node
from snncc.unionfind import UnionFind


@dataclass
class Plan:
    kind: dict[str, str] = field(default_factory=dict)  # ops.value_kinds: "input" | "levels" | "current"
    signed_sites: list[str] = field(default_factory=list)  # currents read by a synaptic op
    relus: list[str] = field(default_factory=list)  # relu output values (unsigned neurons)
    level_adds: list[str] = field(default_factory=list)  # adds of levels (SEW spike + spike)
    identity_relus: list[str] = field(default_factory=list)  # unclipped ReLU of non-negative levels: dropped
    dropped_softmax: list[Node] = field(default_factory=list)


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
    """The plan for ``graph`` given the signed sites so far, and the currents that ask for one."""
    kinds = ops.value_kinds(graph, signed_sites=sites)
    p = Plan(kind=kinds)
    outputs = set(graph.outputs)
    consumers = graph.consumer_map()
    requests: set[str] = set()
    for node in graph.nodes:
        op = node.op
        if op == "relu":
            x = node.inputs[0]
            if x in kinds.nonneg and node.attrs.get("max") is None and not node.attrs.get("barrier"):
                p.identity_relus.append(node.output)  # relu(relu(x)) = relu(x)
            else:
                p.relus.append(node.output)
        elif op in ops.WEIGHTED:
            if kinds[node.inputs[0]] == "current" and node.inputs[0] not in sites:
                requests.add(node.inputs[0])
        elif op == "add":
            if kinds[node.output] == "levels":
                p.level_adds.append(node.output)
        elif op == "softmax":
            if node.output not in outputs or consumers.get(node.output):
                raise SnnccError("softmax is supported only as the final op of the network", node=node.name, op=op)
            p.dropped_softmax.append(node)
        elif op == "neuron":
            raise SnnccError("the graph is already converted (stage snn)", node=node.name, op=op)
        elif op not in ops.SYNAPTIC and op not in ops.DATA_MOVEMENT:
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
                or ops.is_scale_affine(node))
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
