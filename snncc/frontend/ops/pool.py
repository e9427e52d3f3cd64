"""MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool (2-D)."""

from __future__ import annotations

from snncc.frontend.ops.common import auto_pads, check_window, ints, need_rank


def _out(size, k, s, p0, p1, d, ceil):
    span = size + p0 + p1 - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p0:  # the last window must start inside
        out -= 1
    return out


def _pool_params(ctx):
    node = ctx.onnx_node
    shape = ctx.shape(node.input[0])
    need_rank(ctx, shape, 3)
    kernel = ctx.attr("kernel_shape")
    if kernel is None or len(kernel) != 2:
        raise ctx.error(f"only 2-D pooling is supported (kernel_shape {kernel})")
    kernel = ints(kernel, 2, 1)
    strides = ints(ctx.attr("strides"), 2, 1)
    dilations = ints(ctx.attr("dilations"), 2, 1)
    check_window(ctx, (1 << 30, 1 << 30), kernel, strides, dilations, (0, 0, 0, 0))  # positivity
    pads = list(auto_pads(ctx, shape[1:], kernel, strides, dilations))
    check_window(ctx, shape[1:], kernel, strides, dilations, pads)
    extra = [0, 0]
    if int(ctx.attr("ceil_mode", 0)):
        # ceil_mode is floor mode with extra padding at the bottom/right.
        for i in range(2):
            size = shape[1 + i]
            want = _out(size, kernel[i], strides[i], pads[i], pads[i + 2], dilations[i], True)
            have = _out(size, kernel[i], strides[i], pads[i], pads[i + 2], dilations[i], False)
            extra[i] = (want - have) * strides[i]
            pads[i + 2] += extra[i]
    return shape, kernel, strides, dilations, tuple(pads), extra


def import_maxpool(ctx) -> None:
    node = ctx.onnx_node
    if ctx.used_outputs():
        raise ctx.error("the MaxPool Indices output is not supported")
    _, kernel, strides, dilations, pads, _ = _pool_params(ctx)
    ctx.emit("maxpool", [ctx.act(node.input[0])],
             {"kernel": kernel, "strides": strides, "pads": pads, "dilations": dilations},
             output=node.output[0])


def import_avgpool(ctx) -> None:
    node = ctx.onnx_node
    _, kernel, strides, dilations, pads, extra = _pool_params(ctx)
    if dilations != (1, 1):
        raise ctx.error(f"AveragePool dilations {list(dilations)} are not supported")
    include = int(ctx.attr("count_include_pad", 0))
    if include and any(extra):
        # The ceil_mode overhang is not counted even with count_include_pad=1.
        raise ctx.error("AveragePool with ceil_mode=1 and count_include_pad=1 is not supported")
    if not any(pads):
        include = 1  # the same thing; canonical form
    ctx.emit("avgpool", [ctx.act(node.input[0])],
             {"kernel": kernel, "strides": strides, "pads": pads, "count_include_pad": include},
             output=node.output[0])


def import_global_pool(ctx) -> None:
    node = ctx.onnx_node
    shape = ctx.shape(node.input[0])
    need_rank(ctx, shape, 3)
    attrs = {"kernel": tuple(shape[1:]), "strides": (1, 1), "pads": (0, 0, 0, 0)}
    if node.op_type == "GlobalAveragePool":
        ctx.emit("avgpool", [ctx.act(node.input[0])], {**attrs, "count_include_pad": 1},
                 output=node.output[0])
    else:
        ctx.emit("global_maxpool", [ctx.act(node.input[0])], {}, output=node.output[0])


def import_spatial_reduce(ctx) -> None:
    """ReduceMean/ReduceMax over H and W (how dynamo exports adaptive pooling to 1x1)."""
    node = ctx.onnx_node
    shape = ctx.shape(node.input[0])
    need_rank(ctx, shape, 3)
    if ctx.opset >= 18:  # axes moved from an attribute to an input
        name = ctx.optional_input(1)
        axes = None if name is None else [int(a) for a in ctx.const(name, "axes").reshape(-1)]
    else:
        axes = ctx.attr("axes")
    axes = sorted({int(a) + 4 if int(a) < 0 else int(a) for a in (axes or [])})
    if axes != [2, 3]:
        raise ctx.error(f"{node.op_type} over axes {axes} is not supported (only the spatial axes 2, 3)")
    attrs = {"kernel": tuple(shape[1:]), "strides": (1, 1), "pads": (0, 0, 0, 0)}
    keep = int(ctx.attr("keepdims", 1))
    out = node.output[0] if keep else None
    if node.op_type == "ReduceMean":
        pooled = ctx.emit("avgpool", [ctx.act(node.input[0])], {**attrs, "count_include_pad": 1},
                          output=out, suffix=None if keep else "pool")
    else:
        pooled = ctx.emit("maxpool", [ctx.act(node.input[0])], {**attrs, "dilations": (1, 1)},
                          output=out, suffix=None if keep else "pool")
    if not keep:
        ctx.emit("flatten", [pooled], output=node.output[0])


IMPORTERS = {"ReduceMean": import_spatial_reduce, "ReduceMax": import_spatial_reduce,
             "MaxPool": import_maxpool, "AveragePool": import_avgpool,
             "GlobalAveragePool": import_global_pool, "GlobalMaxPool": import_global_pool}
