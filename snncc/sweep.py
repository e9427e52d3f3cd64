"""Design-space sweep: compile a grid of operating points and mark the Pareto front.

Each point is one ``build_snn`` + ``make_report`` (no code emission) with a few
options changed (spike levels N, timesteps T, weight bits, quantizer...; the axes are
in snncc.sweep_grid). Points run in local worker processes or as Ray tasks
(snncc.sweep_exec); results come back in grid order whatever order they finish in, so
the CSV and the plot are deterministic (wall times are printed, never written).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from snncc.config import describe_error
from snncc.errors import SnnccError
from snncc.sweep_grid import (  # noqa: F401  (the sweep's public names, in one place)
    AXES,
    AXIS,
    CSV_COLUMNS,
    GRID_KEYS,
    Axis,
    grid_points,
    parse_int_list,
    parse_list,
    point_key,
    point_label,
    read_grid,
)
from snncc.sweep_output import (  # noqa: F401
    SweepStore,
    format_table,
    mark_pareto,
    pareto_front,
    write_csv,
    write_pareto_plot,
)
from snncc.text_report import as_dict, as_float


def run_sweep(model, calib, grid: Mapping[str, Sequence], jobs: int | None = None, out_dir=None, *,
              base_options: Mapping | None = None, force: bool = False, points: Sequence[Mapping] = (),
              echo: Callable[[str], None] = print, protect: Sequence = (), executor: str = "local",
              ray_address: str | None = None, ray_runtime_env: dict | None = None, resume: bool = False,
              reports: bool = False, point_fn: Callable | None = None, stats: dict | None = None,
              config_source=None) -> list[dict]:
    """Compile every grid point and return one result dict per point, in grid order.

    ``calib`` is a path (or ``"random"``). ``base_options`` are CompileOptions fields shared
    by all points; ``points`` are listed points after the cartesian product of ``grid``.
    ``executor``: "local" (``jobs`` processes) or "ray" (one task per point on the cluster at
    ``ray_address``, $RAY_ADDRESS, or a local one started for the sweep; ``ray_runtime_env``: the
    tasks' Ray runtime environment).  ``config_source`` (a ``config.ConfigSource``): where the
    base options came from, so that a point's error caused by a config-file value names the
    file and key, as `snncc compile` does.
    With ``out_dir``, each finished point is appended to ``sweep.csv`` at once; at the end
    the CSV is rewritten in grid order with the Pareto marks, beside ``sweep_pareto.png``
    and ``sweep_table.txt``. ``resume`` keeps the rows already in ``sweep.csv`` (except those
    whose worker died) and runs only the rest. ``reports`` also writes each point's
    report.json into ``reports/``. ``--force`` never deletes a folder that holds one of
    ``protect`` (default: the model and calibration files). ``point_fn`` replaces
    :func:`compile_point` (same signature; a module-level function the workers can import).
    ``stats`` (a dict) receives the Ray executor's object-store figures (bench/sweep_scale.py).
    """
    from snncc import sweep_exec
    from snncc.options import CompileOptions
    from snncc.progress import SweepProgress

    model = str(Path(model))
    if not Path(model).is_file():
        raise SnnccError(f"argument MODEL: file not found: {model}")
    if calib is None:
        raise SnnccError("option --calib is required for a sweep")
    if executor not in ("local", "ray"):
        raise SnnccError(f"must be local or ray, got {executor!r}", option="executor")
    if executor == "ray":
        sweep_exec.require_ray()  # before any slow work
    if resume and out_dir is None:
        raise SnnccError("option --resume needs an output folder")
    if resume and force:
        raise SnnccError("option --resume keeps the output folder; --force would replace it: give one of them")
    calib = str(calib)
    base = dict(base_options or {})
    points = _unique_points(base, grid_points(grid, points), CompileOptions)
    input_shape = _check_inputs(model, calib)
    protect = [model, *([calib] if calib != "random" else []), *protect]
    store = SweepStore(Path(out_dir), force, protect, resume) if out_dir is not None else None
    done_rows = store.finished() if store else {}
    todo = [i for i, p in enumerate(points) if point_key(p) not in done_rows]
    jobs = max(1, int(jobs or os.cpu_count() or 1))
    where = (f"{min(jobs, len(todo))} process(es)" if executor == "local" else
             f"Ray ({ray_address or os.environ.get('RAY_ADDRESS') or 'a local cluster started for the sweep'})")
    resumed = f", {len(points) - len(todo)} already in {store.csv}" if store and resume else ""
    echo(f"sweep: {len(points)} points{resumed}, {len(todo)} to run on {where}")
    results: list[dict | None] = [done_rows.get(point_key(p)) for p in points]
    progress = SweepProgress(len(todo), echo)
    t0 = time.perf_counter()
    try:
        tasks = [(i, points[i]) for i in todo]
        run = sweep_exec.execute(tasks, model=model, calib=calib, base=base, input_shape=input_shape,
                                 executor=executor, jobs=jobs, ray_address=ray_address, reports=reports,
                                 ray_runtime_env=ray_runtime_env,
                                 point_fn=point_fn or compile_point, progress=progress, stats=stats)
        for i, res in run:
            report = res.pop("_report", None)
            cause = res.pop("_error_cause", None)
            if cause:  # raised in the worker: name the config file and key here, where they are known
                res["error"] = describe_error(SnnccError(cause.pop("message"), **cause), config_source)
            res = {**points[i], **{k: v for k, v in res.items() if k not in GRID_KEYS}}
            results[i] = res
            if store:  # on disk before the line says it is done
                store.append(res, report)
            progress.finished(res, point_label(res), _point_summary(res))
    except BaseException as exc:
        progress.close()
        if store:
            store.abandon()
            if (store.appended or resume) and hasattr(exc, "kept"):  # a signal: say what stays, for --resume
                exc.kept = f"the finished points are kept in {store.csv} (run again with --resume)"
        raise
    progress.close()
    wall = time.perf_counter() - t0
    extra = [r for k, r in done_rows.items() if k not in {point_key(p) for p in points}]
    rows = [r for r in results if r is not None] + extra
    if rows and all(r.get("error") for r in rows):
        if store:
            store.abandon(failed=True)
        raise SnnccError(f"sweep: all {len(rows)} points failed; the first: {rows[0]['error']}")
    mark_pareto(rows)
    echo(f"sweep: done in {wall:.1f} s" + (f" ({len(extra)} rows from {store.csv} not in this grid kept)"
                                           if extra else ""))
    if store:
        store.finish(rows, title=Path(model).name)
    return rows


def _unique_points(base: Mapping, points: list[dict], options_cls) -> list[dict]:
    """Each point with every axis filled in from the options (validated: a bad grid fails before
    any slow work); points that end up the same settings are kept once."""
    out, seen = [], set()
    for point in points:
        options = _options(base, point, options_cls)
        full = {k: getattr(options, k) for k in GRID_KEYS}
        if point_key(full) not in seen:
            seen.add(point_key(full))
            out.append(full)
    return out


def _point_summary(res: Mapping) -> str:
    from snncc.sweep_output import _int, _pct

    if res.get("error"):
        return f"error: {res['error']}"
    return (f"SNN {_pct(res.get('snn_accuracy'))}, agreement {_pct(res.get('agreement'))}, "
            f"{_int(res.get('model_bits'))} bits")


def _check_inputs(model: str, calib: str) -> tuple[int, ...]:
    """Fail fast, once, on a bad model or calibration file (not once per point); the input shape."""
    import warnings

    from snncc.calib_data import load_calib
    from snncc.frontend.onnx_import import load_onnx

    graph = load_onnx(model)
    shape = graph.values[graph.inputs[0]].shape
    with warnings.catch_warnings():  # 'random' warns in every worker anyway
        warnings.simplefilter("ignore")
        load_calib(calib, shape)
    return tuple(int(d) for d in shape)


def _options(base: Mapping, point: Mapping, options_cls):
    options = options_cls()
    for key, value in {**base, **point}.items():
        if not hasattr(options, key):
            raise SnnccError(f"sweep: unknown compile option {key!r}")
        setattr(options, key, value)
    return options.validate()


def compile_point(model, calib, base: Mapping, point: Mapping, reports: bool = False) -> dict:
    """One operating point: build the integer SNN, make its report, keep the headline figures.

    ``model`` is a path or the ONNX bytes, ``calib`` a path, "random" or a CalibData.
    A user-level failure (SnnccError, e.g. a range-analysis overflow at this setting) is
    recorded in ``error``; anything else propagates (the executors record it as a crash).
    With ``reports``, the row carries the point's report.json under ``_report``.
    """
    from snncc.compiler import build_snn, make_report
    from snncc.options import CompileOptions

    t0 = time.perf_counter()
    row: dict = dict(point)
    name = Path(model).name if isinstance(model, (str, Path)) else "model.onnx"
    try:
        options = _options(base, point, CompileOptions)
        result = build_snn(model, options, calib, echo=lambda _msg: None)
        report = make_report(result, options, model=name, target="python")
    except SnnccError as exc:
        row["error"] = str(exc)
        if exc.option is not None:  # for run_sweep's describe_error (an exception may not pickle)
            row["_error_cause"] = {"message": exc.detail, "node": exc.node, "op": exc.op, "option": exc.option,
                                   "key": exc.key}
    else:
        row.update(summarize_report(report))
        row["error"] = ""
        if reports:
            row["_report"] = report
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


