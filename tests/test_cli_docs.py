"""docs/cli.md is generated from the click commands; it must match what the code says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from snncc.cli import cli
from snncc.clidoc import REGENERATE, generate_cli_markdown
from snncc.config import load_config
from snncc.errors import SnnccError
from snncc.options import CompileOptions
from snncc.verify import ORT_ATOL, ORT_RTOL

ROOT = Path(__file__).resolve().parents[1]


def test_committed_cli_reference_is_current():
    committed = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert committed == generate_cli_markdown(), (
        f"docs/cli.md is out of date with the CLI; regenerate it from the repository root with: {REGENERATE}")


def test_generator_script_is_independent_of_the_terminal():
    env = {**os.environ, "COLUMNS": "40"}
    out = subprocess.run([sys.executable, "-m", "snncc.clidoc"], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120, check=True).stdout
    assert out == generate_cli_markdown()


def test_reference_covers_every_command_with_examples():
    text = generate_cli_markdown()
    names = sorted(cli.commands)
    assert {"compile", "inspect", "report", "run", "sweep", "verify"} <= set(names)
    sections = text.split("\n## ")
    for name in names:
        section = next(s for s in sections if s.startswith(f"snncc {name}\n"))
        assert "Examples:" in section and f"snncc {name} " in section, name
        # and the live --help says the same
        res = CliRunner().invoke(cli, [name, "--help"])
        assert res.exit_code == 0 and "Examples:" in res.output


def _config_table(text: str) -> dict[str, str]:
    section = text.split("## Configuration file", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| `")]
    return {cells[0].strip().strip("`"): cells[1].strip().strip("`") for cells in rows}


def test_config_table_lists_what_the_reader_accepts_with_toml_defaults(tmp_path):
    table = _config_table(generate_cli_markdown())
    assert "calib_data" not in table
    assert table["bias_correction"] == "true" and table["threshold"] == '"mse"'
    # every key with its documented default, written into a config file, reads back as the default
    keys = {k: v for k, v in table.items() if " " not in k}
    doc = "\n".join(f"{k} = {v}" for k, v in keys.items())
    assert tomllib.loads(doc)  # the defaults are TOML, not Python
    (tmp_path / "snncc.toml").write_text(doc)
    defaults = CompileOptions().to_dict()
    assert load_config(tmp_path / "snncc.toml") == {k: defaults[k] for k in keys}


def test_config_section_says_layer_table_flags_merge():
    text = generate_cli_markdown().split("## Configuration file", 1)[1]
    text = " ".join(text.split())
    assert "merged into the file's `layer_bits` and `prune_layers` tables" in text
    # both table-valued options are settable by a flag, and the options table says which
    assert "| `prune_layers` | `{}` | `--prune-layer` |" in text
    assert "| `layer_bits` | `{}` | `--layer-bits` |" in text


def _option_help(command: str, option: str) -> str:
    cmd = cli.commands[command]
    param = next(p for p in cmd.params if option in getattr(p, "opts", ()))
    return " ".join(param.help.split())


def test_help_texts_state_defaults_and_ranges_that_hold():
    top = CliRunner().invoke(cli, ["--help"]).output
    assert "FPGA" not in top
    assert "auto (default)" in _option_help("compile", "--weight-rounding")
    assert "4..32" in _option_help("compile", "--membrane-bits")
    assert "0..B-2" in _option_help("compile", "--membrane-shift")
    assert "T=1" not in _option_help("compile", "--threshold-search")
    assert "all T timesteps" in _option_help("compile", "--threshold-search")
    # the ranges in the help are the ones validate() enforces
    for bits, shift in ((4, 0), (32, 30), (16, 14)):
        CompileOptions(membrane_bits=bits, membrane_shift=shift).validate()
    for bits, shift in ((3, 0), (33, 0), (16, 15), (16, -1)):
        with pytest.raises(SnnccError):
            CompileOptions(membrane_bits=bits, membrane_shift=shift).validate()


def test_ci_doc_states_the_onnxruntime_tolerance_and_separates_calib_from_data():
    text = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    rtol, atol = re.search(r"max \|ours − ref\| ≤ ([0-9.e-]+) × max \|ref\| \+ ([0-9.e-]+)", text).groups()
    assert (float(rtol), float(atol)) == (ORT_RTOL, ORT_ATOL)
    assert "relative error" not in text
    verify_lines = [line for line in text.splitlines() if "snncc verify models/" in line]
    assert verify_lines and all("--calib data/kws_calib.npz --data data/kws_test.npz" in ln for ln in verify_lines)
    assert "--calib data/kws_test.npz" not in text
