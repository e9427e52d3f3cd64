"""canonicalize: every rewrite is exact, and the inexact ones are left alone."""

from __future__ import annotations

import numpy as np
import pytest

from snncc.ir import Graph, Node, Value, infer_shape
from snncc.pass_context import PassContext
from snncc.passes import canonicalize
from snncc.sim.float_runtime import run_graph

RNG = np.random.default_rng(7)
CONV = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "group": 1}


def r(*shape, lo=None):
    if lo is not None:
        return RNG.uniform(lo, lo + 1, shape).astype(np.float32)
    return RNG.normal(size=shape).astype(np.float32)


def conv(cin, cout, k=3, group=1, **attrs):
    return "conv", {**CONV, "group": group, **attrs}, {"weight": r(cout, cin // group, k, k), "bias": r(cout)}


def affine(c, shift=True):
    return "affine", {}, {"scale": r(c, lo=0.5), "shift": r(c) if shift else np.zeros(c, np.float32)}


def graph(in_shape, layers, outputs=None):
    """layers: (name, inputs, (op, attrs, params)); each output value is named after its node."""
    g = Graph("t", ["x"], [], [], {"x": Value("x", tuple(in_shape))})
    for name, ins, (op, attrs, params) in layers:
        node = Node(name, op, list(ins), name, dict(attrs), dict(params), origin=f"Test:{name}")
        g.values[name] = Value(name, tuple(infer_shape(g, node)))
        g.nodes.append(node)
    g.outputs = outputs or [layers[-1][0]]
    g.verify()
    return g


def canon(g):
    out = canonicalize.run(g, PassContext())
    out.verify()
    x = RNG.normal(size=(2, *g.values["x"].shape))
    a, b = run_graph(g, x, dtype=np.float64), run_graph(out, x, dtype=np.float64)
    assert out.outputs == g.outputs
    for name in g.outputs:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-5)
    return out


def ops(g):
    return [n.op for n in g.nodes]


def test_input_graph_is_not_mutated():
    g = graph((3, 6, 6), [("c1", ["x"], conv(3, 4)), ("bn", ["c1"], affine(4)), ("p", ["bn"], ("avgpool", {
        "kernel": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0), "count_include_pad": 1}, {}))])
    before = g.dump()
    weight = g.nodes[0].params["weight"].copy()
    canon(g)
    assert g.dump() == before
    np.testing.assert_array_equal(g.nodes[0].params["weight"], weight)


def test_bn_folds_into_preceding_conv_and_dense():
    g = graph((3, 6, 6), [("c1", ["x"], conv(3, 4, group=1)), ("bn", ["c1"], affine(4)),
                          ("relu", ["bn"], ("relu", {"max": None}, {})), ("f", ["relu"], ("flatten", {}, {})),
                          ("fc", ["f"], ("dense", {}, {"weight": r(5, 64), "bias": r(5)})),
                          ("bn2", ["fc"], affine(5))])
    out = canon(g)
    assert ops(out) == ["conv", "relu", "flatten", "dense"]
    assert [n.name for n in out.nodes] == ["c1", "relu", "f", "fc"]
    assert out.nodes[0].output == "bn" and out.outputs == ["bn2"]  # later value names survive


def test_affine_chain_merges_into_grouped_conv():
    g = graph((4, 5, 5), [("dw", ["x"], conv(4, 4, group=4, pads=(1, 1, 1, 1))), ("a1", ["dw"], affine(4)),
                          ("a2", ["a1"], affine(4))])
    assert ops(canon(g)) == ["conv"]


def test_bn_with_two_consumers_of_the_conv_is_kept():
    g = graph((3, 6, 6), [("c1", ["x"], conv(3, 4)), ("bn", ["c1"], affine(4)),
                          ("relu", ["c1"], ("relu", {"max": None}, {})), ("sum", ["bn", "relu"], ("add", {}, {}))])
    assert ops(canon(g)) == ["conv", "affine", "relu", "add"]


@pytest.mark.parametrize("group,shift,pads,folds", [
    (1, True, (0, 0, 0, 0), True),  # no padding: the shift moves into the bias exactly
    (2, True, (0, 0, 0, 0), True),
    (1, False, (1, 1, 1, 1), True),  # a pure scale commutes with zero padding
    (4, False, (1, 0, 1, 0), True),
    (1, True, (1, 1, 1, 1), False),  # padded zeros would not be shifted: not exact, left alone
])
def test_affine_folds_into_following_conv_only_when_exact(group, shift, pads, folds):
    g = graph((4, 6, 6), [("relu", ["x"], ("relu", {"max": None}, {})), ("bn", ["relu"], affine(4, shift)),
                          ("c", ["bn"], conv(4, 8, group=group, pads=pads))])
    out = canon(g)
    assert ops(out) == (["relu", "conv"] if folds else ["relu", "affine", "conv"])


def test_affine_folds_forward_through_flatten_into_dense():
    g = graph((3, 2, 2), [("relu", ["x"], ("relu", {"max": None}, {})), ("bn", ["relu"], affine(3)),
                          ("f", ["bn"], ("flatten", {}, {})),
                          ("fc", ["f"], ("dense", {}, {"weight": r(4, 12), "bias": r(4)}))])
    assert ops(canon(g)) == ["relu", "flatten", "dense"]


def test_affine_feeding_two_layers_is_kept():
    g = graph((3, 4, 4), [("relu", ["x"], ("relu", {"max": None}, {})), ("bn", ["relu"], affine(3)),
                          ("c1", ["bn"], conv(3, 3, k=1)), ("c2", ["bn"], conv(3, 3, k=1)),
                          ("s", ["c1", "c2"], ("add", {}, {}))])
    assert ops(canon(g)) == ["relu", "affine", "conv", "conv", "add"]


POOL = {"kernel": (3, 3), "strides": (2, 2)}


@pytest.mark.parametrize("pads,include,expect", [
    ((0, 0, 0, 0), 0, ["sumpool", "affine"]),
    ((1, 1, 1, 1), 1, ["sumpool", "affine"]),
    ((1, 1, 1, 1), 0, ["avgpool"]),  # border windows divide by fewer than k: left for convert to refuse
])
def test_avgpool_becomes_sumpool_and_scale(pads, include, expect):
    g = graph((2, 7, 7), [("p", ["x"], ("avgpool", {**POOL, "pads": pads, "count_include_pad": include}, {}))])
    out = canon(g)
    assert ops(out) == expect
    if expect[0] == "sumpool":
        assert out.nodes[0].name == "p" and out.nodes[1].output == "p"
        np.testing.assert_allclose(out.nodes[1].params["scale"], np.full(2, 1 / 9, np.float32))


def test_avgpool_scale_folds_into_next_conv():
    g = graph((2, 7, 7), [("p", ["x"], ("avgpool", {**POOL, "pads": (1, 1, 1, 1), "count_include_pad": 1}, {})),
                          ("c", ["p"], conv(2, 3, pads=(1, 1, 1, 1)))])
    assert ops(canon(g)) == ["sumpool", "conv"]


@pytest.mark.parametrize("consumer,folds", [("conv", True), ("sumpool", True), ("maxpool", False)])
def test_pad_folds_into_conv_and_sumpool_not_maxpool(consumer, folds):
    pad = ("pad", {"pads": (1, 2, 0, 1)}, {})
    if consumer == "conv":
        layer = conv(2, 3, pads=(1, 0, 1, 0))
    elif consumer == "sumpool":
        layer = ("avgpool", {**POOL, "pads": (0, 0, 0, 0), "count_include_pad": 1}, {})
    else:
        layer = ("maxpool", {**POOL, "pads": (0, 0, 0, 0), "dilations": (1, 1)}, {})
    g = graph((2, 6, 6), [("relu", ["x"], ("relu", {"max": None}, {})), ("pad", ["relu"], pad),
                          ("l", ["pad"], layer)])
    out = canon(g)
    assert ("pad" not in ops(out)) == folds
    if consumer == "conv":
        assert out.nodes[-1].attrs["pads"] == (2, 2, 1, 1)


def test_identities_and_reshape_chains_are_removed():
    g = graph((4, 3, 3), [("a", ["x"], ("affine", {}, {"scale": np.ones(4, np.float32),
                                                        "shift": np.zeros(4, np.float32)})),
                          ("r1", ["a"], ("reshape", {"shape": (2, 2, 3, 3)}, {})),
                          ("r2", ["r1"], ("reshape", {"shape": (4, 9)}, {})),
                          ("r3", ["r2"], ("reshape", {"shape": (4, 3, 3)}, {})),
                          ("cs", ["r3"], ("channel_shuffle", {"groups": 1}, {})),
                          ("cat", ["cs"], ("concat", {"axis": 0}, {})),
                          ("relu", ["cat"], ("relu", {"max": 6.0}, {})),
                          ("f1", ["relu"], ("flatten", {}, {})), ("f2", ["f1"], ("reshape", {"shape": (36,)}, {}))])
    out = canon(g)
    assert ops(out) == ["relu", "flatten"]
    assert out.outputs == ["f2"]


def test_unused_nodes_are_removed():
    g = graph((3, 4, 4), [("c", ["x"], conv(3, 2, k=1)), ("dead", ["c"], ("relu", {"max": None}, {})),
                          ("y", ["c"], ("relu", {"max": 1.0}, {}))], outputs=["y"])
    assert ops(canon(g)) == ["conv", "relu"]


def test_idempotent():
    g = graph((3, 6, 6), [("c1", ["x"], conv(3, 4)), ("bn", ["c1"], affine(4)),
                          ("relu", ["bn"], ("relu", {"max": None}, {})), ("bn2", ["relu"], affine(4, False)),
                          ("c2", ["bn2"], conv(4, 4, pads=(1, 1, 1, 1)))])
    once = canon(g)
    twice = canon(once)
    def body(g):
        return [line for line in g.dump().splitlines() if not line.startswith("  meta")]

    assert body(twice) == body(once)
