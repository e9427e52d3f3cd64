"""convert: ReLU/Clip -> multi-level IF neurons (stage ``snn``), thresholds folded downstream.

Steps: classify values (``convert_plan``), thresholds from calibration statistics
(``convert_thresholds``), equal thresholds for the inputs of spike + spike joins,
then optionally

- ``threshold_search="output"``: per neuron population, in graph order, keep the
  thresholds that minimize the logits' squared error against the float ANN on
  calibration data (output-aware, not activation-aware), among: the current ones,
  a small grid of factors times them, and the max-method thresholds;
- ``bias_correction``: layer by layer, shift each synaptic bias by the mean error of
  its output current against the ANN (the quantization error's mean, propagated).

The graph rewrite is ``convert_build.build``.
"""

from __future__ import annotations

import copy

import numpy as np

from snncc import ops
from snncc.errors import SnnccError
from snncc.ir import Graph
from snncc.options import CompileOptions
from snncc.passes.convert_build import build
from snncc.passes.convert_plan import Plan, plan, populations
from snncc.passes.convert_thresholds import thresholds
from snncc.passes.residual import scale_barriers
from snncc.sim.float_runtime import run_graph
from snncc.sim.neuron import quantize_levels
from snncc.sim.snn_sim import run_quantized, simulate

SEARCH_SAMPLES = 256  # calibration samples used by threshold search and bias correction, at most
SEARCH_ELEMENTS = 20_000_000  # ... and fewer for big models: samples x activations per sample
SEARCH_GRID = (0.6, 0.75, 0.9, 1.1, 1.3, 1.6)  # factors tried on each population's thresholds


def run(graph: Graph, options: CompileOptions) -> Graph:
    if graph.stage != "float":
        raise SnnccError(f"convert needs the float IR, got stage {graph.stage!r}")
    if not any(n.op == "relu" for n in graph.nodes):
        raise SnnccError("nothing to convert: the network has no ReLU or Clip(0, a) activation, so no layer "
                         "can become a spiking neuron (snncc converts ReLU networks)")
    p = plan(graph)
    thetas, caps = initial_thresholds(graph, p, options)
    groups = populations(graph, p)
    for members in groups:
        _equalize(thetas, caps, members)
    T, N = int(options.timesteps), int(options.levels)
    data = getattr(options, "calib_data", None)
    notes = []
    bias_delta: dict[str, np.ndarray] = {}
    want_search = options.threshold_search == "output"
    if (want_search or options.bias_correction) and data is None:
        notes.append("threshold search / bias correction skipped: no calibration data")
        thetas = scale_barriers(graph, thetas)
    elif want_search or options.bias_correction:
        per_sample = sum(int(np.prod(v.shape)) for v in graph.values.values())
        count = int(np.clip(SEARCH_ELEMENTS // max(per_sample, 1), 32, SEARCH_SAMPLES))
        x = data.take(count).astype(np.float64)
        tuner = _Tuner(graph, p, N, T, x)
        if want_search:
            alt = initial_thresholds(graph, p, _with_method(options, "max"))[0]
            for members in groups:
                _equalize(alt, caps, members)
            thetas = tuner.search(thetas, caps, groups, alt)
            notes.append(f"threshold search: logits MSE {tuner.history[0]:.6g} -> {tuner.history[-1]:.6g}")
        thetas = scale_barriers(graph, thetas)  # residual: --barrier-scale after the search, which must not undo it
        if options.bias_correction:
            bias_delta = tuner.bias_correction(thetas)
    else:
        thetas = scale_barriers(graph, thetas)
    snn = build(graph, p, thetas, N, T, bias_delta)
    snn.meta["notes"] = list(snn.meta.get("notes", [])) + notes
    snn.meta["threshold"] = options.threshold
    return snn


def initial_thresholds(graph: Graph, p: Plan, options: CompileOptions):
    """theta per ReLU output / signed site from statistics; caps = a/N for Clip(0, a)."""
    thetas: dict[str, np.ndarray] = {}
    caps: dict[str, float] = {}
    N = int(options.levels)
    relu_max = {n.output: n.attrs.get("max") for n in graph.nodes if n.op == "relu"}
    for v in list(p.relus) + list(p.signed_sites):
        stats = graph.stats.get(v)
        if stats is None:
            node = graph.producer(v)
            raise SnnccError("no calibration statistics for this activation: run the calibrate pass first",
                             node=node.name if node else v, op=node.op if node else None)
        clip = relu_max.get(v)
        thetas[v] = thresholds(stats, N, v in p.signed_sites, options, clip_max=clip)
        if clip is not None:
            caps[v] = float(clip) / N
    return thetas, caps


def _equalize(thetas: dict, caps: dict, members: list[str]) -> None:
    if len(members) < 2:
        return
    theta = np.max([thetas[m] for m in members], axis=0)
    cap = min((caps[m] for m in members if m in caps), default=None)
    if cap is not None:
        theta = np.minimum(theta, cap)
    for m in members:
        thetas[m] = theta.copy()


class _Tuner:
    """Output-aware threshold search and empirical bias correction on a calibration subset.

    At T=1 the float SNN equals the activation-quantized ANN, so candidates are scored
    with ``run_quantized`` on the float graph, resuming from the unchanged prefix; for
    T>1 each candidate is built and simulated.
    """

    def __init__(self, graph: Graph, p: Plan, levels: int, timesteps: int, x: np.ndarray):
        self.graph, self.p, self.N, self.T, self.x = graph, p, levels, timesteps, x
        syn = [n.output for n in graph.nodes if n.op in ops.WEIGHTED]
        ref = run_graph(graph, x, capture=syn, dtype=np.float64)
        self.ref_logits = ref[graph.outputs[0]]
        self.ann_mean = {v: _channel_mean(ref[v]) for v in syn}
        self.pos = {n.output: i for i, n in enumerate(graph.nodes)}
        self.history: list[float] = []

    def specs(self, thetas: dict) -> dict:
        signed = set(self.p.signed_sites)
        return {v: (t, self.N, v in signed) for v, t in thetas.items()}

    def loss_from(self, thetas: dict, delta: dict, env: dict | None, start: int) -> float:
        if self.T == 1:
            out = run_quantized(self.graph, self.specs(thetas), self.x, bias_delta=delta, env=env, start=start)
            logits = out[self.graph.outputs[0]]
        else:
            snn = build(self.graph, self.p, thetas, self.N, self.T, delta)
            logits = simulate(snn, self.x, timesteps=self.T, activity=False).logits
        return float(np.mean((logits - self.ref_logits) ** 2))

    def search(self, thetas: dict, caps: dict, groups: list[list[str]], alt: dict) -> dict:
        """Per population in graph order, keep the best of: the current thresholds, each grid
        factor times them, and the ``alt`` (max-method) thresholds."""
        best = self.loss_from(thetas, {}, None, 0)
        self.history.append(best)
        for members in groups:
            start = min(self.pos[m] for m in members)
            env = None
            if self.T == 1:  # the prefix before this population does not change
                env = run_quantized(self.graph, self.specs(thetas), self.x, stop=start)
            for trial in _candidates(thetas, caps, members, alt):
                loss = self.loss_from(trial, {}, env, start if env is not None else 0)
                if loss < best * (1 - 1e-9):
                    best, thetas = loss, trial
            self.history.append(best)
        return thetas

    def bias_correction(self, thetas: dict) -> dict[str, np.ndarray]:
        """delta[node] = -(mean SNN current - mean ANN current) per output channel, in order."""
        delta: dict[str, np.ndarray] = {}
        static = set(self.graph.inputs)
        for node in self.graph.nodes:
            if all(v in static for v in node.inputs) and node.op in ops.DATA_MOVEMENT | ops.SYNAPTIC:
                static.add(node.output)  # fed by the input only: exact, nothing to correct
        todo = [(i, n) for i, n in enumerate(self.graph.nodes) if n.op in ops.WEIGHTED and n.output not in static]
        if self.T == 1:
            specs = self.specs(thetas)
            env, at = None, 0
            for i, node in todo:
                env = run_quantized(self.graph, specs, self.x, bias_delta=delta, env=env, start=at, stop=i + 1,
                                    keep=[node.output])
                delta[node.name] = self.ann_mean[node.output] - _channel_mean(env[node.output])
                # this node's output gets its correction, so later layers see it
                env = _rerun_node(self.graph, specs, self.x, delta, env, i)
                at = i + 1
            return delta
        for _, node in todo:
            snn = build(self.graph, self.p, thetas, self.N, self.T, delta)
            got = simulate(snn, self.x, timesteps=self.T, capture=[node.name], activity=False).captured[node.name]
            delta[node.name] = self.ann_mean[node.output] - _channel_mean(got / self.T)
        return delta


def _candidates(thetas: dict, caps: dict, members: list[str], alt: dict):
    """Threshold sets with the population's thresholds scaled by each grid factor, then ``alt``'s."""
    for factor in SEARCH_GRID:
        trial = dict(thetas)
        for m in members:
            t = thetas[m] * factor
            trial[m] = np.minimum(t, caps[m]) if m in caps else t
        yield trial
    trial = dict(thetas)
    trial.update({m: alt[m] for m in members})
    yield trial


def _with_method(options: CompileOptions, method: str) -> CompileOptions:
    other = copy.copy(options)
    other.threshold = method
    return other


def _rerun_node(graph: Graph, specs: dict, x, delta: dict, env: dict, i: int) -> dict:
    """Apply node i's new bias delta to its output (and its quantized copy) in ``env``."""
    node = graph.nodes[i]
    env = dict(env)
    out = env[node.output]
    d = np.asarray(delta[node.name], np.float64)
    out = out + d.reshape((1, -1) + (1,) * (out.ndim - 2))
    env[node.output] = out
    spec = specs.get(node.output)
    if spec is not None:  # a signed site: re-quantize the corrected current
        theta, n, signed = spec
        th = theta.reshape((1, -1) + (1,) * (out.ndim - 2))
        env[node.output + "#q"] = quantize_levels(out, th, n, signed) * th
    return env


def _channel_mean(a: np.ndarray) -> np.ndarray:
    return a.mean(axis=(0,) + tuple(range(2, a.ndim)))
