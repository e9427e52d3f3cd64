"""`snncc sweep`: grid parsing, the Pareto front, the writers, and the digits example end to end."""

from __future__ import annotations

import csv
import io
import itertools
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from snncc.cli import cli
from snncc.errors import SnnccError
from snncc.sweep import (
    CSV_COLUMNS,
    format_table,
    grid_points,
    mark_pareto,
    model_bits,
    pareto_front,
    parse_int_list,
    run_sweep,
    summarize_report,
    write_csv,
    write_pareto_plot,
)


def _synthetic(n: int = 12, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    points = []
    for i, (levels, bits) in enumerate(itertools.product((1, 2, 4), (2, 4, 8, 6))):
        if i >= n:
            break
        points.append({"levels": levels, "timesteps": 1, "weight_bits": bits, "ann_accuracy": 0.99,
                       "snn_accuracy": float(np.round(rng.uniform(0.5, 0.99), 4)),
                       "agreement": float(np.round(rng.uniform(0.5, 1.0), 4)),
                       "model_bits": float(1000 * bits + 10 * levels), "energy_pj": float(rng.uniform(1e3, 1e5)),
                       "error": ""})
    return points


def _brute_force_front(xy: list[tuple[float | None, float | None]]) -> list[bool]:
    out = []
    for i, (x, y) in enumerate(xy):
        if x is None or y is None:
            out.append(False)
            continue
        dominated = any(j != i and ox is not None and oy is not None and ox <= x and oy >= y and (ox < x or oy > y)
                        for j, (ox, oy) in enumerate(xy))
        out.append(not dominated)
    return out


def test_pareto_front_hand_cases():
    pts = [{"x": 1, "y": 0.5},    # cheapest: on the front
           {"x": 2, "y": 0.6},    # better accuracy for more bits: on the front
           {"x": 2, "y": 0.55},   # same cost, worse: dominated by the previous point
           {"x": 3, "y": 0.6},    # more cost, same accuracy: dominated
           {"x": 1, "y": 0.5},    # duplicate of the first: both stay on the front
           {"x": None, "y": 0.9},  # missing cost: never on the front
           {"x": 5, "y": 0.7}]    # most accurate: on the front
    assert pareto_front(pts, "x", "y") == [True, True, False, False, True, False, True]
    assert pareto_front([], "x", "y") == []
    assert pareto_front([{"x": 1}], "x", "y") == [False]


@pytest.mark.parametrize("seed", range(5))
def test_pareto_front_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    pts = [{"x": float(rng.integers(0, 6)), "y": float(rng.integers(0, 6))} for _ in range(40)]
    pts[3]["y"] = None
    expected = _brute_force_front([(p["x"], p["y"]) for p in pts])
    front = pareto_front(pts, "x", "y")
    assert front == expected and any(front)


def test_grid_and_list_parsing():
    assert parse_int_list("4, 1,2,2", "--levels") == (1, 2, 4)
    with pytest.raises(SnnccError, match="option --levels expects comma-separated integers"):
        parse_int_list("1,two", "--levels")
    with pytest.raises(SnnccError, match="option --timesteps needs at least one value"):
        parse_int_list(" , ", "--timesteps")
    points = grid_points({"weight_bits": [8, 4], "levels": [2, 1], "timesteps": [1]})
    assert points == [{"levels": 1, "timesteps": 1, "weight_bits": 4}, {"levels": 1, "timesteps": 1, "weight_bits": 8},
                      {"levels": 2, "timesteps": 1, "weight_bits": 4}, {"levels": 2, "timesteps": 1, "weight_bits": 8}]
    with pytest.raises(SnnccError, match="unknown option"):
        grid_points({"colour": [1]})


def test_summarize_report_and_model_bits():
    report = {"accuracy": {"ann": 0.99, "snn": 0.97, "top1_agreement": 0.98},
              "memory": {"weight_bits": 800, "bias_bits": 64, "threshold_bits": 32, "param_bits": 896,
                         "state_bits": 4096},
              "energy": {"ann_pj": 4600.0, "snn_pj": 900.0}, "activity": {"sops": 1000.0}}
    row = summarize_report(report)
    assert row["snn_accuracy"] == 0.97 and row["agreement"] == 0.98 and row["model_bits"] == 896
    assert row["energy_pj"] == 900.0 and row["sops"] == 1000.0
    assert model_bits({"weight_bits": 800, "bias_bits": 64}) == 864
    assert model_bits({}) is None
    assert summarize_report({})["snn_accuracy"] is None


def test_writers(tmp_path):
    points = _synthetic()
    points.append({"levels": 8, "timesteps": 1, "weight_bits": 2, "error": "node 'fc' (dense): overflows int32"})
    mark_pareto(points)
    assert points[-1]["pareto_bits"] is False
    write_csv(points, tmp_path / "a.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "a.csv").read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == len(points)
    assert [float(r["snn_accuracy"]) for r in rows[:-1]] == [p["snn_accuracy"] for p in points[:-1]]
    assert [r["pareto_bits"] == "1" for r in rows] == [p["pareto_bits"] for p in points]
    assert rows[-1]["error"].startswith("node 'fc'") and rows[-1]["snn_accuracy"] == ""

    table = format_table(points)
    lines = table.splitlines()
    assert len(lines) == len(points) + 4  # header, rule, points, two legend lines
    body = lines[2:-2]
    for p, line in zip(points[:-1], body[:-1]):
        assert line.split()[-1] == ("b" if p["pareto_bits"] else "-") + ("e" if p["pareto_energy"] else "-")
        assert f"{100 * p['snn_accuracy']:.2f}%" in line
    assert "error: node 'fc'" in body[-1]

    write_pareto_plot(points, tmp_path / "a.png", title="model$x$.onnx")
    write_pareto_plot(points, tmp_path / "b.png", title="model$x$.onnx")
    data = (tmp_path / "a.png").read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000 and b"tEXt" not in data
    assert data == (tmp_path / "b.png").read_bytes()


def test_table_falls_back_to_agreement_without_labels():
    points = _synthetic(4)
    for p in points:
        p["snn_accuracy"] = None
    mark_pareto(points)
    assert any(p["pareto_bits"] for p in points)
    assert "agreement vs model bits" in format_table(points)


def test_sweep_command_bad_input(tmp_path, digits_example):
    runner = CliRunner()
    res = runner.invoke(cli, ["sweep", str(tmp_path / "none.onnx"), "--calib", "x.npz"])
    assert res.exit_code == 2 and "argument MODEL: file not found" in res.output
    res = runner.invoke(cli, ["sweep", str(digits_example.onnx_path), "--calib", str(digits_example.calib_path),
                              "--levels", "1,x", "-o", str(tmp_path / "s")])
    assert res.exit_code == 2 and res.output.strip() == \
        "error: option --levels expects comma-separated integers, got '1,x'"
    res = runner.invoke(cli, ["sweep", str(digits_example.onnx_path), "--calib", str(digits_example.calib_path),
                              "--weight-bits", "1,4", "-o", str(tmp_path / "s")])
    assert res.exit_code == 2 and "option --weight-bits must be an integer in 2..8" in res.output
    assert not (tmp_path / "s").exists()


# --- end to end on the shipped digits example --------------------------------------

@pytest.fixture(scope="module")
def digits_sweep(tmp_path_factory, digits_example):
    out = tmp_path_factory.mktemp("sweep") / "out"
    rows = run_sweep(digits_example.onnx_path, digits_example.calib_path,
                     {"levels": [2, 4], "weight_bits": [4, 8], "timesteps": [1]}, 2, out, echo=lambda _m: None)
    return rows, out


@pytest.mark.slow
def test_digits_sweep_end_to_end(digits_sweep):
    rows, out = digits_sweep
    assert [(r["levels"], r["weight_bits"]) for r in rows] == [(2, 4), (2, 8), (4, 4), (4, 8)]
    assert all(r["error"] == "" for r in rows), [r["error"] for r in rows]
    for r in rows:
        assert 0.0 <= r["snn_accuracy"] <= 1.0 and 0.0 <= r["agreement"] <= 1.0
        assert r["model_bits"] > 0 and r["energy_pj"] > 0
    # the labelled digits data gives real accuracy; 8-bit N=4 is close to the ANN
    best = rows[3]
    assert best["snn_accuracy"] >= best["ann_accuracy"] - 0.03
    # more weight bits -> a bigger model at the same N
    assert rows[1]["model_bits"] > rows[0]["model_bits"] and rows[3]["model_bits"] > rows[2]["model_bits"]
    assert any(r["pareto_bits"] for r in rows) and any(r["pareto_energy"] for r in rows)
    # the cheapest point in bits is always on the bits front
    cheapest = min(range(len(rows)), key=lambda i: (rows[i]["model_bits"], -rows[i]["snn_accuracy"]))
    assert rows[cheapest]["pareto_bits"]
    assert sorted(p.name for p in out.iterdir()) == ["sweep.csv", "sweep_pareto.png", "sweep_table.txt"]
    csv_rows = list(csv.DictReader(io.StringIO((out / "sweep.csv").read_text(encoding="utf-8"))))
    assert [float(r["snn_accuracy"]) for r in csv_rows] == [r["snn_accuracy"] for r in rows]


@pytest.mark.slow
def test_digits_sweep_is_deterministic_and_matches_cli(digits_sweep, digits_example, tmp_path):
    rows, out = digits_sweep
    # one point again, through the CLI and in-process (jobs=1): same figures as the pool gave.
    # No --calib: the example's snncc.toml names digits_calib.npz, as for `snncc compile`.
    res = CliRunner().invoke(cli, ["sweep", str(digits_example.onnx_path),
                                   "--levels", "4", "--weight-bits", "8", "--timesteps", "1", "--jobs", "1",
                                   "-o", str(tmp_path / "one")])
    assert res.exit_code == 0, res.output
    one = list(csv.DictReader(io.StringIO((tmp_path / "one" / "sweep.csv").read_text(encoding="utf-8"))))
    full = list(csv.DictReader(io.StringIO((out / "sweep.csv").read_text(encoding="utf-8"))))
    keep = ("snn_accuracy", "agreement", "model_bits")
    assert {k: one[0][k] for k in keep} == {k: full[3][k] for k in keep}
    # sops and energy count the float SNN's spikes: the pool's workers run one BLAS thread and
    # this run the default, and float32 GEMMs sum in another order with more threads (seen:
    # 175346.937 against 175348.378 on an AVX-512 machine)
    for k in ("energy_pj", "sops"):
        assert float(one[0][k]) == pytest.approx(float(full[3][k]), rel=1e-4), k
    assert "front: b = Pareto-optimal" in res.output  # printed the table


def test_bad_calib_fails_once_before_any_point(tmp_path, digits_example):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 3, 8, 8), dtype=np.float32))
    with pytest.raises(SnnccError, match="option --calib"):
        run_sweep(digits_example.onnx_path, bad, {"levels": [2]}, 1, tmp_path / "out", echo=lambda _m: None)
    assert not (tmp_path / "out").exists()


def test_point_errors_are_recorded_and_all_failing_is_an_error(tmp_path, digits_example):
    """A user-level failure at a point is kept in its row; if every point fails, the sweep fails."""
    with pytest.raises(SnnccError, match=r"sweep: all 2 points failed; the first: .*unknown layer 'nope'"):
        run_sweep(digits_example.onnx_path, digits_example.calib_path, {"levels": [2, 4]}, 2, tmp_path / "out",
                  base_options={"layer_bits": {"nope": 4}}, echo=lambda _m: None)
    assert not (tmp_path / "out").exists()


# --- the richer grid, --grid FILE.toml, --resume, progress (issue 19) ------------------

def test_axes_table_drives_the_csv_and_the_cli():
    from snncc.sweep import AXES, GRID_KEYS

    assert CSV_COLUMNS[:len(GRID_KEYS)] == GRID_KEYS
    assert {"weight_quantizer", "residual", "barrier_scale", "prune"} <= set(GRID_KEYS)
    opts = {p.name for p in cli.commands["sweep"].params}
    assert {a.name for a in AXES} <= opts  # every axis is a flag


def test_grid_file(tmp_path):
    from snncc.sweep import read_grid

    path = tmp_path / "grid.toml"
    path.write_text('[axes]\nlevels = [4, 2]\nweight_quantizer = ["mse", "rescaw"]\n\n'
                    '[[point]]\nlevels = 8\nresidual = "sew"\nbarrier_scale = 1.5\n', encoding="utf-8")
    axes, listed = read_grid(path)
    points = grid_points(axes, listed)
    assert points == [{"levels": 2, "weight_quantizer": "mse"}, {"levels": 2, "weight_quantizer": "rescaw"},
                      {"levels": 4, "weight_quantizer": "mse"}, {"levels": 4, "weight_quantizer": "rescaw"},
                      {"levels": 8, "residual": "sew", "barrier_scale": 1.5}]
    for text, fragment in [('[axes]\ncolour = [1]\n', "unknown option(s) colour"),
                           ('[axes]\nlevels = ["two"]\n', "levels takes int values, got 'two'"),
                           ('[axes]\nlevels = 2\n', "[axes] must hold lists"),
                           ('[grid]\n', "unknown table(s) grid"),
                           ('', "the grid is empty"),
                           ('[axes\n', "is not valid TOML")]:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(SnnccError, match=r"option --grid: .*" + re.escape(fragment)):
            read_grid(path)


def test_float_and_word_axes_parse():
    from snncc.sweep import parse_list

    assert parse_list("1.5, 0.5,1.5", "--barrier-scale", float) == (0.5, 1.5)
    assert parse_list("sew,sparse", "--residual", str) == ("sew", "sparse")
    with pytest.raises(SnnccError, match="option --barrier-scale expects comma-separated numbers"):
        parse_list("1,x", "--barrier-scale", float)


def test_resume_reads_back_exactly_and_refuses_a_foreign_csv(tmp_path):
    from snncc.sweep_output import SweepStore, read_rows

    points = _synthetic(4)
    for p in points:
        p.update(membrane_bits=16, membrane_shift=0, weight_quantizer="mse", residual="sparse", barrier_scale=1.0,
                 prune=0.0, sops=1234.5678901234567)
    points[1]["error"] = "worker died: exit code 3"
    mark_pareto(points)
    write_csv(points, tmp_path / "sweep.csv")
    rows = read_rows(tmp_path / "sweep.csv")
    mark_pareto(rows)  # recomputed over the whole set at the end of a sweep
    write_csv(rows, tmp_path / "again.csv")  # what a resumed sweep writes for the rows it kept
    assert (tmp_path / "again.csv").read_text() == (tmp_path / "sweep.csv").read_text()
    store = SweepStore(tmp_path, False, [], resume=True)
    assert len(store.finished()) == 3  # the dead worker's point runs again
    (tmp_path / "sweep.csv").write_text("levels,snn\n1,0.5\n", encoding="utf-8")
    with pytest.raises(SnnccError, match="option --resume: .* is not a sweep.csv of this snncc version"):
        read_rows(tmp_path / "sweep.csv")
    res = CliRunner().invoke(cli, ["sweep", str(Path(__file__).parents[1] / "examples/digits/digits_cnn.onnx"),
                                   "--resume", "-o", str(tmp_path / "none")])
    assert res.exit_code == 2 and res.output.startswith("error: option --resume: cannot read ")


def test_progress_line_on_a_terminal(monkeypatch, capsys):
    from snncc import progress

    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    lines = []
    bar = progress.SweepProgress(3, lines.append)
    bar.started()
    bar.started()
    bar.finished({"error": "", "_seconds": 1.0}, "N=2 T=1 b=8", "SNN 90.00%")
    bar.finished({"error": "worker died: exit code 3"}, "N=4 T=1 b=8", "error: worker died")
    bar.close()
    err = capsys.readouterr().err
    assert "sweep: 0/3 done, 2 running, 0 failed, ETA ?" in err
    assert "sweep: 2/3 done, 0 running, 1 failed, ETA 0m" in err
    assert lines == ["[1/3] N=2 T=1 b=8: SNN 90.00% (1.0 s)", "[2/3] N=4 T=1 b=8: error: worker died"]
    monkeypatch.undo()
    monkeypatch.setenv("CI", "true")
    assert not progress.on_terminal()  # never drawn in CI


def test_grid_file_through_the_cli_with_reports(tmp_path, digits_example):
    """--grid: an axis product plus a listed point; --reports writes each point's report.json."""
    import json

    data = np.load(digits_example.calib_path)
    np.savez(tmp_path / "calib.npz", x=data["x"][:32], y=data["y"][:32])
    (tmp_path / "fast.toml").write_text('[convert]\nthreshold_search = "none"\n[quantize]\nweight_rounding = '
                                        '"nearest"\n', encoding="utf-8")
    (tmp_path / "grid.toml").write_text('[axes]\nlevels = [2]\nweight_bits = [8]\n\n'
                                        '[[point]]\nlevels = 2\nweight_bits = 4\nweight_quantizer = "max"\n',
                                        encoding="utf-8")
    res = CliRunner().invoke(cli, ["sweep", str(digits_example.onnx_path), "--calib", str(tmp_path / "calib.npz"),
                                   "--config", str(tmp_path / "fast.toml"), "--grid", str(tmp_path / "grid.toml"),
                                   "--reports", "-j", "1", "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "sweep.csv").read_text(encoding="utf-8"))))
    assert [(r["levels"], r["weight_bits"], r["weight_quantizer"]) for r in rows] == [("2", "8", "mse"),
                                                                                   ("2", "4", "max")]
    assert "other settings" in res.output and "wq=max" in res.output
    reports = sorted(p.name for p in (tmp_path / "out" / "reports").iterdir())
    assert reports == ["N2_T1_b4_wqmax.json", "N2_T1_b8.json"]
    report = json.loads((tmp_path / "out" / "reports" / "N2_T1_b4_wqmax.json").read_text(encoding="utf-8"))
    assert report["options"]["weight_quantizer"] == "max" and report["options"]["weight_bits"] == 4


def test_worker_error_names_the_config_file_and_key(tmp_path, digits_example):
    """A point that fails in its worker on a config-file value names the file and key (issue 12)."""
    data = np.load(digits_example.calib_path)
    np.savez(tmp_path / "calib.npz", x=data["x"][:16], y=data["y"][:16])
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[convert]\nthreshold_search = "none"\n[quantize]\nweight_rounding = "nearest"\n'
                   '[quantize.layer_bits]\nnosuch = 4\n', encoding="utf-8")
    res = CliRunner().invoke(cli, ["sweep", str(digits_example.onnx_path), "--calib", str(tmp_path / "calib.npz"),
                                   "--config", str(cfg), "--levels", "2", "--weight-bits", "8", "--timesteps", "1",
                                   "-j", "1", "-o", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert f"key 'quantize.layer_bits.nosuch' in {cfg}" in res.output and "unknown layer 'nosuch'" in res.output
    # a flag overriding the key: the error names the flag, not the file
    res = CliRunner().invoke(cli, ["sweep", str(digits_example.onnx_path), "--calib", str(tmp_path / "calib.npz"),
                                   "--config", str(cfg), "--levels", "2", "--weight-bits", "8", "--timesteps", "1",
                                   "--layer-bits", "nosuch=4", "-j", "1", "-o", str(tmp_path / "out2")])
    assert res.exit_code == 2 and "option --layer-bits" in res.output and str(cfg) not in res.output, res.output
