"""Helpers for the SIGTERM tests: a stand-in tool that starts a long child, and the
send-SIGTERM-once-it-runs / the-child-must-die steps they share."""

from __future__ import annotations

import signal
import subprocess
import textwrap
import time
from pathlib import Path


def write_slow_tool(path: Path, pidfile: Path) -> None:
    """A shell script that starts ``sleep 300``, writes its pid to ``pidfile`` and waits for it
    (like gcc waiting for cc1, or yosys for its workers)."""
    path.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        sleep 300 &
        echo $! > {pidfile}.part && mv {pidfile}.part {pidfile}
        wait
        """))
    path.chmod(0o755)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a killed child not yet reaped is a zombie


def sigterm_once_child_runs(proc: subprocess.Popen, pidfile: Path, timeout: float, what: str) -> tuple[int, str]:
    """Wait until the stand-in tool wrote ``pidfile``, SIGTERM ``proc``; return (the tool's
    child pid, ``proc``'s stderr).  ``what`` names the step in the failure message."""
    try:
        deadline = time.monotonic() + timeout
        while not pidfile.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{what} never reached the tool"
            time.sleep(0.05)
        child = int(pidfile.read_text())
        assert alive(child)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return child, err


def wait_until_gone(pid: int, tries: int = 50) -> bool:
    """True once ``pid`` is dead (or a zombie), polling for up to ``tries`` / 10 seconds."""
    for _ in range(tries):
        if not alive(pid):
            return True
        time.sleep(0.1)
    return not alive(pid)
