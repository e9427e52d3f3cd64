"""Range analysis: proven bounds hold at the extremes, and overflow fails clearly."""

import numpy as np
import pytest
from quant_graphs import dense_snn, preact_snn, tiny_snn, wide_snn

from snncc.errors import SnnccError
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.passes import quantize, range_analysis
from snncc.sim.int_runtime import run_int


def _q(graph, **kw):
    return quantize.run(graph, PassContext(CompileOptions(**kw)))


def extreme_inputs(gi, n_random=64, seed=0):
    """All -128, all 127, random +-extremes, and sign(W) patterns of the first layer."""
    shape = gi.shape(gi.inputs[0])
    rng = np.random.default_rng(seed)
    xs = [np.full(shape, -128), np.full(shape, 127)]
    xs += list(rng.choice([-128, 127], (n_random, *shape)))
    first = next(n for n in gi.nodes if n.inputs[0] == gi.inputs[0] and n.op == "conv")
    w = first.params["weight"]
    kh, kw = w.shape[2:]
    for o in range(w.shape[0]):  # window at the top-left unpadded position sees sign(W[o])
        for sign in (1, -1):
            x = np.zeros(shape, dtype=np.int64)
            x[:, :kh, :kw] = np.where(sign * w[o] > 0, 127, -128)
            xs.append(x)
    return np.stack(xs).astype(np.int8)


def _check_observed(gi, x, T):
    names = [n.output for n in gi.nodes]
    out = run_int(gi, x, capture=names, timesteps=T)
    for n in gi.nodes:
        if n.output in gi.outputs:
            continue  # run_int returns a graph output summed over T: checked against acc_range below
        lo, hi = n.attrs["range"]
        v = out[n.output]
        assert lo <= v.min() and v.max() <= hi, (n.name, (v.min(), v.max()), (lo, hi))
        if n.op == "neuron" and T == 1:  # v + I = v_init + I at T = 1
            cur = out[n.inputs[0]].astype(np.int64)
            pre = cur + n.params["v_init"].reshape((1, -1) + (1,) * (cur.ndim - 2))
            assert n.attrs["v_range"][0] <= pre.min() and pre.max() <= n.attrs["v_range"][1], n.name
    for name in gi.outputs:
        lo, hi = gi.producer(name).attrs["acc_range"]
        assert lo <= out[name].min() and out[name].max() <= hi


@pytest.mark.parametrize("T", [1, 3])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits,mem,shift", [(8, 16, 0), (4, 12, 3), (2, 8, 1)])
def test_observed_within_proven(T, signed, bits, mem, shift):
    gi = _q(tiny_snn(timesteps=T, signed2=signed), weight_bits=bits, membrane_bits=mem, membrane_shift=shift)
    _check_observed(gi, extreme_inputs(gi), T)


@pytest.mark.parametrize("T", [1, 3])
@pytest.mark.parametrize("bits,mem,shift", [(8, 16, 0), (4, 12, 3), (2, 8, 1)])
def test_preact_stream_observed_within_proven(T, bits, mem, shift):
    # affines on an int32 current: the BN (sign, shift) and the branch rescale (k)
    gi = _q(preact_snn(timesteps=T), weight_bits=bits, membrane_bits=mem, membrane_shift=shift)
    assert gi.node("conv2/rescale").params["scale"].max() >= 2
    _check_observed(gi, extreme_inputs(gi), T)


def test_first_layer_bound_is_attained():
    # The interval bound of the input layer is exact: a sign(W) window reaches it.
    gi = _q(tiny_snn(), weight_bits=8)
    out = run_int(gi, extreme_inputs(gi), capture=["c1"])
    c1 = gi.node("conv1")
    w = c1.params["weight"].astype(np.int64)
    b = c1.params["bias"].astype(np.int64)
    top = (np.maximum(w, 0) * 127 - np.minimum(w, 0) * 128).reshape(len(w), -1).sum(axis=1) + b
    assert out["c1"].max() == top.max() == c1.attrs["range"][1]


def test_analyze_returns_and_annotates():
    gi = _q(tiny_snn(timesteps=2))
    res = range_analysis.analyze(gi)
    assert set(res) == {n.name for n in gi.nodes}
    assert res["n2"]["range"] == [0, 4] and "v_range" in res["n2"] and "v_state_range" in res["n2"]
    assert res["fc"]["acc_range"] == [2 * res["fc"]["range"][0], 2 * res["fc"]["range"][1]]
    assert gi.node("n1").attrs["v_range"] == res["n1"]["v_range"]


def test_overflow_huge_fan_in():
    # 140000 inputs x 127 x 128 > 2^31
    with pytest.raises(SnnccError, match=r"node 'fc' \(dense\): range analysis: the accumulator can reach "
                                         r"\d+.*int32.*fewer weight bits.*smaller fan-in"):
        _q(dense_snn(fan_in=140_000), weight_bits=8)
    _q(dense_snn(fan_in=140_000), weight_bits=4)  # 140000 x 7 x 128 fits


def test_overflow_output_accumulator_over_timesteps():
    _q(dense_snn(fan_in=2000, timesteps=8))
    with pytest.raises(SnnccError, match=r"'fc'.*output accumulator over T=1024 timesteps can reach \d+"):
        _q(dense_snn(fan_in=2000, timesteps=1024))


def test_overflow_membrane_32_bits():
    # v + I: the membrane may hold almost 2^31 at B = 32, plus a current of ~1.6e9
    _q(wide_snn(fan_in=100_000, timesteps=1), membrane_bits=32)
    with pytest.raises(SnnccError, match=r"'n1' \(neuron\).*membrane before saturation.*--membrane-bits"):
        _q(wide_snn(fan_in=100_000, timesteps=2), membrane_bits=32)
    _q(wide_snn(fan_in=100_000, timesteps=2), membrane_bits=16)
