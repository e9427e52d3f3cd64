"""The one signal mechanism of the CLI: SIGINT, SIGTERM and SIGHUP become an exception.

``handle_signals()`` (called once, by ``snncc.cli.main``) makes these signals raise
:class:`Interrupted` in the main thread.  It is a BaseException but not a
KeyboardInterrupt, so neither click nor an ``except Exception`` swallows it, and every
``with``/``finally`` on the stack runs: ``atomic_output_dir`` removes its temporary
folder, ``TemporaryDirectory`` its folder, ``run_child`` kills its child's process
group.  The CLI then exits with 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import os
import signal
import subprocess

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# While run_child starts a child, a signal is held here and raised once the child's
# process group is known: raised inside Popen it would leave the started child running.
_starting = 0
_pending: int | None = None


class Interrupted(BaseException):
    """A signal asked snncc to stop."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        self.name = signal.Signals(signum).name
        self.kept: str | None = None  # what a resumable command kept on purpose (sweep.csv rows)
        super().__init__(self.name)


def handle_signals() -> None:
    for sig in SIGNALS:
        signal.signal(sig, _raise)


def _raise(signum, frame) -> None:
    global _pending
    for sig in SIGNALS:  # a second signal must not cut the clean-up short
        signal.signal(sig, signal.SIG_IGN)
    if _starting:
        _pending = signum
        return
    raise Interrupted(signum)


def _start(cmd: list[str], **kwargs) -> subprocess.Popen:
    """Popen in a new process group, with signals held; the caller calls _release() once
    it is ready to kill the group."""
    global _starting
    _starting += 1
    try:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, **kwargs)
    except BaseException:
        _release()  # a signal held during a failed start still stops snncc
        raise


def _release() -> None:
    global _starting, _pending
    _starting -= 1
    if _pending is not None and not _starting:
        signum, _pending = _pending, None
        raise Interrupted(signum)


def run_child(cmd: list[str], *, timeout: float | None = None, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` with the child in its own
    process group; on any exception (a signal, a timeout) the whole group is killed, so
    a compiler driver's cc1/as/ld never outlive snncc."""
    proc = _start(cmd, **kwargs)
    with proc:
        try:
            _release()
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            _kill_group(proc)
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:  # already gone
        pass
    proc.wait()


def end_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """End a child started with ``start_new_session=True`` and everything in its process group:
    SIGTERM, then after ``grace`` seconds SIGKILL (never anything outside the group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except OSError:
        pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(proc)
