"""Fidelity section of report.json: ANN vs float SNN accuracy, activity, energy, per layer.

Values are per inference, averaged over the data. The energy model is stated in
the report (``ENERGY_MODEL``): E_MAC = 4.6 pJ and E_AC = 0.9 pJ (45 nm, Horowitz
2014). The ANN costs one MAC per multiply-accumulate of its conv/dense layers. The
SNN costs one accumulate per synaptic operation (SOP: a non-zero input level times
the weights it reaches, its fan-out), plus, for levels |z| >= 2, a small integer
multiply (8-bit, 0.2 pJ, Horowitz 2014) per SOP. Layers fed by the input alone
(the first layer, direct encoding) see a constant current: they are computed once
per inference, as MACs.
"""

from __future__ import annotations

import numpy as np

from snncc import ops
from snncc.calib_data import CalibData
from snncc.graph_stats import node_macs, node_param_count
from snncc.ir import Graph
from snncc.sim.float_runtime import run_graph
from snncc.sim.snn_sim import simulate

E_MAC_PJ = 4.6
E_AC_PJ = 0.9
E_MUL8_PJ = 0.2
ENERGY_MODEL = (
    "45 nm (Horowitz 2014): E_MAC = 4.6 pJ, E_AC = 0.9 pJ, 8-bit multiply = 0.2 pJ. "
    "ANN = E_MAC x MACs of its conv/dense layers. SNN = E_MAC x MACs of layers fed by the input only "
    "(constant current, computed once) + E_AC x SOPs + 0.2 pJ x multi-level SOPs, where SOPs = sum over "
    "synaptic layers of non-zero input levels x fan-out (weights reached), over all timesteps, and a level "
    "|z| >= 2 costs one weight read plus a small multiply."
)


def fidelity_report(graph_float: Graph, graph_snn: Graph, data: CalibData, options, *,
                    max_samples: int | None = None, ann_predictions: list | None = None) -> dict:
    """The report.json sections accuracy, activity, energy and layers (see module doc).

    ``ann_predictions``, a list, receives the ANN's top-1 per sample, in data order, so
    that the integer scores need not run the ANN a second time."""
    T = int(graph_snn.meta.get("timesteps", getattr(options, "timesteps", 1)))
    from snncc import resources

    neurons = [n for n in graph_snn.nodes if n.op == "neuron"]
    ann_names = {n.name: n.attrs.get("ann_value") for n in neurons}
    # a pruned layer's ANN value has more channels than its neuron: no cosine for it
    shapes = {v: tuple(graph_snn.values[n.output].shape) for n in neurons for v in [ann_names[n.name]]}
    ann_capture = sorted({v for v in ann_names.values() if v and v in graph_float.values
                          and tuple(graph_float.values[v].shape) == shapes[v]})
    # the ANN, the SNN, and their captures (every neuron's levels and ANN value, kept for the batch)
    batch = resources.batch_size(graph_snn, options, copies=3, kept=[n.output for n in neurons] * 2) \
        if neurons else resources.batch_size(graph_snn, options, copies=3)
    cos = {n.name: np.zeros(3) for n in neurons}  # dot, |ann|^2, |snn|^2
    sums: dict[str, dict[str, float]] = {}
    preds_ann, preds_snn, labels = [], [], []
    total = 0
    static: set[str] = set()
    hist: dict[str, np.ndarray] = {}  # level counts per neuron, for the report's histograms
    for xb, yb in data.batches(batch, progress="fidelity", limit=max_samples):
        ann = run_graph(graph_float, xb, capture=ann_capture, dtype=np.float64)
        sim = simulate(graph_snn, xb, timesteps=T, capture=[n.name for n in neurons], batch_size=batch)
        b = len(xb)
        total += b
        preds_ann.append(np.asarray(ann[graph_float.outputs[0]]).reshape(b, -1).argmax(1))
        preds_snn.append(sim.logits.reshape(b, -1).argmax(1))
        if yb is not None:
            labels.append(yb)
        for key in ("spike_counts", "level_sums", "sops", "sops_multilevel", "input_events"):
            acc = sums.setdefault(key, {})
            for name, val in getattr(sim, key).items():
                acc[name] = acc.get(name, 0.0) + val * b
        static.update(sim.static_nodes)
        for name, counts in sim.level_hist.items():
            hist[name] = hist.get(name, 0) + np.asarray(counts, dtype=np.int64)
        for n in neurons:
            a_name = ann_names[n.name]
            if a_name not in ann:
                continue
            a = ann[a_name].reshape(b, -1)
            theta = n.params["theta"].reshape((1, -1) + (1,) * (sim.captured[n.name].ndim - 2))
            s = (sim.captured[n.name] / T * theta).reshape(b, -1)
            cos[n.name] += [float((a * s).sum()), float((a * a).sum()), float((s * s).sum())]
    if total == 0:
        return {}
    avg = {k: {name: v / total for name, v in d.items()} for k, d in sums.items()}
    y_ann, y_snn = np.concatenate(preds_ann), np.concatenate(preds_snn)
    if ann_predictions is not None:
        ann_predictions.append(y_ann)
    accuracy = {"top1_agreement": float((y_ann == y_snn).mean())}
    if labels:
        y = np.concatenate(labels)
        accuracy = {"ann": float((y_ann == y).mean()), "snn": float((y_snn == y).mean()), **accuracy}

    feeds = _reported_inputs(graph_snn, lambda n: n.op in ops.SYNAPTIC or n.op == "neuron")
    layers = []
    ann_macs_total = snn_macs_total = 0
    for node in graph_snn.nodes:
        if node.op not in ops.SYNAPTIC and node.op != "neuron":
            continue
        entry = {"name": node.name, "op": node.op, "spike_rate": None, "mean_level": None, "sops": None,
                 "ann_macs": None, "cosine": None, "params": node_param_count(node),
                 "shape": [int(d) for d in graph_snn.values[node.output].shape], "inputs": feeds.get(node.name, [])}
        if node.op == "neuron":
            events = avg["spike_counts"].get(node.name, 0.0)
            elements = int(np.prod(graph_snn.values[node.output].shape)) * T
            entry.update(spike_rate=events / elements if elements else 0.0,
                         mean_level=avg["level_sums"].get(node.name, 0.0) / events if events else 0.0,
                         cosine=_cosine(cos[node.name]) if ann_names[node.name] in ann_capture else None,
                         levels=int(node.attrs["levels"]), signed=bool(node.attrs.get("signed")),
                         spike_events=events, spike_levels=avg["level_sums"].get(node.name, 0.0),
                         # per inference: index i is level i (unsigned) or i - N (signed)
                         level_hist=[float(v) / total for v in hist.get(node.name, [])])
        else:
            macs = node_macs(graph_snn, node) if node.op in ops.WEIGHTED else 0
            ann_macs_total += macs
            is_static = node.name in static
            snn_macs = node_macs(graph_snn, node) if is_static else 0
            snn_macs_total += snn_macs
            entry.update(sops=avg["sops"].get(node.name, 0.0), ann_macs=macs, snn_macs=snn_macs,
                         input_events=avg["input_events"].get(node.name, 0.0),
                         sops_multilevel=avg["sops_multilevel"].get(node.name, 0.0))
        layers.append(entry)

    sops = float(sum(avg["sops"].values()))
    sops_ml = float(sum(avg["sops_multilevel"].values()))
    activity = {
        "spike_events": float(sum(avg["spike_counts"].values())),
        "spike_levels": float(sum(avg["level_sums"].values())),
        "sops": sops,
        "sops_multilevel": sops_ml,
        "input_macs": float(snn_macs_total),
    }
    ann_pj = E_MAC_PJ * ann_macs_total
    snn_pj = E_MAC_PJ * snn_macs_total + E_AC_PJ * sops + E_MUL8_PJ * sops_ml
    energy = {"ann_pj": float(ann_pj), "snn_pj": float(snn_pj), "ann_macs": int(ann_macs_total),
              "ratio": float(snn_pj / ann_pj) if ann_pj else None, "model": ENERGY_MODEL}
    evaluation = {"samples": int(total), "timesteps": T, "levels": int(graph_snn.meta.get("levels", 0)),
                  "labels": bool(labels)}
    return {"accuracy": accuracy, "activity": activity, "energy": energy, "layers": layers,
            "evaluation": evaluation}


def _cosine(acc: np.ndarray) -> float:
    dot, na, nb = (float(v) for v in acc)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.clip(dot / np.sqrt(na * nb), -1.0, 1.0))


def _reported_inputs(graph: Graph, reported) -> dict[str, list[str]]:
    """For each reported layer, the reported layers feeding it (through pools, flatten, ...): the report's topology."""
    producers = graph.producers()
    memo: dict[str, list[str]] = {}

    def sources(value: str) -> list[str]:
        if value not in memo:
            node = producers.get(value)
            if node is None:  # a graph input
                memo[value] = []
            elif reported(node):
                memo[value] = [node.name]
            else:
                memo[value] = sorted({s for v in node.inputs for s in sources(v)})
        return memo[value]

    return {n.name: sorted({s for v in n.inputs for s in sources(v)}) for n in graph.nodes if reported(n)}
