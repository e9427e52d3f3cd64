"""Design-space sweep: compile a grid of operating points and mark the Pareto front.

Each point is one ``build_snn`` + ``make_report`` (no code emission) with a few
options changed (spike levels N, timesteps T, weight bits...). Points run in a
process pool; results come back in grid order whatever order they finish in, so the
CSV and the plot are deterministic (wall times are printed, never written).
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from snncc.errors import SnnccError
from snncc.text_report import as_dict, as_float, clip

# CompileOptions fields a grid may vary (the CLI exposes the first three).
GRID_KEYS = ("levels", "timesteps", "weight_bits", "membrane_bits", "membrane_shift")
# snn_accuracy / agreement: the integer SNN (what the targets run); float_snn_*: report.json's float SNN.
CSV_COLUMNS = ("levels", "timesteps", "weight_bits", "ann_accuracy", "snn_accuracy", "agreement",
               "float_snn_accuracy", "float_snn_agreement", "model_bits", "weight_bits_total", "state_bits", "sops",
               "energy_pj", "ann_energy_pj", "pareto_bits", "pareto_energy", "error")


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> (1, 2, 4), sorted and de-duplicated; SnnccError naming the option."""
    values = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            values.append(int(item))
        except ValueError:
            raise SnnccError(f"option {option} expects comma-separated integers, got {text!r}") from None
    if not values:
        raise SnnccError(f"option {option} needs at least one value")
    return tuple(sorted(set(values)))


def grid_points(grid: Mapping[str, Sequence[int]]) -> list[dict]:
    """The cartesian product of ``grid`` as option dicts, in sorted (deterministic) order."""
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise SnnccError(f"sweep grid: unknown option(s) {', '.join(unknown)}; known: {', '.join(GRID_KEYS)}")
    keys = [k for k in GRID_KEYS if k in grid]
    axes = [sorted(set(int(v) for v in grid[k])) for k in keys]
    if any(not a for a in axes):
        raise SnnccError("sweep grid: every option needs at least one value")
    return [dict(zip(keys, combo)) for combo in itertools.product(*axes)]


def run_sweep(model, calib, grid: Mapping[str, Sequence[int]], jobs: int | None = None, out_dir=None, *,
              base_options: Mapping | None = None, force: bool = False,
              echo: Callable[[str], None] = print, protect: Sequence = ()) -> list[dict]:
    """Compile every grid point (in ``jobs`` processes) and return one result dict per point.

    ``calib`` is a path (or ``"random"``), loaded by each worker. ``base_options`` are
    CompileOptions fields shared by all points. With ``out_dir``, writes ``sweep.csv``,
    ``sweep_pareto.png`` and ``sweep_table.txt`` there atomically; ``--force`` never deletes
    a folder that holds one of ``protect`` (default: the model and calibration files).
    """
    from snncc.options import CompileOptions
    from snncc.outdir import atomic_output_dir, check_output_dir

    model = str(Path(model))
    if not Path(model).is_file():
        raise SnnccError(f"argument MODEL: file not found: {model}")
    if calib is None:
        raise SnnccError("option --calib is required for a sweep")
    calib = str(calib)
    base = dict(base_options or {})
    points = grid_points(grid)
    for point in points:  # refuse a bad grid before any slow work
        _options(base, point, CompileOptions)
    _check_inputs(model, calib)
    protect = [model, *([calib] if calib != "random" else []), *protect]
    if out_dir is not None:
        check_output_dir(Path(out_dir), force, protect)
    jobs = max(1, int(jobs or os.cpu_count() or 1))
    echo(f"sweep: {len(points)} points, {min(jobs, len(points))} process(es)")
    t0 = time.perf_counter()
    results: list[dict | None] = [None] * len(points)
    for done, (i, res) in enumerate(_execute(model, calib, base, points, jobs), start=1):
        results[i] = res
        echo(f"[{done}/{len(points)}] {point_label(res)}: "
             + (f"error: {res['error']}" if res.get("error") else
                f"SNN {_pct(res.get('snn_accuracy'))}, agreement {_pct(res.get('agreement'))}, "
                f"{_int(res.get('model_bits'))} bits") + f" ({res.pop('_seconds'):.1f} s)")
    wall = time.perf_counter() - t0
    rows = [r for r in results if r is not None]
    if rows and all(r.get("error") for r in rows):
        raise SnnccError(f"sweep: all {len(rows)} points failed; the first: {rows[0]['error']}")
    mark_pareto(rows)
    echo(f"sweep: done in {wall:.1f} s")
    if out_dir is not None:
        with atomic_output_dir(Path(out_dir), force=force, protect=protect) as tmp:
            write_csv(rows, tmp / "sweep.csv")
            (tmp / "sweep_table.txt").write_text(format_table(rows) + "\n", encoding="utf-8")
            write_pareto_plot(rows, tmp / "sweep_pareto.png", title=Path(model).name)
    return rows


def _check_inputs(model: str, calib: str) -> None:
    """Fail fast, once, on a bad model or calibration file (not once per point)."""
    import warnings

    from snncc.calib_data import load_calib
    from snncc.frontend.onnx_import import load_onnx

    graph = load_onnx(model)
    with warnings.catch_warnings():  # 'random' warns in every worker anyway
        warnings.simplefilter("ignore")
        load_calib(calib, graph.values[graph.inputs[0]].shape)


def _options(base: Mapping, point: Mapping, options_cls):
    options = options_cls()
    for key, value in {**base, **point}.items():
        if not hasattr(options, key):
            raise SnnccError(f"sweep: unknown compile option {key!r}")
        setattr(options, key, value)
    return options.validate()


def _execute(model: str, calib: str, base: dict, points: list[dict], jobs: int):
    """Yield (index, result) as points finish; inline when one job is enough."""
    tasks = [(i, model, calib, base, point) for i, point in enumerate(points)]
    if jobs == 1 or len(points) == 1:
        for task in tasks:
            yield task[0], compile_point(*task[1:])
        return
    import multiprocessing
    from concurrent.futures import as_completed

    # One BLAS thread per worker: the pool is the parallelism. Workers inherit the env.
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: "1" for k in saved})
    try:
        ctx = multiprocessing.get_context("spawn")  # no fork of a possibly threaded parent
        with ProcessPoolExecutor(max_workers=min(jobs, len(points)), mp_context=ctx) as pool:
            futures = {pool.submit(compile_point, *task[1:]): task[0] for task in tasks}
            try:
                for fut in as_completed(futures):
                    yield futures[fut], fut.result()
            except BaseException:  # a bug in one point, or a signal: do not wait for the rest
                pool.shutdown(wait=False, cancel_futures=True)
                for proc in list(getattr(pool, "_processes", {}).values()):  # nor for running points
                    proc.terminate()
                raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def compile_point(model: str, calib: str, base: Mapping, point: Mapping) -> dict:
    """One operating point: build the integer SNN, make its report, keep the headline figures.

    A user-level failure (SnnccError, e.g. a range-analysis overflow at this setting)
    is recorded in ``error``; anything else is a bug and propagates.
    """
    from snncc.compiler import build_snn, make_report
    from snncc.options import CompileOptions

    t0 = time.perf_counter()
    row: dict = dict(point)
    try:
        options = _options(base, point, CompileOptions)
        result = build_snn(model, options, calib, echo=lambda _msg: None)
        report = make_report(result, options, model=Path(model).name, target="python")
    except SnnccError as exc:
        row["error"] = str(exc)
    else:
        row.update(summarize_report(report))
        row["error"] = ""
    row["_seconds"] = time.perf_counter() - t0
    return row


def summarize_report(report: dict) -> dict:
    """The sweep's figures from one report.json dict (missing keys -> None)."""
    acc = as_dict(report.get("accuracy"))
    mem = as_dict(report.get("memory"))
    energy = as_dict(report.get("energy"))
    act = as_dict(report.get("activity"))
    return {
        # "snn" is the integer SNN (what the targets run); float_snn is before weight quantization
        "ann_accuracy": as_float(acc.get("ann")),
        "snn_accuracy": as_float(acc.get("snn")),
        "agreement": as_float(acc.get("top1_agreement")),
        "float_snn_accuracy": as_float(acc.get("float_snn")),
        "float_snn_agreement": as_float(acc.get("float_snn_top1_agreement")),
        "model_bits": model_bits(mem),
        "weight_bits_total": as_float(mem.get("weight_bits")),
        "state_bits": as_float(mem.get("state_bits")),
        "sops": as_float(act.get("sops")),
        "energy_pj": as_float(energy.get("snn_pj")),
        "ann_energy_pj": as_float(energy.get("ann_pj")),
    }


def model_bits(memory: dict) -> float | None:
    """Stored model size in bits (all integer parameters: the report's param_bits), else a sum of parts."""
    for key in ("param_bits", "model_bits", "total_bits"):
        if as_float(memory.get(key)) is not None:
            return as_float(memory[key])
    parts = [as_float(memory.get(k)) for k in ("weight_bits", "bias_bits", "threshold_bits", "shortcut_bits")]
    if parts[0] is None:
        return None
    return sum(p for p in parts if p is not None)


# --- Pareto front --------------------------------------------------------------------

def pareto_front(points: Sequence[Mapping], x_key: str, y_key: str) -> list[bool]:
    """True where no other point has x <= and y >= with one of them strict (minimise x, maximise y).

    Points missing either value are never on the front. Equal points are all on it.
    """
    import numpy as np

    xs = np.array([as_float(p.get(x_key)) if as_float(p.get(x_key)) is not None else np.nan for p in points])
    ys = np.array([as_float(p.get(y_key)) if as_float(p.get(y_key)) is not None else np.nan for p in points])
    valid = ~(np.isnan(xs) | np.isnan(ys))
    if not valid.any():
        return [False] * len(points)
    x, y = xs[:, None], ys[:, None]  # row i: candidate; column j: possible dominator
    ox, oy = xs[None, :], ys[None, :]
    dominated = (ox <= x) & (oy >= y) & ((ox < x) | (oy > y)) & valid[None, :]
    return [bool(v) for v in valid & ~dominated.any(axis=1)]


def accuracy_key(points: Sequence[Mapping]) -> str:
    """SNN accuracy when the data had labels, else ANN/SNN agreement."""
    ok = [p for p in points if not p.get("error")]
    if ok and all(as_float(p.get("snn_accuracy")) is not None for p in ok):
        return "snn_accuracy"
    return "agreement"


def mark_pareto(points: list[dict]) -> None:
    """Set ``pareto_bits`` / ``pareto_energy`` on every point (in place)."""
    y_key = accuracy_key(points)
    for key, x_key in (("pareto_bits", "model_bits"), ("pareto_energy", "energy_pj")):
        for p, on in zip(points, pareto_front(points, x_key, y_key)):
            p[key] = on


# --- writers -------------------------------------------------------------------------

def point_label(p: Mapping) -> str:
    return " ".join(f"{short}={p[k]}" for k, short in (("levels", "N"), ("timesteps", "T"), ("weight_bits", "b"),
                                                         ("membrane_bits", "B"), ("membrane_shift", "k")) if k in p)


def write_csv(points: Sequence[Mapping], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for p in points:
        writer.writerow([_csv_value(p.get(c)) for c in CSV_COLUMNS])
    Path(path).write_text(buf.getvalue(), encoding="utf-8")


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v)


def format_table(points: Sequence[Mapping]) -> str:
    """The table `snncc sweep` prints; '*' marks the Pareto fronts (bits, energy)."""
    acc = accuracy_key(points)
    head = (f"{'N':>3s} {'T':>3s} {'bits':>4s} {'ANN acc':>8s} {'SNN acc':>8s} {'agree':>8s} "
            f"{'model bits':>11s} {'energy pJ':>11s} {'front':>5s}")
    lines = [head, "-" * len(head)]
    for p in points:
        if p.get("error"):
            lines.append(f"{p.get('levels', '-'):>3} {p.get('timesteps', '-'):>3} {p.get('weight_bits', '-'):>4} "
                         f"error: {clip(str(p['error']), 70)}")
            continue
        marks = ("b" if p.get("pareto_bits") else "-") + ("e" if p.get("pareto_energy") else "-")
        lines.append(f"{p.get('levels', '-'):>3} {p.get('timesteps', '-'):>3} {p.get('weight_bits', '-'):>4} "
                     f"{_pct(p.get('ann_accuracy')):>8s} {_pct(p.get('snn_accuracy')):>8s} "
                     f"{_pct(p.get('agreement')):>8s} {_int(p.get('model_bits')):>11s} "
                     f"{_num(p.get('energy_pj')):>11s} {marks:>5s}")
    lines.append("SNN acc / agree: the integer SNN (what the targets run) on the calibration data, vs labels / "
                 "vs the ANN's top-1")
    lines.append(f"front: b = Pareto-optimal in {acc.replace('_', ' ')} vs model bits, "
                 f"e = in {acc.replace('_', ' ')} vs energy")
    return "\n".join(lines)


def write_pareto_plot(points: Sequence[Mapping], path: Path, *, title: str = "") -> None:
    """Two panels: accuracy vs model bits, accuracy vs energy; the front is drawn and labelled."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SnnccError("the sweep plot needs matplotlib: pip install 'snncc[report]'") from None
    y_key = accuracy_key(points)
    ok = [p for p in points if not p.get("error")]
    fig = Figure(figsize=(11, 4.4), dpi=90)
    panels = (("model_bits", "pareto_bits", "model size (bits)"), ("energy_pj", "pareto_energy", "SNN energy (pJ)"))
    for k, (x_key, front_key, xlabel) in enumerate(panels):
        ax = fig.add_subplot(1, 2, k + 1)
        pts = [(as_float(p.get(x_key)), as_float(p.get(y_key)), p) for p in ok]
        pts = [t for t in pts if t[0] is not None and t[1] is not None]
        if not pts:
            ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes)
            continue
        ax.scatter([t[0] for t in pts], [100 * t[1] for t in pts], s=18, color="#95a5a6", label="points")
        front = sorted((t for t in pts if t[2].get(front_key)), key=lambda t: (t[0], t[1]))
        if front:
            ax.step([t[0] for t in front], [100 * t[1] for t in front], where="post", color="#c0392b", lw=1)
            ax.scatter([t[0] for t in front], [100 * t[1] for t in front], s=30, color="#c0392b",
                       label="Pareto front", zorder=3)
        if min(t[0] for t in pts) > 0:
            ax.set_xscale("log")
        if front:
            _label_front(ax, front, fig.dpi)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(("SNN accuracy" if y_key == "snn_accuracy" else "ANN/SNN top-1 agreement") + " (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(clip(title, 80), fontsize=10, parse_math=False)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90, metadata={"Software": None})


def _label_front(ax, front: list, dpi: float) -> None:
    """Label the front points; points at the same spot share one label, labels never overlap."""
    groups: dict[tuple[float, float], list[str]] = {}
    for x, y, p in front:
        groups.setdefault((x, 100 * y), []).append(point_label(p))
    ax.autoscale_view()
    placed: list[tuple[float, float]] = []  # label anchors in display points
    right_edge = (ax.bbox.x0 + 0.7 * ax.bbox.width) * 72.0 / dpi
    for (x, y), labels in sorted(groups.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        px, py = (v * 72.0 / dpi for v in ax.transData.transform((x, y)))
        left = px > right_edge  # near the right edge: write the label to the left of the point
        dy = -10.0
        while any(abs(px - qx) < 75 and abs(py + dy - qy) < 9 for qx, qy in placed):
            dy -= 9.0
        placed.append((px, py + dy))
        ax.annotate(" | ".join(labels), (x, y), fontsize=7, xytext=(-4 if left else 4, dy), textcoords="offset points",
                    ha="right" if left else "left",
                    arrowprops={"arrowstyle": "-", "color": "#bbbbbb", "lw": 0.5} if dy < -10 else None)


def _pct(v) -> str:
    f = as_float(v)
    return "n/a" if f is None else f"{100 * f:.2f}%"


def _int(v) -> str:
    f = as_float(v)
    return "n/a" if f is None else f"{f:.0f}"


def _num(v) -> str:
    f = as_float(v)
    return "n/a" if f is None else f"{f:.1f}"
