"""Hand-built float-SNN graphs (stage "snn") for the quantize tests.

``tiny_snn`` is conv -> neuron -> {conv, identity shortcut (affine)} -> add -> neuron
-> sumpool -> flatten -> dense, with the thresholds folded into the downstream
weights exactly as docs/ir.md ("Float SNN") specifies, and thresholds set from the
float currents on seeded sample inputs, so the neurons actually use their levels.
"""

from __future__ import annotations

import numpy as np

from snncc.ir import Graph, Node, Value
from snncc.sim import kernels as K
from snncc.sim.neuron import quantize_levels

CONV = {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": 1}


def sample_x(n: int = 64, seed: int = 1, shape=(1, 8, 8)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, *shape))


def _theta(current: np.ndarray, levels: int) -> np.ndarray:
    """Per-channel threshold so that the 99th-percentile current reaches the top level."""
    per_ch = np.moveaxis(current, 1, 0).reshape(current.shape[1], -1)
    return np.maximum(np.percentile(np.abs(per_ch), 99, axis=1) / levels, 1e-3)


def _levels(current, theta, levels, signed=False):
    th = theta.reshape((1, -1) + (1,) * (current.ndim - 2))
    return quantize_levels(current, th, levels, signed)


def tiny_snn(seed: int = 0, levels: int = 4, timesteps: int = 1, channels: int = 4, signed2: bool = False,
             outputs: int = 3, weight_scale: float = 1.0) -> Graph:
    rng = np.random.default_rng(seed)
    c = channels
    w1 = rng.normal(0, 0.5, (c, 1, 3, 3)) * weight_scale
    b1 = rng.normal(0, 0.05, c)
    w2 = rng.normal(0, 0.3, (c, c, 3, 3)) * weight_scale
    b2 = rng.normal(0, 0.05, c)
    w3 = rng.normal(0, 0.3, (outputs, c * 16))
    b3 = rng.normal(0, 0.05, outputs)
    x = sample_x(seed=seed + 1)
    # Thresholds from the float currents of an activation-quantized forward pass.
    i1 = K.conv2d(x, w1, b1, **_conv_args())
    th1 = _theta(i1, levels)
    z1 = _levels(i1, th1, levels)
    w2f = w2 * th1.reshape(1, -1, 1, 1)  # theta of the input channel folded into the weights
    i2 = K.conv2d(z1, w2f, b2, **_conv_args()) + z1 * th1.reshape(1, -1, 1, 1)
    th2 = _theta(i2, levels)
    w3f = w3 * np.repeat(th2, 16)[None, :] / 4.0  # theta and the sumpool's 1/4
    nodes = [
        Node("conv1", "conv", ["x"], "c1", dict(CONV), {"weight": w1, "bias": b1}, "Conv:/conv1/Conv"),
        Node("n1", "neuron", ["c1"], "z1", {"levels": levels, "signed": False, "barrier": False},
             {"theta": th1}),
        Node("conv2", "conv", ["z1"], "c2", dict(CONV), {"weight": w2f, "bias": b2},
             "Conv:/layer1/layer1.0/conv2/Conv"),
        Node("short", "affine", ["z1"], "s1", {}, {"scale": th1.copy(), "shift": np.zeros(c)}),
        Node("join", "add", ["c2", "s1"], "j", {}, {}, "Add:/layer1/layer1.0/Add"),
        Node("n2", "neuron", ["j"], "z2", {"levels": levels, "signed": signed2, "barrier": True},
             {"theta": th2}),
        Node("pool", "sumpool", ["z2"], "p", {"kernel": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0)}, {}),
        Node("flat", "flatten", ["p"], "f", {}, {}),
        Node("fc", "dense", ["f"], "out", {}, {"weight": w3f, "bias": b3}, "Gemm:/fc/Gemm"),
    ]
    shapes = {"x": (1, 8, 8), "c1": (c, 8, 8), "z1": (c, 8, 8), "c2": (c, 8, 8), "s1": (c, 8, 8),
              "j": (c, 8, 8), "z2": (c, 8, 8), "p": (c, 4, 4), "f": (c * 16,), "out": (outputs,)}
    g = Graph("tiny", ["x"], ["out"], nodes, {k: Value(k, v, "float64") for k, v in shapes.items()},
              stage="snn", meta={"timesteps": timesteps},
              stats={"x": {"absmax": np.array([np.abs(x).max()]), "max": np.array([x.max()]),
                           "min": np.array([x.min()])}})
    g.verify()
    return g


def _conv_args():
    return {"strides": CONV["strides"], "pads": CONV["pads"], "dilations": CONV["dilations"], "group": 1}


def dense_snn(fan_in: int, outputs: int = 4, seed: int = 0, timesteps: int = 1, weight=1.0) -> Graph:
    """input (fan_in,) -> dense -> output: the smallest graph, for overflow tests."""
    rng = np.random.default_rng(seed)
    w = np.full((outputs, fan_in), float(weight)) * rng.choice([-1.0, 1.0], (outputs, fan_in))
    nodes = [Node("fc", "dense", ["x"], "out", {}, {"weight": w, "bias": np.zeros(outputs)}, "Gemm:/fc/Gemm")]
    g = Graph("dense", ["x"], ["out"], nodes, {"x": Value("x", (fan_in,)), "out": Value("out", (outputs,))},
              stage="snn", meta={"timesteps": timesteps}, stats={"x": {"absmax": np.array([1.0])}})
    g.verify()
    return g


def wide_snn(fan_in: int, timesteps: int = 1, membrane_bits_hint: int = 32) -> Graph:
    """input (fan_in,) -> dense -> neuron -> dense -> output: a huge-fan-in neuron for membrane overflow."""
    rng = np.random.default_rng(0)
    w1 = rng.choice([-1.0, 1.0], (2, fan_in))
    nodes = [
        Node("fc1", "dense", ["x"], "c1", {}, {"weight": w1, "bias": np.zeros(2)}, "Gemm:/fc1/Gemm"),
        Node("n1", "neuron", ["c1"], "z1", {"levels": 1, "signed": False, "barrier": False},
             {"theta": np.full(2, 0.5)}),
        Node("fc2", "dense", ["z1"], "out", {}, {"weight": np.ones((2, 2)), "bias": np.zeros(2)}, "Gemm:/fc2/Gemm"),
    ]
    values = {"x": Value("x", (fan_in,)), "c1": Value("c1", (2,)), "z1": Value("z1", (2,)), "out": Value("out", (2,))}
    g = Graph("wide", ["x"], ["out"], nodes, values, stage="snn", meta={"timesteps": timesteps},
              stats={"x": {"absmax": np.array([1.0])}})
    g.verify()
    return g


def concat_snn(seed: int = 0, levels: int = 4) -> Graph:
    """Currents through data movement: two convs -> concat -> maxpool -> neuron -> flatten -> dense."""
    rng = np.random.default_rng(seed)
    wa, wb = rng.normal(0, 0.5, (2, 1, 3, 3)), rng.normal(0, 2.0, (3, 1, 3, 3))  # different weight scales
    ba, bb = rng.normal(0, 0.05, 2), rng.normal(0, 0.05, 3)
    x = sample_x(seed=seed + 1)
    cur = np.concatenate([K.conv2d(x, wa, ba, **_conv_args()), K.conv2d(x, wb, bb, **_conv_args())], axis=1)
    cur = K.maxpool(cur, (2, 2), (2, 2), (0, 0, 0, 0))
    th = _theta(cur, levels)
    w3 = rng.normal(0, 0.3, (3, 5 * 16)) * np.repeat(th, 16)[None, :]
    nodes = [
        Node("ca", "conv", ["x"], "a", dict(CONV), {"weight": wa, "bias": ba}),
        Node("cb", "conv", ["x"], "b", dict(CONV), {"weight": wb, "bias": bb}),
        Node("cat", "concat", ["a", "b"], "c", {"axis": 0}, {}),
        Node("mp", "maxpool", ["c"], "m", {"kernel": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0),
                                          "dilations": (1, 1)}, {}),
        Node("n", "neuron", ["m"], "z", {"levels": levels, "signed": False, "barrier": False}, {"theta": th}),
        Node("fl", "flatten", ["z"], "f", {}, {}),
        Node("fc", "dense", ["f"], "out", {}, {"weight": w3, "bias": np.zeros(3)}),
    ]
    shapes = {"x": (1, 8, 8), "a": (2, 8, 8), "b": (3, 8, 8), "c": (5, 8, 8), "m": (5, 4, 4), "z": (5, 4, 4),
              "f": (80,), "out": (3,)}
    g = Graph("cat", ["x"], ["out"], nodes, {k: Value(k, v, "float64") for k, v in shapes.items()},
              stage="snn", meta={"timesteps": 1}, stats={"x": {"absmax": np.array([np.abs(x).max()])}})
    g.verify()
    return g


def preact_snn(seed: int = 0, levels: int = 4, timesteps: int = 1, channels: int = 4) -> Graph:
    """A pre-activation block: the stream is a current, and BN (an affine) reads it.

    conv0 -> stream s0 -> bn1 (affine) -> n1 -> conv1 -> n2 -> conv2 -> add(c2, s0) = s1
    -> bn2 (affine) -> n3 -> sumpool -> flatten -> dense.  bn2 has a negative scale in
    channel 1 and a zero scale in channel 2 (a constant current).  conv0 reads the
    input and conv2 reads levels, so their weight steps differ a lot (as in a real stem).
    """
    rng = np.random.default_rng(seed)
    c = channels
    x = sample_x(seed=seed + 1)
    w0, b0 = rng.normal(0, 0.5, (c, 1, 3, 3)), rng.normal(0, 0.05, c)
    a1, sh1 = rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c)
    w1, w2 = rng.normal(0, 0.3, (c, c, 3, 3)), rng.normal(0, 0.3, (c, c, 3, 3))
    a2, sh2 = rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c)
    a2[1], a2[2], sh2[2] = -a2[1], 0.0, 0.3
    w3 = rng.normal(0, 0.3, (3, c * 16))
    ch = (1, -1, 1, 1)
    s0 = K.conv2d(x, w0, b0, **_conv_args())
    y1 = s0 * a1.reshape(ch) + sh1.reshape(ch)
    th1 = _theta(y1, levels)
    w1f = w1 * th1.reshape(1, -1, 1, 1)
    c1 = K.conv2d(_levels(y1, th1, levels), w1f, None, **_conv_args())
    th2 = _theta(c1, levels)
    w2f = w2 * th2.reshape(1, -1, 1, 1)
    s1 = K.conv2d(_levels(c1, th2, levels), w2f, None, **_conv_args()) + s0
    th3 = _theta(s1 * a2.reshape(ch) + sh2.reshape(ch), levels)
    w3f = w3 * np.repeat(th3, 16)[None, :] / 4.0
    neuron = {"levels": levels, "signed": False, "barrier": False}
    nodes = [
        Node("conv0", "conv", ["x"], "s0", dict(CONV), {"weight": w0, "bias": b0}, "Conv:/stem/Conv"),
        Node("bn1", "affine", ["s0"], "y1", {}, {"scale": a1, "shift": sh1}, "BatchNormalization:/bn1"),
        Node("n1", "neuron", ["y1"], "z1", dict(neuron), {"theta": th1}),
        Node("conv1", "conv", ["z1"], "c1", dict(CONV), {"weight": w1f, "bias": np.zeros(c)}),
        Node("n2", "neuron", ["c1"], "z2", dict(neuron), {"theta": th2}),
        Node("conv2", "conv", ["z2"], "c2", dict(CONV), {"weight": w2f, "bias": np.zeros(c)}),
        Node("join", "add", ["c2", "s0"], "s1", {}, {}),
        Node("bn2", "affine", ["s1"], "y3", {}, {"scale": a2, "shift": sh2}, "BatchNormalization:/bn2"),
        Node("n3", "neuron", ["y3"], "z3", dict(neuron), {"theta": th3}),
        Node("pool", "sumpool", ["z3"], "p", {"kernel": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0)}, {}),
        Node("flat", "flatten", ["p"], "f", {}, {}),
        Node("fc", "dense", ["f"], "out", {}, {"weight": w3f, "bias": np.zeros(3)}),
    ]
    shapes = {"x": (1, 8, 8), "p": (c, 4, 4), "f": (c * 16,), "out": (3,)}
    shapes.update({v: (c, 8, 8) for v in ("s0", "y1", "z1", "c1", "z2", "c2", "s1", "y3", "z3")})
    g = Graph("preact", ["x"], ["out"], nodes, {k: Value(k, v, "float64") for k, v in shapes.items()},
              stage="snn", meta={"timesteps": timesteps},
              stats={"x": {"absmax": np.array([np.abs(x).max()]), "max": np.array([x.max()]),
                           "min": np.array([x.min()])}})
    g.verify()
    return g
