"""`snncc sweep`: grid parsing, the Pareto front, the writers, and the digits example end to end."""

from __future__ import annotations

import csv
import io
import itertools

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
