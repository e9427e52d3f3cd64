"""One guarded loader for array files (snncc/arrays.py): every corrupt, hostile or
wrong-kind .npy/.npz gives one `error:` line naming the option and the file, for
compile --calib, verify --data, sweep --calib and run --input (issue 12, section 2)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from hostile_models import FAST, invoke, leftovers, one_line_error, save_model

GOOD = np.random.default_rng(2).normal(size=(4, 1, 6, 6)).astype(np.float32)


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _bad_crc(path: Path) -> Path:
    _npz(path, x=GOOD)  # np.savez stores members uncompressed: flip one data byte
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _declared_huge(path: Path) -> Path:
    """A small zip whose central directory declares a 5 GiB member (a zip bomb's header)."""
    with zipfile.ZipFile(path, "w") as zf:
        with zf.open("x.npy", "w") as f:
            np.save(f, GOOD)
        zf.filelist[0].file_size = 5 << 30
    return path


def _npy_header_huge(path: Path) -> Path:
    """A member whose .npy header declares 40 million samples (5.8 GB) but holds a few bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                     "shape": (40_000_000, 1, 6, 6)})
            f.write(b"\0" * 64)
    return path


def _text(path: Path) -> Path:
    path.write_text("this is a text file, not an archive\n")
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


NPZ_CASES = {
    "truncated": (lambda p: p.write_bytes(_npz(p, x=GOOD).read_bytes()[:300]) and p, "truncated or corrupt"),
    "bad crc": (_bad_crc, "CRC"),
    "pickled objects": (lambda p: _npz(p, x=np.array([{"a": 1}, None], dtype=object)), "pickled Python objects"),
    "no arrays": (lambda p: _npz(p), "holds no arrays"),
    "empty array": (lambda p: _npz(p, x=np.zeros((0, 1, 6, 6), np.float32)), "is empty"),
    "string dtype": (lambda p: _npz(p, x=np.array(["a", "b"])), "<U1 data"),
    "text named .npz": (_text, "is not a .npz archive (not a zip file)"),
    "a directory": (_folder, "is a directory"),
    "declared 5 GiB in the zip header": (_declared_huge, "declares 5.0 GiB"),
    "declared 5.4 GiB in the npy header": (_npy_header_huge, "declares 5.4 GiB"),
}

NPY_CASES = {
    "truncated": (lambda p: np.save(p, GOOD) or p.write_bytes(p.read_bytes()[:200]) and p, "truncated or corrupt"),
    "pickled objects": (lambda p: np.save(p, np.array([{}], dtype=object)) or p, "pickled Python objects"),
    "string dtype": (lambda p: np.save(p, np.array(["abc"])) or p, "<U3 data"),
    "text named .npy": (lambda p: _text(p), "is not a .npy array"),
    "empty array": (lambda p: np.save(p, np.zeros((0, 1, 6, 6), np.float32)) or p, "is empty"),
}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_model(tmp_path_factory.mktemp("model"), calib=False)


def _make(tmp_path: Path, cases: dict, case: str, suffix: str) -> tuple[Path, str]:
    build, fragment = cases[case]
    path = tmp_path / f"data{suffix}"
    build(path)
    return path, fragment


@pytest.mark.parametrize("case", sorted(NPZ_CASES))
def test_compile_calib_npz(tmp_path, model, case):
    path, fragment = _make(tmp_path, NPZ_CASES, case, ".npz")
    out = tmp_path / "out"
    one_line_error(invoke("compile", model, "--calib", path, "-o", out, *FAST), "option --calib", "data.npz",
                   fragment)
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("case", sorted(NPY_CASES))
def test_compile_calib_npy(tmp_path, model, case):
    path, fragment = _make(tmp_path, NPY_CASES, case, ".npy")
    one_line_error(invoke("compile", model, "--calib", path, "-o", tmp_path / "out", *FAST), "option --calib",
                   "data.npy", fragment)


@pytest.mark.parametrize("case", ["bad crc", "pickled objects", "text named .npz", "a directory",
                                  "declared 5 GiB in the zip header"])
def test_verify_data(tmp_path, model, case):
    path, fragment = _make(tmp_path, NPZ_CASES, case, ".npz")
    np.savez(tmp_path / "calib.npz", x=GOOD)
    one_line_error(invoke("verify", model, "--target", "python", "--calib", tmp_path / "calib.npz", "--data", path,
                          *FAST), "option --data", fragment)


@pytest.mark.parametrize("case", ["truncated", "string dtype", "text named .npz", "a directory"])
def test_sweep_calib(tmp_path, model, case):
    path, fragment = _make(tmp_path, NPZ_CASES, case, ".npz")
    out = tmp_path / "sweep"
    one_line_error(invoke("sweep", model, "--calib", path, "-N", "2", "--weight-bits", "8", "--jobs", "1",
                          "-o", out), "option --calib", fragment)
    assert not out.exists()


@pytest.mark.parametrize("suffix,case", [(".npz", c) for c in sorted(NPZ_CASES)] +
                         [(".npy", c) for c in sorted(NPY_CASES)])
def test_run_input(tmp_path, model, suffix, case):
    path, fragment = _make(tmp_path, NPZ_CASES if suffix == ".npz" else NPY_CASES, case, suffix)
    one_line_error(invoke("run", model, "--input", path), "option --input", fragment)


def test_a_good_npz_still_loads(tmp_path, model):
    np.savez_compressed(tmp_path / "x.npz", x=GOOD, y=np.arange(4))
    result = invoke("run", model, "--input", tmp_path / "x.npz")
    assert result.exit_code == 0, result.output
