"""Constant folding on the ONNX graph, node by node, during import.

A node folds when every input is a constant, or when it is a Shape/Size of an
activation (its per-sample shape is known from the IR).  A symbolic batch size is
evaluated twice, with two stand-in values (``BATCH_A``/``BATCH_B``): a result that
differs between the runs depends on the batch, and is kept in ``ctx.alt`` so that
only a Reshape target may use it (see ops/shape.py).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from snncc.frontend.context import BATCH_A, BATCH_B

# Ops that must never be evaluated at compile time.
NOT_FOLDABLE = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                          "Multinomial", "Bernoulli", "If", "Loop", "Scan"})
# Ops whose output size follows an input value: refuse batch-dependent inputs.
ALLOCATING = frozenset({"ConstantOfShape", "Expand", "Range", "Tile", "Resize", "Upsample"})


def try_fold(ctx, node: onnx.NodeProto) -> bool:
    """Fold ``node`` into ``ctx.consts`` if it is constant; return whether it was."""
    op = node.op_type
    if node.domain not in ("", "ai.onnx") or op in NOT_FOLDABLE:
        return False
    inputs = [n for n in node.input if n]
    if op in ("Shape", "Size") and inputs and ctx.is_act(inputs[0]):
        return _fold_shape(ctx, node)
    if not all(ctx.is_const(n) for n in inputs):
        return False
    if not node.output:
        return True
    tainted = any(n in ctx.alt for n in inputs)
    if tainted and op in ALLOCATING:
        raise ctx.error("the value depends on the dynamic batch size; export with a fixed batch "
                        "or keep the batch out of shape computations")
    outs_a = evaluate(ctx, node, [ctx.consts.get(n) if n else None for n in node.input])
    outs_b = outs_a
    if tainted:
        outs_b = evaluate(ctx, node, [ctx.alt.get(n, ctx.consts.get(n)) if n else None for n in node.input])
    for name, a, b in zip(node.output, outs_a, outs_b):
        if not name:
            continue
        ctx.consts[name] = a
        if tainted and (a.shape != b.shape or not np.array_equal(a, b)):
            ctx.alt[name] = b
    return True


def _fold_shape(ctx, node) -> bool:
    shape = ctx.shape(node.input[0])
    if node.op_type == "Size":
        if ctx.batch is None:
            return False  # a symbolic batch has no constant size
        ctx.consts[node.output[0]] = np.array(ctx.batch * int(np.prod(shape)), dtype=np.int64)
        return True
    rank = len(shape) + 1
    start = int(ctx.attr("start", 0))
    end = ctx.attr("end")
    start = max(0, start + rank if start < 0 else start)
    end = rank if end is None else int(end)
    end = min(rank, end + rank if end < 0 else end)
    head = BATCH_A if ctx.batch is None else ctx.batch
    full = np.array([head, *shape], dtype=np.int64)
    ctx.consts[node.output[0]] = full[start:end]
    if ctx.batch is None and start == 0 and end > 0:
        ctx.alt[node.output[0]] = np.array([BATCH_B, *shape], dtype=np.int64)[start:end]
    return True


def evaluate(ctx, node: onnx.NodeProto, args: list[np.ndarray | None]) -> list[np.ndarray]:
    """Evaluate one constant node with numpy (common ops) or the ONNX reference."""
    op = node.op_type
    if op == "Constant":
        return [_constant_value(ctx, node)]
    if op == "Identity":
        return [args[0]]
    if op == "ConstantOfShape":
        value = ctx.attr("value")
        fill = numpy_helper.to_array(value).reshape(-1) if value is not None else np.zeros(1, np.float32)
        return [np.full(tuple(int(d) for d in args[0]), fill[0], dtype=fill.dtype)]
    if op == "Unsqueeze" and ctx.opset < 13:
        out = args[0]
        rank = out.ndim + len(ctx.attr("axes"))
        for a in sorted(int(a) + rank if int(a) < 0 else int(a) for a in ctx.attr("axes")):
            out = np.expand_dims(out, a)
        return [out]
    from onnx.reference import ReferenceEvaluator

    try:
        ref = ReferenceEvaluator(node, opsets={"": ctx.opset})
        feeds = {name: arr for name, arr in zip(node.input, args) if name}
        outs = ref.run(None, feeds)
    except Exception as exc:  # the reference raises many types; report one line
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ctx.error(f"cannot fold constant node: {text}") from None
    return [np.asarray(o) for o in outs]


def _constant_value(ctx, node) -> np.ndarray:
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if attr.name == "value":
            return numpy_helper.to_array(value)
        if attr.name == "value_float":
            return np.array(value, dtype=np.float32)
        if attr.name == "value_floats":
            return np.array(value, dtype=np.float32)
        if attr.name == "value_int":
            return np.array(value, dtype=np.int64)
        if attr.name == "value_ints":
            return np.array(value, dtype=np.int64)
    raise ctx.error("Constant without a supported value attribute")
