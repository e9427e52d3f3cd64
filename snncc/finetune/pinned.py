"""The fine-tuned integers in and out of an ONNX file (numpy only: compile needs no torch).

A fine-tuned network is an integer IR whose weights, biases, thresholds (and, with
rescaw, steps) no post-training rule derives from the float weights: they were
trained.  ``snncc finetune`` writes them into the ONNX model's ``metadata_props`` under
``KEY``, as JSON: per IR node its integer parameters (and the real steps kept for the
report), plus the input scale, the output scales and the options that shape the IR.
The float initializers stay the source ANN's, so onnxruntime still runs the ANN the
network was tuned from.

``snncc compile tuned.onnx`` runs the usual pipeline; its last pass (passes/finetuned.py)
finds the metadata (``parse``, from the frontend) and puts the pinned integers into the
integer IR (``decode``), after checking that the IR has the same nodes, ops, shapes and
neuron settings (same options and calibration data as the fine-tune).  The result is
the fine-tuned IR, integer for integer, and every backend (and ``snncc verify``) reads
it like any other.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from snncc.errors import SnnccError
from snncc.ir import Graph
from snncc.outdir import write_file_atomic

KEY = "snncc.finetune"
VERSION = 1
# Attributes of the integer IR that must agree between the fine-tune and the compile.
CHECKED_ATTRS = ("bits", "levels", "signed", "membrane_bits", "membrane_shift")
META_KEYS = ("input_scale", "output_scale", "output_scales")


def pin(graph: Graph) -> dict:
    """The JSON-friendly record of an integer IR's parameters."""
    nodes = {}
    for node in graph.nodes:
        if not node.params:
            continue
        nodes[node.name] = {
            "op": node.op,
            "attrs": {k: node.attrs[k] for k in CHECKED_ATTRS if k in node.attrs},
            "params": {k: _encode(v) for k, v in sorted(node.params.items())},
        }
    return {"version": VERSION, "timesteps": int(graph.meta.get("timesteps", 1)),
            "meta": {k: graph.meta[k] for k in META_KEYS if k in graph.meta}, "nodes": nodes}


def _encode(a: np.ndarray) -> dict:
    a = np.asarray(a)
    data = a.reshape(-1).tolist()  # Python ints, or floats (JSON writes floats' shortest exact repr)
    return {"dtype": a.dtype.name, "shape": list(a.shape), "data": data}


def decode(d: dict, where: str) -> np.ndarray:
    try:
        dtype = np.dtype(d["dtype"])
        if dtype.kind not in "iuf":
            raise ValueError(f"dtype {dtype}")
        return np.asarray(d["data"], dtype=dtype).reshape(tuple(d["shape"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise SnnccError(f"the model's {KEY} metadata is malformed at {where} ({exc})") from None


def parse(text: str) -> dict:
    """The metadata's JSON, checked for its shape (the values are checked in ``apply``)."""
    try:
        rec = json.loads(text)
    except ValueError as exc:
        raise SnnccError(f"the model's {KEY} metadata is not JSON ({exc})") from None
    if not isinstance(rec, dict) or rec.get("version") != VERSION or not isinstance(rec.get("nodes"), dict):
        raise SnnccError(f"the model's {KEY} metadata is not version {VERSION} of snncc's fine-tuned parameters")
    return rec


def write_onnx(src: Path, dst: Path, graph: Graph, extra: dict | None = None) -> None:
    """Copy the ONNX model ``src`` to ``dst`` with the pinned parameters of ``graph`` in its metadata.

    ``extra`` (the options, for people) goes into the record too.  Written through a
    temporary file in ``dst``'s folder and renamed: never a half-written model.
    """
    import onnx

    from snncc.frontend.reader import read_model

    model, base_dir = read_model(src)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        onnx.load_external_data_for_model(model, str(base_dir))
    rec = pin(graph)
    if extra:
        rec["finetune"] = extra
    keep = [p for p in model.metadata_props if p.key != KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    model.metadata_props.add(key=KEY, value=json.dumps(rec, sort_keys=True, separators=(",", ":")))
    write_file_atomic(Path(dst), model.SerializeToString(), option="output")
