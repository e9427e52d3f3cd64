"""The one guarded loader for the user's array files (.npy / .npz): --calib, --data, --input.

Before numpy reads any data it checks that the path is a file of the right kind, that
every array's dtype is numeric (no pickled objects, no strings), and that the sizes
declared in the zip headers and in each ``.npy`` header stay under ``MAX_NPZ_BYTES``
(a small ``.npz`` may inflate to gigabytes).  A ``.npy`` file is memory-mapped, never
read whole, so it has no size cap.  Every problem, including truncated files and bad
CRCs, is one SnnccError naming the option and the file.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from snncc.errors import SnnccError

MAX_NPZ_BYTES = 4 << 30  # uncompressed; larger data sets go in a .npy file (memory-mapped)
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"  # a local file header (PK\x03\x04), or an empty archive (PK\x05\x06)
_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float


def read_arrays(path: str | Path, option: str) -> dict[str, np.ndarray]:
    """The arrays of a ``.npy`` (one array, named ``x``) or ``.npz`` file, checked.

    ``option`` is the option that named the file (``"calib"``, ``"data"``, ``"input"``).
    """
    path = check_array_path(path, option)
    try:
        arrays = _read_npy(path, option) if path.suffix.lower() == ".npy" else _read_npz(path, option)
    except SnnccError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise SnnccError(f": cannot read {path.name!r}, it is truncated or corrupt ({detail})",
                         option=option) from None
    for key, arr in arrays.items():
        _check_array(arr, key, path, option)
    return arrays


def check_array_path(path: str | Path, option: str) -> Path:
    """The cheap checks (a file, of the right kind) to run before any slow work."""
    path = Path(path)
    if path.is_dir():
        raise SnnccError(f": {str(path)!r} is a directory, not a .npy or .npz file", option=option)
    if not path.exists():
        raise SnnccError(f": file {str(path)!r} does not exist", option=option)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise SnnccError(f": {path.name!r} must be a .npy or .npz file", option=option)
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_NPY_MAGIC))
    except OSError as exc:
        raise SnnccError(f": cannot read {path.name!r}: {exc.strerror or exc}", option=option) from None
    want = _NPY_MAGIC if suffix == ".npy" else _ZIP_MAGIC
    if not magic.startswith(want):
        kind = "a .npy array (no NUMPY header)" if suffix == ".npy" else "a .npz archive (not a zip file)"
        raise SnnccError(f": {path.name!r} is not {kind}", option=option)
    return path


def _read_npy(path: Path, option: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        _check_dtype(_npy_header(f)[1], "x", path, option)
    # mmap reads only the header: a truncated file fails here, cheaply.
    return {"x": np.load(path, mmap_mode="r", allow_pickle=False)}


def _read_npz(path: Path, option: str) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if not infos:
            raise SnnccError(f": {path.name!r} holds no arrays", option=option)
        zip_total = sum(info.file_size for info in infos)
        npy_total = 0.0
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise SnnccError(f": {path.name!r} holds {info.filename!r}, which is not a .npy array",
                                 option=option)
            with zf.open(info) as f:
                shape, dtype = _npy_header(f)
            _check_dtype(dtype, info.filename[:-4], path, option)
            npy_total += float(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        declared = max(zip_total, npy_total)
        if declared > MAX_NPZ_BYTES:
            raise SnnccError(f": {path.name!r} declares {declared / 2**30:.1f} GiB of arrays when unpacked, over "
                             f"the {MAX_NPZ_BYTES / 2**30:.0f} GiB limit for .npz files; save large data as a "
                             ".npy file (memory-mapped, never loaded whole)", option=option)
        return {info.filename[:-4]: _load_member(zf, info) for info in infos}


def _npy_header(f) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version} is not supported")
    return tuple(shape), np.dtype(dtype)


def _load_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    with zf.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _check_dtype(dtype: np.dtype, key: str, path: Path, option: str) -> None:
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None:
        what = "pickled Python objects" if dtype.kind == "O" else f"{dtype} data"
        raise SnnccError(f": array {key!r} in {path.name!r} holds {what}; snncc reads numeric arrays only",
                         option=option)


def _check_array(arr: np.ndarray, key: str, path: Path, option: str) -> None:
    _check_dtype(arr.dtype, key, path, option)
    if arr.size == 0:
        raise SnnccError(f": array {key!r} in {path.name!r} is empty (shape {list(arr.shape)})", option=option)
