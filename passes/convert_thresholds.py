"""Neuron thresholds from calibration statistics: max, percentile:P and mse.

A neuron with N levels and threshold theta represents the clipped, round-to-nearest
grid {0, theta, ..., N*theta} (signed: -N*theta .. N*theta) at T=1. ``mse`` picks the
clip value N*theta that minimizes the expected squared quantization error on the
calibration sample (the optimal-clipping / QCFS idea).
"""

from __future__ import annotations

import numpy as np

from snncc.errors import SnnccError
from snncc.options import CompileOptions
from snncc.sim import parallel
from snncc.sim.neuron import quantize_levels


def thresholds(stats: dict, levels: int, signed: bool, options: CompileOptions,
               clip_max: float | None = None) -> np.ndarray:
    """Per-channel theta (C,) > 0 for one neuron population."""
    method = options.threshold.split(":", 1)[0]
    layer = options.threshold_granularity == "layer"
    sample = np.abs(stats["sample"]) if not signed else stats["sample"]
    tail = stats["tail"]
    count = int(stats["count"])
    c = tail.shape[0]
    if method == "max":
        clip = stats["absmax"] if not layer else np.full(c, stats["layer_absmax"])
    elif method == "percentile":
        p = options.percentile()
        if layer:
            pooled_tail = -np.sort(-tail.reshape(-1))[: tail.shape[1]]
            clip = np.full(c, _percentile(np.abs(sample).reshape(1, -1), pooled_tail[None], count * c, p)[0])
        else:
            clip = _percentile(np.abs(sample), tail, count, p)
    elif method == "mse":
        if layer:
            clip = np.full(c, _mse_clip(sample.reshape(1, -1), levels, signed)[0])
        else:
            clip = _mse_clip(sample, levels, signed)
    else:  # validate() refuses these first
        raise SnnccError(f": unknown method {options.threshold!r}", option="threshold")
    theta = np.asarray(clip, np.float64) / levels
    if clip_max is not None:  # Clip(0, a): the level grid must not exceed a
        theta = np.minimum(theta, float(clip_max) / levels)
    return _fill_dead(theta)


def _fill_dead(theta: np.ndarray) -> np.ndarray:
    """Channels that never fired in calibration get the layer's largest threshold (or 1)."""
    theta = np.where(np.isfinite(theta), theta, 0.0)
    good = theta > 0
    fill = float(theta[good].max()) if good.any() else 1.0
    return np.where(good, theta, fill)


def _percentile(absample: np.ndarray, tail: np.ndarray, count: int, p: float) -> np.ndarray:
    """P-th percentile of |x| per channel: exact from the tail when it reaches that far."""
    rank_top = (1.0 - p / 100.0) * (count - 1)  # distance from the largest value
    lo = int(np.floor(rank_top))
    if lo + 1 < tail.shape[1]:
        frac = rank_top - lo
        return tail[:, lo] * (1 - frac) + tail[:, lo + 1] * frac
    if absample.shape[1] == 0:
        return np.zeros(absample.shape[0])
    return np.percentile(absample, p, axis=1)


# rows of the sample searched at once: each block's candidates stay in the cache (rows are
# independent, so the result does not depend on the blocks); two blocks run on two threads
MSE_BLOCK_BYTES = 1 << 20


def _mse_clip(sample: np.ndarray, levels: int, signed: bool, coarse: int = 48, fine: int = 24) -> np.ndarray:
    """Per-row clip value a = N*theta minimizing mean (x - q(x))^2 over the sample."""
    out = np.empty(sample.shape[0])
    rows = max(1, MSE_BLOCK_BYTES // max(8 * sample.shape[1], 1))

    def part(lo: int, hi: int) -> None:
        for r0 in range(lo, hi, rows):
            r1 = min(r0 + rows, hi)
            out[r0:r1] = _mse_clip_rows(sample[r0:r1], levels, signed, coarse, fine)

    parallel.halves(sample.shape[0], part, sample.size * (coarse + fine))
    return out


def _mse_clip_rows(sample: np.ndarray, levels: int, signed: bool, coarse: int, fine: int) -> np.ndarray:
    x = sample.astype(np.float64)
    top = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(x.shape[0])
    top = np.where(top > 0, top, 1.0)

    def search(lo_frac: np.ndarray, hi_frac: np.ndarray, steps: int):
        fracs = lo_frac[:, None] + (hi_frac - lo_frac)[:, None] * np.linspace(0, 1, steps)[None]
        errs = np.empty_like(fracs)
        for j in range(steps):  # loop over candidates only; channels and samples are vectorized
            theta = (fracs[:, j] * top / levels)[:, None]
            q = quantize_levels(x, theta, levels, signed) * theta
            errs[:, j] = ((x - q) ** 2).mean(axis=1)
        best = errs.argmin(axis=1)
        return fracs, best

    fracs, best = search(np.full(len(top), 0.02), np.ones(len(top)), coarse)
    step = 0.98 / (coarse - 1)
    centre = fracs[np.arange(len(top)), best]
    fracs, best = search(np.maximum(centre - step, 0.005), np.minimum(centre + step, 1.0), fine)
    return fracs[np.arange(len(top)), best] * top
