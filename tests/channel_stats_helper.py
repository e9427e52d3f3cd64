"""The one loop that feeds calibration statistics batch by batch (tests of batch invariance)."""

from __future__ import annotations

import numpy as np

from snncc.passes.calibrate import ChannelStats


def stats_over_batches(x: np.ndarray, splits, **kw) -> dict:
    """``ChannelStats.result("relu")`` after feeding ``x`` in batches of the sizes in ``splits``."""
    st = ChannelStats(x.shape[1:], samples=len(x), **kw)
    at = 0
    for b in splits:
        st.update(x[at:at + b])
        at += b
    return st.result("relu")
