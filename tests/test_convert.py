"""convert: the T=1 oracle (float SNN == activation-quantized ANN, exactly), threshold
methods, folding through every data-movement op, SEW joins, signed neurons, refusals."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import zoo

import snncc
from snncc.calib_data import load_calib
from snncc.errors import SnnccError
from snncc.ir import Graph, Node, Value, infer_shape
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.pass_manager import run_pipeline
from snncc.passes import convert
from snncc.passes.convert_thresholds import quantize_levels, thresholds
from snncc.sim.snn_sim import quantized_ann_levels, simulate


def compile_snn(graph, x, **kw):
    """(calibrated float graph, float SNN) for calibration data x."""
    ctx = PassContext(CompileOptions(**kw).validate(), load_calib(x, graph.values[graph.inputs[0]].shape))
    cal = run_pipeline(graph, ["canonicalize", "calibrate"], ctx)
    return cal, run_pipeline(cal, ["convert"], ctx)


def assert_oracle(cal, snn, x):
    """Every neuron's levels at T=1 equal the activation-quantized ANN's, and so do the outputs."""
    neurons = [n.name for n in snn.nodes if n.op == "neuron"]
    assert neurons
    sim = simulate(snn, x, timesteps=1, capture=neurons)
    ref = quantized_ann_levels(cal, snn, x)
    for name in neurons:
        got = sim.captured[name]
        assert np.array_equal(got, ref[name]), f"{name}: {int((got != ref[name]).sum())} levels differ"
        assert np.array_equal(got, np.round(got))
    np.testing.assert_allclose(sim.logits, ref[snn.outputs[0]], rtol=1e-9, atol=1e-9)
    return sim


# --- hand-built graphs ----------------------------------------------------------------

class G:
    """A tiny float-IR builder for structure tests."""

    def __init__(self, shape, seed=0):
        self.rng = np.random.default_rng(seed)
        self.g = Graph("t", ["x"], [], [], {"x": Value("x", tuple(shape))})

    def add(self, op, inputs, attrs=None, params=None, name=None):
        name = name or f"n{len(self.g.nodes)}_{op}"
        node = Node(name, op, list(inputs), name + "_out", attrs or {}, params or {})
        self.g.nodes.append(node)
        self.g.values[node.output] = Value(node.output, tuple(infer_shape(self.g, node)))
        return node.output

    def conv(self, x, cout, k=3, pad=1, stride=1, group=1):
        cin = self.g.values[x].shape[0]
        w = self.rng.normal(0, (2.0 / (cin // group * k * k)) ** 0.5, (cout, cin // group, k, k)).astype(np.float32)
        b = self.rng.normal(0, 0.1, cout).astype(np.float32)
        return self.add("conv", [x], {"strides": (stride, stride), "pads": (pad,) * 4, "dilations": (1, 1),
                                      "group": group}, {"weight": w, "bias": b})

    def dense(self, x, out):
        f = self.g.values[x].shape[0]
        w = self.rng.normal(0, (2.0 / f) ** 0.5, (out, f)).astype(np.float32)
        return self.add("dense", [x], {}, {"weight": w, "bias": self.rng.normal(0, 0.1, out).astype(np.float32)})

    def relu(self, x, mx=None):
        return self.add("relu", [x], {"max": mx})

    def done(self, *outs):
        self.g.outputs = list(outs)
        self.g.verify()
        return self.g


def _x(shape, n=48, seed=1):
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


def test_every_data_movement_op_folds_exactly():
    b = G((3, 8, 8))
    a = b.relu(b.conv("x", 8))
    p = b.add("pad", [a], {"pads": (1, 0, 0, 1)})
    m = b.add("maxpool", [p], {"kernel": (2, 2), "strides": (1, 1), "pads": (0, 0, 0, 0)})
    c2 = b.relu(b.conv(m, 8, group=2), mx=2.0)  # grouped conv reading per-channel thetas, Clip(0, 2)
    cat = b.add("concat", [c2, m], {"axis": 0})
    sh = b.add("channel_shuffle", [cat], {"groups": 4})
    s = b.add("avgpool", [sh], {"kernel": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0), "count_include_pad": 1})
    r = b.add("reshape", [s], {"shape": (16, 4, 4)})
    f = b.add("flatten", [r])
    h = b.relu(b.dense(f, 12))
    sm = b.add("softmax", [b.dense(h, 5)], {"axis": 0})
    g = b.done(sm)
    x = _x((3, 8, 8))
    cal, snn = compile_snn(g, x, levels=3, bias_correction=True)
    assert_oracle(cal, snn, x)
    assert {n.op for n in snn.nodes} >= {"neuron", "sumpool", "concat", "channel_shuffle", "pad", "maxpool"}
    assert "avgpool" not in {n.op for n in snn.nodes} and "softmax" not in {n.op for n in snn.nodes}
    assert any("softmax" in note for note in snn.meta["notes"])
    clip = snn.node(g.producer(c2).name)
    assert clip.attrs["clip"] == 2.0 and (clip.params["theta"] <= 2.0 / 3 + 1e-12).all()
    assert snn.stage == "snn" and snn.meta["timesteps"] == 1 and snn.meta["levels"] == 3


def test_sew_spike_plus_spike_join_keeps_a_sum_of_levels_with_equal_thresholds():
    b = G((4, 6, 6))
    a = b.relu(b.conv("x", 8))
    y = b.relu(b.conv(b.relu(b.conv(a, 8)), 8))
    j = b.add("add", [y, a])  # spike + spike, feeds a conv directly
    y2 = b.relu(b.conv(j, 8))
    j2 = b.add("add", [y2, j])
    g = b.done(b.dense(b.add("flatten", [b.add("maxpool", [j2], {"kernel": (2, 2), "strides": (2, 2),
                                                                    "pads": (0, 0, 0, 0)})]), 4))
    x = _x((4, 6, 6))
    cal, snn = compile_snn(g, x, levels=2)
    assert_oracle(cal, snn, x)
    th = {n.attrs["ann_value"]: n.params["theta"] for n in snn.nodes if n.op == "neuron"}
    np.testing.assert_array_equal(th[a], th[y])
    np.testing.assert_array_equal(th[a], th[y2])  # the chain of joins is one population
    adds = [n for n in snn.nodes if n.op == "add"]
    assert len(adds) == 2 and not any(n.op == "affine" for n in snn.nodes)


def test_linear_bottleneck_and_linear_join_get_signed_neurons():
    b = G((4, 6, 6))
    a = b.relu(b.conv("x", 8))
    lin = b.conv(a, 4, k=1, pad=0)  # linear bottleneck: a current read by a conv
    j = b.add("add", [lin, b.conv(b.relu(b.conv(lin, 8, k=1, pad=0)), 4, k=1, pad=0)])  # join, no ReLU
    g = b.done(b.dense(b.add("flatten", [j]), 3))
    x = _x((4, 6, 6))
    cal, snn = compile_snn(g, x, levels=3, bias_correction=True)
    sim = assert_oracle(cal, snn, x)
    signed = [n for n in snn.nodes if n.op == "neuron" and n.attrs["signed"]]
    assert [n.attrs["ann_value"] for n in signed] == [lin, j]  # at the producers, before the flatten
    assert cal.stats[lin]["kind"] == "signed" and cal.stats[j]["kind"] == "signed"
    hist = sim.level_hist[signed[0].name]
    assert len(hist) == 7 and hist[:3].sum() > 0  # negative levels occur


def test_identity_shortcut_becomes_affine_theta():
    b = G((4, 6, 6))
    a = b.relu(b.conv("x", 4))
    out = b.relu(b.add("add", [b.conv(b.relu(b.conv(a, 4)), 4), a]))  # classic post-add ReLU
    g = b.done(b.dense(b.add("flatten", [out]), 3))
    x = _x((4, 6, 6))
    cal, snn = compile_snn(g, x, levels=4)
    assert_oracle(cal, snn, x)
    aff = [n for n in snn.nodes if n.op == "affine"]
    assert len(aff) == 1 and aff[0].inputs == [a]
    np.testing.assert_array_equal(aff[0].params["scale"], snn.node(g.producer(a).name).params["theta"])
    np.testing.assert_array_equal(aff[0].params["shift"], 0)


ORACLE_ZOO = ["lenet", "vgg_small", "resnet8", "resnet20", "mobilenetv2_block", "concat_net", "ops_net", "sew_resnet",
              "preact_resnet"]


@pytest.mark.parametrize("name", ORACLE_ZOO)
def test_oracle_on_the_zoo(zoo_onnx, name):
    g = snncc.load_onnx(zoo_onnx(name))
    x = _x(zoo_onnx.input_shape(name), n=24)
    cal, snn = compile_snn(g, x, levels=3, threshold_search="none", bias_correction=True)
    assert_oracle(cal, snn, x)


def test_oracle_with_threshold_search_and_other_methods(zoo_onnx):
    g = snncc.load_onnx(zoo_onnx("mobilenetv2_block"))
    x = _x(zoo_onnx.input_shape("mobilenetv2_block"), n=24)
    for kw in ({"threshold_search": "output"}, {"threshold": "max", "threshold_granularity": "layer"},
               {"threshold": "percentile:99.9", "levels": 1}):
        cal, snn = compile_snn(g, x, **kw)
        assert_oracle(cal, snn, x)
        for n in snn.nodes:
            if n.op == "neuron" and n.attrs.get("clip") is not None:  # ReLU6
                assert (n.params["theta"] * n.attrs["levels"] <= 6.0 + 1e-9).all()


# --- thresholds ---------------------------------------------------------------------

def _stats(sample):
    sample = np.asarray(sample, np.float32)
    a = np.abs(sample)
    return {"sample": sample, "tail": -np.sort(-a, axis=1)[:, :64], "count": sample.shape[1],
            "absmax": a.max(1).astype(np.float64), "layer_absmax": float(a.max())}


def test_threshold_methods():
    rng = np.random.default_rng(0)
    x = np.maximum(rng.normal(0, 1, (3, 4000)) * np.array([[1.0], [2.0], [0.5]]), 0)
    x[2] = 0  # a dead channel
    st = _stats(x)
    o = CompileOptions(threshold="max").validate()
    th = thresholds(st, 4, False, o)
    np.testing.assert_allclose(th[:2], x[:2].max(1) / 4, rtol=1e-6)
    assert th[2] == th[:2].max()  # dead channel: the layer's largest
    th_p = thresholds(st, 4, False, CompileOptions(threshold="percentile:99").validate())
    np.testing.assert_allclose(th_p[:2], np.percentile(x[:2], 99, axis=1) / 4, rtol=1e-3)
    th_l = thresholds(st, 4, False, CompileOptions(threshold="max", threshold_granularity="layer").validate())
    np.testing.assert_allclose(th_l, np.full(3, x.max() / 4), rtol=1e-6)
    assert np.all(thresholds(st, 4, False, o, clip_max=0.4) <= 0.1)
    # mse: the clip value is (close to) the brute-force optimum of the squared error
    th_m = thresholds(st, 2, False, CompileOptions(threshold="mse").validate())
    for c in range(2):
        grid = np.linspace(0.01, x[c].max(), 2000) / 2
        errs = [np.mean((x[c] - quantize_levels(x[c], t, 2, False) * t) ** 2) for t in grid]
        best = min(errs)
        mine = np.mean((x[c] - quantize_levels(x[c], th_m[c], 2, False) * th_m[c]) ** 2)
        assert mine <= best * 1.01
        assert th_m[c] < x[c].max() / 2  # mse clips below the max


def test_quantize_levels_rounds_half_up_and_clamps():
    t = 0.5
    x = np.array([-1.0, -0.25, -0.2, 0.0, 0.24, 0.25, 0.74, 0.75, 5.0])
    np.testing.assert_array_equal(quantize_levels(x, t, 3, False), [0, 0, 0, 0, 0, 1, 1, 2, 3])
    np.testing.assert_array_equal(quantize_levels(x, t, 3, True), [-2, 0, 0, 0, 0, 1, 1, 2, 3])


# --- refusals -------------------------------------------------------------------------

def test_relu_free_network_is_refused():
    b = G((2, 4, 4))
    g = b.done(b.dense(b.add("flatten", [b.conv("x", 3)]), 2))
    with pytest.raises(SnnccError, match="nothing to convert.*no ReLU"):
        compile_snn(g, _x((2, 4, 4)))


def test_uncounted_padding_avgpool_is_refused_naming_the_node(zoo_onnx):
    g = snncc.load_onnx(zoo_onnx("pool_net"))
    with pytest.raises(SnnccError, match=r"pool4.*\(avgpool\).*count_include_pad=0"):
        compile_snn(g, _x(zoo_onnx.input_shape("pool_net"), n=8), threshold_search="none", bias_correction=False)


def test_unfoldable_ops_are_refused_naming_the_node():
    b = G((2, 4, 4))
    a = b.relu(b.conv("x", 2))
    b.add("softmax", [a], {"axis": 0}, name="mid_softmax")
    g = b.done(b.dense(b.add("flatten", [b.add("softmax", [a], {"axis": 0}, name="sm2")]), 2))
    with pytest.raises(SnnccError, match=r"'sm2' \(softmax\).*final op"):
        compile_snn(g, _x((2, 4, 4)))
    b = G((2, 4, 4))
    a = b.relu(b.conv("x", 2))
    r = b.add("reshape", [a], {"shape": (1, 8, 4)}, name="mix")  # one channel holding two thresholds
    g = b.done(b.dense(b.add("flatten", [b.relu(b.conv(r, 2))]), 2))
    with pytest.raises(SnnccError, match=r"\(conv\).*per-position"):
        compile_snn(g, _x((2, 4, 4)), threshold_search="none", bias_correction=False)


def test_convert_needs_statistics_and_a_float_graph():
    b = G((2, 4, 4))
    g = b.done(b.dense(b.add("flatten", [b.relu(b.conv("x", 2))]), 2))
    with pytest.raises(SnnccError, match="run the calibrate pass first"):
        convert.run(g, PassContext())
    _, snn = compile_snn(g, _x((2, 4, 4)))
    with pytest.raises(SnnccError, match="float IR"):
        convert.run(snn, PassContext())


@pytest.mark.parametrize("act", ["leaky_relu", "tanh", "sigmoid"])
def test_negative_slope_activations_are_refused_by_name(tmp_path, act):
    import torch
    from torch import nn

    fn = {"leaky_relu": nn.LeakyReLU(0.1), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid()}[act]
    model = nn.Sequential(nn.Conv2d(1, 4, 3), fn, nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    path = tmp_path / f"{act}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zoo.export(model, (1, 8, 8), path)
    onnx_op = {"leaky_relu": "LeakyRelu", "tanh": "Tanh", "sigmoid": "Sigmoid"}[act]
    with pytest.raises(SnnccError, match=onnx_op) as e:
        snncc.load_onnx(path)
    assert "node" in str(e.value)
    assert torch is not None


def test_current_avgpool_affine_shift_and_input_relu_fold_exactly():
    b = G((3, 8, 8))
    r0 = b.relu("x")  # a ReLU straight on the input: its current is the input itself
    c = b.conv(r0, 6)
    p = b.add("avgpool", [c], {"kernel": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0), "count_include_pad": 1})
    a = b.relu(p)  # avgpool of a current: sumpool + affine(1/4) on the current
    s = b.add("affine", [a], {}, {"scale": np.linspace(0.5, 1.5, 6).astype(np.float32),
                                  "shift": np.linspace(-0.2, 0.3, 6).astype(np.float32)})  # BN after ReLU
    g = b.done(b.dense(b.add("flatten", [b.relu(b.conv(s, 4))]), 3))
    x = _x((3, 8, 8)) - 0.3
    cal, snn = compile_snn(g, x, levels=3, bias_correction=True)
    assert_oracle(cal, snn, x)
    ops = [n.op for n in snn.nodes]
    assert ops.count("affine") == 3 and "avgpool" not in ops  # input current, 1/k, shifted affine
    assert sum(n.attrs["signed"] for n in snn.nodes if n.op == "neuron") == 1  # the shifted affine's current


def test_spike_join_fed_by_a_concat_is_refused_naming_the_add():
    b = G((2, 6, 6))
    r1, r2 = b.relu(b.conv("x", 2)), b.relu(b.conv("x", 2))
    cat = b.add("concat", [r1, r2], {"axis": 0})
    j = b.add("add", [cat, b.relu(b.conv("x", 4))], name="join")
    g = b.done(b.dense(b.add("flatten", [b.conv(j, 2)]), 2))
    with pytest.raises(SnnccError, match=r"'join' \(add\).*straight from neurons.*concat"):
        compile_snn(g, _x((2, 6, 6)))


def test_conversion_is_deterministic():
    b = G((3, 8, 8))
    a = b.relu(b.conv("x", 6))
    g = b.done(b.dense(b.add("flatten", [b.relu(b.conv(a, 4, stride=2))]), 3))
    x = _x((3, 8, 8), n=300)
    _, s1 = compile_snn(g, x, levels=2, calib_reservoir=256)  # more data than the reservoir holds
    _, s2 = compile_snn(g, x, levels=2, calib_reservoir=256)
    assert s1.dump() == s2.dump()
    for n1, n2 in zip(s1.nodes, s2.nodes):
        assert n1.attrs == n2.attrs and sorted(n1.params) == sorted(n2.params)
        for k in n1.params:
            np.testing.assert_array_equal(n1.params[k], n2.params[k])
