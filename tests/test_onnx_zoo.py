"""Acceptance: the float runtime matches onnxruntime on the ONNX model zoo that ships
with the onnx package (``backend/test/data/light`` and ``pytorch-converted``).

The light models carry ConstantOfShape placeholders instead of weights.  We give
them seeded random weights (He-normal convolutions) and set every BatchNorm's
running statistics to the statistics of its input on the test image (data-dependent
init), so activations stay O(1) through 50+ layers and the comparison measures
snncc, not float32 overflow.  onnxruntime and snncc then run the same modified model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from snncc.errors import SnnccError
from snncc.frontend.onnx_import import import_onnx_model, list_unsupported, load_onnx
from snncc.pass_context import PassContext
from snncc.passes import canonicalize
from snncc.sim.float_runtime import eval_node, run_graph

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
LIGHT = DATA / "light"
PYTORCH_CONVERTED = DATA / "pytorch-converted"

RTOL, ATOL = 1e-4, 1e-5

SUPPORTED_LIGHT = ["squeezenet", "shufflenet", "inception_v2", "densenet121", "resnet50", "vgg19"]
LRN_LIGHT = ["bvlc_alexnet", "zfnet512", "inception_v1"]


# --- building test models from the light placeholders ---------------------------------

def randomize(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """Replace every ConstantOfShape weight placeholder by seeded random values."""
    rng = np.random.default_rng(seed)
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i, x in enumerate(n.input):
            consumers.setdefault(x, []).append((n, i))

    def role(name):
        for n, i in consumers.get(name, []):
            if n.op_type == "Unsqueeze":  # DenseNet/Inception scale vectors
                return role(n.output[0])
            return n.op_type, i
        return None, None

    keep, new = [], []
    for n in g.node:
        if n.op_type != "ConstantOfShape":
            keep.append(n)
            continue
        shape = tuple(int(d) for d in inits[n.input[0]])
        op, i = role(n.output[0])
        if op == "Conv" and i == 1:
            arr = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / np.prod(shape[1:])))
        elif op == "Gemm" and i == 1:
            arr = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(1.0 / shape[1]))
        elif (op == "BatchNormalization" and i in (1, 4)) or op == "Mul":
            arr = rng.uniform(0.5, 1.5, shape)
        else:
            arr = rng.normal(0, 0.1, shape)
        new.append(numpy_helper.from_array(arr.astype(np.float32), n.output[0]))
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(new)
    model.ir_version = max(model.ir_version, 4)  # initializers need not be listed as inputs
    real = [v for v in g.input if v.name not in {t.name for t in g.initializer}]
    del g.input[:]
    g.input.extend(real)
    # Also compare the logits: expose the Softmax input (same shape) as a second output.
    for n in g.node:
        if n.op_type == "Softmax" and n.output[0] in [o.name for o in g.output]:
            out = next(o for o in g.output if o.name == n.output[0])
            logits = g.output.add()
            logits.CopyFrom(out)
            logits.name = n.input[0]
    return model


def normalize_batchnorm(model: onnx.ModelProto, x: np.ndarray) -> onnx.ModelProto:
    """Set each BatchNorm's mean/var to its input's per-channel statistics on ``x``.

    One pass in topological order (float64): each BN sees inputs already produced
    by normalized layers.  Only the weights are chosen this way; the comparison
    below still runs onnxruntime and snncc independently on the final model.
    """
    bns = {n.input[0]: n for n in model.graph.node if n.op_type == "BatchNormalization"}
    if not bns:
        return model
    graph = import_onnx_model(model)
    inits = {t.name: t for t in model.graph.initializer}
    env = {graph.inputs[0]: x.astype(np.float64)}
    for node in graph.nodes:
        args = [env[v] for v in node.inputs]
        bn = bns.get(node.inputs[0]) if node.origin.startswith("BatchNormalization") else None
        if bn is not None:
            axes = (0,) + tuple(range(2, args[0].ndim))
            mean = args[0].mean(axis=axes).astype(np.float32)
            var = args[0].var(axis=axes).astype(np.float32)
            for idx, arr in ((3, mean), (4, var)):
                inits[bn.input[idx]].CopyFrom(numpy_helper.from_array(arr, bn.input[idx]))
            gamma = numpy_helper.to_array(inits[bn.input[1]]).astype(np.float64)
            beta = numpy_helper.to_array(inits[bn.input[2]]).astype(np.float64)
            eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
            scale = gamma / np.sqrt(var.astype(np.float64) + eps)
            node.params["scale"], node.params["shift"] = scale, beta - mean * scale
        env[node.output] = eval_node(node, args)
    return model


def run_ort(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


@pytest.fixture
def light_case():
    """name -> (modified model, input, onnxruntime outputs, snncc graph)."""
    cache = {}

    def get(name):
        if name not in cache:
            model = randomize(onnx.load(LIGHT / f"light_{name}.onnx"))
            (data,) = model.graph.input  # randomize() leaves only the image input
            shape = [d.dim_value for d in data.type.tensor_type.shape.dim]
            x = np.random.default_rng(1).normal(0, 1, shape).astype(np.float32)
            model = normalize_batchnorm(model, x)
            cache[name] = (model, x, run_ort(model, x), import_onnx_model(model))
        return cache[name]

    return get


def _check_outputs(graph, x, ref, dtype):
    res = run_graph(graph, x, dtype=dtype)
    outs = [res[name] for name in graph.outputs]
    assert len(outs) == len(ref)
    ref = [r.reshape(o.shape) for r, o in zip(ref, outs)]
    # The model output: element-wise rtol 1e-4, atol 1e-5.
    np.testing.assert_allclose(outs[0], ref[0], rtol=RTOL, atol=ATOL)
    if len(outs) == 1:  # no Softmax (DenseNet ends in GlobalAveragePool)
        return outs
    logits, ref_logits = outs[1], ref[1]
    # The logits: within 1e-4 of their range.  Element-wise on O(1) logits the
    # float32 rounding of onnxruntime itself (~2e-5 after 50 layers) exceeds atol.
    scale = float(np.max(np.abs(ref_logits)))
    assert scale > 1e-3, "degenerate test model: logits collapsed"
    assert float(np.max(np.abs(logits - ref_logits))) <= RTOL * scale
    return outs


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("vgg19", "resnet50",
                                                                                 "densenet121") else n
                                  for n in SUPPORTED_LIGHT])
def test_light_model_matches_onnxruntime(name, light_case):
    """Imported IR == onnxruntime; canonicalized (BN-folded, sumpool) IR == both."""
    model, x, ref, graph = light_case(name)
    _check_outputs(graph, x, ref, np.float32)
    if name == "vgg19":
        return  # nothing to fold (no BN, no avgpool): skip copying 550 MB of weights again
    canon = canonicalize.run(graph, PassContext())
    canon.verify()
    assert not any(n.op == "affine" and n.origin.startswith("BatchNormalization") and _follows_conv(canon, n)
                   for n in canon.nodes), "a BatchNorm after a conv was not folded"
    assert not any(n.op == "avgpool" and (n.attrs["count_include_pad"] or not any(n.attrs["pads"]))
                   for n in canon.nodes)
    # float64: in float32 the folded weights round differently (~1e-4 on O(1) logits).
    before = run_graph(graph, x, dtype=np.float64)
    after = run_graph(canon, x, dtype=np.float64)
    assert canon.outputs == graph.outputs
    for name_out in graph.outputs:
        np.testing.assert_allclose(after[name_out], before[name_out], rtol=RTOL, atol=ATOL)
    _check_outputs(canon, x, ref, np.float32)


def _follows_conv(graph, node) -> bool:
    prod = graph.producer(node.inputs[0])
    return prod is not None and prod.op in ("conv", "dense")


@pytest.mark.parametrize("name", LRN_LIGHT)
def test_lrn_models_are_refused_naming_every_lrn(name):
    path = LIGHT / f"light_{name}.onnx"
    model = onnx.load(path)
    lrn = [n.name for n in model.graph.node if n.op_type == "LRN"]
    assert len(lrn) >= 2
    expected = "unsupported ops: " + ", ".join(f"node '{n}' (LRN)" for n in lrn)
    with pytest.raises(SnnccError) as info:
        load_onnx(path)
    message = str(info.value)
    assert message == expected
    assert "\n" not in message
    assert [item[:2] for item in list_unsupported(model)] == [(n, "LRN") for n in lrn]


# --- pytorch-converted cases ------------------------------------------------------------

def _pytorch_cases():
    return sorted(p.name for p in PYTORCH_CONVERTED.iterdir() if (p / "model.onnx").exists())


def _load_case(name):
    folder = PYTORCH_CONVERTED / name
    x = numpy_helper.to_array(onnx.load_tensor(folder / "test_data_set_0" / "input_0.pb"))
    y = numpy_helper.to_array(onnx.load_tensor(folder / "test_data_set_0" / "output_0.pb"))
    return folder / "model.onnx", x, y


def skip_reason(name) -> str | None:
    """Why a pytorch-converted case is out of scope, or None if it must pass."""
    path, x, _ = _load_case(name)
    if x.ndim not in (2, 4):
        return f"input rank {x.ndim} (only 2-D and 4-D NCHW inputs are in scope)"
    try:
        bad = list_unsupported(onnx.load(path))
    except SnnccError as exc:
        return f"refused: {exc}"
    if bad:
        try:
            load_onnx(path)
        except SnnccError as exc:
            return f"refused: {exc}"
        raise AssertionError(f"list_unsupported names {bad} but the model imports")
    return None


@pytest.mark.parametrize("name", _pytorch_cases())
def test_pytorch_converted_case(name):
    reason = skip_reason(name)
    if reason is not None:
        pytest.skip(reason)
    path, x, y = _load_case(name)
    graph = load_onnx(path)
    out = run_graph(graph, x)[graph.outputs[0]]
    np.testing.assert_allclose(out, y, rtol=RTOL, atol=ATOL)
    model = onnx.load(path)
    if model.opset_import[0].version < 9:  # onnxruntime no longer runs opset-6 kernels
        model = onnx.version_converter.convert_version(model, 9)
    ref = run_ort(model, x)[0]
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)
    canon = canonicalize.run(graph, PassContext())
    np.testing.assert_allclose(run_graph(canon, x)[canon.outputs[0]], y, rtol=RTOL, atol=ATOL)


def test_pytorch_converted_coverage():
    """The in-scope set is what the issue lists: 2-D conv variants, pools, BN, Linear..."""
    ran = [n for n in _pytorch_cases() if skip_reason(n) is None]
    for must in ("test_Conv2d", "test_Conv2d_depthwise", "test_Conv2d_groups", "test_Conv2d_dilated",
                 "test_AvgPool2d", "test_BatchNorm2d_eval", "test_Linear", "test_Linear_no_bias",
                 "test_MaxPool2d", "test_ReLU", "test_ZeroPad2d", "test_Softmax"):
        assert must in ran
