"""bench/ptq_layers.py's paired comparison of two integer SNNs (``--versus``): the counts of
images only one of them gets right, and the exact two-sided sign test on those."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import ptq_layers  # noqa: E402


def _right(pattern: str) -> np.ndarray:
    return np.array([c == "1" for c in pattern])


@pytest.mark.parametrize("a, b, want", [
    ("1111111111", "0000000000", (10, 0, 2 / 1024)),   # every discordant image favours A
    ("1000000000", "0111111111", (1, 9, 22 / 1024)),   # 2 * (C(10,0) + C(10,1)) / 2^10
    ("1111100000", "0000011111", (5, 5, 1.0)),
    ("110", "110", (0, 0, 1.0)),                        # no discordant image: no evidence
])
def test_paired_counts_and_sign_test(a, b, want):
    only_a, only_b, p = ptq_layers.paired(_right(a), _right(b))
    assert (only_a, only_b) == want[:2]
    assert p == pytest.approx(want[2], rel=1e-12)


def test_paired_handles_more_than_1024_discordant_images():
    a = np.r_[np.ones(1500, bool), np.zeros(1400, bool)]
    only_a, only_b, p = ptq_layers.paired(a, ~a)
    assert (only_a, only_b) == (1500, 1400)
    assert 0.0 < p < 0.1
    assert ptq_layers.paired(~a, a)[2] == pytest.approx(p, rel=1e-12)  # two-sided: symmetric
