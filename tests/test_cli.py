"""The command line: help, version, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
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


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    for frag in fragments:
        assert frag in lines[0], lines[0]


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert "snncc" in result.output


@pytest.mark.parametrize("command", [None, "inspect", "run", "compile", "finetune", "verify", "report", "sweep"])
def test_every_help_has_examples(command):
    args = ["--help"] if command is None else [command, "--help"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output


def test_not_onnx_file(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"this is not a protobuf at all \x00\xff")
    assert_one_line_error(invoke("inspect", bad), "model.onnx")


def test_missing_model(tmp_path):
    assert_one_line_error(invoke("inspect", tmp_path / "nope.onnx"), "nope.onnx")


def test_inspect_digits():
    result = invoke("inspect", DIGITS)
    assert result.exit_code == 0, result.output
    assert "conv" in result.output and "MACs" in result.output
    assert "all ops are supported" in result.output


def test_run_digits(tmp_path):
    x = np.load(DIGITS_CALIB)["x"][:5]
    np.save(tmp_path / "x.npy", x)
    result = invoke("run", DIGITS, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert result.exit_code == 0, result.output
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (5, 10)


def test_run_bad_input_file(tmp_path):
    (tmp_path / "x.npy").write_text("nope")
    assert_one_line_error(invoke("run", DIGITS, "--input", tmp_path / "x.npy"), "--input")


def test_run_input_shape_mismatch(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 5, 5), np.float32))
    assert_one_line_error(invoke("run", DIGITS, "--input", tmp_path / "x.npy"), "shape")


@pytest.mark.parametrize("args, fragment", [
    (["--weight-bits", "1"], "--weight-bits"),
    (["--weight-bits", "9"], "--weight-bits"),
    (["--levels", "0"], "--levels"),
    (["--timesteps", "0"], "--timesteps"),
    (["--threshold", "median"], "--threshold"),
    (["--threshold", "percentile:abc"], "percentile"),
    (["--membrane-bits", "2"], "--membrane-bits"),
    (["--layer-bits", "conv1"], "--layer-bits"),
    (["--layer-bits", "conv1=x"], "--layer-bits"),
    (["--weight-quantizer", "magic"], "--weight-quantizer"),
])
def test_bad_options(tmp_path, args, fragment):
    out = tmp_path / "out"
    result = invoke("compile", DIGITS, "--calib", DIGITS_CALIB, "-o", out, *args)
    assert_one_line_error(result, fragment)
    assert not out.exists()


def test_missing_calib_refused(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(DIGITS.read_bytes())
    result = invoke("compile", model, "-o", tmp_path / "out")
    assert_one_line_error(result, "--calib")
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    result = invoke("compile", DIGITS, "--calib", DIGITS_CALIB, "-o", out)
    assert_one_line_error(result, "--force")
    assert (out / "keep.txt").read_text() == "user file"


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_unwritable_output(tmp_path, where):
    if where == "under_a_file":
        (tmp_path / "file.txt").write_text("x")
        out = tmp_path / "file.txt" / "out"
    else:  # /proc refuses new folders even for root
        out = Path("/proc/snncc-test-output")
    result = invoke("compile", DIGITS, "--calib", DIGITS_CALIB, "-o", out)
    assert_one_line_error(result, "-o/--output")
    assert not out.exists()


def test_no_traceback_from_console_script(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07\x12")  # a truncated protobuf
    proc = subprocess.run([sys.executable, "-m", "snncc", "inspect", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# --- click's usage errors: one line in snncc's style, on every command ---------------

USAGE_ERRORS = [
    # (words after the command, fragment the one line must name)
    (["compile", DIGITS, "--step-search", "1"], "--step-search"),
    (["compile", DIGITS, "--step-search=yes"], "--step-search"),
    (["compile", DIGITS, "--no-bias-correction=0"], "--no-bias-correction"),
    (["compile", DIGITS, "--weight-bits", "x"], "--weight-bits"),
    (["compile", DIGITS, "--weight-rounding", "foo"], "--weight-rounding"),
    (["compile", DIGITS, "--report", "pdf"], "--report"),
    (["compile", DIGITS, "--forc"], "--forc"),
    (["compile", DIGITS, "extra"], "extra"),
    (["compile", DIGITS, "--levels"], "--levels"),
    (["compile"], "MODEL"),
    (["verify", DIGITS, "--target", "vhdl"], "--target"),
    (["verify", DIGITS, "--max-top1-drop", "one"], "--max-top1-drop"),
    (["verify", DIGITS, "--data"], "--data"),
    (["sweep", DIGITS, "--jobs", "x"], "--jobs"),
    (["sweep", DIGITS, "--force=yes"], "--force"),
    (["report", "r.json", "--text=1"], "--text"),
    (["run", DIGITS], "--input"),
    (["inspect"], "MODEL"),
    (["inspect", DIGITS, "--canonical", "yes"], "--canonical"),
    (["--bogus"], "--bogus"),
    (["nosuch"], "nosuch"),
]


@pytest.mark.parametrize("args, fragment", USAGE_ERRORS, ids=lambda v: " ".join(map(str, v))
                         if isinstance(v, list) else None)
def test_usage_errors_are_one_line(tmp_path, args, fragment):
    out = tmp_path / "out"
    if args[0] in ("compile", "sweep") and len(args) > 1:
        args = [*args[:2], "--calib", DIGITS_CALIB, "-o", out, *args[2:]]
    result = invoke(*args)
    assert_one_line_error(result, fragment)
    line = result.output.strip()
    assert line.startswith("error: ") and "Usage:" not in line and "Error:" not in line, line
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_stray_value_after_a_flag_names_the_flag():
    result = invoke("compile", DIGITS, "--step-search", "1")
    assert_one_line_error(result, "option --step-search is a flag", "'1'", "--no-step-search")


def test_no_arguments_still_prints_the_help():
    result = invoke()
    assert "Usage:" in result.output and "Commands:" in result.output
    assert "error:" not in result.output


def test_usage_error_from_console_script_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "snncc", "compile", str(DIGITS), "--weight-bits", "x",
                           "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: option --weight-bits: 'x' is not a valid integer; see 'snncc compile --help'"]
    assert not (tmp_path / "out").exists()


# --- errors caused by a config file name the file and the key ----------------------

def _model_with_config(tmp_path, toml: str, name: str = "snncc.toml") -> Path:
    model = tmp_path / "m.onnx"
    model.write_bytes(DIGITS.read_bytes())
    (tmp_path / name).write_text(toml)
    return model


@pytest.mark.parametrize("toml, fragments", [
    ("calib_batch = 0\n", ["other.toml", "'calib_batch'", "must be >= 1"]),
    ("[quantize]\nmembrane_bits = 2\n", ["other.toml", "'quantize.membrane_bits'", "4..32"]),
    ("[convert]\nthreshold = 'median'\n", ["other.toml", "'convert.threshold'"]),
])
def test_bad_value_from_config_names_the_file(tmp_path, toml, fragments):
    model = _model_with_config(tmp_path, toml, "other.toml")
    out = tmp_path / "out"
    result = invoke("compile", model, "--calib", DIGITS_CALIB, "--config", tmp_path / "other.toml", "-o", out)
    assert_one_line_error(result, "option --config:", *fragments)
    assert "--calib-batch" not in result.output and not out.exists()


def test_bad_flag_over_a_config_value_names_the_flag(tmp_path):
    model = _model_with_config(tmp_path, "[quantize]\nmembrane_bits = 12\n")
    result = invoke("compile", model, "--calib", DIGITS_CALIB, "--membrane-bits", "3", "-o", tmp_path / "out")
    assert_one_line_error(result, "option --membrane-bits must be in 4..32, got 3")
    assert "snncc.toml" not in result.output and not (tmp_path / "out").exists()


def test_unknown_layer_in_config_table_names_the_file_and_key(tmp_path):
    # Refused in the quantize pass, after calibration: the error still names the file.
    model = _model_with_config(tmp_path, "[quantize.layer_bits]\nfirst = 8\nfrist = 4\n")
    out = tmp_path / "out"
    result = invoke("compile", model, "--calib", DIGITS_CALIB, "-o", out, "--report", "none")
    assert_one_line_error(result, "option --config: key 'quantize.layer_bits.frist' in",
                          str(tmp_path / "snncc.toml"), "'frist'")
    assert not out.exists()


def test_unknown_layer_given_as_a_flag_names_the_flag(tmp_path):
    model = _model_with_config(tmp_path, "[quantize.layer_bits]\nfirst = 8\n")
    result = invoke("compile", model, "--calib", DIGITS_CALIB, "--layer-bits", "frist=4", "-o", tmp_path / "out")
    assert_one_line_error(result, "option --layer-bits", "'frist'")
    assert "snncc.toml" not in result.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["compile", "verify", "sweep"])
def test_missing_calib_names_the_config_file(tmp_path, command):
    model = _model_with_config(tmp_path, "[quantize]\nweight_bits = 6\n", "other.toml")
    result = invoke(command, model, "--config", tmp_path / "other.toml", "-o", tmp_path / "out") \
        if command != "verify" else invoke(command, model, "--config", tmp_path / "other.toml")
    assert_one_line_error(result, "option --calib is required", f"{tmp_path / 'other.toml'} has no [compile] calib")
    assert "snncc.toml" not in result.output and not (tmp_path / "out").exists()


def test_layer_bits_flags_merge_into_the_config_table(tmp_path):
    from snncc.cli import _build_options

    model = _model_with_config(tmp_path, '[compile]\ncalib = "c.npz"\n[quantize]\nweight_bits = 4\n'
                                         '[quantize.layer_bits]\nfirst = 8\nlast = 8\n')
    options, calib = _build_options({"layer_bits": ("last=6", "conv2=5"), "weight_bits": 6}, model)
    assert options.layer_bits == {"first": 8, "last": 6, "conv2": 5}  # the file's first=8 stays
    assert options.weight_bits == 6 and calib == str(tmp_path / "c.npz")
