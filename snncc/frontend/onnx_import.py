"""ONNX -> snncc IR.

``load_onnx(path)`` reads a file, ``import_onnx_model(model, base_dir)`` an
in-memory ModelProto.  The model is validated (reader.py), then walked once in
topological order: each node is either folded into a constant (folding.py) or
handed to its op importer (ops/), which emits IR nodes with per-sample shapes.
"""

from __future__ import annotations

import os

import onnx
from onnx import numpy_helper

from snncc.errors import SnnccError
from snncc.frontend.context import ImportContext, check_finite
from snncc.frontend.folding import try_fold
from snncc.frontend.ops import IMPORTERS
from snncc.frontend.reader import node_labels, parse_model, prepare, read_model, unsupported_error
from snncc.ir import Graph, Value

_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                onnx.TensorProto.BFLOAT16)

# Ops that exporters use for shape computations; they fold when their inputs do.
_SHAPE_ARITHMETIC = frozenset({"Shape", "Size", "Gather", "Slice", "Cast", "Constant", "ConstantOfShape",
                               "Range", "Equal", "Where", "Expand", "ReduceProd", "Floor", "Ceil",
                               "Squeeze", "Unsqueeze", "Concat", "Identity"})


def load_onnx(path) -> Graph:
    """Load an ONNX file into the float IR (constants folded, shapes static).

    ``path`` may also be ``(name, bytes)``: a serialized model without external data, as
    a sweep ships it to its Ray tasks.
    """
    if isinstance(path, tuple):
        name, data = path
        return import_model(parse_model(bytes(data), str(name)), None)
    model, base_dir = read_model(path)
    return import_model(model, base_dir)


def import_model(model: onnx.ModelProto, base_dir=None) -> Graph:
    """Import an in-memory ModelProto; ``base_dir`` is where its external data lives."""
    graph, unsupported, _, first_error = _walk(*prepare(model, base_dir))
    if unsupported:
        err = unsupported_error(unsupported)
        if first_error is not None:
            err = SnnccError(f"{err}; also {first_error}")
            err.node, err.op = unsupported[0][:2]
        raise err
    if first_error is not None:
        raise first_error
    graph.remove_unused()
    graph.verify()
    _read_finetuned(model, graph)
    for node in graph.nodes:  # parameters changed after emit (a bias folded into a conv)
        for key, arr in node.params.items():
            check_finite(arr, key, lambda msg, node=node: SnnccError(msg, node=node.name, op=node.op))
    return graph


import_onnx_model = import_model


def list_unsupported(model, base_dir=None) -> list[tuple[str, str, str]]:
    """(node name, ONNX op, reason) of every node that will not import, in graph
    order: ops snncc does not know, and known ops in a configuration it cannot map
    (a NaN weight, an unsupported attribute), whose reason is the import error.

    ``model`` is a ModelProto or a path.  A model that cannot be read or validated
    at all (not ONNX, a cycle, ...) raises SnnccError instead."""
    if isinstance(model, (str, os.PathLike)):
        model, base_dir = read_model(model)
    prepared = prepare(model, base_dir)
    _, unsupported, failed, _ = _walk(*prepared)
    order = {name: i for i, name in enumerate(node_labels(prepared[1]))}
    return sorted(unsupported + failed, key=lambda item: order[item[0]])


_UNKNOWN_OP = "snncc has no importer for this ONNX op"


def _graph_inputs(model: onnx.ModelProto) -> list[tuple[str, tuple[int, ...], int | None]]:
    """(name, per-sample shape, static batch or None) of each real graph input."""
    inits = {t.name for t in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue  # IR < 4 lists initializers as inputs too
        where = dict(node=vi.name, op="graph input")
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or tt.elem_type not in _FLOAT_TYPES:
            raise SnnccError("only float tensor inputs are supported", **where)
        if not tt.HasField("shape") or len(tt.shape.dim) < 2:
            raise SnnccError("the input needs a static shape [batch, ...] of rank >= 2", **where)
        dims = list(tt.shape.dim)
        batch = dims[0].dim_value if dims[0].HasField("dim_value") else None
        shape = []
        for axis, d in enumerate(dims[1:], start=1):
            if d.HasField("dim_value") and d.dim_value <= 0:
                raise SnnccError(f"dimension {axis} is {d.dim_value}; every dimension but the batch "
                                 "needs at least one element", **where)
            if not d.HasField("dim_value"):
                label = d.dim_param or "unknown"
                raise SnnccError(f"dimension {axis} is dynamic ({label!r}); only the batch "
                                 "dimension may be symbolic, spatial dims must be static", **where)
            shape.append(int(d.dim_value))
        out.append((vi.name, tuple(shape), batch or None))
    if not out:
        raise SnnccError("the model has no graph input")
    if len(out) > 1:
        names = ", ".join(repr(n) for n, _, _ in out)
        raise SnnccError(f"the model has {len(out)} graph inputs ({names}); snncc takes one input tensor "
                         "(merge the inputs into one, or export the part of the model after them)")
    return out


def _walk(model: onnx.ModelProto, nodes: list[onnx.NodeProto], opset: int):
    """Import every node; collect unsupported ops instead of stopping at the first."""
    g = model.graph
    inputs = _graph_inputs(model)
    graph = Graph(name=g.name or "model", inputs=[n for n, _, _ in inputs], outputs=[], nodes=[],
                  values={n: Value(n, s, "float32") for n, s, _ in inputs},
                  meta={"source": "onnx", "opset": opset, "producer": model.producer_name or ""})
    batches = {b for _, _, b in inputs}
    batch = batches.pop() if len(batches) == 1 else None
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            if name:
                consumers.setdefault(name, []).append(node)
    outputs = [o.name for o in g.output]
    value_names = {o for n in nodes for o in n.output if o}
    names = node_labels(nodes)
    ctx = ImportContext(graph, opset, batch, names, consumers, set(outputs), value_names)
    for name, _, _ in inputs:
        ctx.acts[name] = name
    for t in g.initializer:
        try:
            ctx.consts[t.name] = numpy_helper.to_array(t)
        except Exception as exc:  # corrupt tensors raise assorted types
            raise SnnccError(f"cannot read initializer: {exc}", node=t.name, op="initializer") from None

    unsupported: list[tuple[str, str, str]] = []
    failed: list[tuple[str, str, str]] = []
    first_error: SnnccError | None = None
    poisoned: set[str] = set()
    for index, node in enumerate(nodes):
        ctx.index, ctx.onnx_node = index, node
        if any(n in poisoned for n in node.input if n):
            # Downstream of a node that did not import: still name unknown ops, so
            # one error lists them all (shape arithmetic would have folded).
            if node.op_type not in IMPORTERS and node.op_type not in _SHAPE_ARITHMETIC:
                unsupported.append((names[index], node.op_type, _UNKNOWN_OP))
            poisoned.update(node.output)
            continue
        try:
            if try_fold(ctx, node):
                continue
            importer = IMPORTERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
            if importer is None:
                unsupported.append((names[index], node.op_type, _UNKNOWN_OP))
                poisoned.update(node.output)
                continue
            importer(ctx)
            if node.output[0] not in ctx.acts:
                raise ctx.error("importer produced no output")  # a bug in snncc
        except SnnccError as exc:
            first_error = first_error or exc
            failed.append((names[index], node.op_type, exc.detail))
            poisoned.update(node.output)
    for name in outputs:
        if name in poisoned:
            continue
        if name in ctx.consts:
            first_error = first_error or SnnccError(f"graph output {name!r} is a constant")
            continue
        graph.outputs.append(ctx.acts[name])
    return graph, unsupported, failed, first_error


__all__ = ["load_onnx", "import_model", "import_onnx_model", "list_unsupported"]


def _read_finetuned(model: onnx.ModelProto, graph: Graph) -> None:
    """A model written by ``snncc finetune`` carries its fine-tuned integers (snncc/finetune/pinned.py);
    the last pass of the pipeline (passes/finetuned.py) puts them into the integer IR."""
    from snncc.finetune import pinned

    for prop in model.metadata_props:
        if prop.key == pinned.KEY:
            graph.meta["finetune"] = pinned.parse(prop.value)
