"""Conv (2-D: groups, depthwise, stride, pads, dilation, auto_pad)."""

from __future__ import annotations

import numpy as np

from snncc.frontend.ops.common import auto_pads, check_window, ints, need_rank


def import_conv(ctx) -> None:
    node = ctx.onnx_node
    x = node.input[0]
    shape = ctx.shape(x)
    weight = ctx.const(node.input[1], "weight")
    if weight.ndim != 4:
        raise ctx.error(f"only 2-D convolutions are supported (weight shape {list(weight.shape)})")
    need_rank(ctx, shape, 3)
    bias_name = ctx.optional_input(2)
    out_ch = weight.shape[0]
    bias = ctx.const(bias_name, "bias").reshape(-1) if bias_name else np.zeros(out_ch)
    if bias.shape != (out_ch,):
        raise ctx.error(f"bias has {bias.size} entries, expected {out_ch}")
    kernel = ints(ctx.attr("kernel_shape"), 2, 0) if ctx.attr("kernel_shape") else weight.shape[2:]
    if tuple(kernel) != tuple(weight.shape[2:]):
        raise ctx.error(f"kernel_shape {list(kernel)} does not match weight {list(weight.shape)}")
    strides = ints(ctx.attr("strides"), 2, 1)
    dilations = ints(ctx.attr("dilations"), 2, 1)
    group = int(ctx.attr("group", 1))
    if weight.shape[1] * group != shape[0]:
        raise ctx.error(f"weight {list(weight.shape)} with group={group} does not fit {shape[0]} input channels")
    check_window(ctx, (1 << 30, 1 << 30), kernel, strides, dilations, (0, 0, 0, 0))  # positivity
    pads = auto_pads(ctx, shape[1:], kernel, strides, dilations)
    check_window(ctx, shape[1:], kernel, strides, dilations, pads)
    ctx.emit("conv", [ctx.act(x)],
             {"strides": strides, "pads": pads, "dilations": dilations, "group": group},
             {"weight": weight, "bias": bias}, output=node.output[0])


IMPORTERS = {"Conv": import_conv}
