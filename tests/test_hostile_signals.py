"""Signals (snncc/signals.py): SIGTERM or Ctrl-C leave no temporary folder and no child
process behind, and the exit code is 128 + the signal (issue 12, section 2).

Each test runs the real `snncc` entry point (``snncc.cli.main``) in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from child_signals import sigterm_once_child_runs, wait_until_gone, write_slow_tool
from hostile_models import FAST, save_model

# Runs `snncc ARGS`; the compile signals itself once the output is written into its temp folder.
SIGNAL_DURING_EMIT = """
import os, signal, sys, time
import snncc.compiler as compiler
real = compiler.emit_target
def emit_then_signal(*args, **kwargs):
    out = real(*args, **kwargs)
    os.kill(os.getpid(), signal.{sig})
    time.sleep(60)  # the signal arrives before this ends
    return out
compiler.emit_target = emit_then_signal
sys.argv = ["snncc", *sys.argv[1:]]
from snncc.cli import main
main()
"""


def _env(tmp_path: Path) -> dict:
    temp = tmp_path / "tmp"
    temp.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(temp)}


@pytest.mark.parametrize("sig,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_signal_during_compile_leaves_nothing(tmp_path, sig, code):
    model = save_model(tmp_path / "m")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", SIGNAL_DURING_EMIT.format(sig=sig), "compile", str(model),
                           "-o", str(out), *FAST], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"error: interrupted by {sig}; no partial output left"], proc.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "tmp"]
    assert list((tmp_path / "tmp").iterdir()) == []


def test_sigterm_during_verify_kills_the_compiler_and_cleans_up(tmp_path):
    model = save_model(tmp_path / "m")
    pidfile = tmp_path / "cc.pid"
    fake_cc = tmp_path / "slowcc"
    write_slow_tool(fake_cc, pidfile)  # a compiler driver that starts a long "cc1" and waits, like gcc
    proc = subprocess.Popen([sys.executable, "-m", "snncc", "verify", str(model), "--target", "c",
                             "--cc", str(fake_cc), *FAST], cwd=tmp_path, env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child, err = sigterm_once_child_runs(proc, pidfile, 120, "verify")
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "error: interrupted by SIGTERM; no partial output left", err
    assert "Traceback" not in err
    assert wait_until_gone(child), "the C compiler's child process outlived snncc"
    # (.ses is onnxruntime's session-id file, not snncc's)
    assert [p.name for p in (tmp_path / "tmp").iterdir() if p.name != ".ses"] == [], \
        "verify left its temporary build folder behind"


# A SIGTERM that arrives while Popen is still starting the child (after the fork) must not
# leave the child running: run_child holds it until it can kill the child's group.
SIGNAL_DURING_POPEN = """
import os, signal, subprocess, sys
from snncc import signals
real = subprocess.Popen
class Popen(real):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        open(sys.argv[1], "w").write(str(self.pid))
        os.kill(os.getpid(), signal.SIGTERM)  # its handler runs before __init__ returns
        for _ in range(1000):
            pass
subprocess.Popen = Popen
signals.handle_signals()
try:
    signals.run_child(["sleep", "300"])
except signals.Interrupted as exc:
    sys.exit(128 + exc.signum)
"""


def test_signal_while_the_child_starts_kills_it(tmp_path):
    pidfile = tmp_path / "child.pid"
    proc = subprocess.run([sys.executable, "-c", SIGNAL_DURING_POPEN, str(pidfile)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 143, proc.stderr
    child = int(pidfile.read_text())
    gone = wait_until_gone(child)
    if not gone:
        os.kill(child, signal.SIGKILL)
    assert gone, "a child started as the signal came outlived run_child"
