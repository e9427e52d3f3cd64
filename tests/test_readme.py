"""The README's two set-up commands stay true.

The first one is run exactly as written in a fresh clone of the repository; the
second must be the command .ci/run executes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [b.strip() for b in blocks[:2]]


def test_readme_starts_with_two_commands():
    first, second = readme_commands()
    assert "\n" not in first and "\n" not in second
    assert "snncc compile examples/digits/digits_cnn.onnx --target c" in first
    assert "pytest" in second


def test_ci_runs_the_readme_test_command():
    _, second = readme_commands()
    setup, _, test_cmd = second.partition(" && ")
    assert setup == "bash .ci/setup"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "bash .ci/setup" in ci
    assert test_cmd in ci, f".ci/run must run the README's test command: {test_cmd}"


@pytest.mark.slow
def test_first_command_in_a_fresh_clone(tmp_path):
    if shutil.which("git") is None:
        pytest.fail("git is needed: apt-get install -y git")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    # The clone sees the committed tree only; bring uncommitted work along when
    # the test runs in a developer's dirty checkout (CI runs on a clean clone).
    _overlay_worktree(clone)
    # A fresh venv that sees this environment's packages through a .pth file, so
    # .ci/setup's pip steps find everything already installed (no downloads) while
    # the clone's snncc is what gets installed and run.
    subprocess.run([sys.executable, "-m", "venv", str(clone / ".venv")], check=True)
    _link_site_packages(clone / ".venv")
    first, _ = readme_commands()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    proc = subprocess.run(["bash", "-c", first], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = clone / "build" / "digits"
    for name in ("digits_cnn.h", "digits_cnn.c", "digits_cnn_weights.c", "snncc_kernels.c",
                 "snncc_kernels.h", "Makefile", "report.json"):
        assert (out / name).is_file(), name
    # And the output verifies: build the emitted library with make and run it.
    proc = subprocess.run(["make", "-s"], cwd=out, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run([str(clone / ".venv" / "bin" / "snncc"), "verify", "examples/digits/digits_cnn.onnx",
                           "--target", "c"], cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "verify: PASSED" in proc.stdout


def _overlay_worktree(clone: Path) -> None:
    changed = subprocess.run(["git", "ls-files", "-m", "-o", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    for rel in changed:
        src = ROOT / rel
        if src.is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / rel)


def _link_site_packages(venv: Path) -> None:
    here = Path(sysconfig.get_paths()["purelib"])
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    target = venv / "lib" / ver / "site-packages"
    # Later in sys.path than the clone's own site-packages, so the clone's
    # editable snncc wins over this environment's.
    (target / "zz_parent_env.pth").write_text(str(here) + "\n")
