"""The IR op table: one row per op, the one place that says what an op *is*.

Code that needs a group of ops (the synaptic ones, the ones that only move values,
...) asks this table for a flag or a group; nowhere else spells a set of op names
(tests/test_architecture.py checks that).  Adding an IR op is one row here, plus its
kernel (snncc/sim/), its importer (snncc/frontend/ops/) and its C emitter
(backends/c/), see docs/contributing.md.

Flags:

- ``synaptic``: weights x input + bias, the output is a current (conv, dense, affine);
- ``weighted``: carries a weight tensor that gets ``bits`` bits (conv, dense);
- ``moves``: moves values unchanged; every output element is one input element or a
  zero (flatten, reshape, concat, pad, channel_shuffle);
- ``keeps_levels``: non-negative spike levels in give non-negative levels out of
  the same N (the moves, and max pooling);
- ``pool``: a window reduction per channel (maxpool, avgpool, sumpool);
- ``windowed``: has kernel/strides/pads attrs (conv and the pools);
- ``int_exact``: the shared numpy kernel is exact on integers as it is, so the integer
  runtime and the range analysis run it unchanged;
- ``zero_pads``: its ``pads`` attr pads with zeros, so a preceding zero ``pad`` folds in;
- ``variadic``: takes one or more inputs (add, concat);
- ``reshapes``: changes only the shape; C-order data is unchanged.

``channel_map`` says how an output channel relates to input channels, what channel
pruning and per-channel scale propagation follow:
``identity`` (channel c reads channel c), ``offset`` (concat: input k's channels
follow those of inputs 0..k-1), ``permutation`` (channel_shuffle), ``block``
(flatten/reshape: feature f reads channel f // (H*W)), ``weight`` (conv, dense: output
o reads the input channels of weight[o], all of them unless depthwise), ``none``
(softmax: every output reads every input).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import prod

import numpy as np

from snncc.errors import SnnccError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Op:
    name: str
    params: tuple[str, ...]  # params every node of this op carries (later stages may add more)
    shape: Callable[..., Shape]  # shape(node, input_shapes, fail) -> per-sample output shape
    channel_map: str = "identity"
    synaptic: bool = False
    weighted: bool = False
    moves: bool = False
    keeps_levels: bool = False
    pool: bool = False
    windowed: bool = False
    int_exact: bool = False
    zero_pads: bool = False
    variadic: bool = False
    reshapes: bool = False
    doc: str = ""


# --- shape rules -------------------------------------------------------------------

def pool_out(size: int, k: int, s: int, p0: int, p1: int, d: int = 1) -> int:
    """Output length of a window op along one axis."""
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def _rank(shape, rank, fail):
    if len(shape) != rank:
        raise fail(f"expects a rank-{rank} per-sample input, got shape {list(shape)}")
    return shape


def _same(node, shapes, fail) -> Shape:
    return tuple(shapes[0])


def _conv(node, shapes, fail) -> Shape:
    a = node.attrs
    c, h, w = _rank(shapes[0], 3, fail)
    o, ig, kh, kw = node.params["weight"].shape
    if ig * a["group"] != c:
        raise fail(f"weight expects {ig * a['group']} input channels, got {c}")
    t, l_, b, r = a["pads"]
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    return (o, pool_out(h, kh, sh, t, b, dh), pool_out(w, kw, sw, l_, r, dw))


def _dense(node, shapes, fail) -> Shape:
    (f,) = _rank(shapes[0], 1, fail)
    o, i = node.params["weight"].shape
    if i != f:
        raise fail(f"weight expects {i} inputs, got {f}")
    return (o,)


def _pool(node, shapes, fail) -> Shape:
    a = node.attrs
    c, h, w = _rank(shapes[0], 3, fail)
    kh, kw = a["kernel"]
    sh, sw = a["strides"]
    t, l_, b, r = a["pads"]
    dh, dw = a.get("dilations", (1, 1))
    return (c, pool_out(h, kh, sh, t, b, dh), pool_out(w, kw, sw, l_, r, dw))


def _global_pool(node, shapes, fail) -> Shape:
    c, _, _ = _rank(shapes[0], 3, fail)
    return (c, 1, 1)


def _add(node, shapes, fail) -> Shape:
    for s in shapes[1:]:
        if tuple(s) != tuple(shapes[0]):
            raise fail(f"inputs have different shapes {[list(x) for x in shapes]}")
    return tuple(shapes[0])


def _flatten(node, shapes, fail) -> Shape:
    return (int(prod(shapes[0])),)


def _reshape(node, shapes, fail) -> Shape:
    target = tuple(node.attrs["shape"])
    if int(prod(target)) != int(prod(shapes[0])):
        raise fail(f"cannot reshape {list(shapes[0])} to {list(target)}")
    return target


def _concat(node, shapes, fail) -> Shape:
    axis = node.attrs["axis"]
    base = list(shapes[0])
    for s in shapes[1:]:
        if len(s) != len(base) or any(x != y for i, (x, y) in enumerate(zip(s, base)) if i != axis):
            raise fail(f"inputs do not match outside axis {axis}: {[list(x) for x in shapes]}")
    base[axis] = sum(s[axis] for s in shapes)
    return tuple(base)


def _pad(node, shapes, fail) -> Shape:
    c, h, w = _rank(shapes[0], 3, fail)
    t, l_, b, r = node.attrs["pads"]
    return (c, h + t + b, w + l_ + r)


# --- the table -------------------------------------------------------------------------

_ROWS = [
    Op("conv", ("weight", "bias"), _conv, "weight", synaptic=True, weighted=True, windowed=True, zero_pads=True,
       doc="attrs: strides, pads(t,l,b,r), dilations, group"),
    Op("dense", ("weight", "bias"), _dense, "weight", synaptic=True, weighted=True,
       doc="y = W @ x + b, W is (out, in)"),
    Op("affine", ("scale", "shift"), _same, synaptic=True, doc="per-channel y[c] = x[c]*scale[c] + shift[c]"),
    Op("relu", (), _same, doc="attrs: max (None = unbounded)"),
    Op("add", (), _add, int_exact=True, variadic=True, doc="n-ary elementwise sum of same-shape inputs"),
    Op("maxpool", (), _pool, keeps_levels=True, pool=True, windowed=True, int_exact=True,
       doc="attrs: kernel, strides, pads, dilations"),
    Op("avgpool", (), _pool, pool=True, windowed=True, doc="attrs: kernel, strides, pads, count_include_pad"),
    Op("sumpool", (), _pool, pool=True, windowed=True, int_exact=True, zero_pads=True,
       doc="attrs: kernel, strides, pads (zero padding)"),
    Op("global_maxpool", (), _global_pool, keeps_levels=True, pool=True, int_exact=True,
       doc="per channel, the max over all H x W positions: (C, H, W) -> (C, 1, 1)"),
    Op("flatten", (), _flatten, "block", moves=True, keeps_levels=True, int_exact=True, reshapes=True),
    Op("reshape", (), _reshape, "block", moves=True, keeps_levels=True, int_exact=True, reshapes=True,
       doc="attrs: shape (per-sample target)"),
    Op("concat", (), _concat, "offset", moves=True, keeps_levels=True, int_exact=True, variadic=True,
       doc="attrs: axis (per-sample axis)"),
    Op("pad", (), _pad, moves=True, keeps_levels=True, int_exact=True, doc="attrs: pads (t,l,b,r), zero padding"),
    Op("channel_shuffle", (), _same, "permutation", moves=True, keeps_levels=True, int_exact=True,
       doc="attrs: groups"),
    Op("softmax", (), _same, "none", doc="attrs: axis (per-sample axis)"),
    Op("neuron", ("theta",), _same, doc="attrs: levels, signed, barrier; int stage adds v_init etc."),
]

TABLE: dict[str, Op] = {row.name: row for row in _ROWS}


def row(op: str) -> Op:
    try:
        return TABLE[op]
    except KeyError:
        raise SnnccError(f"unknown IR op {op!r}") from None


def group(flag: str) -> frozenset[str]:
    """The names of the ops whose row has ``flag`` set."""
    return frozenset(name for name, r in TABLE.items() if getattr(r, flag))


SYNAPTIC = group("synaptic")
WEIGHTED = group("weighted")
MOVES = group("moves")
KEEPS_LEVELS = group("keeps_levels")
POOLS = group("pool")
INT_EXACT = group("int_exact")
WINDOWED = group("windowed")
ZERO_PADS = group("zero_pads")
VARIADIC = group("variadic")
RESHAPES = group("reshapes")
# Ops that only move or pool values: levels stay levels, currents stay currents.
DATA_MOVEMENT = MOVES | POOLS
# Pools that take a max: exact on levels at T=1, and monotone (range analysis maps both ends).
MAX_POOLS = POOLS & KEEPS_LEVELS
# Data movement the integer IR keeps (avgpool became sumpool + a scale in canonicalize).
INT_DATA_MOVEMENT = DATA_MOVEMENT & INT_EXACT


def channel_identity(op: str) -> bool:
    """Output channel c reads input channel c only."""
    return row(op).channel_map == "identity"


def depthwise(node) -> bool:
    """A conv whose every group reads one input channel (weight (O, 1, kh, kw), O a multiple of group)."""
    return node.op == "conv" and int(node.attrs.get("group", 1)) > 1 and node.params["weight"].shape[1] == 1


@dataclass(frozen=True)
class ChannelLinks:
    """How channel pruning sees one node (what ``channel_map`` means for removal).

    ``pairs``: ((slot, channel), (slot, channel)) that must be removed together, a slot
    being an input index or ``"out"``; ``frozen``: no channel of its inputs or output
    can be removed (softmax, a grouped conv, a reshape that is not a flatten);
    ``columns``: its input channels are weight columns (conv, dense): removing one
    removes the columns, its output channels are new and free.
    """

    pairs: tuple = ()
    frozen: bool = False
    columns: bool = False


def channel_links(node, in_shapes, out_shape) -> ChannelLinks:
    """The channels ``node`` ties together, per its op's ``channel_map`` (axis 0 is the channel)."""
    kind = row(node.op).channel_map
    if kind == "weight":
        if depthwise(node):  # input channel c feeds outputs c*m .. c*m+m-1 only
            mult = int(out_shape[0]) // int(in_shapes[0][0])
            return ChannelLinks(tuple(((0, o // mult), ("out", o)) for o in range(int(out_shape[0]))))
        if node.op == "conv" and int(node.attrs.get("group", 1)) != 1:
            return ChannelLinks(frozen=True)
        return ChannelLinks(columns=True)
    if kind == "none":
        return ChannelLinks(frozen=True)
    if kind == "identity" or (kind == "offset" and int(node.attrs.get("axis", 0)) != 0):
        return ChannelLinks(tuple(((k, c), ("out", c)) for k in range(len(in_shapes))
                                  for c in range(int(out_shape[0]))))
    if kind == "offset":  # concat on channels: input k's channels follow those of inputs 0..k-1
        pairs, base = [], 0
        for k, s in enumerate(in_shapes):
            pairs += [((k, c), ("out", base + c)) for c in range(int(s[0]))]
            base += int(s[0])
        return ChannelLinks(tuple(pairs))
    if kind == "permutation":  # out[b*g + a] = in[a*m + b]; in channels of one b go together
        g = int(node.attrs["groups"])
        m = int(in_shapes[0][0]) // g
        pairs = [((0, a * m + b), ("out", b * g + a)) for a in range(g) for b in range(m)]
        pairs += [((0, b), (0, a * m + b)) for a in range(1, g) for b in range(m)]
        return ChannelLinks(tuple(pairs))
    # block: flatten / reshape to rank 1, feature f reads channel f // (H*W)
    src = tuple(in_shapes[0])
    if len(out_shape) != 1 or (len(src) != 1 and len(src) != 3):
        return ChannelLinks(frozen=True)
    block = int(prod(src[1:])) if len(src) == 3 else 1
    return ChannelLinks(tuple(((0, f // block), ("out", f)) for f in range(int(out_shape[0]))))


def infer_shape(graph, node) -> Shape:
    """Per-sample output shape of ``node`` from its input shapes and attrs."""
    shapes = [graph.values[v].shape for v in node.inputs]

    def fail(msg: str) -> SnnccError:
        return SnnccError(msg, node=node.name, op=node.op)

    r = TABLE.get(node.op)
    if r is None:
        raise fail("no shape rule")
    return tuple(r.shape(node, shapes, fail))


class ValueKinds(dict):
    """value -> ``"input"``, ``"levels"`` or ``"current"`` (``value_kinds``), plus two sign facts.

    ``nonneg``: levels known to be >= 0 (ReLU / unsigned neuron outputs, and what data
    movement, positive rescales and level sums make of them only).
    ``spike_sums``: values >= 0 built from ReLU / unsigned neuron outputs by ops that keep
    levels (``keeps_levels``) and by sums, whatever the sum becomes: what a residual join
    may add as spike + spike.
    """

    def __init__(self, *args):
        super().__init__(*args)
        self.nonneg: set[str] = set()
        self.spike_sums: set[str] = set()


def value_kinds(graph, signed_sites=frozenset()) -> ValueKinds:
    """What every value of ``graph`` carries in the SNN: the one classification of values.

    - ``"input"``: the graph input (direct encoding, real x) and data movement of it only;
    - ``"levels"``: spike levels, ``z * scale``: ReLU (float graph) and neuron outputs,
      data movement of levels (the input counts as levels of scale 1 in a mix), sums of
      levels and, in the float graph, zero-shift affines of levels (rescales convert folds);
    - ``"current"``: everything else: synaptic outputs, sums with a current, their data movement.

    In the float graph (before convert) an add that feeds a ReLU or is a graph output
    stays a current (a neuron integrates it, or it is accumulated), and ``signed_sites``
    (currents that get a signed neuron, see passes/convert_plan.py) count as levels for
    the data movement that reads them.  No error checks: passes check what they need.
    """
    float_stage = graph.stage == "float"
    consumers = graph.consumer_map() if float_stage else {}
    outputs = set(graph.outputs)
    kinds = ValueKinds({name: "input" for name in graph.inputs})
    nonneg, sums = kinds.nonneg, kinds.spike_sums
    for node in graph.nodes:
        op, ins, out = node.op, node.inputs, node.output
        got = {"levels" if v in signed_sites else kinds[v] for v in ins}
        if op == "relu" or (op == "neuron" and not node.attrs.get("signed")):
            kind = "levels"
            nonneg.add(out)
            sums.add(out)
        elif op == "neuron":
            kind = "levels"
        elif op in SYNAPTIC:
            kind = "current"
            x = ins[0]
            if float_stage and kinds[x] != "current" and is_scale_affine(node):
                kind = kinds[x]  # a rescale of levels (e.g. avgpool's 1/k)
                if x in nonneg and (np.asarray(node.params["scale"]) > 0).all():
                    nonneg.add(out)
        elif op == "add":
            feeds_neuron = any(c.op == "relu" for c in consumers.get(out, []))
            own = {kinds[v] for v in ins}  # a signed site is summed as the current it is
            kind = "current" if "current" in own or (float_stage and (feeds_neuron or out in outputs)) else "levels"
            if kind == "levels" and all(v in nonneg for v in ins):
                nonneg.add(out)
            if all(v in sums for v in ins):
                sums.add(out)
        elif op in DATA_MOVEMENT:
            kind = got.pop() if len(got) == 1 else "current" if "current" in got else "levels"
            if kind == "levels" and all(v in nonneg for v in ins):
                nonneg.add(out)
            if op in KEEPS_LEVELS and all(v in sums for v in ins):
                sums.add(out)
        elif op == "softmax":
            kind = kinds[ins[0]]
        else:
            kind = "current"
        kinds[out] = kind
    return kinds


def is_scale_affine(node) -> bool:
    """An affine with zero shift: on levels it is only a rescale, folded downstream."""
    return node.op == "affine" and not np.any(np.asarray(node.params["shift"]))
