"""Shared session fixtures: the exported model zoo and the trained digits CNN.

``zoo_onnx(name, exporter="torchscript") -> Path``
    Exports ``tests/zoo.py``'s model ``name`` with ``exporter`` ("torchscript" or
    "dynamo") into a session temp folder, once per session, and returns the path.
    ``zoo_onnx.input_shape(name)`` is the per-sample input shape;
    ``zoo_onnx.model(name)`` the torch model (eval mode).
``digits``
    The digits CNN trained once per session with ``examples/digits/train.py``; see
    ``DigitsFixture`` for its fields.
``digits_zoo(name) -> DigitsFixture``
    A zoo architecture (``zoo.DIGITS_CAPABLE``: residual, SEW, pre-activation,
    MobileNetV2, concat and pooling nets) with a 1-channel stem, trained on digits
    once per session on first use (2-14 s each); the same fields as ``digits``.
``digits_example``
    Paths of the committed example files (``examples/digits``).

Training seed: ``SNNCC_TEST_SEED`` (default 0) seeds every model trained in the
session (initial weights and batch order; the data split stays fixed). Torch
training is not bit-identical across CPU types, so a test that uses a trained model
must pass for any seed: run the suite with a few seeds to see the spread before
setting a bound (the measured spreads are in the comments next to the bounds).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
DIGITS_DIR = ROOT / "examples" / "digits"
for _p in (TESTS, DIGITS_DIR):  # make `import zoo` and `import train` work from any test
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import zoo  # noqa: E402

TRAIN_SEED = int(os.environ.get("SNNCC_TEST_SEED", "0"))


class ZooExports:
    """Lazy, cached exports of the zoo models into one folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._paths: dict[tuple[str, str], Path] = {}
        self._models: dict[str, object] = {}

    def __call__(self, name: str, exporter: str = "torchscript") -> Path:
        if name not in zoo.ZOO:
            raise KeyError(f"unknown zoo model {name!r}; known: {sorted(zoo.ZOO)}")
        if exporter not in zoo.EXPORTERS:
            raise KeyError(f"unknown exporter {exporter!r}; known: {zoo.EXPORTERS}")
        key = (name, exporter)
        if key not in self._paths:
            path = self.folder / f"{name}_{exporter}.onnx"
            zoo.export(self.model(name), self.input_shape(name), path, dynamo=exporter == "dynamo")
            self._paths[key] = path
        return self._paths[key]

    def __getitem__(self, key: tuple[str, str]) -> Path:
        return self(*key)

    def model(self, name: str):
        if name not in self._models:
            self._models[name] = zoo.build(name)[0]
        return self._models[name]

    @staticmethod
    def input_shape(name: str) -> tuple[int, ...]:
        return zoo.ZOO[name][1]


@pytest.fixture(scope="session")
def zoo_onnx(tmp_path_factory) -> ZooExports:
    return ZooExports(tmp_path_factory.mktemp("zoo"))


@dataclass
class DigitsFixture:
    """The digits CNN trained for this session.

    ``x_*`` are float32 (N, 1, 8, 8) in [0, 1], ``y_*`` int64. ``x_calib`` is the first
    256 training images (the split is already shuffled): calibrate on it, evaluate
    on ``x_test``. ``ann_test_accuracy`` is the torch model's top-1 on the test split.
    """

    onnx_path: Path
    model: object
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    ann_test_accuracy: float
    train_seconds: float
    folder: Path
    _dynamo_path: Path | None = field(default=None, repr=False)

    @property
    def x_calib(self) -> np.ndarray:
        return self.x_train[:256]

    @property
    def onnx_path_dynamo(self) -> Path:
        """The same model through the dynamo exporter (exported on first use)."""
        if self._dynamo_path is None:
            import train

            self._dynamo_path = train.export_onnx(self.model, self.folder / "digits_cnn_dynamo.onnx", dynamo=True)
        return self._dynamo_path


def _train_digits(model, folder: Path, stem: str) -> DigitsFixture:
    import train

    x_tr, y_tr, x_te, y_te = train.load_digits_split()
    t0 = time.perf_counter()
    model = train.train(model, x_tr, y_tr, seed=TRAIN_SEED)
    seconds = time.perf_counter() - t0
    path = train.export_onnx(model, folder / f"{stem}.onnx")
    return DigitsFixture(path, model, x_tr, y_tr, x_te, y_te, train.accuracy(model, x_te, y_te), seconds, folder)


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> DigitsFixture:
    import train

    return _train_digits(train.build_cnn(TRAIN_SEED), tmp_path_factory.mktemp("digits"), "digits_cnn")


class DigitsZoo:
    """Zoo architectures trained on digits, each once per session, on first use."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._trained: dict[str, DigitsFixture] = {}

    def __call__(self, name: str) -> DigitsFixture:
        if name not in self._trained:
            sub = self.folder / name
            sub.mkdir()
            self._trained[name] = _train_digits(zoo.build_for_digits(name, TRAIN_SEED), sub, f"digits_{name}")
        return self._trained[name]


@pytest.fixture(scope="session")
def digits_zoo(tmp_path_factory) -> DigitsZoo:
    return DigitsZoo(tmp_path_factory.mktemp("digits_zoo"))


@dataclass(frozen=True)
class DigitsExample:
    folder: Path
    onnx_path: Path
    calib_path: Path
    train_script: Path


@pytest.fixture(scope="session")
def digits_example() -> DigitsExample:
    return DigitsExample(DIGITS_DIR, DIGITS_DIR / "digits_cnn.onnx", DIGITS_DIR / "digits_calib.npz",
                         DIGITS_DIR / "train.py")
