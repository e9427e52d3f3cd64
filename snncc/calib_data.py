"""Calibration data: the ``--calib`` inputs, streamed in batches.

``load_calib`` accepts a ``.npy`` file (memory-mapped, so tens of thousands of
samples never sit in memory at once), a ``.npz`` file (key ``x``, else its single
array; optional labels ``y``), an in-memory array, or the word ``random`` (seeded
noise for structure tests only: it warns). Every problem is an ``SnnccError``
that names the ``--calib`` option.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from snncc.errors import SnnccError
from snncc.progress import on_terminal


class CalibData:
    """Calibration samples ``x`` (N, *input_shape) and optional integer labels ``y``.

    ``x`` may be a read-only memory map; ``batches`` converts one batch at a time to
    float32 and checks it for NaN/inf as it streams.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray | None, input_shape: tuple[int, ...], source: str,
                 option: str = "calib"):
        self.option = option  # the option that named the data, for error messages
        self._x = x
        self._y = y
        self.input_shape = tuple(int(d) for d in input_shape)
        self.source = source

    @property
    def n(self) -> int:
        return int(self._x.shape[0])

    @property
    def has_labels(self) -> bool:
        return self._y is not None

    def labels(self) -> np.ndarray | None:
        return None if self._y is None else np.asarray(self._y)

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The samples and labels as given (to ship to another process; rebuild with CalibData)."""
        return self._x, self._y

    def batches(self, batch_size: int, *, progress: str | None = None,
                limit: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield ``(x, y)`` batches: x float32 (B, *input_shape), y int64 (B,) or None.

        ``progress`` is a label for the progress bar (drawn on a terminal only);
        ``limit`` stops after that many samples.
        """
        if int(batch_size) < 1:
            raise SnnccError(f"must be >= 1, got {batch_size}", option="calib_batch")
        total = self.n if limit is None else min(self.n, int(limit))
        bar = _Progress(progress, total) if progress else None
        try:
            for start in range(0, total, int(batch_size)):
                stop = min(total, start + int(batch_size))
                xb = np.asarray(self._x[start:stop], dtype=np.float32)
                if not np.isfinite(xb).all():
                    bad = start + int(np.argwhere(~np.isfinite(xb).reshape(len(xb), -1).all(axis=1))[0, 0])
                    raise SnnccError(f": data from {self.source} contains NaN or inf (first in sample {bad})",
                                     option=self.option)
                yb = None if self._y is None else np.asarray(self._y[start:stop])
                if bar:
                    bar.update(stop)
                yield xb, yb
        finally:
            if bar:
                bar.close()

    def take(self, count: int) -> np.ndarray:
        """The first ``count`` samples as one float32 array (checked like ``batches``)."""
        parts = [x for x, _ in self.batches(max(1, min(count, 4096)), limit=count)]
        if not parts:
            return np.zeros((0, *self.input_shape), dtype=np.float32)
        return np.concatenate(parts)


def load_calib(spec: str | Path | np.ndarray, input_shape: tuple, *, seed: int = 0,
               random_count: int = 64, option: str = "calib") -> CalibData:
    """Open calibration data for a model whose per-sample input shape is ``input_shape``.

    ``option`` is the option that named ``spec`` (``"calib"``, or verify's ``"data"``).
    """
    from snncc.arrays import read_arrays

    input_shape = tuple(int(d) for d in input_shape)
    if isinstance(spec, CalibData):
        return spec
    if isinstance(spec, np.ndarray):
        return _make(spec, None, input_shape, "the given array", option)
    if isinstance(spec, str) and spec == "random":
        msg = ("option --calib random: calibrating on seeded random noise; thresholds and accuracy "
               "figures are meaningless (structure tests only)")
        warnings.warn(msg, stacklevel=2)
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((int(random_count), *input_shape)).astype(np.float32)
        return CalibData(x, None, input_shape, "random")
    path = Path(spec)
    arrays = read_arrays(path, option)
    keys = sorted(arrays)
    if "x" in arrays:
        x, y = arrays["x"], arrays.get("y")
    elif len(keys) == 1:
        x, y = arrays[keys[0]], None
    else:
        raise SnnccError(f": {path.name!r} holds arrays {keys}; name the inputs 'x' (and labels 'y')",
                         option=option)
    return _make(x, y, input_shape, repr(path.name), option)


def _make(x: np.ndarray, y, input_shape: tuple[int, ...], source: str, option: str = "calib") -> CalibData:
    if not isinstance(x, np.ndarray) or not (np.issubdtype(x.dtype, np.floating)
                                              or np.issubdtype(x.dtype, np.integer)):
        kind = getattr(x, "dtype", type(x).__name__)
        raise SnnccError(f": {source} holds {kind} data; expected a numeric array", option=option)
    if tuple(x.shape) == input_shape:  # a single sample without the batch dimension
        x = x[None]
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != input_shape:
        raise SnnccError(f": {source} has shape {list(x.shape)}, but the model input is "
                         f"{list(input_shape)} per sample (expected [N, {', '.join(map(str, input_shape))}])",
                         option=option)
    if x.shape[0] == 0:
        raise SnnccError(f": {source} holds no samples", option=option)
    if y is not None:
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise SnnccError(f": labels 'y' in {source} must be {len(x)} integers, "
                             f"got {y.dtype} of shape {list(y.shape)}", option=option)
        y = y.astype(np.int64, copy=False)
    return CalibData(x, y, input_shape, source, option)


class _Progress:
    """A plain progress bar on stderr, drawn only on a terminal and never in CI."""

    def __init__(self, label: str, total: int):
        self.label, self.total = label, max(1, total)
        self.active = on_terminal()
        self.last = -1

    def update(self, done: int) -> None:
        if not self.active:
            return
        width = 30
        filled = width * done // self.total
        if filled == self.last and done < self.total:
            return
        self.last = filled
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.active and self.last >= 0:
            sys.stderr.write("\n")
            sys.stderr.flush()
