"""Affines on currents in the quantize pass: the pre-activation residual stream.

In a pre-activation ResNet the residual stream is a current (a sum of conv currents,
no neuron on it) and every block starts with BN -> ReLU on it, so the float SNN has
an ``affine`` (y = a*x + b per channel) that reads a current and feeds neurons.  With
the stream x = S_in * x_int, the integer affine

    y_int = sign(a) * x_int + round(b / S_out),    S_out = |a| * S_in

is exact in a (b is rounded on S_out like any bias): |a| lands in the neuron's
theta_q = round(theta / S_out).  S_out is derived, not chosen, so the neuron's
membrane fit (levels+1) * theta_q <= 2^(B-1) - 1 becomes a bound on S_in.  A channel
with a == 0 carries the constant b: its step is the finest that keeps theta_q and the
shift within the membrane.

The stream joins the stem conv, which reads the int8 input, with conv branches that
read spike levels, and their weight steps differ by ~30x: one shared step would leave
the stem a handful of integer weight values.  So a branch much coarser than the stream
(``RESCALE_MIN_RATIO``) reaches the add through an inserted rescale affine
(``attrs["rescale"]``), y_int = k * x_int per channel with S_branch = k * S_stream,
k = ceil(own step / S_stream): the branch keeps (almost) its own step and the stream
keeps the fine one.  Both kinds are exact integer multiplies; there is no run-time
real rescale.

``_Scales`` (quantize.py) holds the tie of a derived step to its source step.
"""

from __future__ import annotations

import numpy as np

from snncc.errors import SnnccError
from snncc.ir import Graph, Node

RESCALE_MIN_RATIO = 2.0  # a branch this much coarser (median over channels) is rescaled


def current_affines(g: Graph, domains: dict[str, str]) -> dict[str, Node]:
    """Output value -> affine node, for every affine that reads a current."""
    return {n.output: n for n in g.nodes if n.op == "affine" and domains[n.inputs[0]] == "current"}


def is_rescale(node: Node) -> bool:
    return bool(node.attrs.get("rescale", False))


def check_consumers(graph: Graph, node: Node, consumers: dict[str, list[Node]]) -> None:
    """An affine on a current must feed neurons only: its scale then folds into their
    thresholds.  (quantize's own rescale affines are exempt.)"""
    if is_rescale(node):
        return
    readers = consumers.get(node.output, [])
    others = [c for c in readers if c.op != "neuron"]
    if others or node.output in graph.outputs or not readers:
        what = (f"{others[0].op} node {others[0].name!r}" if others else
                "a graph output" if node.output in graph.outputs else "nothing")
        raise SnnccError(f"affine on a current feeds {what}; an affine on a current is supported only "
                         "when neurons alone read it", node=node.name, op=node.op)


def split(sc, aff: Node) -> tuple[np.ndarray, np.ndarray]:
    """(|a| per channel, class root of the input channel, or -1 where the output is the
    constant shift: a == 0, or an input channel that is only padding)."""
    a = np.abs(np.asarray(aff.params["scale"], dtype=np.float64))
    src = sc.channel_roots(aff.inputs[0])
    return a, np.where(a > 0, src, -1)


# --- rescaled join branches -----------------------------------------------------------

def insert_rescales(g: Graph, domains: dict[str, str], sc, own: dict[str, np.ndarray]) -> int:
    """Insert a rescale affine behind every coarse branch of a stream; returns how many.

    ``sc``: the scale classes of ``g`` as it is; ``own``: conv/dense name -> per-channel
    weight step.  A stream is a class read by an affine on a current.  A branch is a
    conv/dense member read by one add and nothing else.  Updates g and ``domains``.
    """
    streams: set[int] = set()
    for aff in current_affines(g, domains).values():
        roots = sc.channel_roots(aff.inputs[0])
        streams.update(int(r) for r in roots[roots >= 0])
    if not streams:
        return 0
    consumers = g.consumer_map()
    members: dict[str, np.ndarray] = {}
    branches: set[str] = set()
    for node in g.nodes:
        if node.name not in own:
            continue
        roots = sc.node_roots(node)
        if not all(int(r) in streams for r in roots):
            continue
        members[node.name] = roots
        readers = consumers.get(node.output, [])
        if len(readers) == 1 and readers[0].op == "add" and node.output not in g.outputs:
            branches.add(node.name)
    chosen = _choose(members, branches, own, sc.S.size)
    prod = {n.name: n for n in g.nodes}
    for name in [n.name for n in g.nodes if n.name in chosen]:  # graph order: deterministic
        _insert(g, domains, prod[name], consumers[prod[name].output][0])
    return len(chosen)


def _choose(members: dict[str, np.ndarray], branches: set[str], own: dict[str, np.ndarray],
            n: int) -> set[str]:
    """Branches to rescale: those RESCALE_MIN_RATIO times coarser (median over channels)
    than the stream step.  That step is first the max over the members that cannot be
    rescaled (else the finest member), then the max over every member kept; keeping
    members only raises it, so the chosen set only shrinks until it is stable."""
    fixed = np.zeros(n)
    finest = np.full(n, np.inf)
    for name, roots in members.items():
        np.minimum.at(finest, roots, own[name])
        if name not in branches:
            np.maximum.at(fixed, roots, own[name])
    step = np.where(fixed > 0, fixed, finest)
    chosen = set(branches)
    while True:
        new = {b for b in chosen
               if np.median(own[b] / np.maximum(step[members[b]], 1e-300)) >= RESCALE_MIN_RATIO}
        if new == chosen:
            return chosen
        chosen = new
        kept = np.zeros(n)
        for name, roots in members.items():
            if name not in chosen:
                np.maximum.at(kept, roots, own[name])
        step = np.where(kept > 0, kept, finest)


def _insert(g: Graph, domains: dict[str, str], node: Node, add: Node) -> None:
    """node -> add becomes node -> rescale affine -> add; the branch bias moves to the
    affine's shift, which is rounded on the (finer) stream step."""
    names = {n.name for n in g.nodes}
    name = f"{node.name}/rescale"
    while name in names:
        name += "_"
    value = f"{node.output}/rescaled"
    while value in g.values:
        value += "_"
    o = g.shape(node.output)[0]
    bias = np.asarray(node.params["bias"], dtype=np.float64)
    aff = Node(name, "affine", [node.output], value, {"rescale": True},
               {"scale": np.ones(o), "shift": bias.copy()}, node.origin)
    node.params = {**node.params, "bias": np.zeros_like(bias)}
    g.insert_after(node, aff)
    add.inputs = [value if v == node.output else v for v in add.inputs]
    domains[value] = "current"


# --- derived steps -------------------------------------------------------------------

def derive_steps(sc, cur: dict[str, Node], const_need: np.ndarray, vmax: float) -> None:
    """Tie the derived steps to their sources.

    BN affine: S_out = |a| * S_in.  Rescale affine: S_branch = k * S_stream, the least
    multiple of the stream step not below the branch's own step (so its weights stay
    within qmax); k follows any later change of the stream step (the step search).
    ``const_need`` (per class root): the membrane step bound of a == 0 channels.
    """
    out, src, factor = [], [], []
    S = sc.S
    for aff in cur.values():
        if is_rescale(aff):
            branch = sc.channel_roots(aff.inputs[0])
            sc.derive(branch, sc.node_roots(aff), S[branch].copy(), multiple=True)
            continue
        a, s_in = split(sc, aff)
        roots = sc.node_roots(aff)
        nz = s_in >= 0
        out.append(roots[nz])
        src.append(s_in[nz])
        factor.append(a[nz])
        b = np.abs(np.asarray(aff.params["shift"], dtype=np.float64))
        step = np.maximum(const_need[roots[~nz]], b[~nz] / vmax)
        S[roots[~nz]] = np.where(step > 0, step, 1.0)
    if out:
        sc.derive(np.concatenate(out), np.concatenate(src), np.concatenate(factor))


def int_scale(sc, node: Node) -> np.ndarray:
    """The integer scale of an affine on a current: sign(a), or k for a rescale."""
    if is_rescale(node):
        S = sc.S
        return np.rint(S[sc.channel_roots(node.inputs[0])] / S[sc.node_roots(node)]).astype(np.int64)
    return np.sign(np.asarray(node.params["scale"], dtype=np.float64)).astype(np.int64)
