"""The quantize pass on hand-built float-SNN graphs (tests/quant_graphs.py)."""

import numpy as np
import pytest
from quant_graphs import dense_snn, sample_x, tiny_snn

from snncc.errors import SnnccError
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.passes import DEFAULT_PIPELINE, PASSES, quantize
from snncc.passes import weight_quant as wq
from snncc.sim.int_runtime import dequantize_output, quantize_input, run_int
from snncc.sim.snn_sim import simulate


def _q(graph, notes=None, **kw):
    return quantize.run(graph, PassContext(CompileOptions(**kw), notes=[] if notes is None else notes))


def test_registered_after_convert():
    assert PASSES["quantize"] is quantize.run
    assert DEFAULT_PIPELINE.index("quantize") > DEFAULT_PIPELINE.index("convert")


def test_integer_ir_contract():
    g = tiny_snn()
    gi = _q(g, weight_bits=6, membrane_bits=12, membrane_shift=2)
    gi.verify()
    assert gi.stage == "int" and g.stage == "snn"  # the input graph is not modified
    assert gi.values["x"].dtype == "int8"
    for n in gi.nodes:
        if n.op in ("conv", "dense"):
            assert n.params["weight"].dtype == np.int8 and n.params["bias"].dtype == np.int32
            assert n.attrs["bits"] == 6 and np.abs(n.params["weight"]).max() <= 31
        if n.op == "affine":
            assert n.params["scale"].dtype == np.int32 and n.params["shift"].dtype == np.int32
        if n.op == "neuron":
            th = n.params["theta"]
            assert th.dtype == np.int32 and th.min() >= 1
            np.testing.assert_array_equal(n.params["v_init"], th // 2)
            assert n.attrs["membrane_bits"] == 12 and n.attrs["membrane_shift"] == 2
            assert (n.attrs["levels"] + 1) * th.max() <= 2 ** 11 - 1
        assert len(n.attrs["range"]) == 2
    assert gi.meta["input_scale"] == pytest.approx(g.stats["x"]["absmax"][0] / 127)
    assert len(gi.meta["output_scale"]) == 3


def test_joint_scale_of_a_residual_join():
    g = tiny_snn()
    gi = _q(g, weight_bits=8)
    conv2, short, n2 = gi.node("conv2"), gi.node("short"), gi.node("n2")
    S = conv2.params["scale_real"]
    np.testing.assert_array_equal(S, short.params["scale_real"])  # one S per population channel
    # S is the largest member step: conv2's weights reach qmax in at least one channel
    assert np.abs(conv2.params["weight"]).reshape(4, -1).max(axis=1).max() >= 120
    th1 = g.node("n1").params["theta"]
    np.testing.assert_array_equal(short.params["scale"], np.rint(th1 / S))
    # the shortcut weight is exact (S chosen so that theta_prev / S is an integer)
    np.testing.assert_allclose(short.params["scale"] * S, th1, rtol=1e-12)
    np.testing.assert_array_equal(n2.params["theta"],
                                  np.maximum(1, np.rint(g.node("n2").params["theta"] / S)))
    # the real weights are reproduced within half a step
    w2 = g.node("conv2").params["weight"]
    err = np.abs(conv2.params["weight"] * S.reshape(-1, 1, 1, 1) - w2)
    assert np.all(err <= S.reshape(-1, 1, 1, 1) / 2 + 1e-12)


def test_first_layer_absorbs_input_scale():
    g = tiny_snn()
    gi = _q(g, weight_bits=8, membrane_bits=32)
    s_x = gi.meta["input_scale"]
    c1 = gi.node("conv1")
    real = c1.params["weight"] * c1.params["scale_real"].reshape(-1, 1, 1, 1) / s_x
    w = g.node("conv1").params["weight"]
    assert np.abs(real - w).max() <= (c1.params["scale_real"] / s_x).max() / 2 + 1e-12


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("T", [1, 4])
def test_integer_tracks_float_snn(signed, T):
    g = tiny_snn(timesteps=T, signed2=signed)
    gi = _q(g, weight_bits=8)
    x = sample_x(300, seed=7)
    out = run_int(gi, quantize_input(gi, x), capture=["z1", "z2"])
    fs = simulate(g, x, capture=["n1", "n2"])
    logits = dequantize_output(gi, out["out"])
    assert np.abs(logits - fs.logits).mean() < 0.05 * np.abs(fs.logits).max()
    assert (logits.argmax(1) == fs.logits.argmax(1)).mean() >= 0.95
    if T == 1:
        assert (out["z1"] == fs.captured["n1"]).mean() >= 0.99


def test_fewer_bits_means_larger_error():
    g = tiny_snn()
    x = sample_x(200, seed=3)
    ref = simulate(g, x).logits
    errs = []
    for bits in (8, 4, 2):
        gi = _q(g, weight_bits=bits)
        errs.append(np.abs(dequantize_output(gi, run_int(gi, quantize_input(gi, x))["out"]) - ref).mean())
    assert errs[0] < errs[1] < errs[2]


def test_layer_bits_names_aliases_first_last():
    g = tiny_snn()
    gi = _q(g, weight_bits=4, layer_bits={"first": 8, "last": 6})
    assert [gi.node(n).attrs["bits"] for n in ("conv1", "conv2", "fc")] == [8, 4, 6]
    # IR name, ONNX name, torch alias
    for key in ("conv2", "/layer1/layer1.0/conv2/Conv", "layer1.0.conv2"):
        gi = _q(g, weight_bits=4, layer_bits={key: 3})
        assert gi.node("conv2").attrs["bits"] == 3 and gi.node("conv1").attrs["bits"] == 4
    # a named layer overrides first/last
    gi = _q(g, weight_bits=4, layer_bits={"first": 8, "conv1": 2})
    assert gi.node("conv1").attrs["bits"] == 2
    assert np.abs(gi.node("conv1").params["weight"]).max() <= 1


@pytest.mark.parametrize("alias,name", [("/conv1/Conv", "conv1"), ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
                                        ("/layer1/layer1.0/downsample/downsample.0/Conv",
                                         "layer1.0.downsample.0"), ("/0/Conv", "0"), ("conv", "")])
def test_short_alias(alias, name):
    assert quantize.short_alias(alias) == name


def test_unknown_layer_name():
    with pytest.raises(SnnccError, match=r"--layer-bits: unknown layer 'conv9'.*first, last.*conv1"):
        _q(tiny_snn(), layer_bits={"conv9": 4})


@pytest.mark.parametrize("keys", [{"conv2": 3, "layer1.0.conv2": 5},
                                  {"conv2": 3, "/layer1/layer1.0/conv2/Conv": 6}])
def test_two_names_for_one_layer_must_agree(keys):
    with pytest.raises(SnnccError, match=r"--layer-bits: .*=\d and .*=\d both set layer 'conv2'; give it one value"):
        _q(tiny_snn(), layer_bits=keys)
    same = dict.fromkeys(keys, 5)  # the same value under two names is fine
    assert _q(tiny_snn(), layer_bits=same).node("conv2").attrs["bits"] == 5


def test_layer_bits_on_a_neuron_names_its_op():
    g = tiny_snn()
    neuron = next(n.name for n in g.nodes if n.op == "neuron")
    with pytest.raises(SnnccError, match=f"layer '{neuron}' is a neuron, not a conv or dense layer"):
        _q(g, layer_bits={neuron: 4})


@pytest.mark.parametrize("bits", [1, 9])
def test_bad_weight_bits(bits):
    with pytest.raises(SnnccError, match="--weight-bits must be an integer in 2..8"):
        _q(tiny_snn(), weight_bits=bits)
    with pytest.raises(SnnccError, match="--layer-bits conv1 must be an integer in 2..8"):
        _q(tiny_snn(), layer_bits={"conv1": bits})


def test_wrong_stage_and_missing_stats():
    g = tiny_snn()
    g.stage = "float"
    with pytest.raises(SnnccError, match="stage 'snn'"):
        _q(g)
    g = tiny_snn()
    g.stats = {}
    with pytest.raises(SnnccError, match="calibration statistics"):
        _q(g)


def test_ternary_weights():
    gi = _q(tiny_snn(), weight_bits=2, weight_quantizer="mse")
    for name in ("conv1", "conv2", "fc"):
        assert set(np.unique(gi.node(name).params["weight"])) <= {-1, 0, 1}


def test_membrane_coarsens_scale_when_theta_too_large():
    # 8-bit membrane, 4 levels: (4+1) * theta_q must fit 127, so theta_q <= 25
    notes = []
    gi = _q(tiny_snn(), notes, membrane_bits=8)
    for n in gi.nodes:
        if n.op == "neuron":
            assert n.params["theta"].max() <= 25
    assert any("coarsened" in note for note in notes)


def test_dense_only_graph():
    gi = _q(dense_snn(fan_in=16), weight_bits=8)
    x = np.random.default_rng(0).uniform(-1, 1, (10, 16))
    out = dequantize_output(gi, run_int(gi, quantize_input(gi, x))["out"])
    ref = x @ dense_snn(fan_in=16).node("fc").params["weight"].T
    np.testing.assert_allclose(out, ref, atol=16 * (1 / 127))
    assert wq.qmax(8) == np.abs(gi.node("fc").params["weight"]).max()


def test_calibration_data_enables_gptq_and_bias_correction():
    from snncc.calib_data import load_calib
    from snncc.sim.int_runtime import level_agreement

    g = tiny_snn()
    x = sample_x(300, seed=11)
    calib = load_calib(sample_x(128, seed=12).astype(np.float32), (1, 8, 8))
    agree = {}
    for rounding in ("nearest", "gptq"):
        ctx = PassContext(CompileOptions(weight_bits=6, weight_rounding=rounding), calib)
        gi = quantize.run(g, ctx)
        notes = " ".join(ctx.notes)
        assert "biases corrected" in notes and (("GPTQ weight rounding in" in notes) == (rounding == "gptq"))
        assert np.abs(gi.node("conv2").params["weight"]).max() <= 31
        agree[rounding] = level_agreement(gi, g, x)["n2"]["isolated"]
    # GPTQ keeps the currents at least as close to the float SNN's.  Since inputs that are zero on
    # all calibration samples set no weight step (for prune's exactness), nearest rounding reaches
    # 0.98839 here and GPTQ 0.98836 (before: 0.9626 and 0.9714), so the bound allows 1e-3.
    assert agree["gptq"] >= agree["nearest"] - 1e-3
    assert min(agree.values()) > 0.98


def test_scales_through_concat_and_maxpool_of_currents():
    from quant_graphs import concat_snn

    g = concat_snn()
    gi = _q(g, weight_bits=8)
    S = np.concatenate([gi.node("ca").params["scale_real"], gi.node("cb").params["scale_real"]])
    assert len(np.unique(S)) == 5  # concat joins nothing: every channel keeps its own step
    np.testing.assert_array_equal(gi.node("n").params["theta"],
                                  np.maximum(1, np.rint(g.node("n").params["theta"] / S)))
    x = sample_x(200, seed=8)
    out = run_int(gi, quantize_input(gi, x), capture=["z"])
    fs = simulate(g, x, capture=["n"])
    assert (out["z"] == fs.captured["n"]).mean() >= 0.99
