"""canonicalize: fold BatchNorm/affines into Conv/Dense, drop no-ops, fold pads,
rewrite AvgPool as SumPool plus a scale.

Every rewrite here is exact (up to float rounding): the canonical graph computes
the same function as its input.  Rewrites that would change results at the
borders (an affine with a shift in front of a padded conv, a zero pad in front of
a maxpool) are left alone.  Node names are kept; a folded node disappears and the
surviving node takes over the later value name, so graph outputs keep their names.
"""

from __future__ import annotations

import numpy as np

from snncc import ops
from snncc.ir import Graph, Node
from snncc.pass_context import PassContext


def run(graph: Graph, ctx: PassContext) -> Graph:
    g = graph.copy()
    if g.stage != "float":
        return g  # after convert an affine is a shortcut weight: nothing here applies
    counts = {"affine_backward": 0, "affine_forward": 0, "pad": 0, "avgpool": 0, "identity": 0, "reshape": 0}
    _avgpool_to_sumpool(g, counts)
    changed = True
    while changed:
        changed = False
        for rule in (_drop_identities, _merge_reshapes, _fold_pads, _fold_affine_backward,
                     _fold_affine_forward):
            while rule(g, counts):
                changed = True
    g.remove_unused()
    g.meta["canonicalize"] = {k: v for k, v in sorted(counts.items())}
    return g


# --- helpers ---------------------------------------------------------------------

def _sole_consumer(g: Graph, value: str) -> Node | None:
    """The one node reading ``value``, or None if several read it or it is an output."""
    if value in g.outputs:
        return None
    users = g.consumers(value)
    if len(users) != 1 or users[0].inputs.count(value) != 1:
        return None
    return users[0]


def _bypass(g: Graph, node: Node) -> None:
    """Remove a one-input node whose output equals its input."""
    src = node.inputs[0]
    if node.output in g.outputs and src in g.inputs:
        # Keep the output name: make the node the surviving producer instead.
        return
    if node.output in g.outputs:
        # The producer of ``src`` takes over the output name when nothing else reads src.
        prod = g.producer(src)
        if prod is not None and _sole_consumer(g, src) is node:
            g.rename_output(prod, node.output)
            g.remove_node(node)
            return
        return
    g.replace_uses(node.output, src)
    g.remove_node(node)


def _f64(arr) -> np.ndarray:
    return np.asarray(arr, dtype=np.float64)


def _f32(arr) -> np.ndarray:
    return np.ascontiguousarray(arr, dtype=np.float32)


# --- rules -------------------------------------------------------------------------

def _is_identity(g: Graph, node: Node) -> bool:
    a = node.attrs
    in_shape = g.shape(node.inputs[0]) if node.inputs else None
    if node.op == "affine":
        return bool(np.all(node.params["scale"] == 1) and np.all(node.params["shift"] == 0))
    if node.op in ops.RESHAPES:
        return tuple(g.shape(node.output)) == tuple(in_shape)
    if node.op in ops.VARIADIC:
        return len(node.inputs) == 1
    if node.op == "pad":
        return not any(a["pads"])
    if node.op == "channel_shuffle":
        return a["groups"] in (1, in_shape[0])
    if node.op in ops.POOLS and node.op in ops.WINDOWED:
        return (tuple(a["kernel"]) == (1, 1) and tuple(a["strides"]) == (1, 1) and not any(a["pads"]))
    return False


def _drop_identities(g: Graph, counts) -> bool:
    for node in g.nodes:
        if _is_identity(g, node):
            before = len(g.nodes)
            _bypass(g, node)
            if len(g.nodes) < before:
                counts["identity"] += 1
                return True
    return False


def _merge_reshapes(g: Graph, counts) -> bool:
    """reshape(reshape(x)) == reshape(x): read x directly (C-order data is unchanged)."""
    for node in g.nodes:
        if node.op not in ops.RESHAPES:
            continue
        prod = g.producer(node.inputs[0])
        if prod is not None and prod.op in ops.RESHAPES:
            node.inputs = [prod.inputs[0]]
            g.remove_unused()
            counts["reshape"] += 1
            return True
    return False


def _avgpool_to_sumpool(g: Graph, counts) -> None:
    """avgpool -> sumpool + affine(1/k) when every window divides by k."""
    for node in list(g.nodes):
        a = node.attrs
        if node.op != "avgpool" or not (a["count_include_pad"] or not any(a["pads"])):
            continue
        k = float(a["kernel"][0] * a["kernel"][1])
        channels = g.shape(node.output)[0]
        out = node.output
        g.rename_output(node, g.unique_name(f"{node.name}_sum"), move_uses=False)
        scale = Node(name=g.unique_name(f"{node.name}_scale"), op="affine", inputs=[node.output],
                     output=out, params={"scale": _f32(np.full(channels, 1.0 / k)),
                                         "shift": _f32(np.zeros(channels))},
                     origin=node.origin)
        node.op = "sumpool"
        node.attrs = {"kernel": tuple(a["kernel"]), "strides": tuple(a["strides"]), "pads": tuple(a["pads"])}
        g.insert_after(node, scale)
        counts["avgpool"] += 1


def _fold_pads(g: Graph, counts) -> bool:
    """pad (zeros) -> conv/sumpool: add the pads to the consumer's own zero padding."""
    for node in g.nodes:
        if node.op != "pad":
            continue
        users = g.consumers(node.output)
        for user in users:
            if user.op in ops.ZERO_PADS and user.inputs[0] == node.output:
                user.attrs["pads"] = tuple(int(p) + int(q) for p, q in zip(user.attrs["pads"], node.attrs["pads"]))
                user.inputs = [node.inputs[0]] + user.inputs[1:]
                g.remove_unused()
                counts["pad"] += 1
                return True
    return False


def _fold_affine_backward(g: Graph, counts) -> bool:
    """conv/dense/affine -> affine: scale the producer's output channels."""
    for node in g.nodes:
        if node.op != "affine":
            continue
        prod = g.producer(node.inputs[0])
        if prod is None or prod.op not in ops.SYNAPTIC:
            continue
        if _sole_consumer(g, prod.output) is not node:
            continue
        s, t = _f64(node.params["scale"]), _f64(node.params["shift"])
        if prod.op == "affine":
            prod.params["scale"] = _f32(_f64(prod.params["scale"]) * s)
            prod.params["shift"] = _f32(_f64(prod.params["shift"]) * s + t)
        else:
            w = _f64(prod.params["weight"])
            prod.params["weight"] = _f32(w * s.reshape((-1,) + (1,) * (w.ndim - 1)))
            prod.params["bias"] = _f32(_f64(prod.params["bias"]) * s + t)
        out = node.output
        g.remove_node(node)
        g.rename_output(prod, out)
        counts["affine_backward"] += 1
        return True
    return False


def _fold_affine_forward(g: Graph, counts) -> bool:
    """affine -> conv/dense (or affine -> flatten -> dense): scale the consumer's
    input channels and move the shift into its bias, when that is exact."""
    for node in g.nodes:
        if node.op != "affine":
            continue
        user = _sole_consumer(g, node.output)
        if user is None:
            continue
        s, t = _f64(node.params["scale"]), _f64(node.params["shift"])
        flatten = None
        if user.op == "flatten":
            flatten, user = user, _sole_consumer(g, user.output)
            if user is None or user.op != "dense":
                continue
            spatial = int(np.prod(g.shape(node.output)[1:]))
            s, t = np.repeat(s, spatial), np.repeat(t, spatial)
        if user.op == "dense":
            w = _f64(user.params["weight"])
            user.params["bias"] = _f32(_f64(user.params["bias"]) + w @ t)
            user.params["weight"] = _f32(w * s[None, :])
        elif user.op == "conv":
            # A shift is exact only when no padded zero enters the window.
            if np.any(t != 0) and any(user.attrs["pads"]):
                continue
            w = _f64(user.params["weight"])
            o, ig = w.shape[:2]
            group = user.attrs["group"]
            # Input channel read by weight[o, c]: (o // (O/group)) * ig + c.
            chan = (np.arange(o) // (o // group))[:, None] * ig + np.arange(ig)[None, :]
            user.params["bias"] = _f32(_f64(user.params["bias"]) + np.sum(w * t[chan][:, :, None, None],
                                                                          axis=(1, 2, 3)))
            user.params["weight"] = _f32(w * s[chan][:, :, None, None])
        else:
            continue
        target = flatten if flatten is not None else user
        target.inputs = [node.inputs[0]] + target.inputs[1:]
        g.remove_node(node)
        g.values.pop(node.output, None)
        counts["affine_forward"] += 1
        return True
    return False
