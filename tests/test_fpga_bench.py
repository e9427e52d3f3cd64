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
