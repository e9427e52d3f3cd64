"""Sequential calibration (T=1): per-channel thresholds against the next layer's error, with bias correction.

``convert`` calls ``refine`` after the thresholds are set (method, search, barrier
scale).  It walks the graph once in order, running two networks side by side on a
calibration subset: the float ANN and the activation-quantized ANN (the float SNN
at T=1) with everything before the current node already refined and corrected.

- At each conv/dense (``bias_correction``): the bias is shifted by the mean error
  of its current against the ANN's, per output channel (the correction of
  ``convert._Tuner.bias_correction``, here on the refined upstream network).
- At each ReLU neuron population of one member: each channel's threshold is
  refined, one channel at a time (coordinate descent), to minimize the error of the
  values the neuron's levels feed, against the ANN's.  Those *readers* are found by
  following channel-wise data movement (pools, pad, flatten) from the neuron: a
  conv (one group) or dense layer contributes its output current (the next layer's
  pre-activation), anything else (a residual add, a concat...) the moved levels
  themselves.  The error is taken after removing each output channel's mean, which
  bias correction removes next; each reader's error is divided by its ANN value's
  variance, and the readers' errors are summed.  The quantizer's input is the
  current of the already-quantized upstream network, so each layer's thresholds
  also absorb what the layers before it got wrong.

Changing channel c's threshold changes the readers' values by a term that depends
on channel c only (the readers are linear in their input, the data movement works
per channel), so every candidate is scored exactly from the current error and that
term: a candidate is kept only when it lowers the error, so the error never rises.
Candidates are the threshold times each factor of ``GRIDS`` (one sweep per grid,
the coarse one first), capped at a/N for Clip(0, a).

The cost is about ``sum(len(g) for g in GRIDS)`` forward passes over the samples,
plus one small kernel call per channel and candidate set; ``plan_samples`` fits the
samples to a budget (compile notes say so).
"""

from __future__ import annotations

import numpy as np

from snncc import ops
from snncc.ir import Graph, Node
from snncc.passes.weight_rounding import fan_in
from snncc.sim.float_runtime import eval_node
from snncc.sim.neuron import channel_view, quantize_levels
from snncc.sim.snn_sim import run_quantized
from snncc.sim.walk import last_uses

GRIDS = ((0.5, 0.7, 0.85, 1.2, 1.45, 2.0), (0.93, 0.97, 1.03, 1.07))
SAMPLES = 256  # calibration samples, at most
# Budget in multiply-accumulates, like convert.SEARCH_BUDGET: the walk (two networks) and the
# threshold grids cost about ``passes`` forward passes over the samples, plus CHANNEL_OVERHEAD per
# channel and candidate set (its kernel calls); all that may cost BUDGET_PASSES forward passes
# over SAMPLES samples (at least BUDGET), so the samples shrink (to MIN_SAMPLES) for big models.
BUDGET = 2e10
BUDGET_PASSES = 4
CHANNEL_OVERHEAD = 200_000
MIN_SAMPLES = 16


def plan_samples(graph: Graph, available: int, *, thresholds: bool, memory_cap: int) -> tuple[int, str]:
    """(samples, note) within the budget and ``memory_cap``; 0 samples: skip the refinement."""
    from snncc.graph_stats import node_macs

    full = sum(node_macs(graph, n) + int(np.prod(graph.shape(n.output))) for n in graph.nodes)
    passes = 2 + (sum(len(g) + 1 for g in GRIDS) if thresholds else 0)
    channels = sum(int(graph.shape(n.output)[0]) for n in graph.nodes if n.op == "relu") if thresholds else 0

    def cost(s: int) -> float:
        return passes * s * full + CHANNEL_OVERHEAD * channels * len(GRIDS)

    want = min(SAMPLES, int(available))
    s = min(want, int(memory_cap))
    limit = max(BUDGET, BUDGET_PASSES * SAMPLES * full)
    while s > MIN_SAMPLES and cost(s) > limit:
        s = max(MIN_SAMPLES, s // 2)
    if cost(s) > limit or s < 1:
        return 0, f"threshold refinement skipped: {channels} channels exceed its budget"
    if s < want:
        return s, f"threshold refinement on {s} of {want} samples (its time and memory budget)"
    return s, ""


def _readers(graph: Graph, value: str, consumers: dict) -> list[list[Node]] | None:
    """Chains of nodes from ``value`` to each reader; the last node is a conv/dense, or the
    chain ends before a node that is neither (the error is then taken on the chain's value)."""
    chains: list[list[Node]] = []
    stack: list[tuple[str, list[Node]]] = [(value, [])]
    while stack:
        v, chain = stack.pop()
        for node in consumers.get(v, []):
            if node.inputs.count(v) != 1:
                chains.append(chain)  # read twice: score the value itself
            elif node.op == "dense" or (node.op == "conv" and int(node.attrs.get("group", 1)) == 1):
                chains.append(chain + [node])
            elif len(node.inputs) == 1 and node.op in ops.DATA_MOVEMENT and ops.channel_identity(node.op):
                stack.append((node.output, chain + [node]))
            elif node.op == "flatten" and any(c.op == "dense" for c in consumers.get(node.output, [])) \
                    and all(c.op == "dense" for c in consumers.get(node.output, [])):
                stack.append((node.output, chain + [node]))
            else:
                chains.append(chain)
        if v in graph.outputs:
            chains.append(chain)
    # identical chains (a value read twice by one op) count once
    out, seen = [], set()
    for c in chains:
        key = tuple(n.name for n in c)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def _run_chain(chain: list[Node], x: np.ndarray, channel: int | None = None, channels: int = 0) -> np.ndarray:
    """The chain on ``x`` without biases; with ``channel``, ``x`` is that one input channel
    of ``channels`` and each weighted node reads only its columns."""
    for node in chain:
        if node.op in ops.WEIGHTED:
            w = np.asarray(node.params["weight"], np.float64)
            if channel is not None:
                if node.op == "conv":
                    w = w[:, channel:channel + 1]
                else:
                    per = w.shape[1] // channels
                    w = w[:, channel * per:(channel + 1) * per]
            params = {"weight": w}
            x = eval_node(Node(node.name, node.op, node.inputs, node.output, node.attrs, params), [x])
        elif node.op == "flatten":
            x = x.reshape(x.shape[0], -1)
        else:
            x = eval_node(node, [x])
        x = np.asarray(x, np.float64)
    return x


class _Reader:
    """One reader's error E = ANN - quantized (bias-free), its per-channel sums, its scale."""

    def __init__(self, chain: list[Node], ref: np.ndarray, got: np.ndarray, centred: bool):
        self.chain = chain
        self.err = ref - got
        self.centred = centred
        self.axes = (0,) + tuple(range(2, self.err.ndim))
        self.n = self.err.size // self.err.shape[1]
        var = _centred_sq(ref, self.axes, self.n, centred).sum()
        self.weight = 1.0 / max(float(var), 1e-30)

    def loss(self) -> float:
        return self.weight * float(_centred_sq(self.err, self.axes, self.n, self.centred).sum())


def _centred_sq(a: np.ndarray, axes: tuple, n: int, centred: bool) -> np.ndarray:
    """Per channel (axis 1): sum of squares, minus n * mean^2 when ``centred``."""
    sq = np.sum(a * a, axis=axes)
    if centred:
        sq = sq - np.sum(a, axis=axes) ** 2 / n
    return sq


def refine_population(a: np.ndarray, ref: np.ndarray, theta: np.ndarray, levels: int, cap: float | None,
                      chains: list[list[Node]], centred: bool) -> tuple[np.ndarray, float, float]:
    """Refined thresholds of one unsigned population, and its readers' loss before and after.

    ``a``: the population's current on the quantized upstream network (B, C, ...);
    ``ref``: the ANN's ReLU output there."""
    theta = np.asarray(theta, np.float64).copy()
    c = a.shape[1]
    q = quantize_levels(a, channel_view(theta, a.ndim), levels, False) * channel_view(theta, a.ndim)
    readers = [_Reader(ch, _run_chain(ch, ref), _run_chain(ch, q), centred) for ch in chains]
    before = sum(r.loss() for r in readers)
    for grid in GRIDS:
        for ch in range(c):
            x = a[:, ch:ch + 1]
            t0 = theta[ch]
            trials = np.array([t0 * f for f in grid])
            if cap is not None:
                trials = np.minimum(trials, cap)
            trials = trials[np.abs(trials - t0) > 1e-12 * t0]
            if trials.size == 0:
                continue
            q0 = quantize_levels(x, t0, levels, False) * t0
            qs = np.stack([quantize_levels(x, t, levels, False) * t for t in trials])  # (J, B, 1, ...)
            moved = np.abs(qs - q0[None]).reshape(len(trials), -1).max(axis=1) > 0
            if not moved.any():
                continue
            j_count = len(trials)
            gain = np.zeros(j_count)  # loss change of each trial (negative: better)
            contribs = []
            for r in readers:
                # data movement may be nonlinear (max pooling): move both level maps, then subtract;
                # the weighted end is linear in the difference
                move = r.chain[:-1] if r.chain and _weighted(r.chain) else r.chain
                m0 = _run_chain(move, q0)
                d = _run_chain(move, qs.reshape((-1,) + qs.shape[2:])) - np.concatenate([m0] * j_count)
                if len(move) < len(r.chain):
                    d = _run_chain(r.chain[-1:], d, ch, c)
                d = d.reshape((j_count, -1) + d.shape[1:])  # (J, B, O, ...)
                e = r.err if r.chain and _weighted(r.chain) else r.err[:, ch:ch + 1]
                axes = (1,) + tuple(range(3, d.ndim))
                cross = np.sum(d * e[None], axis=axes)  # (J, O)
                sq = np.sum(d * d, axis=axes)
                change = sq - 2 * cross
                if r.centred:
                    se = np.sum(e, axis=(0,) + tuple(range(2, e.ndim)))
                    sd = np.sum(d, axis=axes)
                    change = change - ((se[None] - sd) ** 2 - se[None] ** 2) / r.n
                gain += r.weight * change.sum(axis=1)
                contribs.append(d)
            gain[~moved] = 0.0
            best = int(np.argmin(gain))
            if gain[best] >= -1e-12 * max(before, 1e-30):
                continue
            theta[ch] = trials[best]
            for r, d in zip(readers, contribs):
                if r.chain and _weighted(r.chain):
                    r.err = r.err - d[best]
                else:
                    r.err[:, ch:ch + 1] -= d[best]
    after = sum(r.loss() for r in readers)
    return theta, before, after


def _weighted(chain: list[Node]) -> bool:
    return chain[-1].op in ops.WEIGHTED


RIDGE = 0.3  # weight refit: pull toward the ANN's weights, relative to the mean input power
REFIT_MAX_FAN_IN = 2304  # a fan-in^2 system per layer, solved in fan-in^3: wider layers keep their weights
REFIT_FLOPS = 4e9  # rows (sample x position) x fan-in^2 per layer, at most: a seeded subset of the rows


def _windows(node: Node, x: np.ndarray) -> np.ndarray:
    """(N, OH, OW, fan-in) view-like windows of a conv's input, or (N, 1, 1, fan-in) for dense."""
    if node.op == "dense":
        return x.reshape(x.shape[0], 1, 1, -1)
    from snncc.sim.kernels import _windows, pad_nchw

    a = node.attrs
    kh, kw = node.params["weight"].shape[2:]
    win = _windows(pad_nchw(x, a["pads"]), (kh, kw), a["strides"], a["dilations"])  # N, C, OH, OW, KH, KW
    return win.transpose(0, 2, 3, 1, 4, 5)


def _rows(node: Node, x: np.ndarray, pick: np.ndarray | None = None) -> np.ndarray:
    """The input rows a conv/dense multiplies by its (O, fan-in) weight matrix: (rows, fan-in);
    ``pick``: flat (sample, position) indices of the rows wanted (default all)."""
    win = _windows(node, x)
    n, oh, ow = win.shape[:3]
    if pick is None:
        return np.ascontiguousarray(win).reshape(n * oh * ow, -1)
    i, rest = np.divmod(pick, oh * ow)
    h, w = np.divmod(rest, ow)
    return win[i, h, w].reshape(len(pick), -1)


def refit_weights(node: Node, q_in: np.ndarray, f_in: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of a conv (one group) or dense layer refitted to its quantized input.

    Least squares with a ridge toward the ANN's weights: min ||[Q 1] w' - [X 1] w||^2 +
    RIDGE * mean(diag Q'Q) * ||w' - w||^2 per output channel, where X is the ANN's input
    rows and Q the quantized network's, on at most REFIT_FLOPS / fan-in^2 rows (a seeded
    subset; at least 4 x fan-in)."""
    w = np.asarray(node.params["weight"], np.float64)
    b = np.asarray(node.params.get("bias", np.zeros(w.shape[0])), np.float64)
    fan_in = int(np.prod(w.shape[1:]))
    shape = _windows(node, q_in).shape
    total = shape[0] * shape[1] * shape[2]
    rows = max(4 * fan_in, int(REFIT_FLOPS // fan_in ** 2))
    pick = None if total <= rows else np.sort(np.random.default_rng(seed).choice(total, rows, replace=False))
    q, f = _rows(node, q_in, pick), _rows(node, f_in, pick)
    ones = np.ones((len(q), 1))
    qa, fa = np.hstack([q, ones]), np.hstack([f, ones])
    theta0 = np.hstack([w.reshape(w.shape[0], -1), b[:, None]]).T  # (fan-in + 1, O)
    g = qa.T @ qa
    lam = RIDGE * float(np.mean(np.diag(g)[:-1])) + 1e-12
    reg = np.full(g.shape[0], lam)
    reg[-1] = 1e-9 * lam  # the bias is free
    rhs = (qa.T @ fa) @ theta0 + reg[:, None] * theta0
    sol = np.linalg.solve(g + np.diag(reg), rhs)
    return sol[:-1].T.reshape(w.shape), sol[-1]


def refine(graph: Graph, p, thetas: dict, caps: dict, groups: list[list[str]], x: np.ndarray, levels: int,
           *, correct: bool, thresholds: bool = True, weights: bool = False) -> tuple[dict, dict, dict, list]:
    """(thetas, bias_delta, losses, refitted node names) after one sequential walk over ``x`` (see the module doc);
    with ``weights``, conv/dense weights and biases are refitted in ``graph`` (changed in place).

    ``losses``: population -> (readers' loss before, after) on ``x``."""
    thetas = dict(thetas)
    single = {g[0] for g in groups if len(g) == 1}
    signed = set(p.signed_sites)
    consumers = graph.consumer_map()
    last = last_uses(graph)
    specs = {v: (t, levels, v in signed) for v, t in thetas.items()}
    static = set(graph.inputs)
    for node in graph.nodes:
        if all(v in static for v in node.inputs) and node.op in ops.DATA_MOVEMENT | ops.SYNAPTIC:
            static.add(node.output)
    delta: dict[str, np.ndarray] = {}
    losses: dict[str, tuple[float, float]] = {}
    refitted: list[str] = []
    arr = np.asarray(x, np.float64)
    env_q = {graph.inputs[0]: arr}
    env_f = {graph.inputs[0]: arr}
    for i, node in enumerate(graph.nodes):
        env_f_in = env_f
        env_f = run_quantized(graph, {}, None, env=env_f, start=i, stop=i + 1, last=last)
        v = node.output
        if weights and node.op in ops.WEIGHTED and v not in static and fan_in(node) <= REFIT_MAX_FAN_IN \
                and int(node.attrs.get("group", 1)) == 1:
            src = node.inputs[0]
            w, b = refit_weights(node, env_q.get(src + "#q", env_q[src]), env_f_in[src])
            node.params = dict(node.params, weight=w, bias=b)
            refitted.append(node.name)
        if thresholds and node.op == "relu" and v in single and v in specs and v not in signed:
            chains = _readers(graph, v, consumers)
            a = env_q[node.inputs[0]]
            theta, before, after = refine_population(a, env_f[v], thetas[v], levels, caps.get(v), chains, correct)
            thetas[v] = theta
            specs[v] = (theta, levels, False)
            losses[v] = (before, after)
        env_q = run_quantized(graph, specs, None, env=env_q, start=i, stop=i + 1, last=last, bias_delta=delta)
        if correct and node.op in ops.WEIGHTED and v not in static:
            axes = (0,) + tuple(range(2, env_q[v].ndim))
            d = (env_f[v].sum(axis=axes) - env_q[v].sum(axis=axes)) / (env_q[v].size // env_q[v].shape[1])
            delta[node.name] = d
            env_q[v] = env_q[v] + channel_view(d, env_q[v].ndim)
            spec = specs.get(v)
            if spec is not None:  # a signed site: its readers take the corrected current's levels
                th = channel_view(spec[0], env_q[v].ndim)
                env_q[v + "#q"] = quantize_levels(env_q[v], th, spec[1], spec[2]) * th
    return thetas, delta, losses, refitted


def record_refit(graph: Graph, snn: Graph, names: list[str]) -> None:
    """Keep the refitted ANN weights on the SNN's nodes (``params["ann_weight"/"ann_bias"]``):
    the T=1 oracle (``snn_sim.quantized_ann_levels``) quantizes that ANN, not the imported one."""
    refit = {n.name: n for n in graph.nodes if n.name in set(names)}
    for node in snn.nodes:
        src = refit.get(node.name)
        if src is not None:
            node.params = dict(node.params, ann_weight=np.asarray(src.params["weight"], np.float64),
                               ann_bias=np.asarray(src.params["bias"], np.float64))
