"""`snncc verify --executor ray`: the per-sample rungs on shards of the evaluation set.

The integer runtime (against the float SNN) and the target's code (against the integer
runtime) run per sample, so the evaluation set splits into shards of whole
``verify.CHUNK``-sample chunks, one Ray task each.  The graphs and the data go into the
object store once; a task gets the references and its sample range, runs both rungs
on its shard (emitting and building the target's code on its own node) and returns
the per-sample parts and the target's Check.  The parts concatenate and the counts
add up to exactly the local run's: the same chunks run the same arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from snncc.errors import SnnccError
from snncc.verify_parts import CHUNK, Rung, check_target, integer_parts, integer_rung, merge_parts


def shard_ranges(n: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` (at most) consecutive ranges of whole CHUNK-sample chunks covering 0..n."""
    chunks = -(-n // CHUNK)
    groups = np.array_split(np.arange(chunks), max(1, min(shards, chunks)))
    return [(int(g[0]) * CHUNK, min(n, (int(g[-1]) + 1) * CHUNK)) for g in groups if len(g)]


def shard_task(snn_graph, int_graph, x: np.ndarray, start: int, stop: int, target: str, target_options: dict):
    """One shard: the integer rung's parts and the target's Check on samples start..stop-1."""
    from snncc.sim.int_runtime import quantize_input

    xs = np.asarray(x[start:stop])
    parts = integer_parts(snn_graph, int_graph, xs)
    check = check_target(int_graph, quantize_input(int_graph, xs), target, parts.int_out, **target_options)
    return parts, check


def merge_checks(checks: list, ranges: list[tuple[int, int]]):
    """The shards' Checks as the whole set's: passing ones sum their counts into the same
    template; otherwise the first failing shard's verdict, saying which samples it held."""
    from snncc.backends import Check, passed

    bad = [(c, r) for c, r in zip(checks, ranges) if not c.ok]
    if bad:
        check, (a, b) = bad[0]
        return Check(False, f"{check.detail} (in the shard of samples {a}..{b - 1})", check.table)
    templates = {c.template for c in checks}
    if len(templates) == 1 and "" not in templates:
        keys = checks[0].counts
        return passed(checks[0].template, **{k: sum(c.counts[k] for c in checks) for k in keys})
    return Check(True, "; ".join(c.detail for c in checks))


def sharded_rungs(snn_graph, int_graph, x: np.ndarray, target: str, target_options: dict,
                  ray_address: str | None, note: Callable[[str], None], runtime_env: dict | None = None):
    """The integer and target rungs on Ray: (integer rung, int outputs, int logits, target rung)."""
    from snncc.backends import target as get_target
    from snncc.cluster import ray_session, signals_through_ray

    with ray_session(ray_address, None, runtime_env) as ray:
        from ray.exceptions import RayError

        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        ranges = shard_ranges(len(x), workers)
        note(f"verify: the per-sample rungs run on {len(ranges)} shard(s) of {len(x)} samples on Ray")
        refs = [ray.put(v) for v in (snn_graph, int_graph, x)]
        remote = ray.remote(shard_task).options(num_cpus=1, max_retries=1)
        tasks = [remote.remote(*refs, a, b, target, target_options) for a, b in ranges]
        try:
            with signals_through_ray():
                results = ray.get(tasks)
        except RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SnnccError(f"verify: a Ray task failed: {first}") from None
    parts = merge_parts([p for p, _ in results])
    check = merge_checks([c for _, c in results], ranges)
    target_rung = Rung(f"integer runtime == {get_target(target).LABEL}", check.ok, check.detail, check.table)
    return integer_rung(parts), parts.int_out, parts.int_logits, target_rung
