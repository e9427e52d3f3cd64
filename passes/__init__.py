"""Compiler passes, one module per pass.  This dict is the one registry."""

from __future__ import annotations

from snncc.passes import canonicalize

PASSES = {
    "canonicalize": canonicalize.run,
}

# The full compile pipeline, in order (passes are added here as they land).
DEFAULT_PIPELINE = ["canonicalize"]
