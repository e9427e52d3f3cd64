"""Save and load an IR graph as ``<prefix>.json`` (structure) plus ``<prefix>.npz`` (arrays).

Both files are deterministic: the JSON has sorted keys, and the npz is written by
hand with a fixed zip timestamp (``np.savez`` stamps the current time into every
member), so the same graph always gives byte-identical files.

Arrays anywhere (node params, and any array inside attrs, meta or stats) go to the
npz under generated keys; the JSON refers to them as ``{"__array__": key}``.  Tuples
are kept as ``{"__tuple__": [...]}`` so a loaded graph equals the saved one.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from snncc.errors import SnnccError
from snncc.ir import Graph, Node, Value

FORMAT = "snncc-ir"
VERSION = 1
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def named_files(name: str) -> tuple[str, ...]:
    """The files ``save_ir(graph, folder / name)`` writes."""
    return (f"{name}.json", f"{name}.npz")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a saved IR (the python target's output), or None."""
    if not _NAME_RE.match(name):
        return "is not an identifier (ASCII letters, digits, _; not starting with a digit)"
    return None


def save_ir(graph: Graph, path_prefix) -> tuple[Path, Path]:
    """Write ``<prefix>.json`` and ``<prefix>.npz``; return both paths."""
    prefix = Path(path_prefix)
    arrays: dict[str, np.ndarray] = {}
    enc = _Encoder(arrays)
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "name": graph.name,
        "stage": graph.stage,
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
        "values": [{"name": v.name, "shape": [int(s) for s in v.shape], "dtype": v.dtype}
                   for v in (graph.values[k] for k in sorted(graph.values))],
        "nodes": [],
        "meta": enc.encode(graph.meta, "meta"),
        "stats": enc.encode(graph.stats, "stats"),
    }
    for i, node in enumerate(graph.nodes):
        params = {}
        for key in sorted(node.params):
            ref = f"n{i:05d}.{key}"
            arrays[ref] = np.asarray(node.params[key])
            params[key] = ref
        doc["nodes"].append({"name": node.name, "op": node.op, "inputs": list(node.inputs),
                             "output": node.output, "origin": node.origin,
                             "attrs": enc.encode(node.attrs, f"n{i:05d}.attrs"), "params": params})
    json_path = prefix.with_name(prefix.name + ".json")
    npz_path = prefix.with_name(prefix.name + ".npz")
    json_path.write_text(json.dumps(doc, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    npz_path.write_bytes(_npz_bytes(arrays))
    return json_path, npz_path


def load_ir(path_prefix) -> Graph:
    """Read a graph written by :func:`save_ir`."""
    prefix = Path(path_prefix)
    json_path = prefix.with_name(prefix.name + ".json")
    npz_path = prefix.with_name(prefix.name + ".npz")
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise SnnccError(f"cannot read IR {prefix}: {e}") from None
    if doc.get("format") != FORMAT:
        raise SnnccError(f"{json_path} is not an snncc IR file")

    def dec(x):
        return _decode(x, arrays)

    nodes = [Node(name=n["name"], op=n["op"], inputs=list(n["inputs"]), output=n["output"],
                  attrs=dec(n["attrs"]), params={k: arrays[r] for k, r in n["params"].items()},
                  origin=n["origin"]) for n in doc["nodes"]]
    values = {v["name"]: Value(v["name"], tuple(v["shape"]), v["dtype"]) for v in doc["values"]}
    # Keep the value table in graph order (inputs, then node outputs) like a fresh graph.
    order = list(doc["inputs"]) + [n.output for n in nodes]
    values = {k: values[k] for k in order if k in values} | {k: v for k, v in values.items() if k not in order}
    return Graph(name=doc["name"], inputs=list(doc["inputs"]), outputs=list(doc["outputs"]), nodes=nodes,
                 values=values, stage=doc["stage"], meta=dec(doc["meta"]), stats=dec(doc["stats"]))


class _Encoder:
    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def encode(self, x: Any, path: str) -> Any:
        if isinstance(x, np.ndarray):
            self.arrays[path] = x
            return {"__array__": path}
        if isinstance(x, dict):
            bad = [k for k in x if not isinstance(k, str)]
            if bad:
                raise SnnccError(f"cannot serialize non-string key {bad[0]!r} at {path}")
            return {k: self.encode(x[k], f"{path}.{k}") for k in sorted(x)}
        if isinstance(x, tuple):
            return {"__tuple__": [self.encode(v, f"{path}.{i}") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [self.encode(v, f"{path}.{i}") for i, v in enumerate(x)]
        if isinstance(x, (bool, np.bool_)):
            return bool(x)
        if isinstance(x, (int, np.integer)):
            return int(x)
        if isinstance(x, (float, np.floating)):
            return float(x)
        if x is None or isinstance(x, str):
            return x
        raise SnnccError(f"cannot serialize {type(x).__name__} at {path}")


def _decode(x: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(x, dict):
        if set(x) == {"__array__"}:
            return arrays[x["__array__"]]
        if set(x) == {"__tuple__"}:
            return tuple(_decode(v, arrays) for v in x["__tuple__"])
        return {k: _decode(v, arrays) for k, v in x.items()}
    if isinstance(x, list):
        return [_decode(v, arrays) for v in x]
    return x


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz archive (readable by np.load) with sorted members and fixed timestamps."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()
