"""The sweep's grid: the axes a sweep may vary, comma lists, ``--grid FILE.toml`` and point identity."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from snncc.errors import SnnccError


@dataclass(frozen=True)
class Axis:
    """One CompileOptions field a sweep may vary: its CLI flag, TOML key and CSV column are ``name``."""

    name: str
    kind: type  # int, float or str: how a comma list / CSV cell is parsed
    short: str  # its label in progress lines and on the plot
    default: str | None = None  # the CLI's default list (None: the compile option's default, fixed)
    help: str = ""


# Every axis in one place: the CLI flags, --grid keys, CSV columns and labels follow from it.
# A new compile option becomes a sweep axis with one line here (as "prune" did).
AXES = (
    Axis("levels", int, "N", "1,2,4,8", "Spike levels"),
    Axis("timesteps", int, "T", "1", "Timesteps"),
    Axis("weight_bits", int, "b", "2,4,8", "Weight bits"),
    Axis("membrane_bits", int, "B", None, "Membrane bits"),
    Axis("membrane_shift", int, "k", None, "Stored membrane precision 2^k"),
    Axis("weight_quantizer", str, "wq", None, "Weight quantizers (max, percentile, mse, rescaw)"),
    Axis("residual", str, "res", None, "Residual modes (sparse, sew)"),
    Axis("barrier_scale", float, "bs", None, "Barrier threshold scales"),
    Axis("prune", float, "p", None, "Pruning ratios (criterion: [prune] prune_criterion of the config, default l1)"),
)
AXIS = {a.name: a for a in AXES}
GRID_KEYS = tuple(AXIS)
# snn_accuracy / agreement: the integer SNN (what the targets run); float_snn_*: report.json's float SNN.
METRIC_COLUMNS = ("ann_accuracy", "snn_accuracy", "agreement", "float_snn_accuracy", "float_snn_agreement",
                  "model_bits", "weight_bits_total", "state_bits", "sops", "energy_pj", "ann_energy_pj")
CSV_COLUMNS = (*GRID_KEYS, *METRIC_COLUMNS, "pareto_bits", "pareto_energy", "error")
# A row whose point's process died: --resume runs it again (a user-level error it keeps).
DIED = "worker died"


def parse_list(text: str, option: str, kind: type = int) -> tuple:
    """``"1,2,4"`` -> (1, 2, 4), sorted and de-duplicated; SnnccError naming the option."""
    values = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            values.append(kind(item))
        except ValueError:
            what = {int: "integers", float: "numbers"}.get(kind, "values")
            raise SnnccError(f"option {option} expects comma-separated {what}, got {text!r}") from None
    if not values:
        raise SnnccError(f"option {option} needs at least one value")
    return tuple(sorted(set(values)))


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    return parse_list(text, option, int)


def _axis_value(key: str, value, where: str):
    """A grid value of axis ``key`` in its kind (TOML gives ints for floats like 1)."""
    kind = AXIS[key].kind
    ok = (isinstance(value, str) if kind is str else
          isinstance(value, int) and not isinstance(value, bool) if kind is int else
          isinstance(value, (int, float)) and not isinstance(value, bool))
    if not ok:
        raise SnnccError(f"{where}: {key} takes {kind.__name__} values, got {value!r}")
    return kind(value)


def grid_points(grid: Mapping[str, Sequence], points: Sequence[Mapping] = (), *,
                where: str = "sweep grid") -> list[dict]:
    """The cartesian product of ``grid`` (sorted), then the listed ``points``, as option dicts.

    A listed point sets some axes; the others take the compile options' values.
    """
    for keys in (grid, *points):
        unknown = sorted(set(keys) - set(GRID_KEYS))
        if unknown:
            raise SnnccError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(GRID_KEYS)}")
    keys = [k for k in GRID_KEYS if k in grid]
    axes = [sorted(set(_axis_value(k, v, where) for v in grid[k])) for k in keys]
    if any(not a for a in axes):
        raise SnnccError(f"{where}: every option needs at least one value")
    out = [dict(zip(keys, combo)) for combo in itertools.product(*axes)] if keys else []
    out += [{k: _axis_value(k, p[k], where) for k in GRID_KEYS if k in p} for p in points]
    return out


def read_grid(path) -> tuple[dict, list[dict]]:
    """``--grid FILE.toml``: an ``[axes]`` table of lists (a cartesian product) and/or ``[[point]]`` tables."""
    from snncc.config import read_toml

    where = f"option --grid: {path}"
    try:
        doc = read_toml(path)
    except SnnccError as exc:
        raise SnnccError(str(exc).replace("option --config", "option --grid", 1)) from None
    unknown = sorted(set(doc) - {"axes", "point"})
    if unknown:
        raise SnnccError(f"{where}: unknown table(s) {', '.join(unknown)}; expected [axes] and/or [[point]]")
    axes, points = doc.get("axes", {}), doc.get("point", [])
    if not isinstance(axes, dict) or not all(isinstance(v, list) for v in axes.values()):
        raise SnnccError(f"{where}: [axes] must hold lists, e.g. levels = [2, 4]")
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise SnnccError(f"{where}: point must be an array of tables ([[point]])")
    if not axes and not points:
        raise SnnccError(f"{where}: no [axes] and no [[point]]: the grid is empty")
    grid_points(axes, points, where=where)  # check the keys and kinds now, naming the file
    return axes, points


def point_key(row: Mapping) -> tuple[str, ...]:
    """A point's identity in the CSV: its axis values as written there."""
    return tuple(csv_value(row.get(k)) for k in GRID_KEYS)


def csv_value(v) -> str:
    """How a value is written in sweep.csv (floats round-trip exactly; 1.0 is written 1)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v)


def point_label(p: Mapping) -> str:
    """``N=4 T=1 b=8``, plus any other axis that is not the compile option's default."""
    from snncc.options import CompileOptions

    defaults = CompileOptions()
    always = ("levels", "timesteps", "weight_bits")
    return " ".join(f"{a.short}={csv_value(p[a.name])}" for a in AXES
                    if a.name in p and (a.name in always or p[a.name] != getattr(defaults, a.name, None)))
