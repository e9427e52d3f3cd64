"""Float SNN simulator: neuron dynamics, convergence in T, activity counters, traces, SOPs."""

from __future__ import annotations

import numpy as np
import pytest

import snncc
from snncc.calib_data import load_calib
from snncc.errors import SnnccError
from snncc.ir import Node
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.pass_manager import run_pipeline
from snncc.sim import kernels as K
from snncc.sim.float_runtime import eval_node
from snncc.sim.snn_sim import fanout_map, neuron_step, simulate


@pytest.fixture(scope="module")
def digits_snn(digits):
    """(calibrated float graph, {N: float SNN}) for the digits CNN, plain mse thresholds."""
    g = snncc.load_onnx(digits.onnx_path)
    out = {}
    for n in (1, 4):
        ctx = PassContext(CompileOptions(levels=n, threshold_search="none", bias_correction=False),
                          load_calib(digits.x_calib, (1, 8, 8)))
        cal = run_pipeline(g, ["canonicalize", "calibrate"], ctx)
        out[n] = run_pipeline(cal, ["convert"], ctx)
    return cal, out


def _clipped_ann(cal, snn, x):
    """The float ANN with every ReLU clipped at N*theta (no rounding): the T -> inf limit."""
    top = {n.attrs["ann_value"]: n.params["theta"] * n.attrs["levels"] for n in snn.nodes if n.op == "neuron"}
    env = {cal.inputs[0]: np.asarray(x, np.float64)}
    for node in cal.nodes:
        out = eval_node(node, [env[v] for v in node.inputs])
        if node.output in top:
            out = np.clip(out, 0, top[node.output].reshape((1, -1) + (1,) * (out.ndim - 2)))
        env[node.output] = out
    return env


def test_neuron_step_subtractive_reset_and_floor():
    theta = np.array([1.0])
    v = np.array([0.5])
    zs = []
    for current in (0.3, 0.3, 2.6, -0.4, 9.0):
        z, v = neuron_step(v, np.array([current]), theta, 2, False)
        zs.append(float(z[0]))
    assert zs == [0.0, 1.0, 2.0, 0.0, 2.0]  # 0.8 | 1.1->1 | 0.1+2.6=2.7->2 | 0.7-0.4 | 0.3+9 capped at N
    assert v[0] == pytest.approx(0.3 + 9.0 - 2.0)
    z, v = neuron_step(np.array([0.5]), np.array([-1.7]), theta, 2, True)  # signed: floor(-1.2) = -2
    assert z[0] == -2 and v[0] == pytest.approx(0.8)
    z, _ = neuron_step(np.array([0.5]), np.array([-9.0]), theta, 2, True)
    assert z[0] == -2


def test_first_layer_rate_is_within_half_a_step_of_the_clipped_relu(digits_snn, digits):
    cal, snns = digits_snn
    x = digits.x_test[:64]
    for n, snn in snns.items():
        first = next(nd for nd in snn.nodes if nd.op == "neuron")
        theta = first.params["theta"].reshape(1, -1, 1, 1)
        ref = _clipped_ann(cal, snn, x)[first.attrs["ann_value"]]
        for T in (1, 2, 3, 5, 8):
            rate = simulate(snn, x, timesteps=T, capture=[first.name]).captured[first.name] / T
            assert np.all(np.abs(rate * theta - ref) <= theta / (2 * T) + 1e-9), (n, T)


def test_rate_converges_to_the_clipped_relu_as_t_grows(digits_snn, digits):
    cal, snns = digits_snn
    x = digits.x_test[:64]
    for n, snn in snns.items():
        neurons = [nd for nd in snn.nodes if nd.op == "neuron"]
        ref = _clipped_ann(cal, snn, x)
        errs, logit_errs = [], []
        for T in (1, 2, 4, 8, 16):
            sim = simulate(snn, x, timesteps=T, capture=[nd.name for nd in neurons], activity=False)
            per_layer = []
            for nd in neurons:
                a = ref[nd.attrs["ann_value"]]
                theta = nd.params["theta"].reshape((1, -1) + (1,) * (a.ndim - 2))
                per_layer.append(np.abs(sim.captured[nd.name] / T * theta - a).mean() / theta.mean())
            errs.append(np.mean(per_layer))
            logit_errs.append(np.abs(sim.logits - ref[cal.outputs[0]]).mean())
        assert all(b < a for a, b in zip(errs, errs[1:])), (n, errs)
        assert all(b < a for a, b in zip(logit_errs, logit_errs[1:])), (n, logit_errs)
        print(f"MEASURE snn_sim N={n} err ratio T16/T1 {errs[-1] / errs[0]:.4f}")
        assert errs[-1] < 0.4 * errs[0]


def test_activity_counters_are_consistent_and_batch_independent(digits_snn, digits):
    _, snns = digits_snn
    snn = snns[4]
    x = digits.x_test[:50]
    a = simulate(snn, x, timesteps=3, batch_size=16)
    b = simulate(snn, x, timesteps=3, batch_size=50)
    np.testing.assert_array_equal(a.outputs[snn.outputs[0]], b.outputs[snn.outputs[0]])
    assert a.spike_counts == pytest.approx(b.spike_counts) and a.sops == pytest.approx(b.sops)
    for nd in snn.nodes:
        if nd.op != "neuron":
            continue
        hist = a.level_hist[nd.name]
        assert len(hist) == 5 and hist.sum() == a.elements[nd.name] * 3 * 50
        assert a.spike_counts[nd.name] == pytest.approx(hist[1:].sum() / 50)
        assert a.level_sums[nd.name] == pytest.approx((hist * np.arange(5)).sum() / 50)
    np.testing.assert_allclose(a.logits, a.outputs[snn.outputs[0]] / 3)
    first = snn.nodes[0]
    assert first.name in a.static_nodes and a.sops[first.name] == 0  # real-valued input: MACs, once
    for nd in snn.nodes:
        if nd.op in ("conv", "dense") and nd.name not in a.static_nodes:
            assert 0 < a.sops_multilevel[nd.name] <= a.sops[nd.name]


def test_membrane_traces(digits_snn, digits):
    _, snns = digits_snn
    snn = snns[4]
    first = next(nd for nd in snn.nodes if nd.op == "neuron")
    x = digits.x_test[:5]
    T = 4
    sim = simulate(snn, x, timesteps=T, trace=[first.name], capture=[first.name, snn.nodes[0].name])
    tr = sim.traces[first.name]
    assert tr.shape == (5, T, *snn.values[first.output].shape)
    theta = first.params["theta"].reshape(1, -1, 1, 1)
    current = sim.captured[snn.nodes[0].name] / T  # constant input current
    np.testing.assert_allclose(tr[:, -1], theta / 2 + T * current - theta * sim.captured[first.name], atol=1e-9)


def test_fanout_map_counts_every_weight_exactly():
    rng = np.random.default_rng(0)
    for strides, pads, dil, group in [((1, 1), (1, 1, 1, 1), (1, 1), 1), ((2, 2), (0, 1, 2, 0), (1, 1), 2),
                                      ((1, 2), (2, 2, 2, 2), (2, 2), 4)]:
        w = rng.normal(size=(8, 4 // group, 3, 3))
        node = Node("c", "conv", ["x"], "y", {"strides": strides, "pads": pads, "dilations": dil, "group": group},
                    {"weight": w, "bias": np.zeros(8)})
        mask = (rng.random((3, 4, 9, 7)) < 0.3).astype(np.float64)
        exact = K.conv2d(mask, np.ones_like(w), None, strides, pads, dil, group).sum()
        assert (mask.sum(0) * fanout_map(node, (4, 9, 7))).sum() == exact


def test_simulator_refusals(digits_snn, digits):
    cal, snns = digits_snn
    with pytest.raises(SnnccError, match="stage 'snn'"):
        simulate(cal, digits.x_test[:2])
    with pytest.raises(SnnccError, match=r"expects \[N, 1, 8, 8\]"):
        simulate(snns[4], np.zeros((2, 1, 4, 4)))
    with pytest.raises(SnnccError, match="no node named"):
        simulate(snns[4], digits.x_test[:2], trace=["nope"])
