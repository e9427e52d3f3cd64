"""docs/cli.md is generated from the click commands; it must match what the code says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from snncc.cli import cli
from snncc.clidoc import REGENERATE, generate_cli_markdown

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
