"""--calib loading: .npy (memory-mapped), .npz (x[, y]), arrays, 'random', and every refusal."""

from __future__ import annotations

import numpy as np
import pytest

from snncc.calib_data import CalibData, load_calib
from snncc.errors import SnnccError

SHAPE = (1, 8, 8)


def _data(n=10, shape=SHAPE, seed=0):
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


def test_npy_is_memory_mapped_and_streams_in_batches(tmp_path):
    x = _data(37)
    path = tmp_path / "c.npy"
    np.save(path, x)
    cd = load_calib(path, SHAPE)
    assert isinstance(cd._x, np.memmap)
    assert (cd.n, cd.input_shape, cd.has_labels, cd.labels()) == (37, SHAPE, False, None)
    batches = list(cd.batches(16))
    assert [len(b) for b, _ in batches] == [16, 16, 5]
    assert all(b.dtype == np.float32 and y is None for b, y in batches)
    np.testing.assert_array_equal(np.concatenate([b for b, _ in batches]), x)


def test_npz_with_labels_and_single_array(tmp_path):
    x, y = _data(12), np.arange(12) % 3
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    cd = load_calib(tmp_path / "xy.npz", SHAPE)
    assert cd.has_labels
    np.testing.assert_array_equal(cd.labels(), y)
    got = list(cd.batches(5))
    np.testing.assert_array_equal(np.concatenate([b for _, b in got]), y)
    np.savez(tmp_path / "one.npz", images=x)
    assert load_calib(tmp_path / "one.npz", SHAPE).n == 12


def test_integer_images_and_single_sample_are_accepted():
    img = (np.arange(64, dtype=np.uint8).reshape(SHAPE))
    cd = load_calib(img, SHAPE)
    assert cd.n == 1
    (xb, _), = list(cd.batches(8))
    assert xb.dtype == np.float32 and xb.shape == (1, *SHAPE) and xb[0, 0, 0, 5] == 5.0


def test_random_warns_and_is_seeded():
    with pytest.warns(UserWarning, match="structure tests only"):
        a = load_calib("random", SHAPE, seed=3, random_count=7)
    with pytest.warns(UserWarning):
        b = load_calib("random", SHAPE, seed=3, random_count=7)
    assert a.n == 7 and not a.has_labels
    np.testing.assert_array_equal(a.take(7), b.take(7))


@pytest.mark.parametrize("bad, match", [
    (np.zeros((4, 1, 8, 9), np.float32), r"shape \[4, 1, 8, 9\].*model input is \[1, 8, 8\]"),
    (np.zeros((4, 64), np.float32), r"shape \[4, 64\]"),
    (np.zeros((0, 1, 8, 8), np.float32), "no samples"),
    (np.array(["a", "b"]), "numeric"),
])
def test_bad_arrays_are_refused_naming_the_option(bad, match):
    with pytest.raises(SnnccError, match="--calib") as e:
        load_calib(bad, SHAPE)
    assert e.match(match)


def test_nan_and_inf_are_refused_while_streaming(tmp_path):
    for bad in (np.nan, np.inf, -np.inf):
        x = _data(40)
        x[33, 0, 2, 2] = bad
        np.save(tmp_path / "bad.npy", x)
        cd = load_calib(tmp_path / "bad.npy", SHAPE)
        with pytest.raises(SnnccError, match=r"--calib.*NaN or inf.*sample 33"):
            list(cd.batches(16))


def test_file_errors(tmp_path):
    with pytest.raises(SnnccError, match="--calib.*does not exist"):
        load_calib(tmp_path / "missing.npy", SHAPE)
    (tmp_path / "c.csv").write_text("1,2\n")
    with pytest.raises(SnnccError, match="--calib.*.npy or .npz"):
        load_calib(tmp_path / "c.csv", SHAPE)
    (tmp_path / "trunc.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(SnnccError, match="--calib.*cannot read"):
        load_calib(tmp_path / "trunc.npy", SHAPE)
    np.savez(tmp_path / "two.npz", a=_data(2), b=_data(2))
    with pytest.raises(SnnccError, match="name the inputs 'x'"):
        load_calib(tmp_path / "two.npz", SHAPE)
    np.savez(tmp_path / "lab.npz", x=_data(3), y=np.array([0.5, 1.0, 2.0]))
    with pytest.raises(SnnccError, match="labels 'y'.*3 integers"):
        load_calib(tmp_path / "lab.npz", SHAPE)


def test_progress_bar_only_on_a_terminal(monkeypatch, capsys):
    import sys

    cd = CalibData(_data(8), None, SHAPE, "t")
    list(cd.batches(4, progress="calibrate"))
    assert capsys.readouterr().err == ""  # pytest's stderr is not a TTY
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    list(cd.batches(4, progress="calibrate"))
    err = capsys.readouterr().err
    assert "calibrate [" in err and "8/8" in err
    monkeypatch.setenv("CI", "1")
    list(cd.batches(4, progress="calibrate"))
    assert capsys.readouterr().err == ""
