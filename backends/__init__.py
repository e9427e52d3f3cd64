"""Targets, one subpackage each; ``TARGETS`` is the one registry.

``TARGETS`` maps a target name to its interface module, ``<folder>/target.py``, which offers:

- ``LABEL``: how ``snncc verify`` names it ("integer runtime == LABEL");
- ``named_files(name)``: the files ``emit`` names after the model; ``name_problem(name)``:
  why ``name`` cannot name the output (not an identifier, a clash with a fixed file or a
  system header), or None;
- ``emit(graph, out_dir, *, name, spike_rates, **target_options) -> dict``: write the files for the
  integer IR into the existing folder ``out_dir``; return what the report records
  about them (the driver owns report.json: emitters neither read nor write it);
- ``check_tools(**target_options, options=None)``: raise SnnccError early if a tool is
  missing, a target option is out of range, or the compile ``options`` (CompileOptions,
  when given) ask for what the target cannot carry;
- ``flash_bytes(graph) -> int`` (optional): the constant bytes ``emit`` would write for the
  integer IR; ``--prune-target-flash`` meets its budget on it (without it, on the prune
  pass's own estimate);
- ``verify(graph, out_dir, x_q, *, reference, **verify_options) -> Check``: run what
  ``emit`` wrote on the int8 inputs ``x_q`` and compare every output with
  ``reference``, the integer runtime's (N, OUT) int outputs.

Target options (``cc``; ``lanes``, ``simulator`` and ``samples`` for fpga; ``nir_profile``
for nir) reach every
function as keywords; each takes what is its own and ignores the rest (``**_``).

A new backend is one folder here plus one line in ``TARGETS`` (docs/contributing.md).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

TARGETS: dict[str, str] = {
    "c": "snncc.backends.c.target",
    "python": "snncc.backends.python.target",
    "fpga": "snncc.backends.fpga.target",
    "nir": "snncc.backends.nir.target",
    "qonnx": "snncc.backends.qonnx.target",
}


@dataclass
class Check:
    """A target's verdict: bit-exact or not, one line of detail, rows for the table."""

    ok: bool
    detail: str
    table: list[tuple[str, ...]] = field(default_factory=list)
    # A passing check's figures and the detail's template over them (``template.format(**counts)``
    # == ``detail``), so checks of shards of the data merge into the whole set's (verify --executor ray).
    counts: dict[str, int] = field(default_factory=dict)
    template: str = ""


def passed(template: str, **counts: int) -> Check:
    """A passing Check whose detail is ``template`` over ``counts`` (summed when shards merge)."""
    return Check(True, template.format(**counts), counts=dict(counts), template=template)


def names() -> tuple[str, ...]:
    return tuple(TARGETS)


def target(name: str) -> ModuleType:
    """The module of target ``name``; SnnccError naming --target when unknown."""
    if name not in TARGETS:
        from snncc.errors import SnnccError

        raise SnnccError(f"must be one of {', '.join(TARGETS)}, got {name!r}", option="target")
    return importlib.import_module(TARGETS[name])
