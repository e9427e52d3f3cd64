"""The multi-level integrate-and-fire neuron, written once (docs/ir.md, "Neuron").

Every function works on float arrays (float SNN, interval bounds) and on integer
arrays (integer SNN): ``floor(v / theta)`` is numpy's floor division on integers and
``np.floor(v / theta)`` on floats, so the float SNN keeps its IEEE rounding and the
integer SNN is exact.
"""

from __future__ import annotations

import numpy as np

from snncc.sim import parallel


def channel_view(arr: np.ndarray, ndim: int) -> np.ndarray:
    """Reshape a per-channel vector to broadcast over (N, C, ...)."""
    return np.asarray(arr).reshape((1, -1) + (1,) * (ndim - 2))


def _is_int(a) -> bool:
    return np.issubdtype(np.asarray(a).dtype, np.integer)


def v_init(theta: np.ndarray) -> np.ndarray:
    """The membrane at the start of an inference: theta/2 (theta // 2 in integers)."""
    return theta // 2 if _is_int(theta) else theta / 2


# v starts at theta/2, so at T=1 the neuron rounds x/theta half up: floor(x/theta + 1/2).
ROUND_OFFSET = 0.5


def level_range(n: int, signed: bool) -> tuple[int, int]:
    """(lo, hi) of the levels a neuron emits: -N..N (signed) or 0..N."""
    return (-n if signed else 0), n


def levels(v: np.ndarray, theta: np.ndarray, n: int, signed: bool) -> np.ndarray:
    """z = clamp(floor(v / theta), lo, N) with lo = -N (signed) or 0; monotone in v."""
    z = v // theta if _is_int(v) and _is_int(theta) else np.floor(v / theta)
    return np.clip(z, *level_range(n, signed))


def saturate(v: np.ndarray, bits: int) -> np.ndarray:
    """Clamp to the signed range of a ``bits``-bit membrane."""
    return np.clip(v, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def floor_to_grid(v: np.ndarray, k: int) -> np.ndarray:
    """floor(v / 2^k) * 2^k: the stored membrane precision (an arithmetic shift on integers)."""
    if not k:
        return v
    return (v >> k) << k if _is_int(v) else np.floor(v / 2 ** k) * 2 ** k


def neuron_step(v: np.ndarray, current: np.ndarray, theta: np.ndarray, n: int, signed: bool, *,
                bits: int | None = None, shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One IF step with subtractive reset; returns (z, new v). theta broadcasts per channel.

    The float SNN has no ``bits`` (no saturation) and no ``shift``; the integer SNN
    saturates v + I to ``bits`` bits and keeps the residual on a 2^shift grid.
    """
    v = v + current
    if bits is not None:
        v = saturate(v, bits)
    z = levels(v, theta, n, signed)
    return z, floor_to_grid(v - z * theta, shift)


def quantize_levels(x: np.ndarray, theta, n: int, signed: bool) -> np.ndarray:
    """Levels of the T=1 neuron with v0 = theta/2: clamp(floor(x/theta + 1/2), lo, N) (round half up).

    This is the activation quantizer of the ANN that the T=1 SNN equals (the oracle);
    snncc/sim/neuron_torch.py is its torch twin, for training.
    """
    lo, hi = level_range(n, signed)
    x, theta = np.asarray(x), np.asarray(theta)
    if x.dtype != np.float64 or theta.dtype != np.float64 or np.broadcast_shapes(x.shape, theta.shape) != x.shape:
        return np.clip(np.floor(x / theta + ROUND_OFFSET), lo, hi)
    # the same four element-wise steps in place, the rows in two halves on two threads
    out = np.empty_like(x)
    rows = theta.ndim == x.ndim and theta.shape[0] == x.shape[0] > 1

    def part(a: int, b: int) -> None:
        t = out[a:b]
        np.divide(x[a:b], theta[a:b] if rows else theta, out=t)
        t += ROUND_OFFSET
        np.floor(t, out=t)
        np.clip(t, lo, hi, out=t)

    parallel.halves(x.shape[0] if x.ndim else 1, part, x.size)
    return out
