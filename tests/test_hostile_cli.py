"""Hostile options, config files, names and output folders: one `error:` line, exit 2,
nothing written (issue 12, section 2)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from hostile_models import FAST, invoke, leftovers, one_line_error, save_model, tiny_model
from onnx import TensorProto, helper

from snncc.passes import DEFAULT_PIPELINE


@pytest.fixture
def model(tmp_path) -> Path:
    return save_model(tmp_path / "m")


# --- snncc run ---------------------------------------------------------------------

def test_run_output_in_a_missing_folder(tmp_path, model):
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 6, 6), np.float32))
    out = tmp_path / "no" / "such" / "y.npy"
    one_line_error(invoke("run", model, "--input", tmp_path / "x.npy", "--output", out),
                   "option --output", "does not exist")
    assert not (tmp_path / "no").exists()


def test_run_prints_the_path_it_wrote(tmp_path, model):
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 6, 6), np.float32))
    result = invoke("run", model, "--input", tmp_path / "x.npy", "--output", tmp_path / "y")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {tmp_path / 'y.npy'} [2, 3]"
    assert np.load(tmp_path / "y.npy").shape == (2, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "x.npy", "y.npy"]


# --- snncc.toml -----------------------------------------------------------------------

def test_config_not_utf8(model):
    cfg = model.parent / "snncc.toml"
    cfg.write_bytes(b"seed = 1\n# caf\xe9 \xff\xfe\n")
    one_line_error(invoke("compile", model, "-o", model.parent / "out", *FAST), "option --config", str(cfg),
                   "not UTF-8")


@pytest.mark.parametrize("line,key,fragment", [
    ("seed = -1", "seed", "must be in 0..4294967295, got -1"),
    ("[calibrate]\ncalib_batch = 0", "calibrate.calib_batch", "must be >= 1, got 0"),
    ("calib_reservoir = 3", "calib_reservoir", "in 16..1048576"),
    ("barrier_scale = inf", "barrier_scale", "must be a finite number > 0"),
    ("[quantize]\nmembrane_shift = 40", "quantize.membrane_shift", "in 0..14"),
])
def test_config_values_are_validated_when_read(model, line, key, fragment):
    cfg = model.parent / "snncc.toml"
    cfg.write_text(line + "\n")
    for command in (["compile", model, "-o", model.parent / "out", *FAST],
                    ["sweep", model, "-N", "2", "--weight-bits", "8", "-o", model.parent / "sw"]):
        one_line_error(invoke(*command), f"option --config: key {key!r} in {cfg}", fragment)
    assert not (model.parent / "out").exists() and not (model.parent / "sw").exists()


def test_config_layer_bits_error_from_a_pass_names_the_file(model):
    cfg = model.parent / "snncc.toml"
    cfg.write_text("[quantize.layer_bits]\nconv9 = 4\n")
    one_line_error(invoke("compile", model, "-o", model.parent / "out", *FAST),
                   f"option --config: key 'quantize.layer_bits.conv9' in {cfg}: unknown layer 'conv9'")
    # the same mistake as a flag is the flag's
    cfg.unlink()
    one_line_error(invoke("compile", model, "-o", model.parent / "out", "--layer-bits", "conv9=4", *FAST),
                   "option --layer-bits: unknown layer 'conv9'")


def test_flag_value_is_validated_at_parse_time(model):
    one_line_error(invoke("compile", model, "--barrier-scale", "nan", *FAST), "option --barrier-scale",
                   "finite number > 0")


# --- verify --cc --------------------------------------------------------------------

def test_verify_cc_that_writes_no_binary(tmp_path, model, monkeypatch):
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    true = shutil.which("true")
    assert true, "needs the `true` program (coreutils)"
    one_line_error(invoke("verify", model, "--target", "c", "--cc", true, *FAST), "option --cc",
                   "exited 0 but wrote no executable")
    assert list(temp.iterdir()) == []


# --- names ----------------------------------------------------------------------------

@pytest.mark.parametrize("target,name,fragment", [
    ("c", "main_host", "would emit main_host.c"),
    ("c", "stdint", "shadows the C header <stdint.h>"),
    ("c", "String", "shadows the C header <string.h>"),
    ("c", "snncc_kernels", "not a C identifier"),
    ("c", "réseau", "not a C identifier"),
    ("c", "a-b", "not a C identifier"),
    ("python", "report", "would emit report.json"),
    ("python", "../x", "not an identifier"),
])
def test_reserved_or_unsafe_name_is_refused(tmp_path, model, target, name, fragment):
    out = tmp_path / "out"
    one_line_error(invoke("compile", model, "--target", target, "--name", name, "-o", out, *FAST),
                   "option --name", fragment)
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("stem,target,expected", [
    ("réseau", "c", "r_seau.c"),
    ("main_host", "c", "model_main_host.c"),
    ("stdint", "c", "model_stdint.c"),
    ("report", "python", "model_report.json"),
])
def test_default_name_is_sanitized_not_refused(tmp_path, stem, target, expected):
    model = save_model(tmp_path / "m", name=f"{stem}.onnx")
    out = tmp_path / "out"
    result = invoke("compile", model, "--target", target, "-o", out, "--report", "none", *FAST)
    assert result.exit_code == 0, result.output
    assert (out / expected).is_file()
    if target == "c":
        assert (out / "main_host.c").read_text().count("int main") == 1  # the host runner is intact
    else:
        assert '"schema_version"' in (out / "report.json").read_text()


# --- --dump-ir-after, model inputs ------------------------------------------------------

def test_dump_ir_after_unknown_pass(tmp_path, model):
    out = tmp_path / "out"
    one_line_error(invoke("compile", model, "--dump-ir-after", "nosuchpass", "-o", out, *FAST),
                   "option --dump-ir-after", "'nosuchpass'", ", ".join(DEFAULT_PIPELINE))
    assert not out.exists()


def test_zero_dimension_is_reported_as_zero(tmp_path):
    model = save_model(tmp_path / "m", tiny_model(input_shape=(1, 0, 6, 6)), calib=False)
    message = one_line_error(invoke("compile", model, "--calib", "random", *FAST), "dimension 1 is 0")
    assert "dynamic" not in message


def test_second_graph_input(tmp_path):
    m = tiny_model()
    m.graph.input.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3]))
    model = save_model(tmp_path / "m", m, calib=False)
    one_line_error(invoke("compile", model, "--calib", "random", *FAST),
                   "the model has 2 graph inputs ('x', 'z'); snncc takes one")


# --- output folders ---------------------------------------------------------------------

def _other_file_system(tmp_path: Path) -> Path:
    shm = Path("/dev/shm")
    assert shm.is_dir() and os.stat(shm).st_dev != os.stat(tmp_path).st_dev, \
        "needs /dev/shm on another file system than the test's temp folder (a tmpfs, as on Linux)"
    target = shm / f"snncc-test-{uuid.uuid4().hex}"
    target.mkdir()
    return target


@pytest.mark.parametrize("existing", [False, True])
def test_output_symlink_to_another_file_system(tmp_path, model, existing):
    target = _other_file_system(tmp_path)
    try:
        if existing:
            (target / "old.txt").write_text("old")
        link = tmp_path / "out"
        link.symlink_to(target)
        args = ("--force",) if existing else ()
        result = invoke("compile", model, "-o", link, "--report", "none", *args, *FAST)
        assert result.exit_code == 0, result.output
        assert link.is_symlink() and link.resolve() == target.resolve()
        assert (target / "tiny.c").is_file() and not (target / "old.txt").exists()
        assert [p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}")] == []
    finally:
        shutil.rmtree(target, ignore_errors=True)


@pytest.mark.parametrize("what", ["model", "calib", "config"])
def test_force_never_deletes_the_inputs(tmp_path, model, what):
    calib = model.with_name("tiny.calib.npz")
    folder = model.parent if what == "model" else tmp_path / "data"
    extra, config = [], None
    if what == "calib":
        folder.mkdir()
        calib = Path(shutil.copy(calib, folder / "c.npz"))
    if what == "config":  # a config kept in the output folder, away from the model
        folder.mkdir()
        config = folder / "snncc.toml"
        config.write_text("[compile]\nweight_bits = 8\n")
        extra = ["--config", config]
    for command in (["compile", model, "--calib", calib, "-o", folder, "--force", *extra, *FAST],
                    ["sweep", model, "--calib", calib, "-o", folder, "--force", *extra, "-N", "2"]):
        one_line_error(invoke(*command), "option --force", "an input of this command")
    assert model.is_file() and calib.is_file() and (config is None or config.is_file())
