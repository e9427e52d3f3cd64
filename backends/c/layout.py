"""Physical layouts of the C backend: tensors in the arena and weights in flash.

Rank-3 tensors (C, H, W) live channels-last (HWC) so that kernels loop over
contiguous channels; every other rank is C order.  Weights are re-laid out so that
one input channel's fan-out is contiguous, and packed into 2- or 4-bit fields when
their bit width allows it.
"""

from __future__ import annotations

import numpy as np

INT32_MIN_C = "(-2147483647 - 1)"


def c_int(v: int) -> str:
    """A C int32 literal (INT32_MIN has no literal of its own)."""
    v = int(v)
    return INT32_MIN_C if v == -(2**31) else str(v)


def is_hwc(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3


def c_order_equal(shape: tuple[int, ...]) -> bool:
    """True when the stored order of ``shape`` equals its logical C order."""
    return not is_hwc(shape) or shape[0] == 1 or shape[1] * shape[2] == 1


def hwc_dims(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(h, w, c) for kernels: rank 3 gives its HWC dims, anything else one row of values."""
    if is_hwc(shape):
        c, h, w = shape
        return h, w, c
    return 1, 1, int(np.prod(shape))


def channel_split(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(outer, channels, inner) of the stored tensor; channel = logical axis 0."""
    if is_hwc(shape):
        c, h, w = shape
        return h * w, c, 1
    return 1, int(shape[0]), int(np.prod(shape[1:], dtype=np.int64))


def physical_dims(shape: tuple[int, ...]) -> tuple[tuple[int, ...], list[int]]:
    """Stored dims and the map logical axis -> stored axis."""
    if is_hwc(shape):
        c, h, w = shape
        return (h, w, c), [2, 0, 1]
    return tuple(shape), list(range(len(shape)))


def storage_bits(bits: int) -> int:
    """Field width used to store b-bit weights: 2, 4 or 8."""
    if bits <= 2:
        return 2
    if bits <= 4:
        return 4
    return 8


def pack_slices(w: np.ndarray, bits: int) -> np.ndarray:
    """Pack (slices, n) int8 weights into uint8 fields of ``bits`` (2 or 4) bits.

    Each slice starts on a byte boundary; fields are two's complement, the first
    weight in the lowest bits of a byte.
    """
    slices, n = w.shape
    per = 8 // bits
    nbytes = (n * bits + 7) // 8
    fields = np.zeros((slices, nbytes * per), dtype=np.uint8)
    fields[:, :n] = (w.astype(np.int16) & ((1 << bits) - 1)).astype(np.uint8)
    fields = fields.reshape(slices, nbytes, per).astype(np.uint16)
    shifts = (np.arange(per, dtype=np.uint16) * bits)
    return (fields << shifts).sum(axis=2).astype(np.uint8)


def conv_weight_slices(weight: np.ndarray, group: int) -> np.ndarray:
    """(O, C/g, kh, kw) -> (C, kh*kw*og): per input channel c, [ky][kx][j in c's group]."""
    o, ig, kh, kw = weight.shape
    og = o // group
    w = weight.reshape(group, og, ig, kh, kw).transpose(0, 2, 3, 4, 1)
    return w.reshape(group * ig, kh * kw * og)


def dwconv_weight(weight: np.ndarray) -> np.ndarray:
    """(C, 1, kh, kw) -> (1, kh*kw*C): [ky][kx][c]."""
    c, _, kh, kw = weight.shape
    return weight[:, 0].transpose(1, 2, 0).reshape(1, kh * kw * c)


def dense_weight_slices(weight: np.ndarray) -> np.ndarray:
    """(O, I) -> (I, O): per input feature, its fan-out."""
    return np.ascontiguousarray(weight.T)


def conv_weight_block(weight: np.ndarray, block: int) -> np.ndarray:
    """(O, C, kh, kw) -> [ky][kx][c/4][o16][4]: channel quads interleaved per output,
    O zero-padded to a multiple of ``block`` and C to a multiple of 4."""
    o, c, kh, kw = weight.shape
    w = weight.transpose(2, 3, 1, 0)  # kh, kw, C, O
    w = np.pad(w, ((0, 0), (0, 0), (0, -c % 4), (0, -o % block)))
    c4, o16 = w.shape[2] // 4, w.shape[3]
    w = w.reshape(kh, kw, c4, 4, o16).transpose(0, 1, 2, 4, 3)
    return np.ascontiguousarray(w).reshape(kh * kw * c4, o16 * 4)


def tap_quads(weight: np.ndarray, dil_w: int) -> tuple[np.ndarray, int, int]:
    """A conv on 1 or 2 input channels as one on 4: each channel quad holds g = 4 // C
    horizontal taps (dilation ``dil_w``) of the C channels, as snncc_pack_taps_i8 lays
    out the input.  (O, C, kh, kw) -> ((O, 4, kh, ceil(kw / g)), g, the new dilation g * dil_w):
    channel j * C + ch of tap kx' is channel ch of tap g * kx' + j, zero past kw."""
    o, c, kh, kw = weight.shape
    g = 4 // c
    kq = -(-kw // g)
    w = np.pad(weight, ((0, 0), (0, 0), (0, 0), (0, kq * g - kw)))  # O, C, kh, kq*g
    w = w.reshape(o, c, kh, kq, g).transpose(0, 4, 1, 2, 3).reshape(o, g * c, kh, kq)
    return np.pad(w, ((0, 0), (0, 4 - g * c), (0, 0), (0, 0))), g, g * dil_w


def pack_block(block: np.ndarray, bits: int) -> np.ndarray:
    """Block-layout weights (rows, o16*4) -> packed (rows, o16*4*bits/8) uint8 for 2- or
    4-bit storage.  The 16/bits output channels o..o+16/bits-1 share a pair of
    little-endian 32-bit words per row (a channel quad): word k holds quad elements k and
    k + 2, element 2h + k in halfword h, output o + p in field p (``bits`` wide) of it,
    offset binary (w + 2^(bits-1)) except the top field (two's complement).  An AND with
    a constant then keeps one output's field of both halfwords, which pairs with the
    levels (x0, x2) (word 0) or (x1, x3) (word 1) in one Arm SMLAD (snncc_kernels.c
    explains the scales)."""
    rows, cols = block.shape
    pp = 16 // bits  # outputs per word pair
    w = block.reshape(rows, cols // (4 * pp), pp, 4).astype(np.int64)
    p = np.arange(pp)[:, None]
    top = p == pp - 1
    fields = (w + np.where(top, 0, 1 << (bits - 1))) & ((1 << bits) - 1)
    words = np.stack([(fields[..., [k, k + 2]] << (np.array([0, 16]) + bits * p)).sum(axis=(2, 3))
                      for k in (0, 1)], axis=-1).astype("<u4")
    return words.view(np.uint8).reshape(rows, cols * bits // 8)
