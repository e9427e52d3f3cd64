"""`snncc compile` and `snncc verify` end to end on the shipped digits example."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
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
    # without --data the figures come from the calibration data, and the summary says so
    assert "top-1 agreement ANN vs integer SNN: " in result.output
    assert "on 540 samples of the calibration data" in result.output
    assert "accuracy on the calibration data: ANN" in result.output
    assert "warning:" not in result.output


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


def test_verify_evaluates_on_data(tmp_path):
    z = np.load(DIGITS_CALIB)
    np.savez(tmp_path / "test.npz", x=z["x"][:100], y=z["y"][:100])
    result = invoke("verify", DIGITS, "--target", "python", "--data", tmp_path / "test.npz")
    assert result.exit_code == 0, result.output
    assert f"on 100 samples of {tmp_path / 'test.npz'}" in result.output
    assert f"accuracy on {tmp_path / 'test.npz'}: ANN" in result.output
    assert "calibration data" not in result.output
    assert "100 samples bit-exact" in result.output  # the ladder ran on --data too


def test_verify_data_without_labels_reports_agreement(tmp_path):
    np.save(tmp_path / "x.npy", np.load(DIGITS_CALIB)["x"][:20])
    result = invoke("verify", DIGITS, "--target", "python", "--data", tmp_path / "x.npy")
    assert result.exit_code == 0, result.output
    assert f"on 20 samples of {tmp_path / 'x.npy'}" in result.output
    assert "accuracy on" not in result.output


def _bad_data(tmp_path, kind):
    x = np.load(DIGITS_CALIB)["x"][:4]
    path = tmp_path / ("d.npz" if kind != "suffix" else "d.csv")
    if kind == "keys":
        np.savez(path, a=x, b=x)
    elif kind == "shape":
        np.savez(path, x=np.zeros((4, 3, 5, 5), np.float32))
    elif kind == "nan":
        np.savez(path, x=np.full_like(x, np.nan))
    elif kind == "suffix":
        path.write_text("1,2,3")
    return path


@pytest.mark.parametrize("kind", ["missing", "suffix", "keys", "shape", "nan"])
def test_verify_bad_data_is_one_line(tmp_path, kind):
    path = _bad_data(tmp_path, kind)
    result = invoke("verify", DIGITS, "--target", "python", "--data", path)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("error: option --data") and path.name in lines[0], lines


def test_verify_warns_on_a_large_drop_without_a_budget():
    # 4-bit membranes wreck accuracy (a drop of ~89 points on digits) but every rung holds.
    result = invoke("verify", DIGITS, "--target", "python", "--membrane-bits", "4")
    assert result.exit_code == 0, result.output
    assert "verify: PASSED" in result.output
    warning = [ln for ln in result.output.splitlines() if ln.startswith("warning:")]
    assert len(warning) == 1 and "--max-top1-drop" in warning[0] and "calibration data" in warning[0], warning
    budget = invoke("verify", DIGITS, "--target", "python", "--membrane-bits", "4", "--max-top1-drop", "100")
    assert budget.exit_code == 0 and "warning:" not in budget.output, budget.output


def test_stop_after_and_start_from_give_the_same_library(compiled_c, tmp_path):
    """--stop-after convert writes only the IR; --start-from it runs the rest of the
    pipeline, and the emitted files equal a compile in one go, byte for byte."""
    stop = tmp_path / "stop"
    res = invoke("compile", DIGITS, "--stop-after", "convert", "-o", stop)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in stop.iterdir()) == ["digits_cnn.json", "digits_cnn.npz"]
    assert json.loads((stop / "digits_cnn.json").read_text())["stage"] == "snn"
    resumed = tmp_path / "resumed"
    res = invoke("compile", DIGITS, "--start-from", stop / "digits_cnn", "-o", resumed, "--report", "none")
    assert res.exit_code == 0, res.output
    whole, _ = compiled_c
    for path in sorted(whole.iterdir()):
        if path.is_file():
            assert (resumed / path.name).read_bytes() == path.read_bytes(), path.name


def test_stop_after_unknown_pass_and_resume_from_int_ir_fail(tmp_path):
    res = invoke("compile", DIGITS, "--stop-after", "nonsense", "-o", tmp_path / "x")
    assert res.exit_code == 2 and "option --stop-after: unknown pass 'nonsense'" in res.output
    assert not (tmp_path / "x").exists()
    done = tmp_path / "int"
    assert invoke("compile", DIGITS, "--stop-after", "quantize", "-o", done).exit_code == 0
    res = invoke("compile", DIGITS, "--start-from", done / "digits_cnn", "-o", tmp_path / "y")
    assert res.exit_code == 2 and "nothing to resume" in res.output
