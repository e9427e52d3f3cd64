"""Deep Conv+ReLU chains written directly in ONNX: the one helper of tests/test_resources.py
and bench/compile_time.py (memory and compile time against depth)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def chain_onnx(path, pairs: int, *, size: int = 6, channels: int = 2, pad: int = 1, weights: str = "normal",
               hidden: int = 0, classes: int = 3, seed: int = 1):
    """Input -> ``pairs`` x (3x3 Conv, ReLU) -> GlobalAveragePool -> Flatten [-> 2 x (Gemm ``hidden``,
    ReLU)] -> Gemm, seeded weights; ``pairs * 2 + 3`` ONNX nodes (+ 4 with ``hidden``).

    ``weights``: "normal" (N(0, 0.4), biases N(0.05, 0.05)); "integer" (small integer weights and
    biases, so that float32 activations of integer inputs are exact and do not depend on how the
    samples are batched); "contraction" (0.5 x identity + N(0, 0.03), bias 0.1: activations stay
    near 0.2 at any depth).  ``hidden`` adds a parameter-heavy dense head (2 * hidden^2 weights)."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "input"
    eye = np.zeros((channels, channels, 3, 3), np.float32)
    eye[np.arange(channels), np.arange(channels), 1, 1] = 0.5
    for i in range(pairs):
        if weights == "integer":
            w = rng.integers(-2, 3, (channels, channels, 3, 3)).astype(np.float32)
            b = rng.integers(-2, 3, channels).astype(np.float32)
        elif weights == "contraction":
            w = (eye + rng.normal(0, 0.03, eye.shape)).astype(np.float32)
            b = rng.normal(0.1, 0.02, channels).astype(np.float32)
        else:
            w = rng.normal(0, 0.4, (channels, channels, 3, 3)).astype(np.float32)
            b = rng.normal(0.05, 0.05, channels).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[pad] * 4),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        x = f"r{i}"
    nodes += [helper.make_node("GlobalAveragePool", [x], ["g"], name="gap"),
              helper.make_node("Flatten", ["g"], ["f"], name="flatten")]
    x, width = "f", channels
    for j in range(2 if hidden else 0):
        inits += [numpy_helper.from_array(rng.normal(0, 1 / np.sqrt(width), (hidden, width)).astype(np.float32),
                                          f"hw{j}"),
                  numpy_helper.from_array(np.full(hidden, 0.05, np.float32), f"hb{j}")]
        nodes += [helper.make_node("Gemm", [x, f"hw{j}", f"hb{j}"], [f"h{j}"], name=f"hidden{j}", transB=1),
                  helper.make_node("Relu", [f"h{j}"], [f"hr{j}"], name=f"hrelu{j}")]
        x, width = f"hr{j}", hidden
    inits += [numpy_helper.from_array(rng.normal(0, 0.5, (classes, width)).astype(np.float32), "fw"),
              numpy_helper.from_array(np.zeros(classes, np.float32), "fb")]
    nodes.append(helper.make_node("Gemm", [x, "fw", "fb"], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                              [1, channels, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path
