"""Bad input: every malformed or hostile model is a one-line SnnccError that names
the node (or input/initializer) and op, raised before any weights are trusted."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from snncc.errors import SnnccError
from snncc.frontend.onnx_import import import_onnx_model, list_unsupported, load_onnx


def _conv_model(opset: int = 13, input_shape=("N", 3, 8, 8)) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu1")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
                              [_out("y", 4)], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _out(name: str, rank: int) -> onnx.ValueInfoProto:
    """A graph output of known rank and unknown dims (the checker wants a shape)."""
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [None] * rank)


def _raises(fn, *args, match: str) -> str:
    with pytest.raises(SnnccError) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message, message
    assert match in message, message
    return message


def test_valid_model_imports(tmp_path):
    path = tmp_path / "ok.onnx"
    onnx.save(_conv_model(), path)
    graph = load_onnx(path)
    assert [n.op for n in graph.nodes] == ["conv", "relu"]


def test_missing_file(tmp_path):
    _raises(load_onnx, tmp_path / "nope.onnx", match="does not exist")


def test_directory_is_not_a_model(tmp_path):
    _raises(load_onnx, tmp_path, match="is not a file")


@pytest.mark.parametrize("content", [b"this is a text file, not a model\n",
                                     np.random.default_rng(3).bytes(2000), b""])
def test_not_onnx(tmp_path, content):
    path = tmp_path / "junk.onnx"
    path.write_bytes(content)
    message = _raises(load_onnx, path, match="ONNX")
    assert "not" in message


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_protobuf(tmp_path, fraction):
    data = _conv_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    _raises(load_onnx, path, match="ONNX")


def test_unsupported_ops_are_all_listed():
    model = _conv_model()
    g = model.graph
    g.node.append(helper.make_node("LRN", ["y"], ["l"], name="lrn1", size=3))
    g.node.append(helper.make_node("Tanh", ["l"], ["t"], name="x"))
    g.node.append(helper.make_node("Sigmoid", ["y"], ["s"], name=""))
    g.node.append(helper.make_node("Add", ["t", "s"], ["z"], name="join"))
    del g.output[:]
    g.output.append(_out("z", 4))
    message = _raises(import_onnx_model, model,
                      match="unsupported ops: node 'lrn1' (LRN), node 'x' (Tanh), node 'n4_sigmoid' (Sigmoid)")
    assert message.startswith("unsupported ops:")
    assert [item[:2] for item in list_unsupported(model)] == [("lrn1", "LRN"), ("x", "Tanh"), ("n4_sigmoid", "Sigmoid")]


def test_unknown_op_type_is_listed_not_a_checker_failure():
    model = _conv_model()
    model.graph.node.append(helper.make_node("FancyActivation", ["y"], ["z"], name="weird"))
    model.graph.output[0].name = "z"
    _raises(import_onnx_model, model, match="unsupported ops: node 'weird' (FancyActivation)")


def test_supported_op_in_unsupported_form_names_node():
    model = _conv_model()
    model.graph.node.append(helper.make_node("Mul", ["y", "y"], ["z"], name="square"))
    model.graph.output[0].name = "z"
    _raises(import_onnx_model, model, match="node 'square' (Mul): Mul of two activations is not supported")
    (bad,) = list_unsupported(model)
    assert bad == ("square", "Mul", "Mul of two activations is not supported")


@pytest.mark.parametrize("shape,axis", [(("N", 3, "H", 8), 2), ((1, 3, 8, "W"), 3), ((1, "C", 8, 8), 1)])
def test_dynamic_spatial_dimension(shape, axis):
    _raises(import_onnx_model, _conv_model(input_shape=shape),
            match=f"node 'x' (graph input): dimension {axis} is dynamic")


def test_symbolic_or_static_batch_is_accepted():
    for batch in ("N", 1, 4):
        graph = import_onnx_model(_conv_model(input_shape=(batch, 3, 8, 8)))
        assert graph.values["x"].shape == (3, 8, 8)


def test_cycle():
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="add1"),
             helper.make_node("Relu", ["a"], ["b"], name="relu1")]
    graph = helper.make_graph(nodes, "cyclic", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])  # no checker here
    message = _raises(import_onnx_model, model, match="the graph has a cycle")
    assert "'add1'" in message and "'relu1'" in message
    assert message.startswith(("node 'add1' (Add)", "node 'relu1' (Relu)"))


def test_unsorted_but_acyclic_graph_is_sorted():
    model = _conv_model()
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    graph = import_onnx_model(model)
    assert [n.op for n in graph.nodes] == ["conv", "relu"]


def test_dangling_input():
    model = _conv_model()
    model.graph.node[1].input[0] = "ghost"
    _raises(import_onnx_model, model, match="node 'relu1' (Relu): input 'ghost' is never produced")


def _save_external(tmp_path) -> tuple[onnx.ModelProto, os.PathLike]:
    folder = tmp_path / "model"
    folder.mkdir()
    model = _conv_model()
    onnx.save(model, folder / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    return onnx.load(folder / "m.onnx", load_external_data=False), folder


def test_external_data_inside_folder_loads(tmp_path):
    model, folder = _save_external(tmp_path)
    graph = load_onnx(folder / "m.onnx")
    ref = numpy_helper.to_array(_conv_model().graph.initializer[0])
    np.testing.assert_array_equal(graph.nodes[0].params["weight"], ref)


@pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin", "ABS"])
def test_external_data_outside_folder(tmp_path, location):
    model, folder = _save_external(tmp_path)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 4096)  # it exists: the path alone must be refused
    if location == "ABS":
        location = str(secret)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(model, folder / "evil.onnx")
    _raises(load_onnx, folder / "evil.onnx", match="node 'w' (initializer): external data location")


def test_external_data_symlink_escaping_folder(tmp_path):
    model, folder = _save_external(tmp_path)
    secret = tmp_path / "secret.bin"
    secret.write_bytes((folder / "weights.bin").read_bytes())
    (folder / "link.bin").symlink_to(secret)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "link.bin"
    onnx.save(model, folder / "evil.onnx")
    _raises(load_onnx, folder / "evil.onnx", match="resolves outside the model's folder")


def test_external_data_in_memory_model_needs_folder(tmp_path):
    model, _ = _save_external(tmp_path)
    _raises(import_onnx_model, model, match="external data")


def test_external_data_file_missing(tmp_path):
    model, folder = _save_external(tmp_path)
    (folder / "weights.bin").unlink()
    _raises(load_onnx, folder / "m.onnx", match="does not exist")


def test_initializer_raw_data_size_mismatch():
    model = _conv_model()
    w = model.graph.initializer[0]
    w.raw_data = w.raw_data[:-8] if w.raw_data else np.zeros(100, np.float32).tobytes()
    message = _raises(import_onnx_model, model, match="node 'w' (initializer)")
    assert "raw_data" in message and "[4, 3, 3, 3]" in message


def test_initializer_typed_data_size_mismatch():
    model = _conv_model()
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 3, 3, 3])
    w.float_data.extend([0.5] * 10)
    model.graph.initializer[0].CopyFrom(w)
    _raises(import_onnx_model, model, match="holds 10 values but dims [4, 3, 3, 3] need 108")


@pytest.mark.parametrize("opset", [22, 30])
def test_opset_too_new(opset):
    _raises(import_onnx_model, _conv_model(opset=opset), match=f"opset {opset} is not supported")


def test_checker_failure_is_one_line():
    model = _conv_model()
    model.graph.node[0].ClearField("input")  # a Conv with no inputs
    model.graph.node[0].input.extend(["x"])
    _raises(import_onnx_model, model, match="ONNX")


def test_softmax_not_at_output_is_refused():
    model = _conv_model()
    model.graph.node.insert(1, helper.make_node("Softmax", ["c"], ["sm"], name="sm1", axis=1))
    model.graph.node[2].input[0] = "sm"
    _raises(import_onnx_model, model, match="node 'sm1' (Softmax): Softmax is only supported")


def _import_bytes(data: bytes):
    from snncc.frontend.reader import parse_model

    return import_onnx_model(parse_model(data))


def test_corrupted_bytes_never_escape_as_other_errors():
    """Seeded byte flips: every outcome is an import or a one-line SnnccError."""
    data = _conv_model().SerializeToString()
    rng = np.random.default_rng(11)
    refused = 0
    for _ in range(200):
        corrupt = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            corrupt[int(rng.integers(len(corrupt)))] = int(rng.integers(256))
        try:
            _import_bytes(bytes(corrupt))
        except SnnccError as exc:
            assert "\n" not in str(exc)
            refused += 1
    assert refused > 20


@pytest.mark.parametrize("attr,value", [("strides", [0, 1]), ("dilations", [1, -1]), ("kernel_shape", [0, 3]),
                                        ("pads", [-1, 0, 0, 0]), ("pads", [0, 0, 50, 0])])
def test_bad_window_attributes(attr, value):
    model = _conv_model(input_shape=("N", 3, 2, 2))
    model.graph.node.insert(0, helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[1, 3],
                                                pads=[0, 1, 0, 1]))
    model.graph.node[1].input[0] = "p"
    for a in model.graph.node[0].attribute:
        if a.name == attr:
            del a.ints[:]
            a.ints.extend(value)
    if attr in ("strides", "dilations") and not any(a.name == attr for a in model.graph.node[0].attribute):
        model.graph.node[0].attribute.append(helper.make_attribute(attr, value))
    message = _raises(import_onnx_model, model, match="pool")
    assert "MaxPool" in message
