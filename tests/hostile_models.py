"""Small ONNX models and a CLI runner for the hostile-input tests (tests/test_hostile_*.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from snncc.cli import cli

# Fast compile settings: the hostile tests check errors, not accuracy.
FAST = ("--threshold-search", "none", "--weight-rounding", "nearest", "--threshold", "max")


def tiny_model(*, weight: np.ndarray | None = None, extra_nodes=(), extra_inits=(), head: str = "relu",
               input_shape=(1, 1, 6, 6), batchnorm: dict | None = None, flat: int | None = None) -> onnx.ModelProto:
    """x -> conv (2 channels, 3x3) [-> BatchNorm] -> relu [-> extra nodes] -> flatten -> dense(3).

    ``flat`` is the flattened size when the extra nodes change it."""
    rng = np.random.default_rng(0)
    w = weight if weight is not None else rng.normal(size=(2, input_shape[1], 3, 3)).astype(np.float32)
    h = input_shape[2] - 2
    inits = [numpy_helper.from_array(w.astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(size=(flat or 2 * h * h, 3)).astype(np.float32), "wd"),
             *extra_inits]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv1")]
    last = "c"
    if batchnorm is not None:
        for key in ("scale", "bias", "mean", "var"):
            inits.append(numpy_helper.from_array(np.asarray(batchnorm[key], np.float32), f"bn_{key}"))
        nodes.append(helper.make_node("BatchNormalization", ["c", "bn_scale", "bn_bias", "bn_mean", "bn_var"],
                                      ["b"], name="bn1", epsilon=float(batchnorm.get("epsilon", 1e-5))))
        last = "b"
    nodes.append(helper.make_node("Relu", [last], ["r"], name="relu1"))
    last = "r"
    for node in extra_nodes:
        nodes.append(node)
        last = node.output[0]
    nodes += [helper.make_node("Flatten", [last], ["f"], name="flat"),
              helper.make_node("MatMul", ["f", "wd"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                            list(input_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def save_model(folder: Path, model: onnx.ModelProto | None = None, name: str = "tiny.onnx",
               calib: bool = True) -> Path:
    """Write the model and (with ``calib``) ``<stem>.calib.npz`` beside it (the default --calib)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = model or tiny_model()
    path = folder / name
    onnx.save(model, path)
    if calib:
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:]
        x = np.random.default_rng(1).normal(size=(8, *dims)).astype(np.float32)
        np.savez(path.with_name(path.stem + ".calib.npz"), x=x)
    return path


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, *fragments) -> str:
    """The single `error:` line of a failed command (exit 2, no traceback); checks ``fragments`` in it."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    text = result.output.strip()
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: "), lines[0]
    for frag in fragments:
        assert frag in lines[0], lines[0]
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial outputs snncc may have left under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if ".tmp-" in p.name or ".old-" in p.name or p.name.startswith("snncc-"))
