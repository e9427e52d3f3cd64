"""The zoo models and the digits CNN: exports are faithful, and snncc's frontend plus
float runtime reproduce onnxruntime (first rung of the verification ladder)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
import zoo

import snncc

CASES = [(name, exp) for name in zoo.ZOO for exp in zoo.EXPORTERS]


def _ort_run(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _assert_close(out: np.ndarray, ref: np.ndarray, what: str) -> None:
    """max |diff| <= 1e-4 * max|ref| + 1e-5: relative to the output's scale."""
    assert out.shape == ref.shape, f"{what}: shape {out.shape} != {ref.shape}"
    err, tol = float(np.abs(out - ref).max()), 1e-4 * float(np.abs(ref).max()) + 1e-5
    assert err <= tol, f"{what}: max |diff| {err:.3g} > tolerance {tol:.3g}"


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_zoo_models_are_seeded_and_exercise_batchnorm(name):
    a, shape = zoo.build(name)
    b, _ = zoo.build(name)
    other, _ = zoo.build(name, seed=1)
    sa, sb, so = a.state_dict(), b.state_dict(), other.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], so[k]) for k in sa if sa[k].is_floating_point())
    assert not a.training
    for m in a.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial stats: folding mistakes show
            assert not torch.allclose(m.running_var, torch.ones_like(m.running_var))
            assert not torch.allclose(m.running_mean, torch.zeros_like(m.running_mean))
    out = a(torch.from_numpy(zoo.sample_input(shape, 2)))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name,exporter", CASES)
def test_export_matches_torch(zoo_onnx, name, exporter):
    x = zoo.sample_input(zoo_onnx.input_shape(name), n=3, seed=1)
    with torch.no_grad():
        ref = zoo_onnx.model(name)(torch.from_numpy(x)).numpy()
    _assert_close(_ort_run(zoo_onnx(name, exporter), x), ref, f"{name}/{exporter} onnxruntime vs torch")


@pytest.mark.parametrize("name,exporter", CASES)
def test_snncc_float_runtime_matches_onnxruntime(zoo_onnx, name, exporter):
    path = zoo_onnx(name, exporter)
    x = zoo.sample_input(zoo_onnx.input_shape(name), n=4, seed=2)
    graph = snncc.load_onnx(path)
    _assert_close(np.asarray(snncc.run(graph, x)), _ort_run(path, x), f"{name}/{exporter} snncc vs onnxruntime")


def test_digits_fixture_is_accurate(digits):
    assert digits.x_train.shape[1:] == (1, 8, 8) and digits.x_train.dtype == np.float32
    assert len(digits.x_test) == 540 and digits.y_test.dtype == np.int64
    assert 0.0 <= digits.x_train.min() and digits.x_train.max() <= 1.0
    assert digits.ann_test_accuracy >= 0.97


@pytest.mark.parametrize("exporter", zoo.EXPORTERS)
def test_digits_accuracy_through_snncc_equals_torch(digits, exporter):
    path = digits.onnx_path if exporter == "torchscript" else digits.onnx_path_dynamo
    logits = np.asarray(snncc.run(snncc.load_onnx(path), digits.x_test))
    _assert_close(logits, _ort_run(path, digits.x_test), f"digits/{exporter} snncc vs onnxruntime")
    acc = float((logits.argmax(1) == digits.y_test).mean())
    assert acc == digits.ann_test_accuracy


def test_digits_training_is_deterministic():
    import train

    x, y, _, _ = train.load_digits_split()
    a = train.train(train.build_cnn(), x[:256], y[:256], epochs=2).state_dict()
    b = train.train(train.build_cnn(), x[:256], y[:256], epochs=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_committed_digits_example_is_current(digits, digits_example):
    """The shipped files come from train.py as it is now, on the same split.

    A fresh training run is not compared weight for weight or prediction for prediction:
    torch training is not bit-identical across CPU types (an AVX-512 machine trains
    weights that change 2 of 540 predictions).  Instead ``provenance.json`` records the
    hash of train.py and of the split the ONNX was made from and the accuracy it reached;
    a train.py change without regenerating the example fails here.  The shipped accuracy
    must also be within a band of this session's fresh training (training seeds 0-2
    reached 0.9926-0.9944 here; the shipped model 0.9926)."""
    import train

    data = np.load(digits_example.calib_path)
    assert sorted(data.files) == ["x", "y"]
    np.testing.assert_array_equal(data["x"], digits.x_test)
    np.testing.assert_array_equal(data["y"], digits.y_test)
    record = json.loads((digits_example.folder / "provenance.json").read_text())
    shipped = float((_ort_run(digits_example.onnx_path, data["x"]).argmax(1) == data["y"]).mean())
    expected = train.provenance(data["x"], data["y"], shipped, train.SEED, train.EPOCHS)
    assert record == expected, "examples/digits is stale: run `python examples/digits/train.py` and commit its files"
    print(f"MEASURE digits ANN fresh {digits.ann_test_accuracy:.4f} shipped {shipped:.4f}")
    assert abs(shipped - digits.ann_test_accuracy) <= 0.02, (shipped, digits.ann_test_accuracy)


def test_digits_zoo_trains_a_residual_net(digits_zoo):
    d = digits_zoo("resnet8")
    print(f"MEASURE resnet8 ANN {d.ann_test_accuracy:.4f}")
    assert d.ann_test_accuracy >= 0.95
    logits = np.asarray(snncc.run(snncc.load_onnx(d.onnx_path), d.x_test))
    assert float((logits.argmax(1) == d.y_test).mean()) == d.ann_test_accuracy
    with pytest.raises(KeyError, match="lenet"):
        digits_zoo("lenet")


def test_train_script_writes_both_files(tmp_path, capsys):
    import train

    assert train.main(["--out", str(tmp_path), "--epochs", "1"]) == 0
    assert "ANN test accuracy" in capsys.readouterr().out
    data = np.load(tmp_path / "digits_calib.npz")
    assert data["x"].dtype == np.float32 and data["x"].shape == (540, 1, 8, 8)
    assert data["y"].dtype == np.int64 and data["y"].shape == (540,)
    assert _ort_run(tmp_path / "digits_cnn.onnx", data["x"][:5]).shape == (5, 10)
