"""bench/fpga.py under SIGTERM: yosys (here a stand-in that starts a long child) dies with
the bench, its temporary folders go, and the exit code is 143 (issue 14)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # killed but not yet reaped


def test_sigterm_kills_yosys_and_cleans_up(tmp_path):
    bindir, temp, pidfile = tmp_path / "bin", tmp_path / "tmp", tmp_path / "yosys.pid"
    bindir.mkdir()
    temp.mkdir()
    yosys = bindir / "yosys"
    yosys.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        sleep 300 &
        echo $! > {pidfile}.part && mv {pidfile}.part {pidfile}
        wait
        """))
    yosys.chmod(0o755)
    env = {**os.environ, "TMPDIR": str(temp), "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "fpga.py"), "--models", "digits_t1_w4",
                             "--lanes", "16", "--samples", "0", "--families", "ice40"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not pidfile.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the bench never reached yosys"
            time.sleep(0.05)
        child = int(pidfile.read_text())
        assert _alive(child)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    for _ in range(50):
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child), f"yosys' child outlived the bench: {err}"
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
