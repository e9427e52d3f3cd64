"""torch exports the frontend must fold and map: TorchScript (dynamo=False) with a
dynamic batch, whose Shape/Gather/Unsqueeze/Concat chains feed Reshapes, and dynamo
(opset 18+) exports.  Each export is compared with onnxruntime, before and after
canonicalize."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from snncc.frontend.onnx_import import load_onnx
from snncc.pass_context import PassContext
from snncc.passes import canonicalize
from snncc.sim.float_runtime import run_graph


class Shuffle(nn.Module):
    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        b, c, h, w = x.shape
        x = x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).contiguous()
        return x.view(b, -1, h, w)


class ShuffleNetish(nn.Module):
    """Grouped 1x1 conv, channel shuffle, depthwise conv, BN before and after convs,
    ceil-mode pooling, ReLU6, x.view(x.size(0), -1), a MatMul classifier and a bias Add."""

    def __init__(self):
        super().__init__()
        self.pre_bn = nn.BatchNorm2d(3)
        self.stem = nn.Conv2d(3, 12, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(12)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.g1 = nn.Conv2d(12, 12, 1, groups=3, bias=False)
        self.bn2 = nn.BatchNorm2d(12)
        self.shuffle = Shuffle(3)
        self.dw = nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=12)
        self.avg = nn.AvgPool2d(2, 2, padding=1, count_include_pad=False)
        self.w = nn.Parameter(torch.randn(12 * 3 * 3, 10) * 0.1)
        self.b = nn.Parameter(torch.randn(10) * 0.1)

    def forward(self, x):
        x = torch.relu(self.bn1(self.stem(self.pre_bn(x))))
        x = self.pool(x)
        x = nn.functional.relu6(self.bn2(self.g1(x)))
        x = self.dw(self.shuffle(x))
        x = self.avg(torch.relu(x))
        x = x.view(x.size(0), -1)
        return x @ self.w + self.b


def _model():
    torch.manual_seed(0)
    model = ShuffleNetish()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("torch_exports")
    model = _model()
    dummy = torch.randn(2, 3, 15, 15)
    paths = {}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        for opset in (11, 13):
            path = folder / f"ts{opset}.onnx"
            torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=opset,
                              training=torch.onnx.TrainingMode.PRESERVE, input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
            paths[f"torchscript-{opset}"] = path
        path = folder / "dynamo.onnx"
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.onnx.export(model, (dummy,), str(path), dynamo=True, input_names=["input"], output_names=["output"],
                          dynamic_shapes=({0: batch},), external_data=False)
        paths["dynamo"] = path
    return paths


@pytest.mark.parametrize("kind", ["torchscript-11", "torchscript-13", "dynamo"])
def test_torch_export_matches_onnxruntime(exports, kind):
    path = exports[kind]
    model = onnx.load(path)
    if kind.startswith("torchscript"):  # the export really carries a dynamic batch and shape chains
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
        assert any(n.op_type == "Shape" for n in model.graph.node)
    else:
        assert model.opset_import[0].version >= 18
    x = np.random.default_rng(5).normal(size=(4, 3, 15, 15)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    graph = load_onnx(path)
    assert graph.inputs == ["input"] and graph.outputs == ["output"]  # ONNX names survive the bias fold
    ops = [n.op for n in graph.nodes]
    assert "channel_shuffle" in ops and "dense" in ops
    out = run_graph(graph, x)[graph.outputs[0]]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)

    canon = canonicalize.run(graph, PassContext())
    canon.verify()
    out2 = run_graph(canon, x)[canon.outputs[0]]
    np.testing.assert_allclose(out2, ref, rtol=1e-4, atol=1e-5)
    canon_ops = [n.op for n in canon.nodes]
    assert "reshape" not in canon_ops  # the shuffle's reshapes merged away
    # BN after the convs folds backwards; the BN in front of the first conv cannot
    # (a padded conv) and stays as an affine on the input.
    assert canon_ops.count("affine") <= 2
    assert canon_ops[:2] == ["affine", "conv"]
