"""Gemm and MatMul with a constant weight -> dense."""

from __future__ import annotations

import numpy as np

from snncc.frontend.ops.common import need_rank


def import_gemm(ctx) -> None:
    node = ctx.onnx_node
    a, b = node.input[0], node.input[1]
    if int(ctx.attr("transA", 0)):
        raise ctx.error("transA=1 is not supported (the activation must be the left operand)")
    need_rank(ctx, ctx.shape(a), 1, "input A")
    w = np.asarray(ctx.const(b, "weight B"), dtype=np.float32)
    if w.ndim != 2:
        raise ctx.error(f"weight B must be 2-D, got {list(w.shape)}")
    alpha = float(ctx.attr("alpha", 1.0))
    beta = float(ctx.attr("beta", 1.0))
    weight = w if int(ctx.attr("transB", 0)) else w.T  # (out, in)
    if alpha != 1.0:
        weight = weight.astype(np.float64) * alpha
    out = weight.shape[0]
    c_name = ctx.optional_input(2)
    bias = np.zeros(out)
    if c_name:
        c = np.asarray(ctx.const(c_name, "bias C"), dtype=np.float64)
        if c.size not in (1, out) or (c.ndim == 2 and c.shape[0] != 1):
            raise ctx.error(f"bias C of shape {list(c.shape)} does not broadcast per output feature")
        bias = beta * np.broadcast_to(c.reshape(-1), (out,))
    ctx.emit("dense", [ctx.act(a)], {}, {"weight": weight, "bias": bias}, output=node.output[0])


def import_matmul(ctx) -> None:
    node = ctx.onnx_node
    a, b = node.input[0], node.input[1]
    if ctx.is_const(a):
        raise ctx.error("MatMul with a constant left operand is not supported")
    need_rank(ctx, ctx.shape(a), 1, "input A")
    w = np.asarray(ctx.const(b, "weight B"), dtype=np.float32)
    if w.ndim != 2:
        raise ctx.error(f"weight B must be 2-D, got {list(w.shape)}")
    ctx.emit("dense", [ctx.act(a)], {}, {"weight": w.T, "bias": np.zeros(w.shape[1])},
             output=node.output[0])


IMPORTERS = {"Gemm": import_gemm, "MatMul": import_matmul}
