"""GlobalMaxPool end to end: ONNX import -> IR op ``global_maxpool`` -> float, SNN and
integer runtimes, range analysis -> C, bit-exact with the integer runtime.

This op was added as the worked example of docs/contributing.md ("Adding an IR op"):
it touched snncc/ops.py, snncc/frontend/ops/pool.py, snncc/sim/kernels.py,
snncc/sim/float_runtime.py and backends/c/plan.py, nothing else.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from c_graphs import IntGraphBuilder, sample_inputs
from onnx import TensorProto, helper, numpy_helper

from snncc.backends.c.emit import emit_c
from snncc.backends.c.verify_c import build_host, compare_c, flat_outputs
from snncc.calib_data import load_calib
from snncc.frontend.onnx_import import import_model
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.pass_manager import run_pipeline
from snncc.passes import DEFAULT_PIPELINE
from snncc.passes.range_analysis import analyze
from snncc.sim.float_runtime import run_graph
from snncc.sim.int_runtime import quantize_input, run_int


def _onnx_model(seed=0) -> onnx.ModelProto:
    """Conv 3x3 -> Relu -> GlobalMaxPool -> Flatten -> Gemm, input (N, 2, 7, 6)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.5, (8, 2, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 8).astype(np.float32)
    w2 = rng.normal(0, 0.5, (5, 8)).astype(np.float32)
    b2 = rng.normal(0, 0.1, 5).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalMaxPool", ["r"], ["g"], name="gmp"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "gmp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 7, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def test_import_and_float_runtime_match_onnxruntime():
    model = _onnx_model()
    graph = import_model(model)
    assert [n.op for n in graph.nodes].count("global_maxpool") == 1
    gmp = next(n for n in graph.nodes if n.op == "global_maxpool")
    assert graph.shape(gmp.output) == (8, 1, 1)
    x = np.random.default_rng(1).normal(0, 1, (16, 2, 7, 6)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    ours = run_graph(graph, x)[graph.outputs[0]]
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_compiled_model_c_equals_integer_runtime(tmp_path):
    """The full pipeline keeps the op (convert, quantize, range analysis) and the emitted C
    matches the integer runtime on random, extreme and calibration-like inputs, under ASan/UBSan."""
    graph = import_model(_onnx_model())
    rng = np.random.default_rng(2)
    calib = rng.uniform(0, 1, (64, 2, 7, 6)).astype(np.float32)
    ctx = PassContext(CompileOptions(levels=4, timesteps=1, threshold_search="none"),
                      load_calib(calib, graph.values[graph.inputs[0]].shape))
    graph = run_pipeline(graph, DEFAULT_PIPELINE, ctx, echo=lambda s: None)
    assert graph.stage == "int" and any(n.op == "global_maxpool" for n in graph.nodes)
    out = tmp_path / "c"
    out.mkdir()
    emit_c(graph, out)
    x = np.concatenate([quantize_input(graph, calib), sample_inputs((2, 7, 6), n=60)])
    res = compare_c(graph, out, x, exe=build_host(out, sanitize=True))
    assert res.ok, res.summary()


def _int_graph(T: int):
    """Global max pools over signed levels (int8) and over a current (int32)."""
    b = IntGraphBuilder((3, 5, 4), timesteps=T, seed=7)
    h = b.neuron(b.conv("x", 6, k=3, pad=1), levels=3, signed=True)
    lv = b._add("global_maxpool", [h], mag=b.mag[h], dtype="int8")  # max of levels -3..3
    cur = b._add("global_maxpool", [b.conv("x", 4, k=3, pad=0)], mag=200.0)  # max of currents
    k = b.neuron(cur, levels=2)
    y = b.dense(b.flatten(b.concat(lv, k)), 5)
    return b.build(y)


def test_hand_built_int_graph_bit_exact(tmp_path):
    for T in (1, 3):
        graph = _int_graph(T)
        analyze(graph)  # the interval rule: both ends through the op (it is monotone)
        gmp = [n for n in graph.nodes if n.op == "global_maxpool"]
        assert all(n.attrs["range"][0] <= n.attrs["range"][1] for n in gmp)
        out = tmp_path / f"t{T}"
        out.mkdir()
        emit_c(graph, out)
        x = sample_inputs(graph.values["x"].shape, n=80)
        levels = run_int(graph, x[:20], capture=[gmp[0].inputs[0], gmp[0].output])
        assert np.any(levels[gmp[0].inputs[0]] < 0)  # negative levels reach the pool
        pooled = levels[gmp[0].inputs[0]].max(axis=(2, 3), keepdims=True)
        np.testing.assert_array_equal(levels[gmp[0].output], pooled)
        expected = flat_outputs(graph, run_int(graph, x))
        res = compare_c(graph, out, x, exe=build_host(out, sanitize=True), expected=expected)
        assert res.ok, f"T={T}: {res.summary()}"
