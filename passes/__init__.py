"""Compiler passes, one module per pass.  This dict is the one registry."""

from __future__ import annotations

from snncc.passes import calibrate, canonicalize, convert, finetuned, prune, quantize, residual

PASSES = {
    "canonicalize": canonicalize.run,
    "calibrate": calibrate.run,
    "prune": prune.run,
    "residual": residual.run,
    "convert": convert.run,
    "quantize": quantize.run,
    "finetuned": finetuned.run,
}

# The full compile pipeline, in order (passes are added here as they land).
DEFAULT_PIPELINE = ["canonicalize", "calibrate", "prune", "residual", "convert", "quantize", "finetuned"]
