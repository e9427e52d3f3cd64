"""Per-op importers, one module per op family.  ``IMPORTERS`` is the registry:
ONNX op type -> function(ctx) that reads ``ctx.onnx_node`` and emits IR."""

from __future__ import annotations

from snncc.frontend.ops import activation, conv, elementwise, gemm, norm, pool, shape

IMPORTERS = {}
for _module in (activation, conv, elementwise, gemm, norm, pool, shape):
    IMPORTERS.update(_module.IMPORTERS)

SUPPORTED_OPS = tuple(sorted(IMPORTERS))
