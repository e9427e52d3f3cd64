"""Helpers shared by the interop tests (tests/test_qonnx.py, tests/test_nir.py) and
bench/interop_agreement.py: a model compiled once up to the passes that do not depend on
levels or weight bits, then finished for each (N, T, bits); the digits CNN with its max
pool replaced by an average pool (NIR has no max pool); the probe inputs."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from snncc.calib_data import load_calib
from snncc.frontend.onnx_import import load_onnx
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.pass_manager import run_pipeline
from snncc.passes import DEFAULT_PIPELINE

# Fast compile options: bit-exactness of an export does not depend on threshold or rounding quality.
FAST = {"threshold_search": "none", "bias_correction": False, "step_search": False, "weight_rounding": "nearest"}
FRONT = DEFAULT_PIPELINE[: DEFAULT_PIPELINE.index("convert")]  # canonicalize, calibrate, residual
# The same for the CLI runs, which also take 64 calibration samples (small_calib).
CLI_FAST = ["--threshold-search", "none", "--no-bias-correction", "--no-step-search", "--weight-rounding", "nearest"]


def small_calib(calib_path: Path, folder: Path, n: int = 64) -> Path:
    """The first ``n`` samples of a calibration .npz, saved as ``folder/calib.npz``."""
    path = Path(folder) / "calib.npz"
    np.savez(path, x=np.load(calib_path)["x"][:n])
    return path


class Staged:
    """An ONNX model run through the front passes once; ``finish(**opts)`` compiles the rest."""

    def __init__(self, onnx_path: Path, calib_x: np.ndarray):
        self.onnx_path = Path(onnx_path)
        self.graph = load_onnx(onnx_path)
        self.shape = self.graph.values[self.graph.inputs[0]].shape
        self.calib = np.asarray(calib_x, np.float32)
        self.front = run_pipeline(self.graph, FRONT, self._context(), echo=lambda s: None)

    def _context(self, **opts) -> PassContext:
        return PassContext(CompileOptions(**{**FAST, **opts}), calib=load_calib(self.calib, self.shape))

    def finish(self, **opts):
        rest = DEFAULT_PIPELINE[len(FRONT):]
        return run_pipeline(self.front.copy(), rest, self._context(**opts), echo=lambda s: None)


def probe_inputs(shape, real_q: np.ndarray | None = None, n_random: int = 3, seed: int = 0) -> np.ndarray:
    """int8 inputs: real samples (already quantized), random ones, all -128, all 127."""
    rng = np.random.default_rng(seed)
    parts = [] if real_q is None else [np.asarray(real_q, np.int8)]
    parts += [rng.integers(-128, 128, (n_random, *shape)).astype(np.int8),
              np.full((1, *shape), -128, np.int8), np.full((1, *shape), 127, np.int8)]
    return np.concatenate(parts)


def digits_avgpool(model, folder: Path) -> Path:
    """The trained digits CNN with its MaxPool2d replaced by AvgPool2d of the same window,
    exported to ONNX: the same network in NIR's portable nodes (a sum pool)."""
    import train
    from torch import nn

    model = copy.deepcopy(model)
    for name, module in list(model.named_children()):
        if isinstance(module, nn.MaxPool2d):
            setattr(model, name, nn.AvgPool2d(module.kernel_size, module.stride))
    return train.export_onnx(model, Path(folder) / "digits_cnn_avgpool.onnx")
