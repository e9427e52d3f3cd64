"""The N-MNIST example (examples/nmnist): event-count frames, an exact int8 input.

The recordings live outside the project (../shared/data), so these tests use only
the committed files: the ONNX model and its calibration frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from snncc.cli import cli
from snncc.compiler import compile_model
from snncc.config import open_config
from snncc.options import CompileOptions
from snncc.sim.int_runtime import quantize_input

NMNIST = Path(__file__).resolve().parents[1] / "examples" / "nmnist"
FAST = ["--threshold-search", "none", "--no-bias-correction"]  # exactness does not depend on threshold quality


def _calib():
    with np.load(NMNIST / "nmnist_calib.npz") as f:
        return f["x"], f["y"]


def test_calibration_frames_are_small_integer_counts():
    x, y = _calib()
    assert (NMNIST / "nmnist_calib.npz").stat().st_size <= 1_000_000
    assert x.shape == (300, 2, 34, 34) and y.shape == (300,)
    assert np.array_equal(x, np.rint(x)) and x.min() >= 0 and x.max() <= 127
    record = json.loads((NMNIST / "provenance.json").read_text())
    assert x.max() <= record["max_count"] <= 127


def test_input_scale_one_makes_the_int8_input_the_count_itself():
    options = CompileOptions()
    for key, value in open_config(NMNIST / "snncc.toml").overrides.items():
        setattr(options, key, value)
    assert options.input_scale == 1.0
    options.threshold_search, options.bias_correction = "none", False
    x, _ = _calib()
    result = compile_model(NMNIST / "nmnist_cnn.onnx", options=options, calib=str(NMNIST / "nmnist_calib.npz"),
                           echo=lambda _m: None)
    assert result.report["quantization"]["input_scale"] == 1.0
    assert np.array_equal(quantize_input(result.int_graph, x), x)  # no rounding anywhere on real counts


def test_verify_c_is_bit_exact_on_counts_and_saturating_inputs(tmp_path):
    x, y = _calib()
    rng = np.random.default_rng(2)
    extremes = np.stack([np.full((2, 34, 34), v, np.float32) for v in (0.0, 127.0, 500.0, -500.0)])
    sparse = (rng.random((8, 2, 34, 34)) < 0.05) * rng.integers(1, 40, (8, 2, 34, 34))
    data = tmp_path / "data.npz"
    np.savez(data, x=np.concatenate([x[:100], extremes, sparse.astype(np.float32)]))
    result = CliRunner().invoke(cli, ["verify", str(NMNIST / "nmnist_cnn.onnx"), "--target", "c",
                                      "--data", str(data), *FAST])
    assert result.exit_code == 0, result.output
    assert "[ok] integer runtime == C: 1120 outputs of 112 samples bit-exact" in result.output, result.output
    print(f"MEASURE nmnist verify\n{result.output}")
