"""bench/fpga.py under SIGTERM: yosys (here a stand-in that starts a long child) dies with
the bench, its temporary folders go, and the exit code is 143 (issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from child_signals import sigterm_once_child_runs, wait_until_gone, write_slow_tool

ROOT = Path(__file__).resolve().parents[1]


def test_sigterm_kills_yosys_and_cleans_up(tmp_path):
    bindir, temp, pidfile = tmp_path / "bin", tmp_path / "tmp", tmp_path / "yosys.pid"
    bindir.mkdir()
    temp.mkdir()
    write_slow_tool(bindir / "yosys", pidfile)  # a yosys that starts a long worker and waits
    env = {**os.environ, "TMPDIR": str(temp), "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "fpga.py"), "--models", "digits_t1_w4",
                             "--lanes", "16", "--samples", "0", "--families", "ice40"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child, err = sigterm_once_child_runs(proc, pidfile, 240, "the bench")
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert wait_until_gone(child), f"yosys' child outlived the bench: {err}"
    assert [p.name for p in temp.iterdir() if p.name != ".ses"] == [], "the bench left its temporary folder"


def test_hls4ml_peer_reciprocal_rounded_up_is_exact_and_truncated_is_not():
    """bench/fpga_hls4ml.py's claim (docs/fpga.md): 1/theta rounded up on its 18-bit grid gives
    the level clamp(floor(v * q), 0, N) == clamp(v // theta, 0, N) for every v when the rounding
    error is under 1/((N+1)*theta^2); truncated (hls4ml's AP_TRN) it is wrong at v = theta for any theta that is
    not a power of two."""
    sys.path.insert(0, str(ROOT / "bench"))
    import math

    import numpy as np
    from fpga_hls4ml import SCALE_BITS, reciprocal

    n = 4
    for t in (17, 36, 392, 6553, 4096, 3):  # one layer each: its grid follows its largest 1/theta
        (qt,), top = reciprocal(np.array([1.0 / t]), "UP")
        assert qt >= 1.0 / t and (qt * 2.0 ** (SCALE_BITS - top)) % 1 == 0
        assert (qt - 1.0 / t) < 1.0 / ((n + 1) * t * t)
        v = np.arange(-2 * (n + 1) * t, 2 * (n + 1) * t)
        assert (np.clip(np.floor(v * qt), 0, n) == np.clip(v // t, 0, n)).all(), t
        trunc = math.floor((1.0 / t) * 2.0 ** (SCALE_BITS - top)) * 2.0 ** (top - SCALE_BITS)
        assert (math.floor(t * trunc) == 1) == (t & (t - 1) == 0), t
