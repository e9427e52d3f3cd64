"""Issue 12, compile time: the threaded and streamed paths give bit-identical results to the plain ones."""

from __future__ import annotations

import numpy as np
import pytest
from chain_model import chain_onnx

import snncc
from snncc.calib_data import load_calib
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.passes import calibrate, canonicalize, convert_thresholds, quantize
from snncc.passes.calibrate import ChannelStats
from snncc.sim import kernels as K
from snncc.sim import parallel


@pytest.fixture
def split_everything(monkeypatch):
    """Two threads, and every kernel big enough to split."""
    monkeypatch.setenv("SNNCC_THREADS", "2")
    monkeypatch.setattr(parallel, "MIN_ELEMENTS", 1)


def _same_layout(a: np.ndarray, b: np.ndarray) -> bool:
    return all(sa == sb for sa, sb, n in zip(a.strides, b.strides, a.shape) if n > 1)


def test_split_integer_conv_is_exact(split_everything):
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (6, 8, 10, 10)).astype(np.float32)
    w = rng.integers(-127, 128, (16, 8, 3, 3)).astype(np.float32)
    got = K.conv2d(x, w, None, (1, 1), (1,) * 4, (1, 1), 1, split=True)
    ref = K.conv2d(x.astype(np.int64), w.astype(np.int64), None, (1, 1), (1,) * 4, (1, 1), 1)
    plain = K.conv2d(x, w, None, (1, 1), (1,) * 4, (1, 1), 1)
    assert np.array_equal(got, ref) and _same_layout(got, plain)


def test_stack_keeps_the_memory_layout():
    a = np.arange(2 * 3 * 4 * 5, dtype=float).reshape(2, 4, 5, 3).transpose(0, 3, 1, 2)
    b = a + 1000
    whole = np.concatenate([a, b])
    got = parallel.stack([a, b])
    assert np.array_equal(got, whole) and _same_layout(got, a) and got.strides[0] == 2 * a.strides[0] // 2


def test_calibration_with_and_without_threads_is_identical(monkeypatch, tmp_path):
    g = canonicalize.run(snncc.load_onnx(chain_onnx(tmp_path / "c.onnx", 3, size=7)), PassContext())
    x = np.random.default_rng(5).standard_normal((50, 2, 7, 7)).astype(np.float32)
    out = []
    for threads in ("1", "2"):
        monkeypatch.setenv("SNNCC_THREADS", threads)
        ctx = PassContext(CompileOptions(calib_batch=7, calib_reservoir=40), load_calib(x, (2, 7, 7)))
        out.append(calibrate.run(g, ctx).stats)
    for value, st in out[0].items():
        for key, arr in st.items():
            assert np.array_equal(np.asarray(arr), np.asarray(out[1][value][key])), (value, key)


def test_channel_stats_merge_paths_match_one_batch():
    """A full tail and reservoir take a batch through the compare-and-pack merge; one batch
    takes the plain selection: the results are the same, on signed and on ReLU data with ties."""
    rng = np.random.default_rng(2)
    for relu in (False, True):
        x = np.round(rng.standard_normal((60, 4, 6, 6)) * 3).astype(np.float32)
        if relu:
            x = np.maximum(x, 0)
        results = []
        for splits in ([60], [20, 1, 1, 38], [7] * 8 + [4]):
            st = ChannelStats((4, 6, 6), reservoir=30, salt=5, samples=60)
            at = 0
            for b in splits:
                st.update(x[at:at + b])
                at += b
            results.append(st.result("relu"))
        for other in results[1:]:
            for key, value in results[0].items():
                assert np.array_equal(np.asarray(value), np.asarray(other[key])), (relu, key)
        top = -np.sort(-np.abs(np.moveaxis(x, 1, 0).reshape(4, -1)), axis=1)[:, :64]
        assert np.array_equal(results[0]["tail"], top)


def test_mse_clip_blocks_and_threads_do_not_change_it(monkeypatch, split_everything):
    sample = np.abs(np.random.default_rng(3).standard_normal((37, 200))).astype(np.float32)
    monkeypatch.setattr(convert_thresholds, "MSE_BLOCK_BYTES", 8 * 200 * 5)  # 5 rows a block
    split = convert_thresholds._mse_clip(sample, 4, False)
    monkeypatch.setenv("SNNCC_THREADS", "1")
    monkeypatch.setattr(convert_thresholds, "MSE_BLOCK_BYTES", 1 << 30)
    assert np.array_equal(split, convert_thresholds._mse_clip(sample, 4, False))


def test_unique_columns_equals_numpy():
    rng = np.random.default_rng(4)
    stack = rng.integers(-1, 50, (2, 1000))
    assert np.array_equal(quantize._unique_columns(stack, 50), np.unique(stack, axis=1))
    three = rng.integers(-1, 5, (3, 100))
    assert np.array_equal(quantize._unique_columns(three, 5), np.unique(three, axis=1))
