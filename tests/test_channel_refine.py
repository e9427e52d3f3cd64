"""passes/channel_refine.py: sequential calibration (per-channel thresholds, weight refit).

The threshold refinement never raises the error it minimizes; the weight refit never
raises its layer's least-squares objective; the T=1 oracle stays exact (the refitted
ANN is recorded on the SNN); and the integer SNN built from a refined conversion is
still bit-exact between the Python runtime and itself on adversarial inputs."""

from __future__ import annotations

import numpy as np
import pytest
from test_convert import _x, assert_oracle, compile_snn

import snncc
from snncc.errors import SnnccError
from snncc.ir import Node
from snncc.options import CompileOptions
from snncc.passes import channel_refine
from snncc.sim.neuron import channel_view, quantize_levels


def _conv(rng, o, c, k=3):
    return Node("c", "conv", ["x"], "y", {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": 1},
                {"weight": rng.normal(0, 0.3, (o, c, k, k)), "bias": rng.normal(0, 0.1, o)})


@pytest.mark.parametrize("centred", [True, False])
def test_refinement_never_raises_the_next_layer_error(centred):
    rng = np.random.default_rng(1)
    a = rng.normal(0.2, 1.0, (12, 5, 6, 6)) * rng.uniform(0.3, 3, (1, 5, 1, 1))  # quantized net's current
    ref = np.maximum(a + rng.normal(0, 0.05, a.shape), 0)  # the ANN's ReLU output, a little off
    theta = np.full(5, 0.4)
    pool = Node("p", "maxpool", ["v"], "pv", {"kernel": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0)}, {})
    conv = _conv(rng, 4, 5)
    conv.inputs = ["pv"]
    chains = [[pool, conv], []]  # a conv behind a max pool, and the levels themselves (a residual add)
    new, before, after = channel_refine.refine_population(a, ref, theta, 4, None, chains, centred)
    assert after <= before * (1 + 1e-12)
    assert after < before  # some channel moved: the grid has room on this data
    # the reported losses are the objective, recomputed from scratch
    for th, want in ((theta, before), (new, after)):
        q = quantize_levels(a, channel_view(th, 4), 4, False) * channel_view(th, 4)
        got = sum(channel_refine._Reader(ch, channel_refine._run_chain(ch, ref),
                                         channel_refine._run_chain(ch, q), centred).loss() for ch in chains)
        assert got == pytest.approx(want, rel=1e-9)


def test_refinement_respects_the_clip_cap():
    rng = np.random.default_rng(2)
    a = rng.normal(1.0, 2.0, (8, 3, 5, 5))
    ref = np.clip(a, 0, 6.0)
    cap = 6.0 / 4
    new, _, _ = channel_refine.refine_population(a, ref, np.full(3, 1.4), 4, cap, [[]], True)
    assert (new <= cap + 1e-12).all()


def test_weight_refit_lowers_its_least_squares_objective():
    rng = np.random.default_rng(3)
    node = _conv(rng, 6, 4)
    f_in = np.maximum(rng.normal(0, 1, (10, 4, 7, 7)), 0)
    q_in = np.clip(np.floor(f_in / 0.5 + 0.5), 0, 4) * 0.5
    w, b = channel_refine.refit_weights(node, q_in, f_in)
    w0, b0 = node.params["weight"], node.params["bias"]
    target = channel_refine._rows(node, f_in) @ w0.reshape(6, -1).T + b0
    rows = channel_refine._rows(node, q_in)

    def objective(wt, bt):
        lam = channel_refine.RIDGE * float(np.mean(np.sum(rows ** 2, axis=0)))
        fit = np.sum((rows @ wt.reshape(6, -1).T + bt - target) ** 2)
        return fit + lam * np.sum((wt - w0) ** 2)

    assert objective(w, b) < objective(w0, b0)
    # the minimum: a small step either way does not improve it
    for _ in range(3):
        dw = rng.normal(0, 1e-3, w.shape)
        assert objective(w + dw, b) >= objective(w, b) - 1e-9


@pytest.mark.parametrize("mode", ["weights", "all"])
def test_oracle_stays_exact_with_refinement(zoo_onnx, mode):
    g = snncc.load_onnx(zoo_onnx("resnet8"))
    x = _x(zoo_onnx.input_shape("resnet8"), n=24)
    cal, snn = compile_snn(g, x, levels=3, threshold_search="none", threshold_refine=mode)
    sim = assert_oracle(cal, snn, x)
    assert sim.logits.shape[0] == len(x)
    assert any("ann_weight" in n.params for n in snn.nodes)  # the oracle really saw refitted weights


def test_refined_integer_snn_is_bit_exact_in_c(zoo_onnx, tmp_path):
    """Backends read only the integer IR: a refined compile is as bit-exact as any other."""
    from c_graphs import sample_inputs, simd_builds
    from test_c_zoo import compile_int

    from snncc.backends.c.emit import emit_c
    from snncc.backends.c.verify_c import build_host, compare_c, flat_outputs
    from snncc.sim.int_runtime import run_int

    shape = zoo_onnx.input_shape("resnet8")
    calib = np.random.default_rng(0).standard_normal((16,) + shape).astype(np.float32)
    graph = compile_int(zoo_onnx("resnet8"), calib, threshold_search="none", threshold_refine="all")
    assert all("ann_weight" not in n.params for n in graph.nodes)  # no float extras in the integer IR
    out = tmp_path / "c"
    out.mkdir()
    emit_c(graph, out)
    x = sample_inputs(shape, n=40)
    expected = flat_outputs(graph, run_int(graph, x))
    opt, _ = simd_builds(sse2=False, portable=False)[0]
    res = compare_c(graph, out, x, exe=build_host(out, opt=opt), expected=expected)
    assert res.ok, f"{opt}: {res.summary()}"


def test_bad_mode_is_refused_naming_the_option():
    with pytest.raises(SnnccError) as exc:
        CompileOptions(threshold_refine="everything").validate()
    assert exc.value.option == "threshold_refine"
