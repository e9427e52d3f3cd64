"""Helpers shared by the op importers."""

from __future__ import annotations

import numpy as np


def per_channel(ctx, value: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    """A constant broadcast against an activation of per-sample ``shape`` as a
    per-channel vector (C,), or None when it varies along other axes."""
    value = np.asarray(value, dtype=np.float64)
    rank = len(shape) + 1  # with the batch axis
    if value.ndim > rank:
        return None
    full = value.reshape((1,) * (rank - value.ndim) + value.shape)
    if full.shape[0] != 1 or any(d != 1 for d in full.shape[2:]):
        return None
    channels = shape[0] if shape else 1
    if full.shape[1] not in (1, channels):
        return None
    return np.broadcast_to(full.reshape(-1), (channels,)).astype(np.float64)


def pads4(ctx, pads, rank: int = 2) -> tuple[int, int, int, int]:
    """ONNX pads (begin..., end...) for 2 spatial axes -> (top, left, bottom, right)."""
    pads = [int(p) for p in pads]
    if len(pads) != 2 * rank:
        raise ctx.error(f"pads {pads} do not have {2 * rank} entries")
    if any(p < 0 for p in pads):
        raise ctx.error(f"negative pads {pads} are not supported")
    return (pads[0], pads[1], pads[2], pads[3])


def auto_pads(ctx, in_hw, kernel, strides, dilations) -> tuple[int, int, int, int]:
    """Explicit (t, l, b, r) pads for the ONNX auto_pad attribute."""
    mode = ctx.attr("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode in ("NOTSET", ""):
        return pads4(ctx, ctx.attr("pads", [0, 0, 0, 0]))
    if mode == "VALID":
        return (0, 0, 0, 0)
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.error(f"auto_pad {mode!r} is not supported")
    begin, end = [], []
    for size, k, s, d in zip(in_hw, kernel, strides, dilations):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        if mode == "SAME_UPPER":
            begin.append(small)
            end.append(big)
        else:
            begin.append(big)
            end.append(small)
    return (begin[0], begin[1], end[0], end[1])


def ints(values, n: int, default: int) -> tuple[int, ...]:
    if values is None:
        return (default,) * n
    return tuple(int(v) for v in values)


def need_rank(ctx, shape, rank: int, what: str = "input") -> None:
    if len(shape) != rank:
        raise ctx.error(f"{what} has per-sample shape {list(shape)}; only rank {rank} "
                        f"(NCHW with 2 spatial axes) is supported" if rank == 3 else
                        f"{what} has per-sample shape {list(shape)}; expected rank {rank}")


def check_window(ctx, in_hw, kernel, strides, dilations, pads) -> None:
    """Refuse window parameters that give no output (or divide by zero)."""
    for what, values in (("kernel", kernel), ("strides", strides), ("dilations", dilations)):
        if len(values) != 2 or any(int(v) < 1 for v in values):
            raise ctx.error(f"{what} {list(values)} must be two positive integers")
    for i in range(2):
        span = (int(kernel[i]) - 1) * int(dilations[i]) + 1
        if in_hw[i] + pads[i] + pads[i + 2] < span:
            raise ctx.error(f"the window ({span} wide) is larger than the padded input "
                            f"({in_hw[i] + pads[i] + pads[i + 2]}) along axis {i + 2}")
