"""The Fashion-MNIST example (examples/fashion): the committed models on real data.

The data is the Debian package dataset-fashion-mnist, which .ci/setup installs; a
test that cannot find it fails with the install command.  The tests use the
committed ONNX files, never a fresh training run (torch training differs by CPU).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from snncc.cli import cli

FASHION = Path(__file__).resolve().parents[1] / "examples" / "fashion"
MODELS = ("cnn", "resnet")

_spec = importlib.util.spec_from_file_location("fashion_train", FASHION / "train.py")
fashion_train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fashion_train)


@pytest.fixture(scope="module")
def test_split():
    try:
        return fashion_train.load_fashion("test")
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def record():
    return json.loads((FASHION / "provenance.json").read_text())


def test_provenance_names_this_script_and_the_installed_test_split(record, test_split):
    x, y = test_split
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert record["train_py_sha256"] == hashlib.sha256((FASHION / "train.py").read_bytes()).hexdigest(), \
        "train.py changed since the committed models were trained: rerun examples/fashion/train.py"
    split = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
    assert record["test_split_sha256"] == split
    assert sorted(record["models"]) == sorted(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_committed_onnx_reaches_its_recorded_accuracy(record, test_split, name):
    x, y = test_split
    sess = ort.InferenceSession(str(FASHION / f"fashion_{name}.onnx"), providers=["CPUExecutionProvider"])
    logits = np.concatenate([sess.run(None, {"input": x[i:i + 2000]})[0] for i in range(0, len(x), 2000)])
    acc = float((logits.argmax(1) == y).mean())
    print(f"MEASURE fashion_{name} ANN test accuracy {acc:.4f}")
    # the committed bytes: only float ties between two classes could move a prediction
    assert abs(acc - record["models"][name]["ann_test_accuracy"]) <= 0.0005


def test_calibration_subset_is_small_and_balanced():
    assert (FASHION / "fashion_calib.npz").stat().st_size <= 1_000_000
    with np.load(FASHION / "fashion_calib.npz") as f:
        x, y = f["x"], f["y"]
    assert x.shape == (300, 1, 28, 28) and x.dtype == np.float32
    assert np.bincount(y, minlength=10).tolist() == [30] * 10


@pytest.mark.parametrize("name", MODELS)
def test_verify_c_is_bit_exact_on_test_images(tmp_path, test_split, name):
    """The README's verify, on 200 test images plus saturating and random inputs."""
    x, y = test_split
    rng = np.random.default_rng(1)
    extremes = np.stack([np.full((1, 28, 28), v, np.float32) for v in (-50.0, 0.0, 1.0, 50.0)])
    noise = rng.uniform(-1, 2, size=(8, 1, 28, 28)).astype(np.float32)
    data = tmp_path / "data.npz"
    np.savez(data, x=np.concatenate([x[:200], extremes, noise]))
    result = CliRunner().invoke(cli, ["verify", str(FASHION / f"fashion_{name}.onnx"), "--target", "c",
                                      "--data", str(data), "--threshold-search", "none",
                                      "--no-bias-correction"])  # bit-exactness does not depend on thresholds
    assert result.exit_code == 0, result.output
    assert "[ok] integer runtime == C: 2120 outputs of 212 samples bit-exact" in result.output, result.output
    print(f"MEASURE fashion_{name} verify\n{result.output}")
