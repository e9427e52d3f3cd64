"""C backend end to end: ONNX -> pass pipeline -> C, bit-exact against run_int.

Zoo models (seeded random weights) are compiled with fast options (no output-aware
threshold search, no bias correction, few calibration samples): bit-exactness does
not depend on threshold quality.  The digits CNN uses real data.
"""

from __future__ import annotations

import numpy as np
import pytest
from c_graphs import sample_inputs, simd_builds

from snncc.backends.c.emit import emit_c
from snncc.backends.c.verify_c import build_host, compare_c, flat_outputs
from snncc.calib_data import load_calib
from snncc.frontend.onnx_import import load_onnx
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.pass_manager import run_pipeline
from snncc.passes import DEFAULT_PIPELINE
from snncc.sim.int_runtime import quantize_input, run_int


def compile_int(onnx_path, calib_x, **opts):
    graph = load_onnx(onnx_path)
    ctx = PassContext(CompileOptions(**opts),
                      load_calib(np.asarray(calib_x, np.float32), graph.values[graph.inputs[0]].shape))
    return run_pipeline(graph, DEFAULT_PIPELINE, ctx, echo=lambda s: None)


FAST = {"threshold_search": "none", "bias_correction": False}

ZOO_CASES = [
    ("lenet", {"levels": 4, "timesteps": 1}),
    ("vgg_small", {"levels": 2, "timesteps": 4, "weight_bits": 4}),
    ("resnet20", {"levels": 4, "timesteps": 1}),
    ("sew_resnet", {"levels": 2, "timesteps": 4, "weight_bits": 4}),
    ("mobilenetv2_block", {"levels": 15, "timesteps": 1}),
    ("concat_net", {"levels": 1, "timesteps": 4, "weight_bits": 2}),
    ("preact_resnet", {"levels": 2, "timesteps": 3, "weight_bits": 4}),  # affines on int32 currents
]


@pytest.mark.parametrize("name,opts", ZOO_CASES, ids=[c[0] for c in ZOO_CASES])
def test_zoo_bit_exact(zoo_onnx, tmp_path, name, opts):
    shape = zoo_onnx.input_shape(name)
    calib = np.random.default_rng(0).standard_normal((16,) + shape).astype(np.float32)
    graph = compile_int(zoo_onnx(name), calib, **FAST, **opts)
    out = tmp_path / "c"
    out.mkdir()
    emit_c(graph, out)
    x = sample_inputs(shape, n=100)
    expected = flat_outputs(graph, run_int(graph, x))
    for opt, _ in simd_builds(sse2=False, portable=False):  # the host's x86 kernels: AVX-512 VNNI, AVX2
        res = compare_c(graph, out, x, exe=build_host(out, opt=opt), expected=expected)
        assert res.ok, f"{opt}: {res.summary()}"


@pytest.fixture(scope="module")
def digits_int(digits):
    """The session's digits CNN compiled at T=1, N=4, 8-bit (default options)."""
    return compile_int(digits.onnx_path, digits.x_calib, levels=4, timesteps=1)


def _digits_inputs(graph, digits):
    x_real = quantize_input(graph, digits.x_test)
    return np.concatenate([x_real, sample_inputs(x_real.shape[1:], n=100)])


def test_digits_bit_exact_plain_and_sanitized(digits, digits_int, tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    emit_c(digits_int, out)
    x = _digits_inputs(digits_int, digits)
    expected = flat_outputs(digits_int, run_int(digits_int, x))
    for exe in (build_host(out), build_host(out, sanitize=True), build_host(out, opt="-O2 -DSNNCC_NO_SIMD")):
        res = compare_c(digits_int, out, x, exe=exe, expected=expected)
        assert res.ok, res.summary()
    # the C logits classify the real test images like the runtime does, and well
    acc = float(np.mean(expected[: len(digits.y_test)].argmax(1) == digits.y_test))
    print(f"MEASURE c_zoo digits C accuracy {acc:.4f}")
    assert acc > 0.9


@pytest.mark.parametrize("opts", [{"levels": 2, "timesteps": 4, "weight_bits": 4, "membrane_bits": 12,
                                   "membrane_shift": 2},
                                  {"levels": 15, "timesteps": 1, "weight_bits": 2}],
                         ids=["N2_T4_b4_mb12_k2", "N15_T1_b2"])
def test_digits_variants(digits, tmp_path, opts):
    graph = compile_int(digits.onnx_path, digits.x_calib[:64], **FAST, **opts)
    out = tmp_path / "c"
    out.mkdir()
    emit_c(graph, out)
    res = compare_c(graph, out, _digits_inputs(graph, digits))
    assert res.ok, res.summary()
