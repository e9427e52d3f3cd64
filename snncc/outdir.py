"""Atomic output folders: write everything into a temporary sibling, then rename.

A failed compile therefore never leaves a half-written output folder behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from snncc.errors import SnnccError


def check_output_dir(path: Path, force: bool, protect: Iterable = ()) -> None:
    """Refuse an existing non-empty folder (unless force), an unwritable parent, and with
    force a folder that holds one of the command's inputs (``protect``: model, data files)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SnnccError(f": {path} exists and is not a folder", option="output")
    if path.is_dir() and any(path.iterdir()):
        if not force:
            raise SnnccError(f": {path} exists and is not empty (use --force to replace it)", option="output")
        _check_protected(path, protect)
    parent = path.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise SnnccError(f": cannot write to {path}: {probe} is not a folder", option="output")
    if not os.access(probe, os.W_OK | os.X_OK) or _refuses_new_folders(probe):
        raise SnnccError(f": cannot write to {probe}", option="output")


def _check_protected(path: Path, protect: Iterable) -> None:
    real = path.resolve()
    for item in protect:
        if item is None:
            continue
        inside = Path(item).resolve()
        if inside == real or real in inside.parents:
            raise SnnccError(f": the output folder {path} holds {item}, an input of this command; "
                             "refusing to delete it (choose another -o)", option="force")


def _refuses_new_folders(folder: Path) -> bool:
    """True where mkdir fails even though access() says yes (read-only or virtual file systems)."""
    try:
        probe = Path(tempfile.mkdtemp(prefix=".snncc-probe-", dir=folder))
    except OSError:
        return True
    probe.rmdir()
    return False


@contextlib.contextmanager
def atomic_output_dir(path: Path, force: bool = False, protect: Iterable = ()) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path`` in one rename.

    A symlinked ``path`` is followed: the temporary folder is made beside the folder it
    points to (renames never cross file systems) and the link is kept.  On any failure,
    or a signal (see snncc.signals), the temporary folders are removed and an existing
    ``path`` is left as it was.
    """
    path = Path(path)
    check_output_dir(path, force, protect)
    real = path.resolve()
    parent = real.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{real.name}.tmp-", dir=parent))
    except OSError as exc:
        raise SnnccError(f": cannot create {path}: {exc.strerror}", option="output") from None
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        _replace(tmp, real, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace(tmp: Path, real: Path, path: Path) -> None:
    """Rename ``tmp`` to ``real``; an existing ``real`` is moved aside first and restored on failure."""
    old = None
    try:
        if real.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{real.name}.old-", dir=real.parent))
            os.rename(real, old / "x")
        os.rename(tmp, real)
    except OSError as exc:
        if old is not None and (old / "x").exists() and not real.exists():
            os.rename(old / "x", real)
        raise SnnccError(f": cannot replace {path}: {exc.strerror or exc}", option="output") from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_file_atomic(path: Path, data: bytes, option: str) -> None:
    """Write ``data`` through a temporary file in the same folder: never a half-written file.

    A failure is one ``SnnccError`` naming the CLI ``option`` that chose the path.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.resolve().parent)
    except OSError as exc:
        raise SnnccError(f": cannot write to {path.parent}: {exc.strerror}", option=option) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise SnnccError(f": cannot write {path}: {exc.strerror}", option=option) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    """Write text with LF endings, byte-identical across runs."""
    Path(path).write_bytes(text.encode("utf-8"))
