"""Regression tests for the compiler bugs that differential fuzzing (docs/fuzzing.md) found."""

from __future__ import annotations

import numpy as np
import onnx
from fuzz_graphs import OnnxBuilder

from snncc.calib_data import load_calib
from snncc.frontend.onnx_import import load_onnx
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.pass_manager import run_pipeline
from snncc.passes import DEFAULT_PIPELINE
from snncc.passes.weight_rounding import GPTQ_MAX_FAN_IN


def test_gptq_skips_layers_too_wide_for_its_matrix(tmp_path):
    """bench/fuzz.py seed 8001: a 1x1 conv of 527 channels, flattened into a dense layer
    of fan-in 18445 (a model of 184k weights, so "auto" picks GPTQ) made quantize
    allocate an 18445^2 float64 H and its copies: 13 GB peak, then MemoryError.
    A layer wider than GPTQ_MAX_FAN_IN now keeps nearest rounding, with a note."""
    b = OnnxBuilder((2, 3, 3), np.random.default_rng(0))
    h = b.act(b.conv("x", 520, k=1, pads=(0, 0, 0, 0)), "relu")  # fan-in of the dense: 520 * 9 = 4680
    out = b.dense(b.flatten(h), 10)
    path = tmp_path / "wide.onnx"
    onnx.save(b.model(out), path)
    graph = load_onnx(path)
    ctx = PassContext(CompileOptions(threshold_search="none", weight_rounding="auto"),
                      load_calib(np.random.default_rng(1).standard_normal((16, 2, 3, 3)).astype(np.float32), (2, 3, 3)))
    g = run_pipeline(graph, DEFAULT_PIPELINE, ctx, echo=lambda s: None)
    notes = ctx.notes
    assert g.meta["notes"] == notes  # the IR records them
    assert 520 * 9 > GPTQ_MAX_FAN_IN
    wide = [n for n in notes if "fan-in exceeds GPTQ's" in n]
    assert len(wide) == 1 and "(4680)" in wide[0], notes
    assert any("GPTQ weight rounding in 1 layer(s)" in n for n in notes), notes  # the conv still gets GPTQ
