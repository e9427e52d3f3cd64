"""Per-output-channel symmetric weight quantizers.

A quantizer only picks the per-channel step ``scale[o]`` (real value of one integer
unit) for a weight tensor at ``bits`` bits; the integer weights are then
``clamp(round(W / S), -qmax, qmax)`` with ``qmax = 2**(bits-1) - 1``.  The quantize
pass may replace ``scale`` by a larger, jointly chosen current scale S (several
synaptic layers feeding one neuron population must share it), so quantizers return
scales, not integer tensors.

Methods:

- ``max``: clip at max|W| per channel (no clipping error, coarsest step).
- ``percentile``: clip at the P-th percentile of |W| per channel (P = 99.9).
- ``mse``: search a grid of clip ratios per channel for the one minimising
  ||W - Q(W)||^2 (clipping error against rounding error).
- ``rescaw``: QP-SNN's ReScaW (Wei et al., ICLR 2025).  gamma = mean|W| per channel;
  quantize clamp(W / gamma, -1, 1) uniformly to ``bits`` bits and multiply back by
  gamma, i.e. clip at gamma.  QP-SNN *trains* with this quantizer in the loop
  (quantization-aware training), so that the network learns weights whose useful
  range is about mean|W|.  Applied post-training to an ordinarily trained network it
  clips every weight above the channel mean magnitude, which is most of the large,
  important weights; bench/quant_accuracy.py measures what that costs.
"""

from __future__ import annotations

import numpy as np

from snncc.errors import SnnccError

METHODS = ("max", "percentile", "mse", "rescaw")
PERCENTILE = 99.9
# Clip ratios (fraction of max|W|) searched by ``mse``.
MSE_RATIOS = np.linspace(0.2, 1.0, 81)


def qmax(bits: int) -> int:
    """Largest integer weight magnitude at ``bits`` bits (b=2: ternary {-1, 0, 1})."""
    if not 2 <= int(bits) <= 8:
        raise SnnccError(f"must be an integer in 2..8, got {bits!r}", option="weight_bits")
    return (1 << (int(bits) - 1)) - 1


def _rows(w: np.ndarray) -> np.ndarray:
    """(O, fan-in) float64 view: one row per output channel."""
    w = np.asarray(w, dtype=np.float64)
    return w.reshape(w.shape[0], -1) if w.ndim > 1 else w.reshape(-1, 1)


def quantize_with(w: np.ndarray, scale: np.ndarray, bits: int) -> np.ndarray:
    """Integer weights (int64) of ``w`` at per-channel step ``scale`` (> 0), clamped to qmax."""
    q = qmax(bits)
    shape = (-1,) + (1,) * (np.ndim(w) - 1)
    s = np.asarray(scale, dtype=np.float64).reshape(shape)
    return np.clip(np.rint(np.asarray(w, dtype=np.float64) / s), -q, q).astype(np.int64)


def fake_quant(w: np.ndarray, scale: np.ndarray, bits: int) -> np.ndarray:
    """``Q(W)`` in real units: the float weights the integer ones stand for."""
    shape = (-1,) + (1,) * (np.ndim(w) - 1)
    return quantize_with(w, scale, bits) * np.asarray(scale, dtype=np.float64).reshape(shape)


def channel_scales(w: np.ndarray, bits: int, method: str = "mse") -> np.ndarray:
    """Per-output-channel step (O,) for ``w`` at ``bits`` bits; 0 for an all-zero channel."""
    q = qmax(bits)
    rows = np.abs(_rows(w))
    absmax = rows.max(axis=1)
    if method == "max":
        clip = absmax
    elif method == "percentile":
        clip = np.percentile(rows, PERCENTILE, axis=1)
    elif method == "mse":
        clip = _mse_clip(rows, absmax, q)
    elif method == "rescaw":
        clip = rows.mean(axis=1)
    else:
        raise SnnccError(f"must be one of {', '.join(METHODS)}; got {method!r}", option="weight_quantizer")
    clip = np.where(clip > 0, clip, absmax)  # e.g. percentile of a mostly-zero channel
    return clip / q


def _mse_clip(rows: np.ndarray, absmax: np.ndarray, q: int) -> np.ndarray:
    """Per-row clip value minimising the squared quantization error over MSE_RATIOS."""
    best_err = np.full(rows.shape[0], np.inf)
    best = absmax.copy()
    safe = np.where(absmax > 0, absmax, 1.0)
    for r in MSE_RATIOS[::-1]:  # loop over the grid only; rows are vectorized
        step = (safe * r / q)[:, None]
        err = ((np.clip(np.rint(rows / step), 0, q) * step - rows) ** 2).sum(axis=1)
        better = err < best_err  # strict, largest ratio first: ties keep the larger clip
        best_err = np.where(better, err, best_err)
        best = np.where(better, absmax * r, best)
    return best


def quant_error(w: np.ndarray, bits: int, method: str) -> float:
    """Relative squared error ||W - Q(W)||^2 / ||W||^2 of one method (for reports)."""
    s = channel_scales(w, bits, method)
    s = np.where(s > 0, s, 1.0)
    w = np.asarray(w, dtype=np.float64)
    den = float((w ** 2).sum())
    return float(((w - fake_quant(w, s, bits)) ** 2).sum() / den) if den > 0 else 0.0
