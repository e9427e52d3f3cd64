"""The sweep's results: the Pareto front, sweep.csv (appended as points finish, read back by
--resume), sweep_table.txt and sweep_pareto.png."""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from snncc.errors import SnnccError
from snncc.sweep_grid import AXIS, CSV_COLUMNS, DIED, GRID_KEYS, csv_value, point_key, point_label
from snncc.text_report import as_float, clip


class SweepStore:
    """The output folder of a resumable sweep.

    Each finished point is appended to ``sweep.csv`` at once (one whole line, flushed), so an
    interrupted sweep keeps its finished points and ``--resume`` runs only the rest.  At the
    end the CSV is rewritten in grid order with the Pareto marks, and the table and plot are
    written (each file replaced in one rename).
    """

    def __init__(self, out: Path, force: bool, protect: Sequence, resume: bool):
        from snncc.outdir import check_output_dir

        self.out, self.csv = Path(out), Path(out) / "sweep.csv"
        self.appended = 0
        self.created = False
        if resume:
            self.rows = read_rows(self.csv)
            return
        check_output_dir(self.out, force, protect)
        self.rows = []
        try:
            if self.out.is_dir():  # --force (checked above): empty it, keep the folder (it may be a link)
                for child in self.out.iterdir():
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            else:
                self.out.mkdir(parents=True)
                self.created = True
            self.csv.write_text(",".join(CSV_COLUMNS) + "\n", encoding="utf-8")
        except OSError as exc:
            raise SnnccError(f": cannot write {self.out}: {exc.strerror or exc}", option="output") from None

    def finished(self) -> dict[tuple, dict]:
        """Rows already in the CSV by point; a worker that died is run again."""
        return {point_key(r): r for r in self.rows if not str(r.get("error", "")).startswith(DIED)}

    def append(self, row: Mapping, report: dict | None = None) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([csv_value(row.get(c)) for c in CSV_COLUMNS])
        with open(self.csv, "a", encoding="utf-8") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        self.appended += 1
        if report is not None:
            import json

            (self.out / "reports").mkdir(exist_ok=True)
            name = "_".join(point_label(row).replace("=", "").split()) + ".json"
            text = json.dumps(report, indent=1, sort_keys=True) + "\n"
            _replace(self.out / "reports" / name, lambda tmp: tmp.write_bytes(text.encode("utf-8")))

    def abandon(self, *, failed: bool = False) -> None:
        """The sweep stopped: a folder this run made and left without a finished row (or with only
        failed ones) goes; finished rows stay for --resume."""
        if self.created and (failed or not self.appended):
            shutil.rmtree(self.out, ignore_errors=True)

    def finish(self, rows: Sequence[Mapping], *, title: str) -> None:
        buf = io.StringIO()
        write_csv(rows, buf)
        _replace(self.csv, lambda tmp: tmp.write_bytes(buf.getvalue().encode("utf-8")))
        _replace(self.out / "sweep_table.txt", lambda tmp: tmp.write_bytes((format_table(rows) + "\n").encode()))
        _replace(self.out / "sweep_pareto.png", lambda tmp: write_pareto_plot(rows, tmp, title=title))


def _replace(path: Path, write) -> None:
    """Write ``path`` through a temporary sibling and one rename: never half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise SnnccError(f": cannot write {path}: {exc.strerror or exc}", option="output") from None
    finally:
        tmp.unlink(missing_ok=True)


def read_rows(path: Path) -> list[dict]:
    """sweep.csv back into result rows (--resume); SnnccError naming --resume when it is not one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SnnccError(f"option --resume: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(header) != CSV_COLUMNS:
        raise SnnccError(f"option --resume: {path} is not a sweep.csv of this snncc version "
                         f"(expected the columns {','.join(CSV_COLUMNS)})")
    rows = []
    for line, cells in enumerate(reader, start=2):
        if len(cells) != len(CSV_COLUMNS):  # a line cut short by a crash: that point runs again
            continue
        row: dict = {}
        try:
            for col, cell in zip(CSV_COLUMNS, cells):
                if col in GRID_KEYS:
                    row[col] = AXIS[col].kind(cell)
                elif col == "error":
                    row[col] = cell
                elif col not in ("pareto_bits", "pareto_energy"):
                    row[col] = float(cell) if cell != "" else None
        except ValueError:
            raise SnnccError(f"option --resume: {path} line {line}: {col} {cell!r} is not a "
                             f"{AXIS[col].kind.__name__ if col in GRID_KEYS else 'number'}") from None
        rows.append(row)
    return rows


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

def write_csv(points: Sequence[Mapping], path) -> None:
    """All rows under the header, into a path or a text stream."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for p in points:
        writer.writerow([csv_value(p.get(c)) for c in CSV_COLUMNS])
    if isinstance(path, io.StringIO):
        path.write(buf.getvalue())
    else:
        Path(path).write_text(buf.getvalue(), encoding="utf-8")


def format_table(points: Sequence[Mapping]) -> str:
    """The table `snncc sweep` prints; '*' marks the Pareto fronts (bits, energy).

    Axes beyond N, T and weight bits show in a last column where a point sets them away
    from the compile option's default.
    """
    acc = accuracy_key(points)
    head = (f"{'N':>3s} {'T':>3s} {'bits':>4s} {'ANN acc':>8s} {'SNN acc':>8s} {'agree':>8s} "
            f"{'model bits':>11s} {'energy pJ':>11s} {'front':>5s}")
    others = [" ".join(point_label(p).split()[3:]) for p in points]
    if any(others):
        head += "  other settings"
    lines = [head, "-" * len(head)]
    for p, other in zip(points, others):
        start = f"{p.get('levels', '-'):>3} {p.get('timesteps', '-'):>3} {p.get('weight_bits', '-'):>4} "
        if p.get("error"):
            lines.append(start + f"error: {clip(str(p['error']), 70)}" + (f"  [{other}]" if other else ""))
            continue
        marks = ("b" if p.get("pareto_bits") else "-") + ("e" if p.get("pareto_energy") else "-")
        lines.append(start + f"{_pct(p.get('ann_accuracy')):>8s} {_pct(p.get('snn_accuracy')):>8s} "
                     f"{_pct(p.get('agreement')):>8s} {_int(p.get('model_bits')):>11s} "
                     f"{_num(p.get('energy_pj')):>11s} {marks:>5s}" + (f"  {other}" if other else ""))
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
