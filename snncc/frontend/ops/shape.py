"""Data movement: Flatten, Reshape, Squeeze, Unsqueeze, Concat, Pad, and the
Transpose of a Reshape-Transpose-Reshape channel shuffle."""

from __future__ import annotations

import numpy as np

from snncc.frontend.context import BATCH_A, BATCH_B


def _emit_shape(ctx, x: str, target: tuple[int, ...]) -> None:
    """Reshape an activation to a per-sample ``target`` (flatten / reshape / no-op)."""
    out = ctx.onnx_node.output[0]
    shape = ctx.shape(x)
    target = tuple(int(t) for t in target)
    if int(np.prod(target)) != int(np.prod(shape)):
        raise ctx.error(f"cannot reshape per-sample shape {list(shape)} to {list(target)}")
    if target == tuple(shape):
        ctx.alias(out, ctx.act(x))
    elif len(target) == 1:
        ctx.emit("flatten", [ctx.act(x)], output=out)
    else:
        ctx.emit("reshape", [ctx.act(x)], {"shape": target}, output=out)


def _resolve(ctx, shape, target, target_b):
    """Per-sample target of an ONNX Reshape whose full target keeps the batch axis."""
    target = [int(t) for t in target]
    if not target:
        raise ctx.error("Reshape to a scalar drops the batch axis")
    rest_b = None if target_b is None else [int(t) for t in target_b][1:]
    if rest_b is not None and rest_b != target[1:]:
        raise ctx.error("the Reshape target depends on the batch size outside the batch axis")
    if int(ctx.attr("allowzero", 0)) and 0 in target:
        raise ctx.error("Reshape with allowzero=1 and a zero dimension is not supported")
    rest = []
    for i, t in enumerate(target[1:], start=1):
        if t == 0:
            if i - 1 >= len(shape):
                raise ctx.error(f"Reshape copies axis {i} which the input does not have")
            rest.append(shape[i - 1])
        else:
            rest.append(t)
    size = int(np.prod(shape))
    if rest.count(-1) > 1 or any(t < -1 for t in rest):
        raise ctx.error(f"invalid Reshape target {target}")
    if -1 in rest:
        known = int(np.prod([t for t in rest if t != -1]))
        if known == 0 or size % known:
            raise ctx.error(f"cannot reshape per-sample shape {list(shape)} to {target}")
        rest[rest.index(-1)] = size // known
    head = target[0]
    batch_ok = head == 0 or (head == -1 and int(np.prod(rest)) == size)
    if ctx.batch is None:
        batch_ok = batch_ok or (head == BATCH_A and target_b is not None and int(target_b[0]) == BATCH_B)
    else:
        batch_ok = batch_ok or head == ctx.batch
    if not batch_ok or int(np.prod(rest)) != size:
        raise ctx.error(f"Reshape to {target} changes the batch axis; only per-sample reshapes are supported")
    return tuple(rest)


def import_reshape(ctx) -> None:
    node = ctx.onnx_node
    x, s = node.input[0], node.input[1]
    if s not in ctx.consts:
        raise ctx.error("the Reshape target shape must be a constant (foldable)")
    target = _resolve(ctx, ctx.shape(x), ctx.consts[s].reshape(-1), ctx.alt.get(s))
    _emit_shape(ctx, x, target)


def import_flatten(ctx) -> None:
    node = ctx.onnx_node
    shape = ctx.shape(node.input[0])
    axis = int(ctx.attr("axis", 1))
    axis = axis + len(shape) + 1 if axis < 0 else axis
    if axis != 1:
        raise ctx.error(f"Flatten with axis={axis} mixes the batch axis; only axis=1 is supported")
    _emit_shape(ctx, node.input[0], (int(np.prod(shape)),))


def _axes(ctx, index: int) -> list[int] | None:
    if ctx.opset < 13:
        axes = ctx.attr("axes")
        return None if axes is None else [int(a) for a in axes]
    name = ctx.optional_input(index)
    return None if name is None else [int(a) for a in ctx.const(name, "axes").reshape(-1)]


def import_squeeze(ctx) -> None:
    node = ctx.onnx_node
    shape = list(ctx.shape(node.input[0]))
    axes = _axes(ctx, 1)
    rank = len(shape) + 1
    if axes is None:  # squeeze every size-1 axis, but never the batch axis
        target = [d for d in shape if d != 1]
    else:
        axes = sorted({a + rank if a < 0 else a for a in axes})
        if 0 in axes:
            raise ctx.error("Squeeze of the batch axis is not supported")
        if any(shape[a - 1] != 1 for a in axes):
            raise ctx.error(f"Squeeze axes {axes} are not of size 1 in {[-1] + shape}")
        target = [d for i, d in enumerate(shape, start=1) if i not in axes]
    if not target:
        raise ctx.error("Squeeze to a per-sample scalar is not supported")
    _emit_shape(ctx, node.input[0], tuple(target))


def import_unsqueeze(ctx) -> None:
    node = ctx.onnx_node
    shape = list(ctx.shape(node.input[0]))
    axes = _axes(ctx, 1)
    if axes is None:
        raise ctx.error("Unsqueeze needs axes")
    rank = len(shape) + 1 + len(axes)
    axes = sorted({a + rank if a < 0 else a for a in axes})
    if 0 in axes:
        raise ctx.error("Unsqueeze in front of the batch axis is not supported")
    full = [None] + shape
    for a in axes:
        full.insert(a, 1)
    _emit_shape(ctx, node.input[0], tuple(full[1:]))


def import_concat(ctx) -> None:
    node = ctx.onnx_node
    names = [n for n in node.input if n]
    for n in names:
        if not ctx.is_act(n):
            raise ctx.error(f"Concat of a constant ({n!r}) with activations is not supported")
    rank = len(ctx.shape(names[0])) + 1
    axis = int(ctx.attr("axis"))
    axis = axis + rank if axis < 0 else axis
    if axis == 0:
        raise ctx.error("Concat along the batch axis is not supported")
    if len(names) == 1:
        ctx.alias(node.output[0], ctx.act(names[0]))
        return
    ctx.emit("concat", [ctx.act(n) for n in names], {"axis": axis - 1}, output=node.output[0])


def import_pad(ctx) -> None:
    node = ctx.onnx_node
    shape = ctx.shape(node.input[0])
    rank = len(shape) + 1
    mode = ctx.attr("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise ctx.error(f"Pad mode {mode!r} is not supported (only constant zero padding)")
    if ctx.opset < 11:
        pads = [int(p) for p in ctx.attr("pads")]
        value = float(ctx.attr("value", 0.0))
        axes = None
    else:
        pads = [int(p) for p in ctx.const(node.input[1], "pads").reshape(-1)]
        value_name = ctx.optional_input(2)
        value = float(ctx.const(value_name, "constant_value").reshape(-1)[0]) if value_name else 0.0
        axes_name = ctx.optional_input(3)
        axes = None if axes_name is None else [int(a) for a in ctx.const(axes_name, "axes").reshape(-1)]
    if value != 0.0:
        raise ctx.error(f"Pad with constant value {value} is not supported (only zero)")
    if axes is None:
        axes = list(range(rank))
    axes = [a + rank if a < 0 else a for a in axes]
    if len(pads) != 2 * len(axes):
        raise ctx.error(f"Pad has {len(pads)} pads for {len(axes)} axes")
    begin, end = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        begin[a], end[a] = pads[i], pads[i + len(axes)]
    if rank != 4 or any(begin[:2]) or any(end[:2]):
        raise ctx.error(f"only spatial padding of NCHW inputs is supported, got pads {pads}")
    if min(begin + end) < 0:
        raise ctx.error(f"negative pads {pads} (cropping) are not supported")
    if not any(begin + end):
        ctx.alias(node.output[0], ctx.act(node.input[0]))
        return
    ctx.emit("pad", [ctx.act(node.input[0])], {"pads": (begin[2], begin[3], end[2], end[3])},
             output=node.output[0])


def import_transpose(ctx) -> None:
    """Only the middle of a channel shuffle: (g, C/g, H, W) -> (C/g, g, H, W).

    That is channel_shuffle on the merged (C, H, W) tensor, with reshapes around
    it; canonicalize merges them with the Reshapes before and after.
    """
    node = ctx.onnx_node
    x = node.input[0]
    shape = ctx.shape(x)
    perm = [int(p) for p in ctx.attr("perm", [])]
    if perm == list(range(len(shape) + 1)):
        ctx.alias(node.output[0], ctx.act(x))
        return
    if perm != [0, 2, 1, 3, 4]:
        raise ctx.error(f"Transpose perm={perm} is not supported (only the channel-shuffle "
                        "perm [0, 2, 1, 3, 4] of a Reshape-Transpose-Reshape)")
    g, per, h, w = shape
    merged = ctx.emit("reshape", [ctx.act(x)], {"shape": (g * per, h, w)}, suffix="merge")
    shuffled = ctx.emit("channel_shuffle", [merged], {"groups": g})
    ctx.emit("reshape", [shuffled], {"shape": (per, g, h, w)}, suffix="split", output=node.output[0])


IMPORTERS = {"Reshape": import_reshape, "Flatten": import_flatten, "Squeeze": import_squeeze,
             "Unsqueeze": import_unsqueeze, "Concat": import_concat, "Pad": import_pad,
             "Transpose": import_transpose}
