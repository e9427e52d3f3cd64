"""Residual activity analysis: activity per residual block and the spike-avalanche factor.

In a spiking ResNet whose joins add levels ("spike + spike", SEW), the summed
levels grow block after block (the spike avalanche); Sparse-ResNet barrier
neurons re-spike each join into 0..N. This module measures that on a float SNN
simulation (``snn_sim.simulate``).

Definitions (per inference, averaged over the samples, summed over T):

- *spike sources* are the neurons and the SEW joins (``add`` of levels): a SEW
  join emits the summed level as one multi-level spike, as a barrier neuron does.
  ``spike_events`` counts non-zero outputs of spike sources, ``spike_levels``
  (the level mass) sums their |level|.
- ``synaptic_events``: non-zero values entering an accumulation: the inputs of
  conv, dense and affine ops (the sim's ``input_events``; the first layer's direct
  input is not counted) plus the inputs of SEW joins. A SEW join input is one
  accumulation, exactly like the identity-shortcut ``affine`` that replaces it
  in sparse mode, so both modes pay for the join the same way.
- ``sops``: the sim's synaptic operations plus one per SEW-join input event.
- Blocks: the *stem* is everything up to the first join's fork; block k runs from
  the end of join k-1 to join k and its output neuron (barrier or post-add ReLU);
  the *head* is the rest. ``max_level`` is the largest |level| seen at the join
  output in one timestep (the barrier's, or the summed levels of a SEW join).
- ``avalanche``: the mean |level| per join-output element, block by block; the
  factors are the ratios block k+1 / block k, and ``geomean`` their geometric mean.
  A factor above 1 is activity growing with depth.

``activity_trace_nodes(snn)`` names the nodes whose per-step outputs the analysis
needs (the SEW joins and their non-neuron inputs): pass them as ``trace=`` to
``simulate``, or call ``simulate_activity`` which does both.
"""

from __future__ import annotations

import math

import numpy as np

from snncc import ops
from snncc.ir import Graph, Node


def level_values(graph: Graph) -> set[str]:
    """SNN values that hold spike levels: neuron outputs, their data movement and sums."""
    return {v for v, kind in ops.value_kinds(graph).items() if kind == "levels"}


def level_adds(graph: Graph) -> list[Node]:
    """SEW joins in the SNN: adds whose inputs are all levels."""
    levels = level_values(graph)
    return [n for n in graph.nodes if n.op == "add" and all(v in levels for v in n.inputs)]


def activity_trace_nodes(graph: Graph) -> list[str]:
    """Node names to trace in ``simulate`` so that SEW joins can be measured."""
    prod = graph.producers()
    names: set[str] = set()
    for node in level_adds(graph):
        names.add(node.name)
        for v in node.inputs:
            p = prod.get(v)
            if p is not None and p.op != "neuron":
                names.add(p.name)
    return sorted(names)


def simulate_activity(graph: Graph, x: np.ndarray, *, timesteps: int | None = None):
    """Simulate the float SNN with the traces the analysis needs; returns (SimResult, report)."""
    from snncc.sim.snn_sim import simulate

    sim = simulate(graph, x, timesteps=timesteps, trace=activity_trace_nodes(graph))
    return sim, activity_report(graph, sim)


def activity_report(graph: Graph, sim) -> dict:
    """Per-block activity and the avalanche factor of a stage-``snn`` graph (JSON-friendly)."""
    joins = list(graph.meta.get("residual_joins", []))
    nodes = graph.nodes
    pos = {n.name: i for i, n in enumerate(nodes)}
    vpos = {v: -1 for v in graph.inputs}
    vpos.update({n.output: i for i, n in enumerate(nodes)})
    consumers = graph.consumer_map()
    prod = graph.producers()
    n_samples = max(int(sim.samples), 1)
    sew_events, sew_levels, sew_in = _sew_join_counts(graph, sim, prod, n_samples)

    # Block boundaries: node positions where each block ends.
    present = [j for j in joins if j["node"] in pos]
    ends = []
    for j in present:
        add = nodes[pos[j["node"]]]
        readers = [r for r in consumers.get(add.output, []) if r.op == "neuron"]
        ends.append(max([pos[add.name]] + [pos[r.name] for r in readers]))
    stem_end = vpos.get(present[0]["fork"], -1) if present else len(nodes) - 1
    bounds = [("stem", -1, stem_end)]
    prev = stem_end
    for k, end in enumerate(ends, start=1):
        bounds.append((f"block{k}", prev, max(end, prev)))
        prev = max(end, prev)
    if present:
        bounds.append(("head", prev, len(nodes) - 1))

    blocks = []
    for (name, lo, hi), j in zip(bounds, [None] + present + [None]):
        members = nodes[lo + 1:hi + 1]
        blk = _block_totals(members, sim, sew_events, sew_levels, sew_in)
        blk["name"] = name
        blk["nodes"] = len(members)
        if j is not None:
            blk["join"] = _join_figures(graph, nodes[pos[j["node"]]], j, sim, consumers, n_samples,
                                        sew_events, sew_levels)
        blocks.append(blk)

    totals = _block_totals(nodes, sim, sew_events, sew_levels, sew_in)
    dens = [b["join"]["mean_level"] for b in blocks if "join" in b]
    factors = [None if (a is None or b is None or a == 0) else b / a for a, b in zip(dens, dens[1:])]
    good = [f for f in factors if f is not None and f > 0]
    geo = math.exp(sum(math.log(f) for f in good) / len(good)) if good else None
    max_levels = [b["join"]["max_level"] for b in blocks if "join" in b and b["join"]["max_level"] is not None]
    return {
        "mode": _mode(joins),
        "levels": graph.meta.get("levels"),
        "timesteps": int(sim.timesteps),
        "samples": int(sim.samples),
        "totals": totals,
        "blocks": blocks,
        "joins": [{k: j.get(k) for k in ("node", "kind", "action", "barrier")} for j in joins],
        "max_join_level": max(max_levels) if max_levels else None,
        "avalanche": {"metric": "mean |level| per join-output element", "per_block": dens,
                      "factors": factors, "geomean": geo},
    }


def _mode(joins: list[dict]) -> str:
    if any(j.get("barrier") for j in joins):
        return "sparse"
    if any(j.get("kind") == "spike_spike" for j in joins):
        return "sew"
    return "none"


def _sew_join_counts(graph: Graph, sim, prod: dict[str, Node], n: int):
    """Events and level sums at SEW joins, and the events entering them, per node name."""
    events: dict[str, float] = {}
    levels: dict[str, float] = {}
    inputs: dict[str, float | None] = {}
    for add in level_adds(graph):
        tr = sim.traces.get(add.name)
        if tr is None:
            events[add.name] = levels[add.name] = None
            inputs[add.name] = None
            continue
        events[add.name] = float(np.count_nonzero(tr)) / n
        levels[add.name] = float(np.abs(tr).sum()) / n
        total = 0.0
        for v in add.inputs:
            p = prod.get(v)
            if p is not None and p.op == "neuron":
                total += float(sim.spike_counts[p.name])
            elif p is not None and p.name in sim.traces:
                total += float(np.count_nonzero(sim.traces[p.name])) / n
            else:
                total = None
                break
        inputs[add.name] = total
    return events, levels, inputs


def _add(a, b):
    return None if a is None or b is None else a + b


def _block_totals(members: list[Node], sim, sew_events, sew_levels, sew_in) -> dict:
    out = {"neurons": 0, "spike_events": 0.0, "spike_levels": 0.0, "synaptic_events": 0.0, "sops": 0.0}
    for node in members:
        if node.op == "neuron":
            out["neurons"] += 1
            out["spike_events"] = _add(out["spike_events"], float(sim.spike_counts.get(node.name, 0.0)))
            out["spike_levels"] = _add(out["spike_levels"], float(sim.level_sums.get(node.name, 0.0)))
        elif node.op in ops.SYNAPTIC:
            out["synaptic_events"] = _add(out["synaptic_events"], float(sim.input_events.get(node.name, 0.0)))
            out["sops"] = _add(out["sops"], float(sim.sops.get(node.name, 0.0)))
        elif node.name in sew_events:
            out["spike_events"] = _add(out["spike_events"], sew_events[node.name])
            out["spike_levels"] = _add(out["spike_levels"], sew_levels[node.name])
            out["synaptic_events"] = _add(out["synaptic_events"], sew_in[node.name])
            out["sops"] = _add(out["sops"], sew_in[node.name])
    return out


def _join_figures(graph: Graph, add: Node, join: dict, sim, consumers, n: int, sew_events, sew_levels) -> dict:
    """Activity at one join's output: its barrier / post-add neuron, or the SEW sum itself."""
    fig = {"node": add.name, "kind": join.get("kind"), "neuron": None, "events": None, "level_sum": None,
           "elements": None, "mean_level": None, "max_level": None}
    readers = [r for r in consumers.get(add.output, []) if r.op == "neuron"]
    if readers:
        r = readers[0]
        hist = np.asarray(sim.level_hist[r.name])
        nz = np.nonzero(hist)[0]
        offset = int(r.attrs["levels"]) if r.attrs.get("signed") else 0
        elements = int(sim.elements[r.name])
        fig.update(neuron=r.name, events=float(sim.spike_counts[r.name]), level_sum=float(sim.level_sums[r.name]),
                   elements=elements,
                   max_level=int(max(abs(int(i) - offset) for i in nz)) if len(nz) else 0)
    elif add.name in sew_events and sew_events[add.name] is not None:
        tr = sim.traces[add.name]
        fig.update(events=sew_events[add.name], level_sum=sew_levels[add.name],
                   elements=int(np.prod(graph.values[add.output].shape)),
                   max_level=int(np.rint(np.abs(tr).max())) if tr.size else 0)
    if fig["level_sum"] is not None and fig["elements"]:
        fig["mean_level"] = fig["level_sum"] / (fig["elements"] * int(sim.timesteps))
    return fig


def format_activity(report: dict) -> str:
    """The per-block table and the avalanche factor as text (no trailing newline)."""
    t = report["totals"]
    lines = [f"residual activity ({report['mode']}, N={report.get('levels')}, T={report['timesteps']}, "
             f"{report['samples']} samples; per inference)",
             f"{'block':<8s} {'spikes':>9s} {'levels':>9s} {'syn.events':>10s} {'SOPs':>11s} "
             f"{'join kind':<14s} {'max lvl':>7s} {'mean lvl':>8s} {'growth':>7s}"]
    factors = iter([None] + list(report["avalanche"]["factors"]))
    for b in report["blocks"]:
        j = b.get("join")
        growth = next(factors) if j is not None else None
        lines.append(f"{b['name']:<8s} {_n(b['spike_events']):>9s} {_n(b['spike_levels']):>9s} "
                     f"{_n(b['synaptic_events']):>10s} {_n(b['sops']):>11s} "
                     f"{(j['kind'] if j else ''):<14s} {_n(j['max_level'] if j else None, 0):>7s} "
                     f"{_n(j['mean_level'] if j else None, 3):>8s} {_n(growth, 3):>7s}")
    lines.append(f"{'total':<8s} {_n(t['spike_events']):>9s} {_n(t['spike_levels']):>9s} "
                 f"{_n(t['synaptic_events']):>10s} {_n(t['sops']):>11s}")
    geo = report["avalanche"]["geomean"]
    lines.append(f"avalanche factor (geometric mean of block-over-block growth of the mean join level): "
                 f"{_n(geo, 3)}; max join level {_n(report['max_join_level'], 0)}")
    return "\n".join(lines)


def _n(x, digits: int = 1) -> str:
    if x is None:
        return "n/a"
    return f"{x:.{digits}f}"
