"""Per-op import: small hand-built ONNX graphs, each run by onnxruntime and by the
float runtime on the imported (and the canonicalized) IR."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from snncc.frontend.onnx_import import import_onnx_model
from snncc.pass_context import PassContext
from snncc.passes import canonicalize
from snncc.sim.float_runtime import run_graph

RNG = np.random.default_rng(0)


def arr(*shape, lo=None):
    """Seeded float32 test data (positive when ``lo`` is given, e.g. BN variances)."""
    if lo is not None:
        return RNG.uniform(lo, lo + 1.0, shape).astype(np.float32)
    return RNG.normal(size=shape).astype(np.float32)


def build(nodes, in_shape, out_rank, inits=None, opset=13, out="y"):
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))]
    outputs = [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None] * out_rank)]
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph(nodes, "t", inputs, outputs, tensors)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def check(model, batch=3, ops=None):
    """onnxruntime == snncc (imported and canonicalized); return the imported IR."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [batch if d.dim_param or not d.dim_value else d.dim_value for d in dims]
    x = RNG.normal(size=shape).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"x": x})[0]
    graph = import_onnx_model(model)
    out = run_graph(graph, x)[graph.outputs[0]]
    np.testing.assert_allclose(out, ref.reshape(out.shape), rtol=1e-4, atol=1e-5)
    canon = canonicalize.run(graph, PassContext())
    canon.verify()
    out2 = run_graph(canon, x)[canon.outputs[0]]
    np.testing.assert_allclose(out2, ref.reshape(out2.shape), rtol=1e-4, atol=1e-5)
    if ops is not None:
        assert [n.op for n in graph.nodes] == ops
    return graph


def node(op, ins, outs="y", name="", **attrs):
    return helper.make_node(op, ins, [outs] if isinstance(outs, str) else outs, name=name, **attrs)


# --- Conv ----------------------------------------------------------------------------

@pytest.mark.parametrize("attrs,cin,cout,group,hw", [
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 3, 4, 1, (9, 8)),
    ({"auto_pad": "SAME_LOWER", "strides": [2, 2]}, 3, 4, 1, (9, 8)),
    ({"auto_pad": "SAME_LOWER", "strides": [3, 2]}, 3, 4, 1, (7, 7)),
    ({"auto_pad": "VALID", "strides": [1, 2]}, 3, 4, 1, (7, 9)),
    ({"pads": [1, 2, 0, 1], "dilations": [2, 2]}, 3, 5, 1, (9, 9)),
    ({"pads": [1, 1, 1, 1]}, 4, 6, 2, (6, 6)),  # grouped
    ({"pads": [1, 1, 1, 1], "strides": [2, 2]}, 4, 8, 4, (8, 8)),  # depthwise, multiplier 2
])
def test_conv(attrs, cin, cout, group, hw):
    inits = {"w": arr(cout, cin // group, 3, 3), "b": arr(cout)}
    model = build([node("Conv", ["x", "w", "b"], group=group, **attrs)], ("N", cin, *hw), 4, inits)
    graph = check(model, ops=["conv"])
    assert graph.nodes[0].attrs["group"] == group


def test_conv_without_bias_and_kernel_shape_attr():
    model = build([node("Conv", ["x", "w"], kernel_shape=[1, 1])], (1, 3, 5, 5), 4, {"w": arr(2, 3, 1, 1)})
    graph = check(model, batch=1)
    np.testing.assert_array_equal(graph.nodes[0].params["bias"], np.zeros(2, np.float32))


def test_conv1d_is_refused():
    model = build([node("Conv", ["x", "w"], name="c1")], (1, 3, 8), 3, {"w": arr(2, 3, 3)})
    with pytest.raises(Exception, match="node 'c1' \\(Conv\\): only 2-D convolutions"):
        import_onnx_model(model)


# --- Gemm / MatMul ---------------------------------------------------------------------

@pytest.mark.parametrize("attrs,w_shape,c", [
    ({"transB": 1, "alpha": 0.5, "beta": 2.0}, (5, 6), arr(1, 5)),
    ({}, (6, 5), arr(5)),
    ({"beta": 0.5}, (6, 5), np.array(0.3, np.float32)),
    ({"transB": 1}, (5, 6), None),
])
def test_gemm(attrs, w_shape, c):
    inits = {"w": arr(*w_shape)}
    ins = ["x", "w"]
    if c is not None:
        inits["c"] = c
        ins.append("c")
    check(build([node("Gemm", ins, **attrs)], ("N", 6), 2, inits), ops=["dense"])


def test_matmul_add_is_one_dense():
    inits = {"w": arr(6, 4), "b": arr(4)}
    nodes = [node("MatMul", ["x", "w"], "m"), node("Add", ["m", "b"])]
    graph = check(build(nodes, ("N", 6), 2, inits), ops=["dense"])
    np.testing.assert_allclose(graph.nodes[0].params["bias"], inits["b"])


def test_matmul_add_with_second_consumer_keeps_affine():
    inits = {"w": arr(6, 4), "b": arr(4)}
    nodes = [node("MatMul", ["x", "w"], "m"), node("Add", ["m", "b"], "a"), node("Add", ["a", "m"])]
    check(build(nodes, ("N", 6), 2, inits), ops=["dense", "affine", "add"])


# --- activations -------------------------------------------------------------------------

def test_clip_old_opset_attributes():
    graph = check(build([node("Clip", ["x"], min=0.0, max=6.0)], ("N", 3, 4, 4), 4, opset=9), ops=["relu"])
    assert graph.nodes[0].attrs["max"] == 6.0


@pytest.mark.parametrize("opset", [11, 13, 21])
def test_clip_inputs(opset):
    inits = {"lo": np.array(0.0, np.float32), "hi": np.array(0.5, np.float32)}
    graph = check(build([node("Clip", ["x", "lo", "hi"])], ("N", 3, 4, 4), 4, inits, opset=opset), ops=["relu"])
    assert graph.nodes[0].attrs["max"] == 0.5


def test_clip_min_only_and_relu():
    inits = {"lo": np.array(0.0, np.float32)}
    nodes = [node("Clip", ["x", "lo"], "c"), node("Relu", ["c"])]
    graph = check(build(nodes, ("N", 5), 2, inits), ops=["relu", "relu"])
    assert graph.nodes[0].attrs["max"] is None


def test_clip_with_nonzero_min_is_refused():
    inits = {"lo": np.array(-1.0, np.float32), "hi": np.array(1.0, np.float32)}
    with pytest.raises(Exception, match="only Clip with min=0"):
        import_onnx_model(build([node("Clip", ["x", "lo", "hi"], name="hardtanh")], ("N", 5), 2, inits))


@pytest.mark.parametrize("opset,axis,shape", [(13, -1, ("N", 10)), (11, 1, ("N", 10, 1, 1)), (9, 1, ("N", 7)),
                                              (13, 1, ("N", 4, 3, 3))])
def test_softmax_at_output(opset, axis, shape):
    check(build([node("Softmax", ["x"], axis=axis)], shape, len(shape), opset=opset), ops=["softmax"])


def test_softmax_old_opset_over_several_axes_is_refused():
    with pytest.raises(Exception, match="mixes several axes"):
        import_onnx_model(build([node("Softmax", ["x"], axis=1)], ("N", 4, 3, 3), 4, opset=11))


def test_dropout_and_identity_are_dropped():
    nodes = [node("Dropout", ["x"], ["d", "mask_unused"], ratio=0.3), node("Identity", ["d"], "i"),
             node("Relu", ["i"])]
    check(build(nodes, ("N", 3, 4, 4), 4, opset=11), ops=["relu"])


def test_cast_to_float_is_dropped_and_others_refused():
    nodes = [node("Cast", ["x"], "c", to=TensorProto.DOUBLE), node("Cast", ["c"], "f", to=TensorProto.FLOAT),
             node("Relu", ["f"])]
    check(build(nodes, ("N", 3, 4, 4), 4), ops=["relu"])
    with pytest.raises(Exception, match="node 'q' \\(Cast\\): Cast to INT8"):
        import_onnx_model(build([node("Cast", ["x"], "q8", name="q", to=TensorProto.INT8),
                                 node("Cast", ["q8"], to=TensorProto.FLOAT)], ("N", 3), 2))


# --- elementwise with constants -> affine -------------------------------------------------

@pytest.mark.parametrize("op,const,const_first", [
    ("Add", arr(3, 1, 1), False), ("Sub", arr(3, 1, 1), True), ("Sub", arr(1, 3, 1, 1), False),
    ("Mul", np.array(1.7, np.float32), False), ("Mul", arr(3, 1, 1), True), ("Div", arr(3, 1, 1, lo=0.5), False),
])
def test_affine_from_constants(op, const, const_first):
    ins = ["c", "x"] if const_first else ["x", "c"]
    check(build([node(op, ins)], ("N", 3, 4, 5), 4, {"c": const}), ops=["affine"])


def test_non_per_channel_constant_is_refused():
    with pytest.raises(Exception, match="not per-channel or scalar"):
        import_onnx_model(build([node("Add", ["x", "c"], name="pos")], ("N", 3, 4, 5), 4, {"c": arr(4, 5)}))


def test_add_and_sum_of_activations():
    nodes = [node("Relu", ["x"], "r"), node("Add", ["x", "r"], "a"), node("Sum", ["a", "r", "x"])]
    check(build(nodes, ("N", 3, 4, 4), 4, opset=13), ops=["relu", "add", "add"])


def test_batchnorm_standalone():
    inits = {"s": arr(3), "b": arr(3), "m": arr(3), "v": arr(3, lo=0.2)}
    check(build([node("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3)], ("N", 3, 4, 4), 4, inits),
          ops=["affine"])


# --- pooling ---------------------------------------------------------------------------------

@pytest.mark.parametrize("attrs", [
    {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
    {"kernel_shape": [2, 3], "strides": [1, 2], "dilations": [2, 2], "pads": [1, 0, 1, 1]},
    {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]},
])
def test_maxpool(attrs):
    check(build([node("MaxPool", ["x"], **attrs)], ("N", 2, 8, 9), 4), ops=["maxpool"])


@pytest.mark.parametrize("attrs", [
    {"kernel_shape": [3, 3], "strides": [2, 2]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 1, 1], "ceil_mode": 1},
])
def test_avgpool(attrs):
    check(build([node("AveragePool", ["x"], **attrs)], ("N", 2, 8, 9), 4), ops=["avgpool"])


def test_global_pool():
    graph = check(build([node("GlobalAveragePool", ["x"])], ("N", 3, 5, 6), 4))
    assert graph.nodes[0].attrs["kernel"] == (5, 6)
    graph = check(build([node("GlobalMaxPool", ["x"])], ("N", 3, 5, 6), 4), ops=["global_maxpool"])
    assert graph.shape(graph.nodes[0].output) == (3, 1, 1)


@pytest.mark.parametrize("opset,keepdims", [(13, 1), (13, 0), (18, 0), (18, 1)])
def test_reduce_mean_over_space(opset, keepdims):
    if opset >= 18:
        nodes = [node("ReduceMean", ["x", "axes"], keepdims=keepdims)]
        inits = {"axes": np.array([-2, -1], np.int64)}
    else:
        nodes, inits = [node("ReduceMean", ["x"], axes=[2, 3], keepdims=keepdims)], {}
    check(build(nodes, ("N", 3, 4, 5), 4 if keepdims else 2, inits, opset=opset))


# --- data movement ------------------------------------------------------------------------------

def test_flatten_then_gemm():
    nodes = [node("Flatten", ["x"], "f", axis=1), node("Gemm", ["f", "w"], transB=1)]
    check(build(nodes, ("N", 2, 3, 3), 2, {"w": arr(4, 18)}), ops=["flatten", "dense"])


def test_torchscript_dynamic_batch_flatten_chain():
    """x.view(x.size(0), -1) as TorchScript exports it with a dynamic batch."""
    inits = {"zero": np.array(0, np.int64), "minus1": np.array([-1], np.int64), "w": arr(4, 18)}
    nodes = [node("Relu", ["x"], "r"),
             node("Shape", ["r"], "s"), node("Gather", ["s", "zero"], "b", axis=0),
             node("Unsqueeze", ["b"], "b1", axes=[0]), node("Concat", ["b1", "minus1"], "shape", axis=0),
             node("Reshape", ["r", "shape"], "f"), node("Gemm", ["f", "w"], transB=1)]
    check(build(nodes, ("batch", 2, 3, 3), 2, inits, opset=11), ops=["relu", "flatten", "dense"])


def test_dynamic_batch_shape_arithmetic_is_folded():
    """Shape -> Slice/Gather -> Mul -> Concat (flatten of dims 1..3 computed from the shape)."""
    inits = {"i1": np.array([1], np.int64), "i2": np.array([2], np.int64), "i3": np.array([3], np.int64),
             "i0": np.array([0], np.int64)}
    nodes = [node("Shape", ["x"], "s"),
             node("Gather", ["s", "i0"], "n"), node("Gather", ["s", "i1"], "c"),
             node("Gather", ["s", "i2"], "h"), node("Gather", ["s", "i3"], "w"),
             node("Mul", ["c", "h"], "ch"), node("Mul", ["ch", "w"], "chw"),
             node("Concat", ["n", "chw"], "shape", axis=0), node("Reshape", ["x", "shape"])]
    check(build(nodes, ("N", 2, 3, 4), 2, inits), ops=["flatten"])


def test_reshape_changing_the_batch_is_refused():
    inits = {"shape": np.array([-1, 6], np.int64)}
    with pytest.raises(Exception, match="changes the batch axis"):
        import_onnx_model(build([node("Reshape", ["x", "shape"], name="r")], ("N", 2, 3, 4), 2, inits))


def test_batch_dependent_constant_is_refused():
    nodes = [node("Shape", ["x"], "s"), node("ConstantOfShape", ["s"], "k"), node("Add", ["x", "k"], name="a")]
    with pytest.raises(Exception, match="depends on the dynamic batch size"):
        import_onnx_model(build(nodes, ("N", 2, 3, 4), 4))


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze(opset):
    if opset >= 13:
        inits = {"ax": np.array([2, 3], np.int64)}
        nodes = [node("GlobalAveragePool", ["x"], "g"), node("Squeeze", ["g", "ax"], "s"),
                 node("Unsqueeze", ["s", "ax"], "u"), node("Squeeze", ["u", "ax"])]
    else:
        inits = {}
        nodes = [node("GlobalAveragePool", ["x"], "g"), node("Squeeze", ["g"], "s", axes=[2, 3]),
                 node("Unsqueeze", ["s"], "u", axes=[2, 3]), node("Squeeze", ["u"], axes=[-1, -2])]
    check(build(nodes, ("N", 3, 4, 4), 2, inits, opset=opset))


@pytest.mark.parametrize("axis", [1, -3])
def test_concat_channels(axis):
    nodes = [node("Relu", ["x"], "r"), node("Concat", ["x", "r", "x"], axis=axis)]
    graph = check(build(nodes, ("N", 2, 3, 3), 4), ops=["relu", "concat"])
    assert graph.nodes[1].attrs["axis"] == 0


@pytest.mark.parametrize("opset", [9, 11, 18])
def test_pad_then_conv_folds(opset):
    pads = [0, 0, 1, 2, 0, 0, 2, 1]
    inits = {"w": arr(2, 3, 3, 3)}
    if opset >= 11:
        inits["p"] = np.array(pads, np.int64)
        pad = node("Pad", ["x", "p"], "pd")
    else:
        pad = node("Pad", ["x"], "pd", pads=pads)
    graph = check(build([pad, node("Conv", ["pd", "w"])], ("N", 3, 5, 5), 4, inits, opset=opset), ops=["pad", "conv"])
    canon = canonicalize.run(graph, PassContext())
    assert [n.op for n in canon.nodes] == ["conv"]
    assert canon.nodes[0].attrs["pads"] == (1, 2, 2, 1)


def test_pad_reflect_or_nonzero_is_refused():
    inits = {"p": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "v": np.array(1.0, np.float32)}
    with pytest.raises(Exception, match="constant value 1.0"):
        import_onnx_model(build([node("Pad", ["x", "p", "v"])], ("N", 3, 5, 5), 4, inits))
    with pytest.raises(Exception, match="mode 'reflect'"):
        import_onnx_model(build([node("Pad", ["x", "p"], mode="reflect")], ("N", 3, 5, 5), 4, inits))


@pytest.mark.parametrize("batch_dim", [0, -1, "dynamic"])
def test_channel_shuffle(batch_dim):
    """ShuffleNet: Reshape(N, g, C/g, H, W) -> Transpose(0, 2, 1, 3, 4) -> Reshape(N, C, H, W)."""
    g, c, h, w = 3, 6, 4, 5
    inits = {"w": arr(c, 1, 3, 3)}
    if batch_dim == "dynamic":  # sizes from Shape, as TorchScript exports x.view(b, g, -1, h, w)
        inits.update({"i0": np.array([0], np.int64), "rest1": np.array([g, -1, h, w], np.int64),
                      "rest2": np.array([-1, h, w], np.int64)})
        nodes = [node("Shape", ["x"], "s"), node("Gather", ["s", "i0"], "b"),
                 node("Concat", ["b", "rest1"], "s1", axis=0), node("Concat", ["b", "rest2"], "s2", axis=0)]
    else:
        inits.update({"s1": np.array([batch_dim, g, c // g, h, w], np.int64),
                      "s2": np.array([batch_dim, c, h, w], np.int64)})
        nodes = []
    nodes += [node("Reshape", ["x", "s1"], "r1"), node("Transpose", ["r1"], "t", perm=[0, 2, 1, 3, 4]),
              node("Reshape", ["t", "s2"], "r2"), node("Conv", ["r2", "w"], pads=[1, 1, 1, 1], group=c)]
    graph = check(build(nodes, ("N", c, h, w), 4, inits))
    canon = canonicalize.run(graph, PassContext())
    assert [n.op for n in canon.nodes] == ["channel_shuffle", "conv"]
    assert canon.nodes[0].attrs["groups"] == g


def test_other_transpose_is_refused():
    with pytest.raises(Exception, match="Transpose perm=\\[0, 2, 3, 1\\]"):
        import_onnx_model(build([node("Transpose", ["x"], perm=[0, 2, 3, 1])], ("N", 3, 4, 4), 4))


# --- names -----------------------------------------------------------------------------------------

def test_node_and_value_names():
    inits = {"w": arr(2, 3, 1, 1)}
    nodes = [node("Conv", ["x", "w"], "c", name="stem"), node("Relu", ["c"], "r", name="dup"),
             node("Relu", ["r"], "r2", name="dup"), node("Relu", ["r2"], "y", name="")]
    graph = import_onnx_model(build(nodes, ("N", 3, 4, 4), 4, inits))  # onnxruntime refuses duplicate names
    assert [n.name for n in graph.nodes] == ["stem", "n1_relu", "n2_relu", "n3_relu"]
    assert [n.origin for n in graph.nodes] == ["Conv:stem", "Relu:dup", "Relu:dup", "Relu:"]
    assert [n.output for n in graph.nodes] == ["c", "r", "r2", "y"]
    assert graph.outputs == ["y"] and graph.inputs == ["x"]


def test_old_opset_is_upgraded():
    """Opsets 1..8 are converted to 9 first (the pytorch-converted zoo is opset 6)."""
    nodes = [node("Conv", ["x", "w"], "c"), node("Relu", ["c"], "r")]
    model = build(nodes, ("N", 3, 5, 5), 4, {"w": arr(2, 3, 3, 3)}, opset=6, out="r")
    graph = import_onnx_model(model)
    assert graph.meta["opset"] == 9
    assert [n.op for n in graph.nodes] == ["conv", "relu"]


def test_import_is_deterministic_and_leaves_the_model_alone():
    inits = {"w": arr(4, 3, 3, 3), "s": arr(4), "b": arr(4), "m": arr(4), "v": arr(4, lo=0.2)}
    nodes = [node("Conv", ["x", "w"], "c", pads=[1, 1, 1, 1]),
             node("BatchNormalization", ["c", "s", "b", "m", "v"], "n"), node("Relu", ["n"])]
    model = build(nodes, ("N", 3, 6, 6), 4, inits)
    before = model.SerializeToString()
    a, b = import_onnx_model(model), import_onnx_model(model)
    assert model.SerializeToString() == before
    assert a.dump() == b.dump()
    for na, nb in zip(a.nodes, b.nodes):
        assert sorted(na.params) == sorted(nb.params)
        for key in na.params:
            assert na.params[key].dtype == np.float32
            np.testing.assert_array_equal(na.params[key], nb.params[key])
