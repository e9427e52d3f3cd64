"""Vectorized numpy kernels for the IR ops, batch-major (N, C, H, W).

One function per op, shared by the float runtime, the float SNN simulator and the
integer runtime.  The integer runtime feeds float arrays holding integers: float32
where every partial sum provably stays below 2**24, else float64, where every product
and partial sum stays an exact integer below 2**53 (range analysis proves |I| < 2**31);
so BLAS matmuls give bit-exact integer results fast (int_runtime.exact_float).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from snncc.sim import parallel


def pad_nchw(x: np.ndarray, pads, value=0.0) -> np.ndarray:
    t, l_, b, r = pads
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l_, r)), constant_values=value)


def _windows(x: np.ndarray, kernel, strides, dilations) -> np.ndarray:
    """(N, C, OH, OW, KH, KW) strided view of the windows of a padded input."""
    kh, kw = kernel
    sh, sw = strides
    dh, dw = dilations
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    win = sliding_window_view(x, (span_h, span_w), axis=(2, 3))
    return win[:, :, ::sh, ::sw, ::dh, ::dw]


def conv2d(x, weight, bias, strides, pads, dilations, group):
    n, c, _, _ = x.shape
    o, ig, kh, kw = weight.shape
    xp = pad_nchw(x, pads)
    win = _windows(xp, (kh, kw), strides, dilations)  # N, C, OH, OW, KH, KW
    oh, ow = win.shape[2], win.shape[3]
    og = o // group
    if group == 1 and o > 1 and ig * kh * kw > 1:
        out = _conv_gemm(win, weight)
    elif group == 1:
        out = np.einsum("nchwij,ocij->nohw", win, weight, optimize=True)
    elif ig == 1 and og == 1:  # depthwise
        out = np.einsum("nchwij,cij->nchw", win, weight[:, 0], optimize=True)
    else:
        win_g = win.reshape(n, group, ig, oh, ow, kh, kw)
        w_g = weight.reshape(group, og, ig, kh, kw)
        out = np.einsum("ngchwij,gocij->ngohw", win_g, w_g, optimize=True).reshape(n, o, oh, ow)
    if bias is not None:
        out = out + bias.reshape(1, o, 1, 1)
    return out


def _conv_gemm(win: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The ungrouped conv exactly as numpy's einsum computes it (o >= 2 outputs, fan-in >= 2):
    one GEMM W (O, K) @ B (K, N*OH*OW) on the same im2col copy B, the output in the same memory
    layout, so bit for bit the same values; only the copy into B runs in two halves of the
    batch on two threads (tests/test_parallel.py checks it against np.einsum)."""
    n, c, oh, ow, kh, kw = win.shape
    o = weight.shape[0]
    cols = np.empty((c, kh, kw, n, oh, ow), np.result_type(win))

    def copy(lo: int, hi: int) -> None:
        cols[:, :, :, lo:hi] = win[lo:hi].transpose(1, 4, 5, 0, 2, 3)

    parallel.halves(n, copy, cols.size)
    out = np.matmul(weight.reshape(o, c * kh * kw), cols.reshape(c * kh * kw, n * oh * ow))
    return out.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)


def dense(x, weight, bias):
    out = x @ weight.T
    if bias is not None:
        out = out + bias
    return out


def affine(x, scale, shift):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return x * scale.reshape(shape) + shift.reshape(shape)


def maxpool(x, kernel, strides, pads, dilations=(1, 1)):
    if np.issubdtype(x.dtype, np.floating):
        fill = -np.inf
    else:
        fill = np.iinfo(x.dtype).min
    xp = pad_nchw(x, pads, value=fill)
    return _windows(xp, kernel, strides, dilations).max(axis=(4, 5))


def global_maxpool(x):
    return x.max(axis=(2, 3), keepdims=True)


def sumpool(x, kernel, strides, pads):
    xp = pad_nchw(x, pads)
    return _windows(xp, kernel, strides, (1, 1)).sum(axis=(4, 5))


def avgpool(x, kernel, strides, pads, count_include_pad):
    total = sumpool(x, kernel, strides, pads)
    if count_include_pad or not any(pads):
        return total / float(kernel[0] * kernel[1])
    ones = np.ones((1, 1) + x.shape[2:], dtype=x.dtype)
    counts = sumpool(ones, kernel, strides, pads)
    return total / counts


def relu(x, max_value=None):
    out = np.maximum(x, 0)
    if max_value is not None:
        out = np.minimum(out, max_value)
    return out


def channel_shuffle(x, groups):
    n, c = x.shape[:2]
    rest = x.shape[2:]
    return x.reshape((n, groups, c // groups) + rest).swapaxes(1, 2).reshape(x.shape)


def softmax(x, axis):
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)
