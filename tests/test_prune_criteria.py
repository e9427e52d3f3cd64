"""prune_criteria.regression: the compensation's ridge fit, from the Gram matrix or (fewer rows than
channels) from the rows themselves, is the same fit; wide values fall back to the mean."""

from __future__ import annotations

import numpy as np

from snncc.passes.prune_criteria import MOMENT_MAX_CHANNELS, Measure, _moment_form, regression


def _measure(x: np.ndarray, form: str) -> Measure:
    m = Measure()
    s2 = [x.astype(np.float32)] if form == "rows" else x.T @ x if form == "gram" else (x * x).sum(axis=0)
    m.moments["v"] = [len(x), x.sum(axis=0), s2]
    return m


def test_the_rows_form_is_the_gram_forms_fit():
    rng = np.random.default_rng(0)
    n, c = 24, 40  # fewer rows than channels: what measure keeps as rows
    mix = rng.standard_normal((6, c))
    x = (np.maximum(rng.standard_normal((n, 6)) @ mix + 0.5, 0) + 0.01 * rng.standard_normal((n, c)))
    x = x.astype(np.float32).astype(np.float64)  # the activations measure sees are float32
    loose, kept = np.array([3, 7, 11, 30]), np.setdiff1d(np.arange(c), [3, 7, 11, 30])
    a_g, c_g = regression(_measure(x, "gram"), "v", loose, kept)
    a_r, c_r = regression(_measure(x, "rows"), "v", loose, kept)
    assert np.abs(a_g).max() > 0.05  # a real fit, not the mean
    np.testing.assert_allclose(a_r, a_g, rtol=1e-7, atol=1e-9 * np.abs(a_g).max())
    np.testing.assert_allclose(c_r, c_g, rtol=1e-7, atol=1e-9 * np.abs(c_g).max())
    # and it explains the removed channels better than their mean does
    fit = x[:, kept] @ a_r.T + c_r
    assert ((x[:, loose] - fit) ** 2).sum() < 0.5 * ((x[:, loose] - x[:, loose].mean(axis=0)) ** 2).sum()


def test_moment_forms_and_the_wide_fallback():
    assert _moment_form((64, 4, 4), 16) == "gram"  # 256 rows >= 64 channels
    assert _moment_form((1024, 4, 4), 16) == "rows"  # 256 rows < 1024 channels
    assert _moment_form((MOMENT_MAX_CHANNELS + 1,), 4) == "diagonal"
    x = np.random.default_rng(1).standard_normal((10, 8))
    a, c = regression(_measure(x, "diagonal"), "v", np.array([1, 2]), np.array([0, 3, 4, 5, 6, 7]))
    assert not a.any() and np.allclose(c, x[:, [1, 2]].mean(axis=0))
