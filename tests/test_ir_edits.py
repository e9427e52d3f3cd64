"""The graph-edit helpers (ir.Graph.insert_after / remove_node / rename_output), the
union-find, and the op table's value_kinds."""

from __future__ import annotations

import numpy as np

from snncc import ops
from snncc.ir import Graph, Node, Value
from snncc.unionfind import UnionFind


def _chain() -> Graph:
    g = Graph("g", ["x"], ["b"], [], {"x": Value("x", (2, 3, 3))})
    g.nodes = [Node("n0", "relu", ["x"], "a"), Node("n1", "maxpool", ["a"], "b",
                                                    {"kernel": (3, 3), "strides": (1, 1), "pads": (0, 0, 0, 0)})]
    g.values.update({"a": Value("a", (2, 3, 3)), "b": Value("b", (2, 1, 1))})
    g.verify()
    return g


def test_insert_after_records_the_value_and_keeps_readers():
    g = _chain()
    aff = Node("s", "affine", ["a"], "a2", {}, {"scale": np.ones(2), "shift": np.zeros(2)})
    g.insert_after(g.nodes[0], aff)
    assert [n.name for n in g.nodes] == ["n0", "s", "n1"]
    assert g.values["a2"].shape == (2, 3, 3) and g.nodes[2].inputs == ["a"]  # readers not rewired
    g.replace_uses("a", "a2")
    aff.inputs = ["a"]
    g.verify()


def test_rename_output_with_and_without_moving_uses():
    g = _chain()
    g.rename_output(g.nodes[0], "r")
    assert g.nodes[1].inputs == ["r"] and "a" not in g.values
    g.verify()
    g.rename_output(g.nodes[1], "p", move_uses=False)
    assert g.outputs == ["b"] and "b" in g.values and g.values["p"].shape == (2, 1, 1)
    g.insert_after(g.nodes[1], Node("id", "relu", ["p"], "b"))
    g.verify()


def test_remove_node():
    g = _chain()
    g.replace_uses("b", "a")
    g.remove_node(g.nodes[1])
    g.remove_unused()
    assert [n.name for n in g.nodes] == ["n0"] and g.outputs == ["a"]
    g.verify()


def test_union_find_classes_do_not_depend_on_union_order():
    a, b = UnionFind("abcde"), UnionFind("abcde")
    for pair in (["d", "e"], ["a", "d"], ["b", "c"]):
        a.union(pair)
    for pair in (["b", "c"], ["e", "a"], ["d", "e"]):
        b.union(pair)
    assert a.classes() == b.classes() == {"a": ["a", "d", "e"], "b": ["b", "c"]}


def _graph(stage: str, size: int, *nodes: Node) -> Graph:
    """A verified graph: x (2, size, size) -> conv 1x1 "c" -> "i", then ``nodes``; output "y"."""
    conv = Node("c", "conv", ["x"], "i", {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "group": 1},
                {"weight": np.ones((2, 2, 1, 1)), "bias": np.zeros(2)})
    g = Graph("g", ["x"], ["y"], [conv, *nodes], {"x": Value("x", (2, size, size))}, stage=stage)
    for n in g.nodes:
        g.values[n.output] = Value(n.output, ops.infer_shape(g, n))
    g.verify()
    return g


def test_value_kinds_follow_levels_through_moves_and_level_sums():
    th = {"theta": np.ones(2)}
    g = _graph(
        "snn", 4,
        Node("n", "neuron", ["i"], "z", {"levels": 2}, th),
        Node("p", "maxpool", ["z"], "m", {"kernel": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0)}),
        Node("n2", "neuron", ["i"], "z2", {"levels": 2}, th),
        Node("q", "maxpool", ["z2"], "m2", {"kernel": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0)}),
        Node("s", "add", ["m", "m2"], "sum"),
        Node("f", "flatten", ["sum"], "f"),
        Node("d", "dense", ["f"], "y", {}, {"weight": np.ones((3, 8)), "bias": np.zeros(3)}),
    )
    kinds = ops.value_kinds(g)
    assert [kinds[v] for v in ("x", "i", "z", "m", "sum", "f", "y")] == \
        ["input", "current", "levels", "levels", "levels", "levels", "current"]


def test_value_kinds_of_the_float_graph_say_what_each_value_becomes():
    pool = {"kernel": (1, 1), "strides": (1, 1), "pads": (0, 0, 0, 0)}
    g = _graph(
        "float", 3,
        Node("r", "relu", ["i"], "z", {"max": None}),
        Node("m", "maxpool", ["z"], "mz", dict(pool)),
        Node("s", "sumpool", ["z"], "sz", dict(pool)),
        Node("a", "affine", ["z"], "az", {}, {"scale": np.full(2, 0.5), "shift": np.zeros(2)}),
        Node("j", "add", ["z", "mz"], "sum"),  # read by a ReLU: a current, but a sum of spikes
        Node("r2", "relu", ["sum"], "z2", {"max": None}),
        Node("j2", "add", ["z2", "mz"], "lsum"),  # read by no ReLU: levels (SEW)
        Node("f", "flatten", ["i"], "fi"),
        Node("d", "dense", ["fi"], "y", {}, {"weight": np.ones((3, 18)), "bias": np.zeros(3)}),
    )
    kinds = ops.value_kinds(g)
    assert {v: kinds[v] for v in ("x", "i", "z", "mz", "sz", "az", "sum", "lsum", "fi", "y")} == {
        "x": "input", "i": "current", "z": "levels", "mz": "levels", "sz": "levels", "az": "levels",
        "sum": "current", "lsum": "levels", "fi": "current", "y": "current"}
    assert kinds.nonneg == {"z", "mz", "sz", "az", "z2", "lsum"}
    assert kinds.spike_sums == {"z", "mz", "sum", "z2", "lsum"}  # sum pools and rescales change N
    assert ops.value_kinds(g, signed_sites={"i"})["fi"] == "levels"  # a signed neuron on the current
