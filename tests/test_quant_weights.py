"""Weight quantizers (passes/weight_quant.py)."""

import numpy as np
import pytest

from snncc.errors import SnnccError
from snncc.passes import weight_quant as wq


def _w(seed=0, shape=(8, 4, 3, 3)):
    return np.random.default_rng(seed).normal(0, 1, shape)


@pytest.mark.parametrize("bits,qmax", [(2, 1), (3, 3), (4, 7), (8, 127)])
def test_qmax(bits, qmax):
    assert wq.qmax(bits) == qmax


@pytest.mark.parametrize("bits", [1, 9, 0])
def test_bad_bits(bits):
    with pytest.raises(SnnccError, match="--weight-bits"):
        wq.qmax(bits)


@pytest.mark.parametrize("method", wq.METHODS)
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_integer_range_and_per_channel(method, bits):
    w = _w()
    w[3] *= 100.0  # one loud channel must not coarsen the others (per-channel scales)
    s = wq.channel_scales(w, bits, method)
    q = wq.quantize_with(w, s, bits)
    assert s.shape == (8,) and np.all(s > 0)
    assert np.abs(q).max() <= wq.qmax(bits)
    assert s[3] > 50 * s[0]
    if bits == 2:
        assert set(np.unique(q)) <= {-1, 0, 1}


def test_max_is_exact_on_grid():
    # weights already on a 7-step grid per channel come back exactly with max at 4 bits
    rng = np.random.default_rng(1)
    q = rng.integers(-7, 8, (5, 20)).astype(np.float64)
    q[:, 0] = 7
    step = np.array([0.1, 0.2, 0.5, 1.0, 3.0])
    w = q * step[:, None]
    s = wq.channel_scales(w, 4, "max")
    np.testing.assert_allclose(s, step)
    np.testing.assert_array_equal(wq.quantize_with(w, s, 4), q)


def test_mse_not_worse_than_max_and_percentile_clips():
    w = _w(2, (16, 64))
    for bits in (2, 3, 4, 8):
        e_max = wq.quant_error(w, bits, "max")
        e_mse = wq.quant_error(w, bits, "mse")
        assert e_mse <= e_max + 1e-12
    assert wq.quant_error(w, 4, "mse") < 0.9 * wq.quant_error(w, 4, "max")
    assert np.all(wq.channel_scales(w, 8, "percentile") <= wq.channel_scales(w, 8, "max"))


def test_rescaw_clips_at_mean_magnitude():
    w = _w(3, (4, 50))
    s = wq.channel_scales(w, 4, "rescaw")
    np.testing.assert_allclose(s * 7, np.abs(w).mean(axis=1))
    fq = wq.fake_quant(w, s, 4)
    assert np.all(np.abs(fq) <= np.abs(w).mean(axis=1, keepdims=True) + 1e-12)


def test_zero_channel_and_unknown_method():
    w = _w()
    w[2] = 0
    s = wq.channel_scales(w, 8, "mse")
    assert s[2] == 0 and np.all(np.delete(s, 2) > 0)
    with pytest.raises(SnnccError, match="--weight-quantizer"):
        wq.channel_scales(w, 8, "minmax")


def test_gptq_lowers_output_error():
    from snncc.passes.weight_rounding import gptq

    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (2000, 6)) @ rng.normal(0, 1, (6, 32))  # correlated inputs (rank 6)
    w = rng.normal(0, 1, (16, 32))
    for bits in (2, 4, 8):
        s = wq.channel_scales(w, bits, "mse")
        near = wq.quantize_with(w, s, bits)
        q = gptq(w, s, wq.qmax(bits), x.T @ x)
        assert np.abs(q).max() <= wq.qmax(bits)
        err_near = np.linalg.norm(x @ (w - near * s[:, None]).T)
        err_gptq = np.linalg.norm(x @ (w - q * s[:, None]).T)
        assert err_gptq < 0.8 * err_near, (bits, err_gptq, err_near)


def test_gptq_dead_inputs_and_conv_shape():
    from snncc.passes.weight_rounding import gptq

    rng = np.random.default_rng(6)
    w = rng.normal(0, 1, (4, 2, 3, 3))
    s = wq.channel_scales(w, 4, "max")
    q = gptq(w, s, 7, np.zeros((18, 18)))  # no input ever seen: falls back to plain rounding
    assert q.shape == w.shape
    np.testing.assert_array_equal(q, wq.quantize_with(w, s, 4))


def test_weight_rounding_option():
    from snncc.options import CompileOptions

    with pytest.raises(SnnccError, match="--weight-rounding"):
        CompileOptions(weight_rounding="adaround").validate()
