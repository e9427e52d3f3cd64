"""The quantize pass on a pre-activation block: an affine (BN) reads the residual stream,
a current (passes/current_affine.py), on the hand-built graph of quant_graphs.preact_snn."""

import numpy as np
import pytest
from quant_graphs import preact_snn, sample_x

from snncc.calib_data import load_calib
from snncc.errors import SnnccError
from snncc.ir import Node
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.passes import quantize
from snncc.sim.int_runtime import dequantize_output, level_agreement, quantize_input, run_int
from snncc.sim.snn_sim import simulate


def _q(graph, calib=False, **kw):
    data = load_calib(sample_x(128, seed=12).astype(np.float32), (1, 8, 8)) if calib else None
    return quantize.run(graph, PassContext(CompileOptions(**kw), data))


# With calibration data the step search may move the stream step after the ties are
# made: the derived steps must follow it.
CALIB = pytest.mark.parametrize("calib", [False, True], ids=["no_data", "calib"])


@CALIB
def test_bn_on_a_current_is_exact_and_folds_into_the_threshold(calib):
    g = preact_snn()
    gi = _q(g, calib=calib)
    gi.verify()
    for bn, stream_step, neuron in (("bn1", gi.node("conv0").params["scale_real"], "n1"),
                                    ("bn2", gi.node("conv0").params["scale_real"], "n3")):
        a, b = g.node(bn).params["scale"], g.node(bn).params["shift"]
        node = gi.node(bn)
        np.testing.assert_array_equal(node.params["scale"], np.sign(a))  # no multiplier
        S_out = node.params["scale_real"]
        nz = a != 0
        np.testing.assert_allclose(S_out[nz], np.abs(a[nz]) * stream_step[nz], rtol=1e-12)
        np.testing.assert_array_equal(node.params["shift"], np.rint(b / S_out))  # exact: no bias correction
        theta = g.node(neuron).params["theta"]
        np.testing.assert_array_equal(gi.node(neuron).params["theta"], np.maximum(1, np.rint(theta / S_out)))
        assert (gi.node(neuron).attrs["levels"] + 1) * gi.node(neuron).params["theta"].max() <= 2 ** 15 - 1


def test_zero_scale_channel_is_a_constant_current():
    g = preact_snn()
    gi = _q(g)
    assert gi.node("bn2").params["scale"][2] == 0
    x = sample_x(50, seed=3)
    z = run_int(gi, quantize_input(gi, x), capture=["z3"])["z3"][:, 2]
    ref = simulate(g, x, capture=["n3"]).captured["n3"][:, 2]
    np.testing.assert_array_equal(z, ref)
    assert np.unique(z).size == 1  # b / theta = 4 levels, everywhere


@CALIB
def test_coarse_branch_joins_the_stream_through_an_integer_rescale(calib):
    g = preact_snn()
    ctx = PassContext(CompileOptions(), load_calib(sample_x(128, seed=12).astype(np.float32), (1, 8, 8))
                      if calib else None)
    gi = quantize.run(g, ctx)
    assert [n.name for n in g.nodes].count("conv2/rescale") == 0  # the input graph is not modified
    rs = gi.node("conv2/rescale")
    assert rs.op == "affine" and rs.attrs["rescale"] and gi.node("join").inputs[0] == rs.output
    k = rs.params["scale"]
    assert k.min() >= 2  # conv2 reads levels: its step is much coarser than the stem's
    stream = gi.node("conv0").params["scale_real"]
    np.testing.assert_array_equal(rs.params["scale_real"], stream)
    np.testing.assert_allclose(gi.node("conv2").params["scale_real"], k * stream, rtol=1e-12)  # exact tie
    assert np.abs(gi.node("conv2").params["weight"]).max() <= 127
    assert any("integer rescale" in note for note in ctx.notes)


@CALIB
@pytest.mark.parametrize("T", [1, 3])
def test_integer_tracks_float_snn(T, calib):
    g = preact_snn(timesteps=T)
    gi = _q(g, calib=calib)
    x = sample_x(300, seed=7)
    fs = simulate(g, x)
    logits = dequantize_output(gi, run_int(gi, quantize_input(gi, x))["out"])
    assert np.abs(logits - fs.logits).mean() < 0.05 * np.abs(fs.logits).max()
    assert (logits.argmax(1) == fs.logits.argmax(1)).mean() >= 0.95
    if T == 1:
        agree = level_agreement(gi, g, x)
        assert min(v["isolated"] for v in agree.values()) >= 0.99, agree


def test_affine_on_a_current_feeding_an_add_is_refused():
    g = preact_snn()
    g.node("join").inputs = ["c2", "y1"]  # bn1's output, a current, also joins the stream
    with pytest.raises(SnnccError, match=r"'bn1' \(affine\).*feeds add node 'join'.*neurons alone"):
        _q(g)


def test_affine_on_a_current_as_graph_output_is_refused():
    g = preact_snn()
    g.nodes = g.nodes[:8]  # ... join -> bn2, and bn2's output is the graph output
    g.outputs = ["y3"]
    for v in ("z3", "p", "f", "out"):
        del g.values[v]
    with pytest.raises(SnnccError, match=r"'bn2' \(affine\).*feeds a graph output"):
        _q(g)


def test_dense_on_a_current_is_still_refused():
    g = preact_snn()
    g.nodes.insert(7, Node("bad", "conv", ["s1"], "bad_out", dict(g.node("conv1").attrs),
                           {"weight": np.ones((4, 4, 3, 3)), "bias": np.zeros(4)}))
    g.values["bad_out"] = g.values["s1"].__class__("bad_out", (4, 8, 8), "float64")
    with pytest.raises(SnnccError, match=r"'bad' \(conv\).*reads a current"):
        _q(g)
