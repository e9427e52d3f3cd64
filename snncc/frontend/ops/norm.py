"""BatchNormalization (inference) -> affine; canonicalize folds it into a conv/dense."""

from __future__ import annotations

import numpy as np


def import_batchnorm(ctx) -> None:
    node = ctx.onnx_node
    if int(ctx.attr("training_mode", 0)):
        raise ctx.error("training_mode=1 is not supported; export the model in eval mode")
    if ctx.used_outputs():
        raise ctx.error("the running mean/var outputs are used; export the model in eval mode")
    shape = ctx.shape(node.input[0])
    channels = shape[0]
    scale, bias, mean, var = (np.asarray(ctx.const(n, what), dtype=np.float64).reshape(-1)
                              for n, what in zip(node.input[1:5], ("scale", "B", "mean", "var")))
    for arr, what in ((scale, "scale"), (bias, "B"), (mean, "mean"), (var, "var")):
        if arr.shape != (channels,):
            raise ctx.error(f"{what} has {arr.size} entries, expected {channels} channels")
    eps = float(ctx.attr("epsilon", 1e-5))
    denom = var + eps
    if not np.all(denom > 0):  # NaN fails too
        c = int(np.argmax(~(denom > 0)))
        raise ctx.error(f"var + epsilon must be > 0 in every channel; channel {c} has var={var[c]:g}, "
                        f"epsilon={eps:g}")
    s = scale / np.sqrt(var + eps)
    ctx.emit("affine", [ctx.act(node.input[0])], {}, {"scale": s, "shift": bias - mean * s},
             output=node.output[0])


IMPORTERS = {"BatchNormalization": import_batchnorm}
