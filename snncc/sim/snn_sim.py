"""Float SNN simulator: runs the stage-``snn`` IR for T timesteps in float64.

The input x is injected every timestep (direct encoding). Every op is evaluated
once per timestep with the numpy kernels, vectorized over batch, channels and
pixels; the only Python loops are over timesteps and nodes. Values that depend
only on the input (the first synaptic layer's current) are computed once.

Neuron (docs/ir.md, "Float SNN"): v starts at theta/2; each step
``v += I; z = clamp(floor(v/theta), lo, N); v -= z*theta`` with lo = 0 (unsigned) or
-N (signed). Graph outputs are accumulated over T; logits = sum / T.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from snncc import ops
from snncc.errors import SnnccError
from snncc.ir import Graph, Node
from snncc.sim.float_runtime import eval_node
from snncc.sim.neuron import channel_view, neuron_step, quantize_levels, v_init
from snncc.sim.walk import last_uses, static_values, walk


@dataclass
class SimResult:
    """What one simulation saw. Per-sample figures are averaged over the samples.

    - ``outputs``: graph output currents summed over T, float64 (samples, ...).
    - ``logits``: the first output / T.
    - ``spike_counts[node]``: non-zero levels a neuron emitted per sample, over all T.
    - ``level_sums[node]``: sum of |level| per sample, over all T.
    - ``level_hist[node]``: counts of each level over all samples and steps; index i is
      level i (unsigned) or i - N (signed).
    - ``elements[node]``: output elements per sample (one timestep).
    - ``input_events[node]``: for synaptic ops, non-zero inputs per sample over all T.
    - ``sops[node]``: synaptic operations per sample over all T: for each non-zero
      input, the number of weights it touches (exact, borders included).
    - ``sops_multilevel[node]``: the part of ``sops`` from inputs with |level| >= 2.
    - ``traces[node]``: membrane after each step, (samples, T, *shape), on request.
    - ``captured[node]``: a node's output summed over T, (samples, *shape), on request.
    - ``static_nodes``: nodes fed by the input only, computed once (their cost is MACs).
    """

    outputs: dict[str, np.ndarray]
    logits: np.ndarray
    timesteps: int
    samples: int
    spike_counts: dict[str, float] = field(default_factory=dict)
    level_sums: dict[str, float] = field(default_factory=dict)
    level_hist: dict[str, np.ndarray] = field(default_factory=dict)
    elements: dict[str, int] = field(default_factory=dict)
    input_events: dict[str, float] = field(default_factory=dict)
    sops: dict[str, float] = field(default_factory=dict)
    sops_multilevel: dict[str, float] = field(default_factory=dict)
    traces: dict[str, np.ndarray] = field(default_factory=dict)
    captured: dict[str, np.ndarray] = field(default_factory=dict)
    static_nodes: list[str] = field(default_factory=list)  # computed once (input-only): MACs, not SOPs


def simulate(graph: Graph, x: np.ndarray, *, timesteps: int | None = None, trace: Iterable[str] = (),
             batch_size: int = 256, capture: Iterable[str] = (), activity: bool = True) -> SimResult:
    """Run the float SNN on inputs ``x`` (N, *input_shape) for T timesteps.

    ``activity=False`` skips the spike/SOP counters (faster, for threshold search).
    """
    if graph.stage != "snn":
        raise SnnccError(f"the float SNN simulator needs a stage 'snn' graph, got stage {graph.stage!r}")
    T = int(timesteps if timesteps is not None else graph.meta.get("timesteps", 1))
    if T < 1:
        raise SnnccError(f"option --timesteps must be >= 1, got {T}")
    x = np.asarray(x, np.float64)
    want = tuple(graph.values[graph.inputs[0]].shape)
    if x.shape == want:
        x = x[None]
    if tuple(x.shape[1:]) != want:
        raise SnnccError(f"input has shape {list(x.shape)}, the model expects [N, {', '.join(map(str, want))}]")
    trace, capture = list(trace), list(capture)
    names = {n.name for n in graph.nodes}
    for name in trace + capture:
        if name not in names:
            raise SnnccError(f"no node named {name!r} to trace or capture")
    total = _Totals(graph)
    outs: dict[str, list[np.ndarray]] = {v: [] for v in graph.outputs}
    traces: dict[str, list[np.ndarray]] = {n: [] for n in trace}
    caps: dict[str, list[np.ndarray]] = {n: [] for n in capture}
    for start in range(0, len(x), int(batch_size)):
        res = _simulate_batch(graph, x[start:start + int(batch_size)], T, set(trace), set(capture),
                              total if activity else None)
        for v in graph.outputs:
            outs[v].append(res[0][v])
        for n in trace:
            traces[n].append(res[1][n])
        for n in capture:
            caps[n].append(res[2][n])
    n = len(x)
    outputs = {v: np.concatenate(a) for v, a in outs.items()}
    return SimResult(
        outputs=outputs,
        logits=outputs[graph.outputs[0]] / T,
        timesteps=T,
        samples=n,
        spike_counts={k: v / n for k, v in total.events.items()},
        level_sums={k: v / n for k, v in total.level_sum.items()},
        level_hist=dict(total.hist),
        elements=total.elements,
        input_events={k: v / n for k, v in total.in_events.items()},
        sops={k: v / n for k, v in total.sops.items()},
        sops_multilevel={k: v / n for k, v in total.sops_ml.items()},
        traces={k: np.concatenate(v) for k, v in traces.items()},
        captured={k: np.concatenate(v) for k, v in caps.items()},
        static_nodes=[nd.name for nd in graph.nodes if nd.name in total.static],
    )


class _Totals:
    """Activity counters summed over batches (divided by the sample count at the end)."""

    def __init__(self, graph: Graph):
        self.events: dict[str, float] = {}
        self.level_sum: dict[str, float] = {}
        self.hist: dict[str, np.ndarray] = {}
        self.elements: dict[str, int] = {}
        self.in_events: dict[str, float] = {}
        self.sops: dict[str, float] = {}
        self.sops_ml: dict[str, float] = {}
        self.static: set[str] = set()
        self.fanout: dict[str, np.ndarray] = {}
        for node in graph.nodes:
            if node.op == "neuron":
                n = int(node.attrs["levels"])
                self.events[node.name] = 0.0
                self.level_sum[node.name] = 0.0
                self.hist[node.name] = np.zeros(2 * n + 1 if node.attrs.get("signed") else n + 1, np.int64)
                self.elements[node.name] = int(np.prod(graph.values[node.output].shape))
            elif node.op in ops.SYNAPTIC:
                self.in_events[node.name] = 0.0
                self.sops[node.name] = 0.0
                self.sops_ml[node.name] = 0.0

    def neuron(self, node: Node, z: np.ndarray) -> None:
        n = int(node.attrs["levels"])
        self.events[node.name] += float(np.count_nonzero(z))
        self.level_sum[node.name] += float(np.abs(z).sum())
        offset = n if node.attrs.get("signed") else 0
        idx = (z.reshape(-1) + offset).astype(np.int64)
        self.hist[node.name] += np.bincount(idx, minlength=len(self.hist[node.name]))

    def synapse(self, node: Node, s: np.ndarray) -> None:
        if node.name not in self.fanout:
            self.fanout[node.name] = fanout_map(node, s.shape[1:])
        fan = self.fanout[node.name]
        a = np.abs(s)
        nz = (a > 0).sum(axis=0)  # per input element, summed over the batch
        self.in_events[node.name] += float(nz.sum())
        self.sops[node.name] += float((nz * fan).sum())
        self.sops_ml[node.name] += float(((a >= 2).sum(axis=0) * fan).sum())


def fanout_map(node: Node, in_shape: tuple[int, ...]) -> np.ndarray:
    """Per input element, the number of weights it touches in ``node`` (padding-aware).

    For a conv this is (O/group) x (output rows covering h) x (output columns covering
    w): separable, so it is built from two 1-D counts.
    """
    if node.op == "conv":
        a = node.attrs
        o, _, kh, kw = node.params["weight"].shape
        c, h, w = in_shape
        fh = _cover(h, kh, a["strides"][0], a["pads"][0], a["pads"][2], a["dilations"][0])
        fw = _cover(w, kw, a["strides"][1], a["pads"][1], a["pads"][3], a["dilations"][1])
        per = (o // int(a["group"])) * np.outer(fh, fw)
        return np.broadcast_to(per, (c, h, w))
    if node.op == "dense":
        return np.full(in_shape, float(node.params["weight"].shape[0]))
    return np.ones(in_shape)  # affine: one weight per input


def _cover(size: int, k: int, stride: int, p0: int, p1: int, dil: int) -> np.ndarray:
    """How many (output position, kernel tap) pairs read each input position along one axis."""
    n_out = (size + p0 + p1 - dil * (k - 1) - 1) // stride + 1
    count = np.zeros(size)
    starts = np.arange(n_out) * stride - p0
    for i in range(k):  # kernel taps only; output positions are vectorized
        pos = starts + i * dil
        pos = pos[(pos >= 0) & (pos < size)]
        np.add.at(count, pos, 1.0)
    return count


def _simulate_batch(graph: Graph, xb: np.ndarray, T: int, trace: set, capture: set, total: _Totals | None):
    static = static_values(graph)  # values constant over time (computed at t=0, reused)
    env_static: dict[str, np.ndarray] = {graph.inputs[0]: xb}
    v_state: dict[str, np.ndarray] = {}
    acc = {v: 0.0 for v in graph.outputs}
    traces = {n: [] for n in trace}
    caps: dict[str, np.ndarray | float] = {n: 0.0 for n in capture}
    last = last_uses(graph)
    for t in range(T):
        def step(i: int, node: Node, env: dict, t: int = t) -> np.ndarray:
            args = [env[v] for v in node.inputs]
            if total and node.op in ops.SYNAPTIC and node.inputs[0] not in static:
                total.synapse(node, args[0])  # static inputs are real values: MACs, computed once
            if node.output in static and t > 0:
                out = env_static[node.output]
            elif node.op == "neuron":
                theta = channel_view(np.asarray(node.params["theta"], np.float64), args[0].ndim)
                v = v_state.get(node.name)
                if v is None:
                    v = np.broadcast_to(v_init(theta), args[0].shape).copy()
                out, v_state[node.name] = neuron_step(v, args[0], theta, int(node.attrs["levels"]),
                                                      bool(node.attrs.get("signed")))
                if total:
                    total.neuron(node, out)
                if node.name in trace:
                    traces[node.name].append(v_state[node.name])
            else:
                out = eval_node(node, args)
                if out.dtype != np.float64:
                    out = out.astype(np.float64)
                if node.output in static:
                    env_static[node.output] = out
            if node.name in capture:
                caps[node.name] = caps[node.name] + out
            if node.name in trace and node.op != "neuron":
                traces[node.name].append(out)
            return out

        env = walk(graph, dict(env_static), step, last=last)
        for v in graph.outputs:
            acc[v] = acc[v] + env[v]
    if total:
        total.static.update(n.name for n in graph.nodes if n.output in static)
    tr = {n: np.stack(a, axis=1) for n, a in traces.items()}
    return acc, tr, caps


# --- the activation-quantized ANN (the T=1 oracle) -------------------------------------



def neuron_specs(graph_snn: Graph) -> dict[str, tuple[np.ndarray, int, bool]]:
    """float-graph value -> (theta, levels, signed) for every neuron of a converted graph."""
    specs = {}
    for node in graph_snn.nodes:
        if node.op == "neuron" and node.attrs.get("ann_value"):
            specs[node.attrs["ann_value"]] = (np.asarray(node.params["theta"], np.float64),
                                              int(node.attrs["levels"]), bool(node.attrs.get("signed")))
    return specs


def refitted_ann(graph_float: Graph, graph_snn: Graph) -> Graph:
    """The ANN with the weights ``convert`` refitted (``params["ann_weight"/"ann_bias"]`` of the
    SNN's synaptic nodes, passes/channel_refine.py): the network the float SNN quantizes."""
    refit = {n.name: n for n in graph_snn.nodes if "ann_weight" in n.params}
    if not refit:
        return graph_float
    g = copy.copy(graph_float)
    g.nodes = [dataclasses.replace(n, params=dict(n.params, weight=refit[n.name].params["ann_weight"],
                                                  bias=refit[n.name].params["ann_bias"]))
               if n.name in refit else n for n in graph_float.nodes]
    return g


def bias_deltas(graph_snn: Graph) -> dict[str, np.ndarray]:
    """Bias corrections ``convert`` applied, by synaptic node name."""
    return {n.name: np.asarray(n.attrs["bias_delta"], np.float64)
            for n in graph_snn.nodes if n.attrs.get("bias_delta") is not None}


def run_quantized(graph: Graph, specs: dict, x, *, bias_delta: dict | None = None,
                  env: dict | None = None, start: int = 0, stop: int | None = None,
                  keep: Iterable[str] = (), last: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Run the float graph in float64 with every neuron's activation quantized.

    A ReLU output v in ``specs`` becomes ``theta * clamp(floor(v/theta + 1/2), 0, N)``
    (round half up, what the T=1 neuron with v0 = theta/2 computes). A signed site
    keeps its current for adds and neurons, while conv/dense read its quantized
    version (levels -N..N). ``env``/``start``/``stop`` resume a run part-way (the
    threshold search reuses the unchanged prefix). Returns the live values at
    ``stop`` (and ``keep``); quantized signed sites are under ``"<value>#q"``.
    ``last`` (value -> index of its last reader) may be given by callers that resume
    many times, so that each call costs only its own nodes.
    """
    bias_delta = bias_delta or {}
    nodes = graph.nodes
    stop = len(nodes) if stop is None else stop
    if env is None:
        arr = np.asarray(x, np.float64)
        if arr.ndim == len(graph.values[graph.inputs[0]].shape):
            arr = arr[None]
        env = {graph.inputs[0]: arr}
    else:
        env = dict(env)

    def step(i: int, node: Node, env: dict) -> np.ndarray:
        if node.op in ops.WEIGHTED:
            args = [env.get(node.inputs[0] + "#q", env[node.inputs[0]])]
        else:
            args = [env[v] for v in node.inputs]
        if node.op == "softmax":  # the SNN drops it: compare logits
            out = args[0]
        else:
            out = eval_node(node, args).astype(np.float64, copy=False)
        if node.op in ops.DATA_MOVEMENT and any(v + "#q" in env for v in node.inputs):
            # data movement between a signed neuron and the conv/dense that reads its levels
            qargs = [env.get(v + "#q", env[v]) for v in node.inputs]
            env[node.output + "#q"] = eval_node(node, qargs).astype(np.float64, copy=False)
        if node.name in bias_delta:
            d = np.asarray(bias_delta[node.name], np.float64)
            out = out + d.reshape((1, -1) + (1,) * (out.ndim - 2))
        spec = specs.get(node.output)
        if spec is not None:
            theta, n, signed = spec
            th = channel_view(theta, out.ndim)
            q = quantize_levels(out, th, n, signed) * th
            if node.op == "relu":
                out = q
            else:
                env[node.output + "#q"] = q
        return out

    def release(env: dict, v: str) -> None:  # a value and its quantized copy
        env.pop(v, None)
        env.pop(v + "#q", None)

    walk(graph, env, step, keep=keep, start=start, stop=stop, release=release, last=last)
    return env


def quantized_ann_levels(graph_float: Graph, graph_snn: Graph, x) -> dict[str, np.ndarray]:
    """The activation-quantized ANN's levels, keyed by the SNN's neuron node names, plus
    its outputs keyed by the SNN's output value names. At T=1 the float SNN equals it."""
    specs = neuron_specs(graph_snn)
    graph_float = refitted_ann(graph_float, graph_snn)
    by_value = {n.attrs["ann_value"]: n for n in graph_snn.nodes if n.op == "neuron" and n.attrs.get("ann_value")}
    env = run_quantized(graph_float, specs, x, bias_delta=bias_deltas(graph_snn), keep=list(specs))
    out: dict[str, np.ndarray] = {}
    for value, node in by_value.items():
        theta, _, _ = specs[value]
        q = env[value + "#q"] if value + "#q" in env else env[value]
        out[node.name] = np.rint(q / channel_view(theta, q.ndim))  # z*theta/theta: exact up to 1 ulp
    for f, s in zip(graph_float.outputs, graph_snn.outputs):
        out[s] = env[f]
    return out
