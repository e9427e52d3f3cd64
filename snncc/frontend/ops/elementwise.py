"""Add/Sum of activations -> add; Add/Sub/Mul/Div by a per-channel or scalar
constant -> affine (an Add right after a MatMul/Conv becomes its bias)."""

from __future__ import annotations

import numpy as np

from snncc import ops
from snncc.frontend.ops.common import per_channel


def _join(ctx, names: list[str]) -> None:
    node = ctx.onnx_node
    shapes = [ctx.shape(n) for n in names]
    if any(s != shapes[0] for s in shapes):
        raise ctx.error(f"inputs have different shapes {[list(s) for s in shapes]}; "
                        "broadcasting between activations is not supported")
    if len(names) == 1:
        ctx.alias(node.output[0], ctx.act(names[0]))
        return
    ctx.emit("add", [ctx.act(n) for n in names], output=node.output[0])


def _fold_bias(ctx, x: str, shift: np.ndarray) -> bool:
    """Add a constant to the bias of the conv/dense producing ``x`` when nothing
    else reads the pre-bias value."""
    producer = ctx.producer(ctx.acts[x])
    if producer is None or producer.op not in ops.WEIGHTED:
        return False
    # Every ONNX name of the pre-bias value (Identity/Dropout aliases) counts.
    names = [k for k, v in ctx.acts.items() if v == producer.output]
    if any(n in ctx.graph_outputs for n in names) or sum(len(ctx.real_consumers(n)) for n in names) != 1:
        return False
    producer.params["bias"] = (producer.params["bias"].astype(np.float64) + shift).astype(np.float32)
    ctx.rename_output(producer, ctx.onnx_node.output[0])  # the graph output keeps its ONNX name
    return True


def import_binary(ctx) -> None:
    node = ctx.onnx_node
    op = node.op_type
    a, b = node.input[0], node.input[1]
    if ctx.is_act(a) and ctx.is_act(b):
        if op == "Add":
            _join(ctx, [a, b])
            return
        raise ctx.error(f"{op} of two activations is not supported")
    x, c_name, const_first = (a, b, False) if ctx.is_act(a) else (b, a, True)
    shape = ctx.shape(x)
    c = per_channel(ctx, ctx.const(c_name, "constant operand"), shape, "constant")
    if c is None:
        raise ctx.error(f"the constant operand of shape {list(ctx.consts[c_name].shape)} is not "
                        f"per-channel or scalar for an input of per-sample shape {list(shape)}")
    ones, zeros = np.ones_like(c), np.zeros_like(c)
    if op == "Add":
        if _fold_bias(ctx, x, c):
            return
        scale, shift = ones, c
    elif op == "Sub":
        scale, shift = (-ones, c) if const_first else (ones, -c)
    elif op == "Mul":
        scale, shift = c, zeros
    else:  # Div
        if const_first:
            raise ctx.error("division by an activation is not supported")
        if np.any(c == 0):
            raise ctx.error("division by a constant that contains zeros")
        scale, shift = 1.0 / c, zeros
    ctx.emit("affine", [ctx.act(x)], {}, {"scale": scale, "shift": shift}, output=node.output[0])


def import_sum(ctx) -> None:
    names = [n for n in ctx.onnx_node.input if n]
    for n in names:
        ctx.act(n)  # constants in a Sum are not supported
    _join(ctx, names)


IMPORTERS = {"Add": import_binary, "Sub": import_binary, "Mul": import_binary,
             "Div": import_binary, "Sum": import_sum}
