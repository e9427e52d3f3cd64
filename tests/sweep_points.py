"""Point functions for the sweep's failure tests, importable by worker processes and Ray workers
(the tests put this folder on their PYTHONPATH / sys.path)."""

from __future__ import annotations

import os

from snncc.sweep import compile_point


def dies_or_raises(model, calib, base, point, reports=False):
    """N=4: the process dies mid-point (as if killed); N=8: a bug raises; else the real point."""
    if point["levels"] == 4:
        os._exit(3)
    if point["levels"] == 8:
        raise RuntimeError("a bug at N=8")
    return compile_point(model, calib, base, point, reports)
