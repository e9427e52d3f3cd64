"""NaN/inf in a model's parameters: one clean error at load time, naming the node that
holds the bad value, for compile and sweep alike (issue 12, section 2)."""

from __future__ import annotations

import numpy as np
import pytest
from hostile_models import FAST, invoke, leftovers, one_line_error, save_model, tiny_model
from onnx import helper, numpy_helper


def _nan_weight():
    w = np.random.default_rng(0).normal(size=(2, 1, 3, 3)).astype(np.float32)
    w[1, 0, 2, 2] = np.nan
    return tiny_model(weight=w)


def _bn(var, epsilon):
    return tiny_model(batchnorm={"scale": [1, 1], "bias": [0, 0], "mean": [0, 0], "var": var, "epsilon": epsilon})


def _nan_mul():
    # A Mul by a constant holding NaN, then a sum pool: the Mul is to blame, not the pool.
    c = numpy_helper.from_array(np.array([1.0, np.nan], np.float32).reshape(2, 1, 1), "k")
    nodes = [helper.make_node("Mul", ["r", "k"], ["m"], name="scale_mul"),
             helper.make_node("AveragePool", ["m"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2])]
    return tiny_model(extra_nodes=nodes, extra_inits=[c], flat=8)


CASES = {
    "nan weight": (_nan_weight, ["node 'conv1' (Conv)", "parameter", "NaN"]),
    "inf weight": (lambda: tiny_model(weight=np.full((2, 1, 3, 3), np.inf, np.float32)),
                   ["node 'conv1' (Conv)", "inf"]),
    "batchnorm negative var": (lambda: _bn([1.0, -2.0], 1e-5),
                               ["node 'bn1' (BatchNormalization)", "var + epsilon must be > 0", "channel 1"]),
    "batchnorm zero var, eps 0": (lambda: _bn([0.0, 1.0], 0.0),
                                  ["node 'bn1' (BatchNormalization)", "channel 0 has var=0, epsilon=0"]),
    "nan constant in a Mul": (_nan_mul, ["node 'scale_mul' (Mul)", "NaN"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_compile_names_the_node(tmp_path, case):
    build, fragments = CASES[case]
    model = save_model(tmp_path / "m", build())
    out = tmp_path / "out"
    one_line_error(invoke("compile", model, "-o", out, *FAST), *fragments)
    assert not out.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["nan weight", "batchnorm negative var"])
def test_sweep_names_the_node(tmp_path, case):
    build, fragments = CASES[case]
    model = save_model(tmp_path / "m", build())
    out = tmp_path / "sweep"
    one_line_error(invoke("sweep", model, "-o", out, "-N", "2", "--weight-bits", "8", "--jobs", "1"), *fragments)
    assert not out.exists()


@pytest.mark.parametrize("case", ["nan weight", "nan constant in a Mul"])
def test_run_names_the_node(tmp_path, case):
    build, fragments = CASES[case]
    model = save_model(tmp_path / "m", build())
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 1, 6, 6), np.float32))
    one_line_error(invoke("run", model, "--input", x), *fragments)


@pytest.mark.parametrize("case", ["nan weight", "batchnorm negative var"])
def test_inspect_lists_the_node_with_its_reason(tmp_path, case):
    build, fragments = CASES[case]
    model = save_model(tmp_path / "m", build())
    result = invoke("inspect", model)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    node_line = [line for line in result.output.splitlines() if line.startswith("  ")]
    assert len(node_line) == 1, result.output
    node, op = fragments[0].split("'")[1], fragments[0].split("(")[1].rstrip(")")
    assert node_line[0].split()[:2] == [op, node], node_line
    for frag in fragments[1:]:  # the reason, not just the node
        assert frag in node_line[0], node_line
