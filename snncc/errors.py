"""User-facing errors.

Every problem caused by the user's model, data or options is raised as a
:class:`SnnccError`.  The CLI prints its one-line message and exits with code 2;
anything else escaping is a bug in snncc and keeps its traceback.
"""

from __future__ import annotations


class SnnccError(Exception):
    """Bad input: a malformed model, an unsupported op, a bad option."""

    exit_code = 2

    def __init__(self, message: str, *, node: str | None = None, op: str | None = None):
        self.node = node
        self.op = op
        where = ""
        if node is not None or op is not None:
            where = f"node {sanitize_name(node or '?')!s} ({op or '?'}): "
        super().__init__(where + " ".join(str(message).split()))


def sanitize_name(name: str, limit: int = 80) -> str:
    """Make an untrusted model name safe for one-line messages and C/Verilog comments."""
    out = []
    for ch in str(name):
        if ch.isalnum() or ch in "._-:/[]#@+":
            out.append(ch)
        else:
            out.append("_")
    text = "".join(out).replace("*/", "*_").replace("/*", "_*")
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return "'" + text + "'"
