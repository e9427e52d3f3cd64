"""The CIFAR-10 example (examples/cifar10): the committed models, checked without the data set.

The CIFAR-10 images live in ../shared/data, which a clean CI machine does not have, so
these tests use only what the repository commits: the ONNX files, the calibration
images (real CIFAR-10 training images) and provenance.json.  The test-set figures come
from bench/real_data.py and bench/peers.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from snncc.cli import cli

CIFAR10 = Path(__file__).resolve().parents[1] / "examples" / "cifar10"
MODELS = ("resnet20", "vgg")

_spec = importlib.util.spec_from_file_location("cifar10_train", CIFAR10 / "train.py")
cifar10_train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cifar10_train)


def test_provenance_names_this_script():
    record = json.loads((CIFAR10 / "provenance.json").read_text())
    assert record["train_py_sha256"] == hashlib.sha256((CIFAR10 / "train.py").read_bytes()).hexdigest(), \
        "train.py changed since the committed models were trained: rerun examples/cifar10/train.py"
    assert sorted(record["models"]) == sorted(MODELS)
    for name in MODELS:
        assert (CIFAR10 / f"cifar10_{name}.onnx").is_file()
        assert 0.1 < record["models"][name]["ann_test_accuracy"] <= 1.0


def test_calibration_subset_is_balanced_real_images():
    with np.load(CIFAR10 / "cifar10_calib.npz") as f:
        x, y = f["x"], f["y"]
    assert x.shape == (cifar10_train.CALIB_SAMPLES, 3, 32, 32) and x.dtype == np.float32
    assert np.bincount(y, minlength=10).tolist() == [cifar10_train.CALIB_SAMPLES // 10] * 10
    # decoded 8-bit pixels scaled to [0, 1], as train.py feeds the models
    assert np.allclose(np.round(x * 255) / 255, x, atol=1e-7) and 0.0 <= x.min() and x.max() <= 1.0


def test_missing_data_names_where_it_comes_from(tmp_path):
    with pytest.raises(FileNotFoundError, match="shared/data/cifar10-jpeg"):
        cifar10_train.load_cifar10("test", tmp_path)


@pytest.mark.parametrize("name", MODELS)
def test_c_is_bit_exact_on_calibration_images(tmp_path, name):
    """verify --target c on real CIFAR-10 images (the committed calibration set) plus extremes and noise."""
    with np.load(CIFAR10 / "cifar10_calib.npz") as f:
        x = f["x"][:12]
    rng = np.random.default_rng(2)
    extremes = np.stack([np.full((3, 32, 32), v, np.float32) for v in (-50.0, 0.0, 1.0, 50.0)])
    noise = rng.uniform(-1, 2, size=(4, 3, 32, 32)).astype(np.float32)
    data = tmp_path / "data.npz"
    np.savez(data, x=np.concatenate([x, extremes, noise]))
    result = CliRunner().invoke(cli, ["verify", str(CIFAR10 / f"cifar10_{name}.onnx"), "--target", "c",
                                      "--data", str(data), "--threshold-search", "none",
                                      "--no-bias-correction"])  # bit-exactness does not depend on thresholds
    assert result.exit_code == 0, result.output
    assert "[ok] integer runtime == C: 200 outputs of 20 samples bit-exact" in result.output, result.output
