"""Integer runtime: the neuron update against a scalar transcription of the contract."""

import math

import numpy as np
import pytest
from quant_graphs import sample_x, tiny_snn

from snncc.errors import SnnccError
from snncc.ir import Graph, Node, Value
from snncc.pass_context import PassContext
from snncc.passes import quantize
from snncc.sim.int_runtime import (
    level_agreement,
    pooled_agreement,
    quantize_input,
    run_int,
    run_int_levels,
)


def neuron_graph(theta, levels, signed, B, k, T):
    c = len(theta)
    nodes = [
        Node("fc", "dense", ["x"], "i", {"bits": 8},
             {"weight": np.eye(c, dtype=np.int8), "bias": np.zeros(c, np.int32)}),
        Node("n", "neuron", ["i"], "z", {"levels": levels, "signed": signed, "barrier": False,
                                         "membrane_bits": B, "membrane_shift": k},
             {"theta": np.asarray(theta, np.int32), "v_init": np.asarray(theta, np.int32) // 2}),
        Node("out", "dense", ["z"], "y", {"bits": 8},
             {"weight": np.eye(c, dtype=np.int8), "bias": np.zeros(c, np.int32)}),
    ]
    values = {"x": Value("x", (c,), "int8"), "i": Value("i", (c,), "int32"), "z": Value("z", (c,), "int32"),
              "y": Value("y", (c,), "int32")}
    g = Graph("n", ["x"], ["y"], nodes, values, stage="int", meta={"timesteps": T, "input_scale": 0.1})
    g.verify()
    return g


def scalar_neuron(I, theta, levels, signed, B, k, T):
    """The contract, one neuron at a time, written out with math.floor."""
    v = theta // 2
    zs = []
    for _ in range(T):
        v = max(-(2 ** (B - 1)), min(2 ** (B - 1) - 1, v + I))
        q = math.floor(v / theta)
        z = max(-levels, min(levels, q)) if signed else (0 if v < 0 else min(levels, q))
        v = v - z * theta
        v = math.floor(v / 2 ** k) * 2 ** k
        zs.append(z)
    return zs


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("B,k", [(16, 0), (8, 0), (8, 2), (6, 1)])
def test_neuron_matches_scalar_contract(signed, B, k):
    rng = np.random.default_rng(B * 10 + k + signed)
    theta = [1, 3, 5, 7, 13, 20]
    levels, T = 3, 6
    g = neuron_graph(theta, levels, signed, B, k, T)
    x = rng.integers(-128, 128, (50, len(theta))).astype(np.int8)
    out, stats = run_int_levels(g, x, capture=["z"])
    for s in range(len(x)):
        for c, th in enumerate(theta):
            zs = scalar_neuron(int(x[s, c]), th, levels, signed, B, k, T)
            assert out["z"][s, c] == zs[-1]  # captures hold the last timestep
            assert out["y"][s, c] == sum(zs)  # outputs accumulate over T
            assert stats["n"]["levels"][s, c] == sum(abs(z) for z in zs)
            assert stats["n"]["events"][s, c] == sum(z != 0 for z in zs)
    assert out["y"].dtype == np.int32 and out["z"].dtype == np.int32


def test_signed_floor_not_truncation():
    g = neuron_graph([5], levels=3, signed=True, B=16, k=0, T=1)
    # v = 2 + (-9) = -7: floor(-7/5) = -2 (C truncation would give -1)
    assert run_int(g, np.array([[-9]], np.int8), capture=["z"])["z"][0, 0] == -2


def test_timesteps_override_and_static_input():
    g = neuron_graph([7], levels=1, signed=False, B=16, k=0, T=1)
    x = np.array([[3]], np.int8)  # v: 3+3=6 -> 0; 9 -> 1, v=2; 5 -> 0; 8 -> 1 ...
    assert [int(run_int(g, x, timesteps=t)["y"][0, 0]) for t in (1, 2, 3, 4)] == [0, 1, 1, 2]


def test_quantize_input_half_even_and_clamp():
    gi = quantize.run(tiny_snn(), PassContext())
    s = gi.meta["input_scale"]
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 1000.0, -1000.0]) * s
    xq = quantize_input(gi, x.reshape(1, -1))
    assert xq.dtype == np.int8
    assert xq.tolist() == [[0, 2, 2, 0, -2, 127, -128]]


def test_bad_inputs():
    gi = quantize.run(tiny_snn(), PassContext())
    with pytest.raises(SnnccError, match="int8"):
        run_int(gi, np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(SnnccError, match="shape"):
        run_int(gi, np.zeros((1, 2, 8, 8), np.int8))
    with pytest.raises(SnnccError, match="stage 'int'"):
        run_int(tiny_snn(), np.zeros((1, 1, 8, 8), np.int8))


def test_deterministic_and_batch_independent():
    gi = quantize.run(tiny_snn(timesteps=3), PassContext())
    xq = quantize_input(gi, sample_x(40, seed=9))
    a = run_int(gi, xq)["out"]
    b = np.concatenate([run_int(gi, xq[i:i + 7])["out"] for i in range(0, 40, 7)])
    np.testing.assert_array_equal(a, b)


def test_level_agreement_report():
    g = tiny_snn()
    gi = quantize.run(g, PassContext())
    res = level_agreement(gi, g, sample_x(100, seed=4))
    assert set(res) == {"n1", "n2"}
    assert res["n1"]["isolated"] == res["n1"]["end_to_end"]  # first layer: same input
    assert pooled_agreement(res) >= 0.99


def test_float32_kernel_only_where_exact():
    """Conv/dense run in float32 only while max|x| * sum|W[o]| < 2**24, and stay exact at that edge."""
    from snncc.sim import kernels as K
    from snncc.sim.int_runtime import FLOAT32_EXACT, exact_float

    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (8, 64, 3, 3))
    fan = int(np.abs(w.reshape(8, -1)).sum(axis=1).max())
    edge = (FLOAT32_EXACT - 1) // fan  # the largest |x| still below the bound
    for xmax, want in ((edge, np.float32), (edge + 1, np.float64)):
        x = rng.integers(-xmax, xmax + 1, (2, 64, 5, 5))
        x[0] = np.sign(w[int(np.abs(w.reshape(8, -1)).sum(axis=1).argmax()), :, 1, 1])[:, None, None] * xmax
        assert exact_float(x, w) is want
        exact = K.conv2d(x.astype(object), w.astype(object), None, (1, 1), (1, 1, 1, 1), (1, 1), 1)
        got = K.conv2d(x.astype(want), w.astype(want), None, (1, 1), (1, 1, 1, 1), (1, 1), 1)
        assert (np.rint(got).astype(np.int64) == exact.astype(np.int64)).all()
    # a 24-bit product in float32 would round: float64 is kept
    assert exact_float(np.array([[1 << 12]]), np.array([[1 << 12]])) is np.float64
    assert exact_float(np.array([[1 << 11]]), np.array([[1 << 12]])) is np.float32
    # anything but whole numbers: float64
    assert exact_float(np.array([[0.5]]), np.array([[1]])) is np.float64
    assert exact_float(np.array([[1.0]]), np.array([[np.nan]])) is np.float64
