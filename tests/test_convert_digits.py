"""Accuracy acceptance on the trained digits CNN: T=1, mse thresholds, held-out test split."""

from __future__ import annotations

import pytest

import snncc
from snncc.calib_data import load_calib
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.pass_manager import run_pipeline
from snncc.sim.snn_sim import simulate


def _snn_accuracy(digits, **kw) -> float:
    g = snncc.load_onnx(digits.onnx_path)
    ctx = PassContext(CompileOptions(threshold="mse", timesteps=1, **kw).validate(),
                      load_calib(digits.x_calib, (1, 8, 8)))  # calibrate on training images
    snn = run_pipeline(g, ["canonicalize", "calibrate", "convert"], ctx)
    pred = simulate(snn, digits.x_test).logits.argmax(1)
    return float((pred == digits.y_test).mean())


@pytest.fixture(scope="module")
def ann_accuracy(digits) -> float:
    g = snncc.load_onnx(digits.onnx_path)
    acc = float((snncc.run(g, digits.x_test).argmax(1) == digits.y_test).mean())
    assert acc == pytest.approx(digits.ann_test_accuracy, abs=0.002)
    return acc


# drops measured over training seeds 1-3: N=4 0.0074-0.0093, N=2 0.0185-0.0259 (seed 0 passed
# the old 0.010/0.030 bounds); bounds keep a margin over the largest drop seen (docs/testing.md).
@pytest.mark.parametrize("levels, max_drop", [(4, 0.020), (2, 0.045)])
def test_t1_mse_accuracy_is_close_to_the_ann(digits, ann_accuracy, levels, max_drop):
    acc = _snn_accuracy(digits, levels=levels)  # defaults: output-aware search + bias correction
    print(f"MEASURE convert_digits N={levels} drop {ann_accuracy - acc:.4f}")
    assert acc >= ann_accuracy - max_drop, (levels, acc, ann_accuracy)
