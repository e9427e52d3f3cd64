"""The compact text summary `snncc compile` prints after writing report.json.

It reads only the report dict (schema in docs/report.md) and tolerates missing keys:
anything absent prints as ``n/a`` so that a partial report still summarises.
"""

from __future__ import annotations

import math

from snncc import ops

NA = "n/a"


def format_summary(report: dict) -> str:
    """A few lines of totals plus one line per layer; no trailing newline."""
    lines = [_title(report)]
    acc = as_dict(report.get("accuracy"))
    # report.json's figures come from the calibration data (docs/report.md): say so, they are optimistic.
    lines.append(f"{'accuracy':<10s} ANN {pct(acc.get('ann'))}  SNN {pct(acc.get('snn'))}  "
                 f"top-1 agreement {pct(first_of(acc, 'top1_agreement', 'agreement'))} (on the calibration data)")
    act = as_dict(report.get("activity"))
    lines.append(f"{'activity':<10s} {num(act.get('spike_events'))} spike events, "
                 f"{num(act.get('spike_levels'))} spike levels, {num(act.get('sops'))} SOPs per inference")
    energy = as_dict(report.get("energy"))
    ann_pj, snn_pj = as_float(energy.get("ann_pj")), as_float(energy.get("snn_pj"))
    ratio = f" ({ann_pj / snn_pj:.1f}x less)" if ann_pj is not None and snn_pj else ""
    lines.append(f"{'energy':<10s} ANN {energy_text(ann_pj)}  SNN {energy_text(snn_pj)}{ratio} per inference")
    mem = as_dict(report.get("memory"))
    comp = as_float(mem.get("compression"))
    params = f"all params {bits_text(mem['param_bits'])}, " if as_float(mem.get("param_bits")) is not None else ""
    lines.append(f"{'memory':<10s} weights {bits_text(mem.get('weight_bits'))}, {params}"
                 f"compression {f'{comp:.2f}x' if comp is not None else NA} vs fp32")
    lines.append(f"{'':<10s} state {bits_text(mem.get('state_bits'))}, "
                 f"fp32 weights {bytes_text(mem.get('fp32_weight_bytes'))}")
    c_info = c_section(report)
    if c_info is not None:
        parts = [f"{c_label(key)} {bytes_text(c_info[key])}"
                 for key in sorted(c_info) if key.endswith("_bytes") and as_float(c_info[key]) is not None]
        lines.append(f"{'C':<10s} " + (", ".join(parts) if parts else NA))
    lines += fpga_lines(report)
    layers = [lay for lay in report.get("layers") or [] if isinstance(lay, dict)]
    if layers:
        lines.append("")
        bits = layer_bits(report)
        lines.append(f"{'layer':<24s} {'op':<8s} {'rate':>7s} {'mean lvl':>8s} {'SOPs':>11s} {'ANN MACs':>11s} "
                     f"{'bits':>4s}")
        for lay in layers:
            r = layer_row(lay, bits)
            lines.append(f"{clip(r['name'], 24):<24s} {clip(r['op'], 8):<8s} {r['rate']:>7s} {r['mean']:>8s} "
                         f"{r['sops']:>11s} {r['macs']:>11s} {r['bits']:>4s}")
    lines += prune_lines(report)
    notes = report.get("notes") or []
    for note in notes if isinstance(notes, list) else []:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def fpga_lines(report: dict) -> list[str]:
    """The FPGA target's cycles and estimate, and its notes (clamped lanes), which the user must see."""
    fp = as_dict(report.get("fpga"))
    if not fp:
        return []
    cycles, res = as_float(fp.get("cycles")), as_dict(fp.get("resources"))
    speed = f"{int(cycles):,} cycles per inference ({cycles / 100:,.1f} us at 100 MHz)" if cycles is not None else NA
    cells = ", ".join(f"{res[k]} {k.upper()}" for k in ("lut", "ff", "bram", "dsp") if k in res)
    mode = ", event-driven" if fp.get("event_driven") else ""
    lines = [f"{'FPGA':<10s} lanes {fp.get('lanes')}{mode}, {speed}; estimate {cells or NA}"]
    notes = fp.get("notes") or []
    return lines + [f"note: fpga: {note}" for note in (notes if isinstance(notes, list) else [])]


def prune_lines(report: dict) -> list[str]:
    """The pruning summary: totals, then channels before -> after per conv/dense layer."""
    pr = as_dict(report.get("prune"))
    if not pr:
        return []
    params, flash, sops = as_dict(pr.get("params")), as_dict(pr.get("flash_bytes_estimate")), \
        as_dict(pr.get("sops_estimate"))
    groups = as_dict(pr.get("groups"))
    lines = ["", f"{'prune':<10s} criterion {pr.get('criterion')}, removed {groups.get('removed')} of "
             f"{groups.get('prunable')} channel groups ({'exact' if pr.get('exact') else 'not exact'} on the "
             f"calibration data)",
             f"{'':<10s} params {params.get('before')} -> {params.get('after')}, est. flash "
             f"{bytes_text(flash.get('before'))} -> {bytes_text(flash.get('after'))}, est. SOPs "
             f"{num(sops.get('before'))} -> {num(sops.get('after'))} (measured {num(pr.get('sops_measured'))})"]
    lines.append(f"{'layer':<24s} {'op':<8s} {'channels':>13s}")
    for lay in pr.get("layers") or []:
        if isinstance(lay, dict):
            ch = f"{lay.get('out_channels_before')} -> {lay.get('out_channels_after')}"
            lines.append(f"{clip(str(lay.get('name')), 24):<24s} {clip(str(lay.get('op')), 8):<8s} {ch:>13s}")
    return lines


def layer_row(lay: dict, bits: dict) -> dict[str, str]:
    """One report layer as display strings (shared by the text and HTML tables).

    "-" means the figure does not apply to this layer (null in the report, e.g. SOPs of a
    neuron); "n/a" means the report lacks it.
    """
    def cell(key: str, fmt) -> str:
        if key in lay and lay[key] is None:
            return "-"
        return fmt(lay.get(key))

    name = str(lay.get("name", "?"))
    macs = first_of(lay, "ann_macs", "macs")
    return {
        "name": name,
        "op": str(lay.get("op", "?")),
        "rate": cell("spike_rate", lambda v: pct(v, 1)),
        "mean": cell("mean_level", lambda v: num(v, 3)),
        "sops": cell("sops", lambda v: num(v, 0)),
        "macs": "-" if macs is None else num(macs, 0),
        "bits": num(bits[name]) if name in bits else "-",
        "cosine": cell("cosine", lambda v: num(v, 4)),
    }


def layer_bits(report: dict) -> dict[str, object]:
    """Weight bits by layer name: from the layer entry, else from the memory section's entry."""
    out: dict[str, object] = {}
    mem_layers = as_dict(report.get("memory")).get("layers")
    for entry in mem_layers if isinstance(mem_layers, list) else []:
        if isinstance(entry, dict) and (entry.get("op") is None or entry.get("op") in ops.WEIGHTED) and "bits" in entry:
            out[str(entry.get("name"))] = entry["bits"]
    for entry in report.get("layers") or []:
        if isinstance(entry, dict) and first_of(entry, "weight_bits", "bits") is not None:
            out[str(entry.get("name"))] = first_of(entry, "weight_bits", "bits")
    return out


_C_LABELS = {"arena_bytes": "arena (RAM)", "weight_bytes": "const tables (flash)", "peak_live_bytes": "peak live",
             "membrane_bytes": "membranes", "host_arena_bytes": "arena, x86-64 SIMD build"}


def c_label(key: str) -> str:
    """Display name of a ``*_bytes`` figure of the C section."""
    return _C_LABELS.get(key, key.removesuffix("_bytes").replace("_", " "))


def c_section(report: dict) -> dict | None:
    """The C backend's memory figures: ``c_memory`` (written by the C emitter), or ``c``."""
    for key in ("c_memory", "c"):
        if isinstance(report.get(key), dict):
            return report[key]
    return None


def _title(report: dict) -> str:
    opts = as_dict(report.get("options"))
    knobs = []
    for key, label in (("levels", "N"), ("timesteps", "T"), ("weight_bits", "weight bits")):
        if key in opts:
            knobs.append(f"{label}={opts[key]}")
    model = clip(str(report.get("model", NA)), 60)
    target = report.get("target", NA)
    return f"snncc: {model} -> {target}" + (f" ({', '.join(knobs)})" if knobs else "")


# --- formatting helpers (shared with the HTML report and the sweep table) ---------

def pct(value, digits: int = 2) -> str:
    """A fraction in [0, 1] as a percentage."""
    v = as_float(value)
    return NA if v is None else f"{100 * v:.{digits}f}%"


def num(value, digits: int = 1) -> str:
    """An int as an int, a float with ``digits`` decimals (large ones with none)."""
    v = as_float(value)
    if v is None:
        return NA
    if float(v).is_integer() or abs(v) >= 1e5 or digits == 0:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def energy_text(pj) -> str:
    v = as_float(pj)
    if v is None:
        return NA
    for unit, scale in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.2f} {unit}"
    return f"{v:.1f} pJ"


def bits_text(bits) -> str:
    v = as_float(bits)
    if v is None:
        return NA
    nbytes = v / 8
    return f"{v:.0f} bits ({nbytes / 1024:.2f} KiB)" if nbytes >= 1024 else f"{v:.0f} bits ({nbytes:.0f} B)"


def bytes_text(nbytes) -> str:
    v = as_float(nbytes)
    if v is None:
        return NA
    if abs(v) >= 1024 * 1024:
        return f"{v:.0f} B ({v / (1024 * 1024):.2f} MiB)"
    if abs(v) >= 1024:
        return f"{v:.0f} B ({v / 1024:.2f} KiB)"
    return f"{v:.0f} B"


def clip(text: str, width: int) -> str:
    """Untrusted names: make them printable on one line, then shorten."""
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= width else text[: width - 3] + "..."


def as_float(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def first_of(d: dict, *keys):
    for key in keys:
        if d.get(key) is not None:
            return d[key]
    return None


__all__ = ["format_summary", "c_label", "c_section", "layer_bits", "layer_row", "pct", "num", "energy_text",
           "bits_text", "bytes_text", "clip", "as_float", "as_dict", "first_of"]
