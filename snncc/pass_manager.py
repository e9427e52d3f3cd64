"""Runs a pipeline of named passes, verifying the IR after each one."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from snncc.errors import SnnccError
from snncc.ir import Graph
from snncc.pass_context import PassContext


def available_passes() -> dict[str, Callable[[Graph, PassContext], Graph]]:
    from snncc.passes import PASSES  # the one place passes are registered

    return PASSES


def run_pipeline(graph: Graph, names: Iterable[str], ctx: PassContext, *,
                 dump_after: Iterable[str] = (), echo: Callable[[str], None] = print) -> Graph:
    """Apply each named pass in order; ``graph.verify()`` after every pass, whose name and
    the context's notes so far the IR then records (``meta["passes"]``, ``meta["notes"]``)."""
    passes = available_passes()
    names = list(names)
    dump = set(dump_after)
    unknown = sorted((set(names) | dump) - set(passes))
    if unknown:
        raise SnnccError(f"unknown pass name(s) {', '.join(unknown)}; known: {', '.join(passes)}")
    missing = sorted(dump - set(names))
    if missing:
        raise SnnccError(f"option --dump-ir-after names pass(es) not in the pipeline: {', '.join(missing)}")
    for name in names:
        graph = passes[name](graph, ctx)
        graph.verify()
        graph.meta.setdefault("passes", []).append(name)
        graph.meta["notes"] = list(ctx.notes)
        if name in dump:
            echo(f"--- IR after {name} ---\n{graph.dump()}")
    return graph
