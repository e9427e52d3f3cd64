"""Atomic output folders: write everything into a temporary sibling, then rename.

A failed compile therefore never leaves a half-written output folder behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from snncc.errors import SnnccError


def check_output_dir(path: Path, force: bool) -> None:
    """Refuse an existing non-empty folder (unless force) or an unwritable parent."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SnnccError(f"option -o/--output: {path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise SnnccError(f"option -o/--output: {path} exists and is not empty (use --force to replace it)")
    parent = path.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise SnnccError(f"option -o/--output: cannot write to {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK) or _refuses_new_folders(probe):
        raise SnnccError(f"option -o/--output: cannot write to {probe}")


def _refuses_new_folders(folder: Path) -> bool:
    """True where mkdir fails even though access() says yes (read-only or virtual file systems)."""
    try:
        probe = Path(tempfile.mkdtemp(prefix=".snncc-probe-", dir=folder))
    except OSError:
        return True
    probe.rmdir()
    return False


@contextlib.contextmanager
def atomic_output_dir(path: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path`` in one rename."""
    path = Path(path)
    check_output_dir(path, force)
    parent = path.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    except OSError as exc:
        raise SnnccError(f"option -o/--output: cannot create {path}: {exc.strerror}") from None
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=parent))
            os.rename(path, old / "x")
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write text with LF endings, byte-identical across runs."""
    Path(path).write_bytes(text.encode("utf-8"))
