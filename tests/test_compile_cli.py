"""`snncc compile` and `snncc verify` end to end on the shipped digits example."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from snncc.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits" / "digits_cnn.onnx"
DIGITS_CALIB = ROOT / "examples" / "digits" / "digits_calib.npz"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def compiled_c(tmp_path_factory):
    out = tmp_path_factory.mktemp("c") / "digits"
    result = invoke("compile", DIGITS, "--target", "c", "-o", out)  # calib from examples/digits/snncc.toml
    assert result.exit_code == 0, result.output
    return out, result.output


def test_compile_c_writes_the_library(compiled_c):
    out, output = compiled_c
    names = sorted(p.name for p in out.iterdir())
    for want in ("digits_cnn.h", "digits_cnn.c", "digits_cnn_weights.c", "snncc_kernels.c", "snncc_kernels.h",
                 "Makefile", "CMakeLists.txt", "main_host.c", "report.json"):
        assert want in names, names
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".digits.tmp")]
    assert "wrote" in output


def test_report_json_schema(compiled_c):
    out, _ = compiled_c
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 1
    assert report["target"] == "c"
    assert report["model"] == "digits_cnn.onnx"
    for key in ("options", "accuracy", "activity", "energy", "memory", "layers"):
        assert key in report, key
    acc = report["accuracy"]
    for key in ("ann", "snn", "top1_agreement"):
        assert 0.0 <= acc[key] <= 1.0
    assert acc["ann"] > 0.95 and acc["snn"] > 0.94
    for key in ("spike_events", "spike_levels", "sops"):
        assert report["activity"][key] > 0
    assert report["energy"]["snn_pj"] > 0 and report["energy"]["ann_pj"] > 0
    assert "4.6" in report["energy"]["model"] and "0.9" in report["energy"]["model"]
    mem = report["memory"]
    assert mem["weight_bits"] > 0 and mem["fp32_weight_bytes"] > 0 and mem["compression"] > 1
    assert all("spike_rate" in layer for layer in report["layers"] if layer["op"] == "neuron")
    assert report["options"]["levels"] == 4


def test_compile_is_deterministic(compiled_c, tmp_path):
    out, _ = compiled_c
    again = tmp_path / "again"
    result = invoke("compile", DIGITS, "--target", "c", "-o", again, "--report", "none")
    assert result.exit_code == 0, result.output
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    second = {p.name: p.read_bytes() for p in again.iterdir()}
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], f"{name} differs between two compiles"


def test_compile_python_target(tmp_path):
    out = tmp_path / "py"
    result = invoke("compile", DIGITS, "--target", "python", "-o", out, "-N", "2", "--report", "none")
    assert result.exit_code == 0, result.output
    assert (out / "digits_cnn.json").is_file() and (out / "digits_cnn.npz").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["target"] == "python" and report["options"]["levels"] == 2


@pytest.mark.parametrize("breakage", ["truncated", "late_quantize_error"])
def test_failed_compile_leaves_nothing(tmp_path, breakage):
    out = tmp_path / "out"
    model = tmp_path / "m.onnx"
    if breakage == "truncated":
        args = ["--calib", DIGITS_CALIB]
        model.write_bytes(DIGITS.read_bytes()[:5000])
    else:
        # Fails in the quantize pass, after calibration and conversion ran.
        model.write_bytes(DIGITS.read_bytes())
        args = ["--calib", DIGITS_CALIB, "--layer-bits", "no_such_layer=4"]
    result = invoke("compile", model, "-o", out, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_verify_python_passes():
    result = invoke("verify", DIGITS, "--target", "python", "--max-top1-drop", "2")
    assert result.exit_code == 0, result.output
    assert "verify: PASSED" in result.output
    assert "[ok] onnxruntime ~ float IR" in result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("[ok] float SNN vs integer SNN"))
    pcts = [float(p) for p in re.findall(r"([0-9.]+)%", line)]
    assert len(pcts) == 3 and pcts[0] >= 99.0 and pcts[1] <= pcts[0] and 90.0 <= pcts[2] <= 100.0, line


def test_verify_c_passes():
    result = invoke("verify", DIGITS, "--target", "c")
    assert result.exit_code == 0, result.output
    assert "bit-exact" in result.output


def test_verify_fails_on_too_large_drop():
    # N=1, T=1 loses far more than 0.1 points on digits: verify must exit 1.
    result = invoke("verify", DIGITS, "--target", "python", "-N", "1", "--max-top1-drop", "0.1")
    assert result.exit_code == 1, result.output
    assert "exceeds --max-top1-drop" in result.output


def test_verify_missing_compiler():
    result = invoke("verify", DIGITS, "--target", "c", "--cc", "no-such-cc-xyz")
    assert result.exit_code == 2
    assert "no-such-cc-xyz" in result.output
    assert len(result.output.strip().splitlines()) == 1
