"""The HTML report: self-contained, escaped, deterministic, and clean in headless Chromium."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from report_sample import HOSTILE_NAME, sample_report

from snncc.cli import cli
from snncc.html_report import render_html, write_html_report
from snncc.ir import Graph, Node, Value

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("headless Chromium is needed for the HTML report test: apt-get install -y chromium")
    return exe


def render_in_chromium(page: Path, work: Path) -> tuple[Path, list[str]]:
    """Screenshot ``page``; return the PNG and the console lines Chromium logged."""
    shot = work / "shot.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={work / 'profile'}", "--enable-logging=stderr", "--v=0",
           f"--screenshot={shot}", "--window-size=1200,2000", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Any console message (our page has no scripts) or uncaught exception is a failure.
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return shot, console


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data.startswith(PNG_MAGIC)
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        chunks.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return chunks


def _png_pixels(data: bytes) -> tuple[int, int, np.ndarray]:
    """Width, height and the raw (still filtered) scanline bytes of a PNG."""
    chunks = _png_chunks(data)
    width, height = struct.unpack(">II", chunks[0][1][:8])
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    return width, height, np.frombuffer(raw, dtype=np.uint8)


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def _small_graph() -> Graph:
    """conv -> neuron -> two branches -> add -> dense: a join to lay out."""
    rng = np.random.default_rng(0)
    values = {n: Value(n, s) for n, s in [("x", (1, 8, 8)), ("c1", (4, 8, 8)), ("z1", (4, 8, 8)),
                                           ("c2", (4, 8, 8)), ("s", (4, 8, 8)), ("a", (4, 8, 8)),
                                           ("f", (256,)), ("y", (10,))]}
    nodes = [
        Node("conv1", "conv", ["x"], "c1", {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": 1},
             {"weight": rng.normal(size=(4, 1, 3, 3)), "bias": np.zeros(4)}),
        Node(HOSTILE_NAME, "neuron", ["c1"], "z1", {"levels": 4, "signed": False, "barrier": False},
             {"theta": np.ones(4)}),
        Node("conv2", "conv", ["z1"], "c2", {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": 1},
             {"weight": rng.normal(size=(4, 4, 3, 3)), "bias": np.zeros(4)}),
        Node("short", "affine", ["z1"], "s", {}, {"scale": np.ones(4), "shift": np.zeros(4)}),
        Node("join", "add", ["c2", "s"], "a"),
        Node("flat", "flatten", ["a"], "f"),
        Node("fc", "dense", ["f"], "y", {}, {"weight": rng.normal(size=(10, 256)), "bias": np.zeros(10)}),
    ]
    return Graph("g", ["x"], ["y"], nodes, values, stage="snn")


def test_page_is_self_contained_and_escaped():
    page = render_html(sample_report())
    assert "<script" not in page.lower()
    assert "javascript:" not in page.lower()
    # every src/href is an embedded PNG: nothing to fetch
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    assert "http://" not in page and "https://" not in page
    # the hostile layer name appears only escaped (control char replaced)
    assert html.escape(HOSTILE_NAME.replace("\x07", "?")) in page
    assert "\x07" not in page
    for section in ("Graph", "Spike activity", "Level histograms", "Memory per layer", "Synaptic operations",
                    "Energy estimate", "ANN/SNN top-1 agreement"):
        assert section in page
    assert "99.26%" in page and "98.70%" in page and "99.07%" in page
    assert html.escape("E_MAC = 4.6 pJ, E_AC = 0.9 pJ") in page


def test_plots_are_pngs_without_metadata():
    images = _images(render_html(sample_report()))
    assert len(images) == 6  # graph, rates, histograms, memory, SOPs, energy
    for data in images:
        kinds = {kind for kind, _ in _png_chunks(data)}
        assert b"IHDR" in kinds and b"IDAT" in kinds
        assert b"tEXt" not in kinds and b"tIME" not in kinds and b"iTXt" not in kinds
        width, height, pixels = _png_pixels(data)
        assert width > 100 and height > 100 and len(np.unique(pixels)) > 8  # not blank


def test_rendering_is_deterministic(tmp_path):
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    write_html_report(sample_report(), a)
    write_html_report(sample_report(), b)
    assert a.read_bytes() == b.read_bytes()
    # and it depends on the data
    changed = sample_report()
    changed["layers"][0]["spike_rate"] = 0.05
    assert render_html(changed) != a.read_text(encoding="utf-8")


def test_missing_optional_keys_render_na():
    page = render_html({"schema_version": 1})
    assert page.count("n/a") >= 10
    assert _images(page) == []
    partial = sample_report()
    del partial["memory"]["layers"], partial["energy"], partial["accuracy"]["ann"]
    for layer in partial["layers"]:
        layer.pop("level_hist", None)
    page = render_html(partial)
    assert "Level histograms" in page and len(_images(page)) == 3  # graph, rates, SOPs


def test_report_inputs_give_the_topology():
    chain = render_html(sample_report())
    branched = sample_report()
    branched["layers"][1]["inputs"] = ["conv1"]
    branched["layers"][2]["inputs"] = ["conv1", HOSTILE_NAME]  # a skip connection
    assert render_html(branched) != chain
    branched["layers"][2]["inputs"] = [HOSTILE_NAME]  # the same edges as the chain
    assert _images(render_html(branched))[0] == _images(chain)[0]


def test_graph_argument_draws_the_ir(tmp_path):
    report = sample_report()
    with_graph = render_html(report, graph=_small_graph())
    assert with_graph != render_html(report)
    assert render_html(report, graph=_small_graph()) == with_graph


def test_renders_in_headless_chromium_without_console_errors(tmp_path):
    page = tmp_path / "report.html"
    write_html_report(sample_report(), page, graph=_small_graph())
    shot, console = render_in_chromium(page, tmp_path)
    assert console == []
    data = shot.read_bytes()
    width, height, pixels = _png_pixels(data)
    assert (width, height) == (1200, 2000)
    assert len(data) > 50_000 and len(np.unique(pixels)) > 64  # text and plots, not a blank page


def test_chromium_check_catches_a_console_error(tmp_path):
    """The console check above is live: a page with a script error fails it."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>undefined_function();</script></body></html>", encoding="utf-8")
    _, console = render_in_chromium(page, tmp_path)
    assert any("Uncaught" in line for line in console)


def test_missing_matplotlib_is_a_clear_error(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from snncc.html_report import render_html\n"
            "from snncc.errors import SnnccError\n"
            "try:\n    render_html({'schema_version': 1})\n"
            "except SnnccError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "HTML reports need matplotlib: pip install 'snncc[report]'"


# --- snncc report --------------------------------------------------------------------

def test_report_command_writes_html(tmp_path):
    report_json = tmp_path / "report.json"
    report_json.write_text(json.dumps(sample_report()), encoding="utf-8")
    res = CliRunner().invoke(cli, ["report", str(report_json), "-o", str(tmp_path / "out.html")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out.html").read_text(encoding="utf-8") == render_html(sample_report())
    res = CliRunner().invoke(cli, ["report", str(report_json)])  # default: next to the json
    assert res.exit_code == 0 and (tmp_path / "report.html").is_file()
    res = CliRunner().invoke(cli, ["report", str(report_json), "--text"])
    assert res.exit_code == 0 and "top-1 agreement 99.07%" in res.output


@pytest.mark.parametrize("content, message", [
    (None, "file not found"),
    ("{not json", "is not JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"schema_version": 2}', "schema_version 2"),
    ('{"model": "m"}', "schema_version None"),
])
def test_report_command_bad_input(tmp_path, content, message):
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    res = CliRunner().invoke(cli, ["report", str(path), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: argument REPORT_JSON") and message in lines[0]
    assert not (tmp_path / "r.html").exists()
