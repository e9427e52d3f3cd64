"""User-facing errors.

Every problem caused by the user's model, data or options is raised as a
:class:`SnnccError`.  The CLI prints its one-line message and exits with code 2;
anything else escaping is a bug in snncc and keeps its traceback.
"""

from __future__ import annotations

# How an option is written on the command line when it is not ``--<name-with-dashes>``.
_SPELLING = {"output": "-o/--output", "output_path": "--output", "prune_layers": "--prune-layer"}


def option_flag(option: str) -> str:
    """``"weight_bits"`` -> ``"--weight-bits"``: the command-line spelling of an option."""
    return _SPELLING.get(option, "--" + option.replace("_", "-"))


class SnnccError(Exception):
    """Bad input: a malformed model, an unsupported op, a bad option.

    ``option`` names the option (a CompileOptions field or CLI parameter name such as
    ``"weight_bits"`` or ``"calib"``) whose value caused the error, and ``key`` an entry
    of it (a layer name of ``layer_bits``).  With ``option`` the message is the text
    after the option's name: ``SnnccError("must be in 2..8, got 9", option="weight_bits")``
    reads ``option --weight-bits must be in 2..8, got 9``; a message starting with ':'
    follows the name directly.  The CLI uses ``option`` to name the config file and key
    when the value came from a config file.
    """

    exit_code = 2

    def __init__(self, message: str, *, node: str | None = None, op: str | None = None,
                 option: str | None = None, key: str | None = None):
        self.node = node
        self.op = op
        self.option = option
        self.key = key
        self.detail = " ".join(str(message).split())
        where = ""
        if node is not None or op is not None:
            where = f"node {sanitize_name(node or '?')!s} ({op or '?'}): "
        self.body = where + self.detail  # the message without the option's name
        if option is not None:
            sep = "" if self.body[:1] in (":", ",") else " "
            where = f"option {option_flag(option)}{sep}" + where
        super().__init__(where + self.detail)


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
