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

from snncc import ops, resources
from snncc.errors import SnnccError
from snncc.ir import Graph
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.passes import channel_refine
from snncc.passes.convert_build import build
from snncc.passes.convert_plan import Plan, plan, populations
from snncc.passes.convert_thresholds import thresholds
from snncc.passes.residual import scale_barriers
from snncc.sim.float_runtime import run_graph
from snncc.sim.neuron import quantize_levels
from snncc.sim.snn_sim import run_quantized, simulate
from snncc.sim.walk import last_uses

SEARCH_SAMPLES = 256  # calibration samples used by threshold search and bias correction, at most
SEARCH_ELEMENTS = 20_000_000  # ... and fewer for big models: samples x activations per sample
SEARCH_GRID = (0.6, 0.75, 0.9, 1.1, 1.3, 1.6)  # factors tried on each population's thresholds
# The search's cost model, in multiply-accumulates: a node costs its MACs plus its output
# elements per sample, plus NODE_OVERHEAD for the fixed cost of one numpy kernel call.
# The search may cost SEARCH_PASSES forward passes over its samples (at least
# SEARCH_BUDGET): linear in the model's size.  Over that, it scores candidates on a
# horizon of nodes (T=1, all candidates stacked in one run), then with fewer samples,
# and is skipped (with a note) when even SEARCH_MIN_SAMPLES samples and a
# HORIZON_MIN-node horizon do not fit.
SEARCH_BUDGET = 2e10
SEARCH_PASSES = 6
NODE_OVERHEAD = 1_000_000
HORIZON_MIN = 2
HORIZON_WANT = 16
SEARCH_MIN_SAMPLES = 8


def run(graph: Graph, ctx: PassContext) -> Graph:
    options = ctx.options
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
    data = ctx.calib
    notes = []  # after those of the build
    bias_delta: dict[str, np.ndarray] = {}
    refitted: list[str] = []
    want_search = options.threshold_search == "output"
    want_refine = getattr(options, "threshold_refine", "none") != "none"
    if (want_search or options.bias_correction or want_refine) and data is None:
        notes.append("threshold search / bias correction skipped: no calibration data")
        thetas = scale_barriers(graph, thetas)
    elif want_search or options.bias_correction or want_refine:
        range_precheck(graph, p, thetas, N, T, options)
        count = resources.sample_budget(graph, data.n, elements=SEARCH_ELEMENTS, cap=SEARCH_SAMPLES)
        x = data.take(count)  # float32 as loaded; every run casts its batch to float64 (exact)
        batch = resources.batch_size(graph, options, itemsize=8, copies=2,  # quantized values and the ANN's
                                     reserved=x.nbytes)
        tuner = _Tuner(graph, p, N, T, x, batch)
        if want_search:
            samples, horizon, why = plan_search(graph, groups, len(x), T)
            if why:
                notes.append(why)
            # The search keeps every batch's quantized prefix alive at once, so its samples, not
            # its batch, must fit the budget: one kept copy each, plus a batch's trial run.
            fit = resources.batch_size(graph, options, itemsize=8, copies=3, cap=samples,
                                       reserved=x.nbytes) if samples else 0
            if fit < samples:
                notes.append(f"threshold search on {fit} of {samples} samples (--max-memory {options.max_memory})")
                samples = fit
            if samples:
                searcher = tuner if samples == len(x) and horizon is None else _Tuner(
                    graph, p, N, T, x[:samples], max(1, batch // (len(SEARCH_GRID) + 2)), horizon)
                alt = initial_thresholds(graph, p, _with_method(options, "max"))[0]
                for members in groups:
                    _equalize(alt, caps, members)
                thetas = searcher.search(thetas, caps, groups, alt)
                notes.append(f"threshold search: logits MSE {searcher.history[0]:.6g} -> "
                             f"{searcher.history[-1]:.6g}")
        thetas = scale_barriers(graph, thetas)  # residual: --barrier-scale after the search, which must not undo it
        refined = _refine(graph, p, thetas, caps, groups, x, options, notes)
        if refined is not None:
            thetas, bias_delta, graph, refitted = refined
        elif options.bias_correction:
            bias_delta = tuner.bias_correction(thetas)
    else:
        thetas = scale_barriers(graph, thetas)
    snn = build(graph, p, thetas, N, T, bias_delta, notes=ctx.notes)
    channel_refine.record_refit(graph, snn, refitted)
    ctx.notes.extend(notes)
    snn.meta["threshold"] = options.threshold
    return snn


def _refine(graph: Graph, p: Plan, thetas: dict, caps: dict, groups: list[list[str]], x: np.ndarray,
            options: CompileOptions, notes: list[str]):
    """(thetas, bias_delta, graph, refitted names) from ``--threshold-refine`` (passes/channel_refine.py),
    or None where it does not run (none, T > 1, over budget: the plain bias correction then runs).
    With weights, ``graph`` is a copy holding the refitted weights (the caller's stays the ANN)."""
    mode = getattr(options, "threshold_refine", "none")
    if mode == "none":
        return None
    if int(options.timesteps) != 1:
        notes.append("threshold refinement skipped: it tunes the T=1 network only")
        return None
    cap = resources.batch_size(graph, options, itemsize=8, copies=4, cap=len(x), reserved=x.nbytes)
    samples, why = channel_refine.plan_samples(graph, len(x), thresholds=mode in ("channel", "all"), memory_cap=cap)
    if why:
        notes.append(why)
    if not samples:
        return None
    if mode in ("weights", "all"):
        graph = graph.copy()  # the refit changes weights; the ANN stays the reference
    thetas, delta, losses, refitted = channel_refine.refine(
        graph, p, thetas, caps, groups, x[:samples], int(options.levels), correct=bool(options.bias_correction),
        thresholds=mode in ("channel", "all"), weights=mode in ("weights", "all"))
    if losses:
        before = sum(b for b, _ in losses.values())
        after = sum(a for _, a in losses.values())
        notes.append(f"channel refinement: {len(losses)} population(s), next-layer error {before:.6g} -> {after:.6g}")
    if refitted:
        notes.append(f"weight refit: {len(refitted)} layer(s) refitted to their quantized inputs")
    return thetas, delta if options.bias_correction else {}, graph, refitted


def plan_search(graph: Graph, groups: list[list[str]], samples: int, T: int) -> tuple[int, int | None, str]:
    """(samples, horizon or None, note) for the threshold search within SEARCH_BUDGET (see above).

    The exact search scores each of a population's candidates from the population
    to the logits: its cost grows with populations x depth.  The horizon bounds that
    to populations x horizon.  Samples 0 means: skip the search.
    """
    from snncc.graph_stats import node_macs

    n = len(graph.nodes)
    cum = np.zeros(n + 1)
    cum[1:] = np.cumsum([node_macs(graph, nd) + int(np.prod(graph.shape(nd.output))) for nd in graph.nodes])
    pos = {nd.output: i for i, nd in enumerate(graph.nodes)}
    starts = np.array([min(pos[m] for m in g) for g in groups], dtype=np.int64)
    tries = len(SEARCH_GRID) + 2  # the candidates and the baseline

    def full(s: int) -> float:
        return T * (s * cum[n] + NODE_OVERHEAD * n)

    def cost(s: int, horizon: int | None) -> float:
        """Exact (horizon None): each candidate runs to the logits.  Horizon: the candidates
        run stacked, one kernel call per node for all of them."""
        if horizon is None:
            return tries * T * float(np.sum(s * (cum[n] - cum[starts]) + NODE_OVERHEAD * (n - starts))) + full(s)
        stop = np.minimum(starts + horizon, n)
        return float(np.sum(tries * s * (cum[stop] - cum[starts]) + NODE_OVERHEAD * (stop - starts))) + 3 * full(s)

    def fits(s: int, horizon: int | None) -> bool:
        return cost(s, horizon) <= max(SEARCH_BUDGET, SEARCH_PASSES * full(s))

    if fits(samples, None):
        return samples, None, ""
    if T != 1:  # no horizon: each candidate is simulated end to end
        s = samples
        while s > SEARCH_MIN_SAMPLES and not fits(s, None):
            s = max(SEARCH_MIN_SAMPLES, s // 2)
        if not fits(s, None):
            return 0, None, (f"threshold search skipped: {len(groups)} populations x {n} nodes x T={T} "
                             "exceed its budget")
        return s, None, f"threshold search on {s} samples (its budget)"
    s = samples
    while True:
        ok = [h for h in range(HORIZON_MIN, HORIZON_WANT + 1) if fits(s, h)]
        if (ok and ok[-1] >= HORIZON_WANT) or s <= SEARCH_MIN_SAMPLES:
            break
        s = max(SEARCH_MIN_SAMPLES, s // 2)
    if not ok:
        return 0, None, (f"threshold search skipped: {len(groups)} populations over {n} nodes exceed its "
                         "budget even on a short horizon")
    h = ok[-1]
    return s, h, (f"threshold search scored each population on the values {h} nodes downstream "
                  f"(not the logits), on {s} samples: the full search exceeds its budget")


def range_precheck(graph: Graph, p: Plan, thetas: dict, levels: int, timesteps: int,
                   options: CompileOptions) -> None:
    """Run range analysis on a quick quantization before the slow data-driven tuning.

    The quick quantization uses the initial thresholds, the ``max`` weight quantizer
    (the coarsest step, so the smallest integer weights of any quantizer) and nearest
    rounding.  The tuning moves thresholds by bounded factors and biases by mean
    errors, so a configuration that cannot fit int32 here (too many levels or
    timesteps for the membrane or the output accumulator) is refused in seconds
    rather than after the search.
    """
    from snncc.passes import quantize

    quick = copy.copy(options)
    quick.weight_quantizer, quick.weight_rounding = "max", "nearest"
    quick.bias_correction, quick.step_search = False, False
    snn = build(graph, p, scale_barriers(graph, dict(thetas)), levels, timesteps, {})
    try:
        quantize.run(snn, PassContext(quick))  # no data; its notes are dropped
    except SnnccError as exc:
        if "range analysis" not in str(exc):
            return  # anything else surfaces where it belongs, in quantize
        raise SnnccError(f"{exc} (checked before the threshold search and bias correction)") from None


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
    T>1 each candidate is built and simulated.  The samples go in batches that fit
    the memory budget; a loss is summed over the batches.

    ``horizon`` (T=1 only, see ``plan_search``): when scoring every candidate through
    to the logits would cost more than SEARCH_BUDGET, a population's candidates are
    scored on the values live ``horizon`` nodes after it, against the float ANN's
    (squared error over each value, relative to its energy, summed), instead of the
    logits.  The search then costs O(populations x horizon), linear in depth.
    """

    def __init__(self, graph: Graph, p: Plan, levels: int, timesteps: int, x: np.ndarray, batch: int,
                 horizon: int | None = None):
        self.graph, self.p, self.N, self.T = graph, p, levels, timesteps
        self.batches = [x[i:i + batch] for i in range(0, len(x), batch)]
        self.count = len(x)
        self.horizon = horizon
        self.last = last_uses(graph)
        syn = {n.output for n in graph.nodes if n.op in ops.WEIGHTED}
        sums: dict[str, np.ndarray] = {}

        def on_value(name: str, arr: np.ndarray) -> None:
            if name in syn:
                sums[name] = sums.get(name, 0.0) + _channel_sum(arr)

        self.ref_logits = [run_graph(graph, xb, on_value=on_value, dtype=np.float64)[graph.outputs[0]]
                           for xb in self.batches]
        self.ann_mean = {v: sums[v] / _per_channel(graph, v, self.count) for v in syn}
        self.pos = {n.output: i for i, n in enumerate(graph.nodes)}
        self.history: list[float] = []

    def specs(self, thetas: dict) -> dict:
        signed = set(self.p.signed_sites)
        return {v: (t, self.N, v in signed) for v, t in thetas.items()}

    def advance(self, specs: dict, envs: list | None, start: int, stop: int, **kw) -> list:
        """Each batch's live values after node ``stop - 1``, resumed from ``envs`` at ``start``."""
        return [run_quantized(self.graph, specs, xb, env=None if envs is None else envs[i], start=start,
                              stop=stop, last=self.last, **kw) for i, xb in enumerate(self.batches)]

    def logits_loss(self, specs: dict, delta: dict, envs: list | None, start: int) -> float:
        """Mean squared error of the logits against the ANN's."""
        errs, size = [], 0
        for i, xb in enumerate(self.batches):
            if self.T == 1:
                out = run_quantized(self.graph, specs, xb, bias_delta=delta, env=None if envs is None else envs[i],
                                    start=start if envs is not None else 0, last=self.last)
                logits = out[self.graph.outputs[0]]
            else:
                thetas = {v: t for v, (t, _, _) in specs.items()}
                snn = build(self.graph, self.p, thetas, self.N, self.T, delta)
                logits = simulate(snn, xb, timesteps=self.T, activity=False).logits
            d = logits - self.ref_logits[i]
            errs.append(np.mean(d ** 2) if len(self.batches) == 1 else np.sum(d ** 2))
            size += d.size
        return float(errs[0]) if len(errs) == 1 else float(np.sum(errs)) / size

    def probe_loss(self, specs: dict, envs: list, start: int, stop: int, ann: list) -> float:
        """Summed relative squared error of the values live after node ``stop - 1`` against the ANN's."""
        num: dict[str, float] = {}
        den: dict[str, float] = {}
        for i, xb in enumerate(self.batches):
            out = run_quantized(self.graph, specs, xb, env=envs[i], start=start, stop=stop, last=self.last)
            for k, ref in ann[i].items():
                if k in out and k not in self.graph.inputs:
                    num[k] = num.get(k, 0.0) + float(np.sum((out[k] - ref) ** 2))
                    den[k] = den.get(k, 0.0) + float(np.sum(ref ** 2))
        return float(sum(num[k] / max(den[k], 1e-30) for k in sorted(num)))

    def stacked_losses(self, specs: dict, envs: list, start: int, stop: int, ann: list | None, value: str,
                       trials: list[dict]) -> list[float]:
        """Losses of the current thresholds of the neuron at node ``start`` (first) and of each
        trial's, in one run: the candidates' levels are stacked along the batch axis, so each
        downstream node is one kernel call for all of them (horizon mode, T=1)."""
        theta0, n_lv, signed = specs[value]
        thetas = [theta0] + [t[value] for t in trials]
        c = len(thetas)
        rest = {k: v for k, v in specs.items() if k != value}
        num, den = [{} for _ in range(c)], {}
        sq = np.zeros(c)
        size = 0
        for i in range(len(self.batches)):
            env = run_quantized(self.graph, rest, None, env=envs[i], start=start, stop=start + 1, last=self.last,
                                keep=[value])
            out = env[value]
            levels = [quantize_levels(out, _view(t, out.ndim), n_lv, signed) * _view(t, out.ndim) for t in thetas]
            stacked = {k: np.concatenate([a] * c) for k, a in env.items() if k != value}
            if self.graph.nodes[start].op == "relu":
                stacked[value] = np.concatenate(levels)
            else:  # a signed site keeps its current; its readers take the levels
                stacked[value] = np.concatenate([out] * c)
                stacked[value + "#q"] = np.concatenate(levels)
            res = run_quantized(self.graph, specs, None, env=stacked, start=start + 1, stop=stop, last=self.last)
            b = len(out)
            if stop < len(self.graph.nodes):
                for k, ref in ann[i].items():
                    if k in res and k not in self.graph.inputs:
                        d = res[k].reshape((c, b) + ref.shape[1:]) - ref[None]
                        for j in range(c):
                            num[j][k] = num[j].get(k, 0.0) + float(np.sum(d[j] ** 2))
                        den[k] = den.get(k, 0.0) + float(np.sum(ref ** 2))
            else:
                d = res[self.graph.outputs[0]].reshape((c, b) + self.ref_logits[i].shape[1:]) - self.ref_logits[i][None]
                sq += (d ** 2).reshape(c, -1).sum(axis=1)
                size += self.ref_logits[i].size
        if stop < len(self.graph.nodes):
            return [float(sum(num[j][k] / max(den[k], 1e-30) for k in sorted(num[j]))) for j in range(c)]
        return [float(v) / size for v in sq]

    def search(self, thetas: dict, caps: dict, groups: list[list[str]], alt: dict) -> dict:
        """Per population in graph order, keep the best of: the current thresholds, each grid
        factor times them, and the ``alt`` (max-method) thresholds."""
        specs = self.specs(thetas)
        best = self.logits_loss(specs, {}, None, 0)
        self.history.append(best)
        n = len(self.graph.nodes)
        envs, at = None, 0  # every batch's quantized prefix, resumed population by population
        ann, ann_at = None, 0  # the ANN's live values at the probe (horizon mode)
        for members in groups:
            start = min(self.pos[m] for m in members)
            if self.T == 1:  # the prefix before this population does not change
                if start < at:  # populations are not always in graph order (signed sites come last)
                    envs, at = None, 0
                envs, at = self.advance(specs, envs, at, start), start
            stop = n if self.horizon is None or self.T != 1 else min(n, start + self.horizon)
            if stop < n:
                if stop < ann_at:
                    ann, ann_at = None, 0
                ann, ann_at = self.advance({}, ann, ann_at, stop), stop
                best = self.probe_loss(specs, envs, start, stop, ann)
            elif self.horizon is not None and self.T == 1:
                best = self.logits_loss(specs, {}, envs, start)
            if self.horizon is not None and self.T == 1 and len(members) == 1 and self.pos[members[0]] == start:
                trials = list(_candidates(thetas, caps, members, alt))
                losses = self.stacked_losses(specs, envs, start, stop, ann, members[0], trials)
                best = losses[0]  # the current thresholds
                for trial, loss in zip(trials, losses[1:]):
                    if loss < best * (1 - 1e-9):
                        best = loss
                        thetas[members[0]] = trial[members[0]]
                specs[members[0]] = (thetas[members[0]],) + specs[members[0]][1:]
                continue
            for trial in _candidates(thetas, caps, members, alt):
                saved = {m: specs[m] for m in members}
                specs.update({m: (trial[m],) + saved[m][1:] for m in members})
                if stop < n:
                    loss = self.probe_loss(specs, envs, start, stop, ann)
                else:
                    loss = self.logits_loss(specs, {}, envs if self.T == 1 else None, start)
                if loss < best * (1 - 1e-9):
                    best = loss
                    thetas.update({m: trial[m] for m in members})
                else:
                    specs.update(saved)
            if self.horizon is None or self.T != 1:
                self.history.append(best)
        if self.horizon is not None and self.T == 1:
            self.history.append(self.logits_loss(specs, {}, None, 0))
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
            envs, at = None, 0
            for i, node in todo:
                envs = self.advance(specs, envs, at, i + 1, bias_delta=delta, keep=[node.output])
                got = sum(_channel_sum(env[node.output]) for env in envs)
                delta[node.name] = self.ann_mean[node.output] - got / _per_channel(self.graph, node.output,
                                                                                   self.count)
                # this node's output gets its correction, so later layers see it
                envs = [_rerun_node(self.graph, specs, delta, env, i) for env in envs]
                at = i + 1
            return delta
        for _, node in todo:
            snn = build(self.graph, self.p, thetas, self.N, self.T, delta)
            got = sum(_channel_sum(simulate(snn, xb, timesteps=self.T, capture=[node.name], activity=False)
                                   .captured[node.name] / self.T) for xb in self.batches)
            delta[node.name] = self.ann_mean[node.output] - got / _per_channel(self.graph, node.output, self.count)
        return delta


def _candidates(thetas: dict, caps: dict, members: list[str], alt: dict):
    """The population's thresholds scaled by each grid factor, then ``alt``'s (members only)."""
    base = {m: thetas[m] for m in members}  # a snapshot: the caller may accept a trial meanwhile
    for factor in SEARCH_GRID:
        trial = {}
        for m in members:
            t = base[m] * factor
            trial[m] = np.minimum(t, caps[m]) if m in caps else t
        yield trial
    yield {m: alt[m] for m in members}


def _with_method(options: CompileOptions, method: str) -> CompileOptions:
    other = copy.copy(options)
    other.threshold = method
    return other


def _rerun_node(graph: Graph, specs: dict, delta: dict, env: dict, i: int) -> dict:
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


def _view(theta: np.ndarray, ndim: int) -> np.ndarray:
    return np.asarray(theta).reshape((1, -1) + (1,) * (ndim - 2))


def _channel_sum(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float64).sum(axis=(0,) + tuple(range(2, a.ndim)))


def _per_channel(graph: Graph, value: str, samples: int) -> int:
    """Elements per channel of ``value`` over ``samples`` samples (the divisor of a channel mean)."""
    shape = graph.shape(value)
    return samples * int(np.prod(shape[1:], dtype=np.int64))
