"""Relu, Clip(0, a), Softmax at the output, and the dropped Dropout/Identity."""

from __future__ import annotations

import numpy as np
import onnx


def import_relu(ctx) -> None:
    node = ctx.onnx_node
    ctx.emit("relu", [ctx.act(node.input[0])], {"max": None}, output=node.output[0])


def _clip_bound(ctx, attr: str, index: int) -> float | None:
    if ctx.opset < 11:
        value = ctx.attr(attr)
        return None if value is None else float(value)
    name = ctx.optional_input(index)
    if name is None:
        return None
    return float(np.asarray(ctx.const(name, attr)).reshape(-1)[0])


def import_clip(ctx) -> None:
    node = ctx.onnx_node
    lo = _clip_bound(ctx, "min", 1)
    hi = _clip_bound(ctx, "max", 2)
    if lo is None or lo != 0.0:
        raise ctx.error(f"only Clip with min=0 (a ReLU) is supported, got min={lo}")
    if hi is not None and (not np.isfinite(hi) or hi >= 3.4e38):
        hi = None
    if hi is not None and hi <= 0:
        raise ctx.error(f"Clip max must be > 0, got {hi}")
    ctx.emit("relu", [ctx.act(node.input[0])], {"max": hi}, output=node.output[0])


def import_softmax(ctx) -> None:
    node = ctx.onnx_node
    out = node.output[0]
    if out not in ctx.graph_outputs or ctx.real_consumers(out):
        raise ctx.error("Softmax is only supported when it directly produces a graph output")
    shape = ctx.shape(node.input[0])
    rank = len(shape) + 1
    axis = int(ctx.attr("axis", -1 if ctx.opset >= 13 else 1))
    axis = axis + rank if axis < 0 else axis
    if not 1 <= axis < rank:
        raise ctx.error(f"Softmax over axis {axis} (the batch axis) is not supported")
    # Before opset 13 Softmax normalises over all axes from `axis` on; that equals a
    # one-axis softmax only when the trailing axes have size 1.
    if ctx.opset < 13 and any(d != 1 for d in shape[axis:]):
        raise ctx.error(f"Softmax (opset {ctx.opset}) over axes {axis}.. of shape {list(shape)} "
                        "mixes several axes; only one axis is supported")
    ctx.emit("softmax", [ctx.act(node.input[0])], {"axis": axis - 1}, output=out)


def import_dropped(ctx) -> None:
    """Dropout (inference) and Identity: the output is the input."""
    node = ctx.onnx_node
    if ctx.used_outputs():
        raise ctx.error("the Dropout mask output is used; export the model in eval mode")
    if node.op_type == "Dropout" and ctx.opset >= 12:
        training = ctx.optional_input(2)
        if training and bool(np.asarray(ctx.const(training, "training_mode")).reshape(-1)[0]):
            raise ctx.error("training_mode=True is not supported; export the model in eval mode")
    ctx.alias(node.output[0], ctx.act(node.input[0]))


def import_cast(ctx) -> None:
    """A Cast of an activation to float32/float64 changes nothing here (exporters
    emit them around dtype conversions); narrower or integer casts would."""
    to = int(ctx.attr("to", 0))
    if to not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
        raise ctx.error(f"Cast to {onnx.TensorProto.DataType.Name(to) if to else to} of an activation "
                        "is not supported (only to float/double)")
    ctx.alias(ctx.onnx_node.output[0], ctx.act(ctx.onnx_node.input[0]))


IMPORTERS = {"Relu": import_relu, "Cast": import_cast, "Clip": import_clip, "Softmax": import_softmax,
             "Dropout": import_dropped, "Identity": import_dropped}
