"""One self-contained HTML page from report.json: tables plus PNG plots.

No scripts and no external URLs: the plots are matplotlib PNGs embedded as base64
data URIs, the style is inline. Every string that comes from the model (layer names,
ops, notes) is HTML-escaped, and is drawn with mathtext off. Rendering is
deterministic: the same report gives the same bytes (PNG metadata is stripped).

matplotlib is an optional extra (``pip install 'snncc[report]'``); it is imported
only here, through the object API (no pyplot, no global backend switch).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from snncc import ops
from snncc.errors import SnnccError
from snncc.text_report import (
    NA,
    as_dict,
    as_float,
    bits_text,
    bytes_text,
    c_label,
    c_section,
    clip,
    energy_text,
    first_of,
    layer_bits,
    layer_row,
    num,
    pct,
)

_DPI = 90
_COLORS = {"ann": "#7f8c8d", "snn": "#2a7ab0", "weight": "#2a7ab0", "state": "#e08a1e", "other": "#8e6bb5",
           "front": "#c0392b"}


def write_html_report(report: dict, path: Path, *, graph=None) -> None:
    """Write ``render_html(report, graph)`` to ``path`` (UTF-8)."""
    Path(path).write_text(render_html(report, graph), encoding="utf-8")


def render_html(report: dict, graph=None) -> str:
    """The HTML page for a report dict; ``graph`` (an IR Graph) draws the real topology."""
    if not isinstance(report, dict):
        raise SnnccError("report: expected a JSON object (the contents of report.json)")
    _require_matplotlib()
    layers = [lay for lay in report.get("layers") or [] if isinstance(lay, dict)]
    sections = [
        _summary_section(report),
        _section("Graph", _graph_figure(report, layers, graph),
                 "Layers in execution order: name, op and per-sample output shape."),
        _section("Spike activity", _rate_figure(layers),
                 "Spike rate: the fraction of a layer's outputs that carry a non-zero level, per inference."),
        _section("Level histograms", _hist_figure(layers),
                 "How often each spike level is emitted per inference, all timesteps (log scale; 0 = silent)."),
        _section("Memory per layer", _memory_figure(report), "Stored bits per layer: weights and neuron state."),
        _section("Synaptic operations", _sops_figure(layers),
                 "SNN synaptic operations (SOPs) against the ANN's multiply-accumulates, per inference (log scale)."),
        _section("Pruning", _prune_figure(report),
                 "Structured pruning: channels per conv/dense layer before and after (left), and per layer the "
                 "histogram of the criterion's channel-group importance, the removed groups darker (right)."),
        _energy_section(report),
        _layer_table(report, layers),
        _options_section(report),
    ]
    title = f"snncc report: {report.get('model', NA)}"
    return _PAGE.format(title=_esc(title), body="\n".join(s for s in sections if s))


def _require_matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise SnnccError("HTML reports need matplotlib: pip install 'snncc[report]'") from None


# --- HTML pieces -------------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: 4px; }}
table {{ border-collapse: collapse; margin: 8px 0; }}
td, th {{ border: 1px solid #ddd; padding: 3px 8px; text-align: right; font-size: 0.9em; }}
th {{ background: #f3f3f3; }} td.l, th.l {{ text-align: left; }}
img {{ max-width: 100%; }} p.note {{ color: #555; font-size: 0.9em; }} code {{ font-size: 0.9em; }}
</style>
</head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""


def _esc(value) -> str:
    """Escape for HTML text and attributes; control characters (invalid in HTML) become '?'."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    return html.escape(text, quote=True)


def _section(title: str, figure_uri: str | None, note: str) -> str:
    body = f'<img alt="{_esc(title)}" src="{figure_uri}">' if figure_uri else "<p>n/a</p>"
    return f"<h2>{_esc(title)}</h2>\n<p class=\"note\">{_esc(note)}</p>\n{body}"


def _kv_table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f'<tr><th class="l">{_esc(k)}</th><td>{_esc(v)}</td></tr>' for k, v in rows)
    return f"<table>{cells}</table>"


def _summary_section(report: dict) -> str:
    acc = as_dict(report.get("accuracy"))
    act = as_dict(report.get("activity"))
    mem = as_dict(report.get("memory"))
    comp = mem.get("compression")
    rows = [
        ("model", str(report.get("model", NA))),
        ("target", str(report.get("target", NA))),
        ("schema version", str(report.get("schema_version", NA))),
        ("ANN accuracy", pct(acc.get("ann"))),
        ("SNN accuracy", pct(acc.get("snn"))),
        ("ANN/SNN top-1 agreement", pct(acc.get("top1_agreement"))),
        ("spike events per inference", num(act.get("spike_events"))),
        ("spike levels per inference", num(act.get("spike_levels"))),
        ("SOPs per inference", num(act.get("sops"))),
        ("weight memory", bits_text(mem.get("weight_bits"))),
        ("all integer parameters", bits_text(mem.get("param_bits"))),
        ("state memory", bits_text(mem.get("state_bits"))),
        ("fp32 weights", bytes_text(mem.get("fp32_weight_bytes"))),
        ("compression vs fp32", f"{num(comp, 2)}x" if num(comp) != NA else NA),
    ]
    c_info = c_section(report)
    if c_info is not None:
        rows += [(f"C {c_label(key)}", bytes_text(c_info[key]))
                 for key in sorted(c_info) if key.endswith("_bytes")]
    notes = report.get("notes") if isinstance(report.get("notes"), list) else []
    note_html = "".join(f"<li>{_esc(n)}</li>" for n in notes)
    return "<h2>Summary</h2>\n" + _kv_table(rows) + (f"\n<p>Notes:</p><ul>{note_html}</ul>" if notes else "")


def _energy_section(report: dict) -> str:
    energy = as_dict(report.get("energy"))
    rows = [("ANN energy per inference", energy_text(energy.get("ann_pj"))),
            ("SNN energy per inference", energy_text(energy.get("snn_pj")))]
    model = energy.get("model")
    text = f'<p class="note">Energy model: {_esc(model)}</p>' if model else '<p class="note">Energy model: n/a</p>'
    fig = _energy_figure(energy)
    img = f'<img alt="energy" src="{fig}">' if fig else ""
    return "<h2>Energy estimate</h2>\n" + _kv_table(rows) + "\n" + text + "\n" + img


def _layer_table(report: dict, layers: list[dict]) -> str:
    if not layers:
        return "<h2>Layers</h2>\n<p>n/a</p>"
    head = ("<tr><th class=\"l\">layer</th><th class=\"l\">op</th><th>spike rate</th><th>mean level</th>"
            "<th>SOPs</th><th>ANN MACs</th><th>weight bits</th><th>cosine</th></tr>")
    rows = []
    bits = layer_bits(report)
    for lay in layers:
        r = layer_row(lay, bits)
        cells = [f'<td class="l">{_esc(r["name"])}</td>', f'<td class="l">{_esc(r["op"])}</td>']
        cells += [f"<td>{_esc(r[k])}</td>" for k in ("rate", "mean", "sops", "macs", "bits", "cosine")]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    note = ('<p class="note">"-": does not apply to this layer; cosine: ANN activation vs SNN rate x threshold.</p>')
    return "<h2>Layers</h2>\n" + note + "\n<table>" + head + "".join(rows) + "</table>"


def _options_section(report: dict) -> str:
    opts = as_dict(report.get("options"))
    if not opts:
        return "<h2>Options</h2>\n<p>n/a</p>"
    rows = [(str(k), json.dumps(opts[k], sort_keys=True, default=str)) for k in sorted(opts, key=str)]
    return "<h2>Options</h2>\n" + _kv_table(rows)


# --- figures -------------------------------------------------------------------------

def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI)


def _png_uri(fig) -> str:
    """PNG bytes as a data URI; no Software/date chunks, so identical figures give identical bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _label(name, width: int = 22) -> str:
    """Shorten from the left: ONNX names are paths whose informative part is the end."""
    text = clip(str(name), 10 ** 6)
    return text if len(text) <= width else "..." + text[-(width - 3):]


def _set_names(ax, positions, names, axis: str = "x", rotation: float = 60) -> None:
    """Tick labels from untrusted names: shortened, mathtext off."""
    if axis == "x":
        ax.set_xticks(positions)
        texts = ax.set_xticklabels([_label(n) for n in names], rotation=rotation, ha="right", fontsize=8)
    else:
        ax.set_yticks(positions)
        texts = ax.set_yticklabels([_label(n) for n in names], fontsize=8)
    for t in texts:
        t.set_parse_math(False)


def _graph_figure(report: dict, layers: list[dict], graph) -> str | None:
    if graph is not None:
        boxes, edges = _graph_from_ir(graph)
    else:
        boxes, edges = _graph_from_layers(layers)
    if not boxes:
        return None
    boxes = boxes[:300]  # beyond this a drawing is unreadable anyway
    depth: dict[int, int] = {}
    for i in range(len(boxes)):
        preds = [a for a, b in edges if b == i and a < i]
        depth[i] = 1 + max((depth[a] for a in preds), default=-1)
    by_depth: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        by_depth.setdefault(depth[i], []).append(i)
    width = max(len(v) for v in by_depth.values())
    pos = {}
    for d, members in by_depth.items():
        for k, i in enumerate(members):
            pos[i] = (k - (len(members) - 1) / 2.0, -d)
    n_rows = len(by_depth)
    fig = _new_figure(min(3.2 * width + 1, 14), 0.62 * n_rows + 0.6)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    for a, b in edges:
        if a in pos and b in pos:
            (x0, y0), (x1, y1) = pos[a], pos[b]
            ax.annotate("", xy=(x1, y1 + 0.22), xytext=(x0, y0 - 0.22),
                        arrowprops={"arrowstyle": "->", "color": "#777", "lw": 0.8})
    for i, (title, sub, kind) in enumerate(boxes):
        x, y = pos[i]
        face = {"neuron": "#dbeaf7", "synaptic": "#fbe5c8"}.get(kind, "#eeeeee")
        ax.text(x, y, f"{_label(title, 30)}\n{clip(sub, 40)}", ha="center", va="center", fontsize=7.5,
                parse_math=False, bbox={"boxstyle": "round,pad=0.3", "fc": face, "ec": "#555", "lw": 0.6})
    ax.set_xlim(-width / 2.0 - 0.2, width / 2.0 + 0.2)
    ax.set_ylim(-n_rows + 0.4, 0.6)
    return _png_uri(fig)


def _kind(op: str) -> str:
    if op == "neuron" or op == "relu":
        return "neuron"
    if op in ops.SYNAPTIC:
        return "synaptic"
    return "other"


def _graph_from_ir(graph) -> tuple[list[tuple[str, str, str]], list[tuple[int, int]]]:
    producer = {node.output: i for i, node in enumerate(graph.nodes)}
    boxes, edges = [], []
    for i, node in enumerate(graph.nodes):
        shape = graph.values[node.output].shape if node.output in graph.values else ()
        boxes.append((str(node.name), f"{node.op} {'x'.join(map(str, shape))}", _kind(node.op)))
        edges += [(producer[v], i) for v in node.inputs if v in producer]
    return boxes, sorted(set(edges))


def _graph_from_layers(layers: list[dict]) -> tuple[list[tuple[str, str, str]], list[tuple[int, int]]]:
    """Report layers in order; their ``inputs`` (layer names) when given, else a chain."""
    boxes, edges = [], []
    index = {}
    for i, lay in enumerate(layers):
        op = str(lay.get("op", "?"))
        shape = lay.get("shape")
        sub = op + (" " + "x".join(map(str, shape)) if isinstance(shape, list) else "")
        boxes.append((str(lay.get("name", "?")), sub, _kind(op)))
        index.setdefault(str(lay.get("name")), i)
    has_inputs = any(isinstance(lay.get("inputs"), list) for lay in layers)
    for i, lay in enumerate(layers):
        if has_inputs:
            edges += [(index[str(n)], i) for n in lay.get("inputs") or [] if str(n) in index and index[str(n)] < i]
        elif i > 0:
            edges.append((i - 1, i))
    return boxes, sorted(set(edges))


def _rate_figure(layers: list[dict]) -> str | None:
    rows = [(lay.get("name", "?"), as_float(lay.get("spike_rate")), as_float(lay.get("mean_level"))) for lay in layers]
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return None
    fig = _new_figure(max(6.0, 0.45 * len(rows) + 2), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(len(rows)))
    ax.bar(xs, [100 * r[1] for r in rows], color=_COLORS["snn"], label="spike rate (%)")
    ax.set_ylabel("spike rate (%)")
    ax.set_ylim(0, 1.15 * max(max(100 * r[1] for r in rows), 1e-9))
    _set_names(ax, xs, [r[0] for r in rows])
    means = [(x, r[2]) for x, r in zip(xs, rows) if r[2] is not None]
    if means:
        ax2 = ax.twinx()
        ax2.plot([m[0] for m in means], [m[1] for m in means], "o", color=_COLORS["state"], label="mean level")
        ax2.set_ylabel("mean level")
        ax2.set_ylim(0, 1.15 * max(max(m[1] for m in means), 1e-9))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png_uri(fig)


def _hist_figure(layers: list[dict]) -> str | None:
    hists = [(lay.get("name", "?"), lay["level_hist"], bool(lay.get("signed")))
             for lay in layers if isinstance(lay.get("level_hist"), list) and lay["level_hist"]]
    hists = [(n, [as_float(c) or 0.0 for c in h], s) for n, h, s in hists]
    if not hists:
        return None
    cols = min(4, len(hists))
    rows = (len(hists) + cols - 1) // cols
    fig = _new_figure(3.0 * cols, 2.3 * rows)
    for k, (name, counts, signed) in enumerate(hists):
        ax = fig.add_subplot(rows, cols, k + 1)
        # signed neurons emit -N..N: the histogram is centred on level 0
        first = -(len(counts) // 2) if signed else 0
        levels = list(range(first, first + len(counts)))
        ax.bar(levels, counts, color=_COLORS["snn"])
        if any(c > 0 for c in counts):
            from matplotlib.ticker import NullFormatter

            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())  # decade labels only: readable at this size
        ax.set_title(_label(name, 28), fontsize=8, parse_math=False)
        ax.set_xticks(levels if len(levels) <= 12 else levels[:: max(1, len(levels) // 8)])
        ax.tick_params(labelsize=7)
        ax.set_xlabel("level", fontsize=7)
    fig.tight_layout()
    return _png_uri(fig)


def _prune_figure(report: dict) -> str | None:
    pr = as_dict(report.get("prune"))
    layers = [lay for lay in pr.get("layers") or [] if isinstance(lay, dict)]
    hists = [h for h in pr.get("histograms") or [] if isinstance(h, dict) and h.get("counts")]
    if not layers:
        return None
    hists = hists[:11]  # at most 12 panels: the channel bars and 11 layers' histograms
    cols = min(4, 1 + len(hists))
    rows = (1 + len(hists) + cols - 1) // cols
    fig = _new_figure(3.2 * cols + 1, 2.6 * rows + 0.6)
    ax = fig.add_subplot(rows, cols, 1)
    xs = list(range(len(layers)))
    ax.bar([x - 0.2 for x in xs], [as_float(lay.get("out_channels_before")) or 0 for lay in layers], 0.4,
           color=_COLORS["ann"], label="before")
    ax.bar([x + 0.2 for x in xs], [as_float(lay.get("out_channels_after")) or 0 for lay in layers], 0.4,
           color=_COLORS["snn"], label="after")
    _set_names(ax, xs, [lay.get("name", "?") for lay in layers])
    ax.set_ylabel("output channels")
    ax.legend(fontsize=7)
    for k, h in enumerate(hists):
        a = fig.add_subplot(rows, cols, k + 2)
        edges = [as_float(e) or 0.0 for e in h.get("edges", [])]
        counts = [as_float(c) or 0.0 for c in h["counts"]]
        gone = [as_float(c) or 0.0 for c in h.get("removed_counts", [0] * len(counts))]
        if len(edges) != len(counts) + 1:
            continue
        mids = [(edges[i] + edges[i + 1]) / 2 for i in range(len(counts))]
        width = (edges[-1] - edges[0]) / max(len(counts), 1) * 0.9
        a.bar(mids, counts, width, color=_COLORS["snn"], alpha=0.5, label="kept")
        a.bar(mids, gone, width, color=_COLORS["ann"], label="removed")
        a.set_title(_label(h.get("layer", "?"), 28), fontsize=8, parse_math=False)
        a.set_xlabel(f"importance ({h.get('criterion', '')})", fontsize=7)
        a.tick_params(labelsize=7)
    fig.tight_layout()
    return _png_uri(fig)


def _memory_figure(report: dict) -> str | None:
    mem_layers = as_dict(report.get("memory")).get("layers")
    if isinstance(mem_layers, dict):  # tolerate {name: {...}}
        mem_layers = [{"name": k, **v} for k, v in sorted(mem_layers.items()) if isinstance(v, dict)]
    if not isinstance(mem_layers, list):
        return None
    mem_layers = [m for m in mem_layers if isinstance(m, dict)]
    if not mem_layers:
        return None
    # stack the per-layer counts (not widths like "bits" or "membrane_bits", not totals)
    keys = [k for k in _MEM_KEYS if any(as_float(m.get(k)) for m in mem_layers)]
    if not keys:
        return None
    fig = _new_figure(9.0, 0.32 * len(mem_layers) + 1.6)
    ax = fig.add_subplot(1, 1, 1)
    ys = list(range(len(mem_layers)))[::-1]
    left = [0.0] * len(mem_layers)
    palette = ["#2a7ab0", "#7fb3d5", "#8e6bb5", "#e08a1e", "#27ae60", "#95a5a6", "#c0392b"]
    for j, key in enumerate(keys):
        vals = [as_float(m.get(key)) or 0.0 for m in mem_layers]
        ax.barh(ys, vals, left=left, color=palette[j % len(palette)], label=key.removesuffix("_bits") + " bits")
        left = [a + b for a, b in zip(left, vals)]
    _set_names(ax, ys, [m.get("name", "?") for m in mem_layers], axis="y")
    ax.set_xlabel("bits")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png_uri(fig)


_MEM_KEYS = ("weight_bits", "bias_bits", "shortcut_bits", "threshold_bits", "state_bits")


def _sops_figure(layers: list[dict]) -> str | None:
    rows = [(lay.get("name", "?"), as_float(lay.get("sops")), as_float(_macs(lay)), as_float(lay.get("snn_macs")))
            for lay in layers]
    rows = [r for r in rows if r[1] is not None or r[2] is not None]
    if not rows:
        return None
    fig = _new_figure(max(6.0, 0.5 * len(rows) + 2), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(len(rows)))
    ax.bar([x - 0.2 for x in xs], [r[2] or 0 for r in rows], width=0.4, color=_COLORS["ann"], label="ANN MACs")
    ax.bar([x + 0.2 for x in xs], [r[1] or 0 for r in rows], width=0.4, color=_COLORS["snn"], label="SNN SOPs")
    if any(r[3] for r in rows):
        # layers fed by the input alone see a constant current: the SNN computes them once, as MACs
        ax.bar([x + 0.2 for x in xs], [r[3] or 0 for r in rows], width=0.4, bottom=[r[1] or 0 for r in rows],
               color=_COLORS["state"], label="SNN MACs (input layer)")
    if any((r[1] or 0) > 0 or (r[2] or 0) > 0 for r in rows):
        ax.set_yscale("log")
    _set_names(ax, xs, [r[0] for r in rows])
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png_uri(fig)


def _energy_figure(energy: dict) -> str | None:
    ann, snn = as_float(energy.get("ann_pj")), as_float(energy.get("snn_pj"))
    if ann is None and snn is None:
        return None
    fig = _new_figure(4.5, 2.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.barh([1, 0], [(ann or 0) / 1e3, (snn or 0) / 1e3], color=[_COLORS["ann"], _COLORS["snn"]])
    ax.set_yticks([1, 0])
    ax.set_yticklabels(["ANN", "SNN"])
    ax.set_xlabel("nJ per inference")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png_uri(fig)


# --- small helpers -----------------------------------------------------------------

def _macs(layer: dict):
    return first_of(layer, "ann_macs", "macs")
