"""Issue 12, compile time: the threaded and streamed paths give bit-identical results to the plain ones."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from chain_model import chain_onnx
from channel_stats_helper import stats_over_batches

import snncc
from snncc.calib_data import load_calib
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.passes import calibrate, canonicalize, convert_thresholds, quantize
from snncc.sim import kernels as K
from snncc.sim import parallel


@pytest.fixture
def split_everything(monkeypatch):
    """Two threads, and every kernel big enough to split."""
    monkeypatch.setenv("SNNCC_THREADS", "2")
    monkeypatch.setattr(parallel, "MIN_ELEMENTS", 1)


def _same_layout(a: np.ndarray, b: np.ndarray) -> bool:
    return all(sa == sb for sa, sb, n in zip(a.strides, b.strides, a.shape) if n > 1)


def test_conv_is_numpy_einsum_bit_for_bit(split_everything):
    """The conv's im2col copy runs in two halves; the GEMM and the output layout are einsum's."""
    rng = np.random.default_rng(0)
    for n, c, h, o, k, s, p, xdt, wdt in itertools.product((1, 5), (1, 6), (1, 7), (2, 9), (1, 3), (1, 2), (0, 1),
                                                             (np.float32, np.float64), (np.float32, np.float64)):
        if h + 2 * p < k or c * k * k < 2:
            continue
        x = rng.standard_normal((n, c, h, h)).astype(xdt)
        w = rng.standard_normal((o, c, k, k)).astype(wdt)
        win = K._windows(K.pad_nchw(x, (p,) * 4), (k, k), (s, s), (1, 1))
        ref = np.einsum("nchwij,ocij->nohw", win, w, optimize=True)
        got = K.conv2d(x, w, None, (s, s), (p,) * 4, (1, 1), 1)
        assert np.array_equal(ref, got) and _same_layout(ref, got) and ref.dtype == got.dtype, \
            (n, c, h, o, k, s, p, xdt, wdt)


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
        results = [stats_over_batches(x, splits, reservoir=30, salt=5)
                   for splits in ([60], [20, 1, 1, 38], [7] * 8 + [4])]
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


def test_one_thread_unless_asked(monkeypatch):
    """Threads are opt-in: they raised a ResNet-50 compile's peak RSS past 4 GB (docs/limits.md)."""
    monkeypatch.delenv("SNNCC_THREADS", raising=False)
    assert parallel.workers() == 1 and not parallel.enabled(1 << 30)
    monkeypatch.setenv("SNNCC_THREADS", "1")
    assert parallel.workers() == 1
    monkeypatch.setenv("SNNCC_THREADS", "2")
    assert parallel.workers() == min(2, len(os.sched_getaffinity(0)))
