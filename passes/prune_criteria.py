"""Channel-importance criteria for ``prune`` and the calibration measurements they need.

Scores are per channel of a *neuron site* (a ReLU output or a signed-neuron site,
what ``convert`` turns into a neuron with threshold theta), read at T=1, where the
SNN equals the activation-quantized ANN exactly: level z = clamp(floor(x/theta + 1/2), 0, N).

- ``dead``: the channel is zero on every calibration sample (the ANN value, so the
  level is zero at any T and any threshold), or a constant folded into the readers'
  biases: removing it is exact on that data.
- ``l1``: the L1 norm of the filter producing the channel, its input columns scaled by
  the input thresholds that ``convert`` folds into them (|W[o, c]| * theta_in[c]).
- ``svs`` (QP-SNN): per sample, the sum of the singular values (nuclear norm) of the
  channel's H x W spike-level map, averaged over the samples.
- ``mp`` (SpQuant-SNN): the mean over data and positions of the membrane before firing
  relative to the threshold, v/theta = x/theta + 1/2, clipped to [0, N].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from snncc import ops, resources
from snncc.ir import Graph
from snncc.sim.float_runtime import run_graph
from snncc.sim.neuron import quantize_levels

CRITERIA = ("dead", "l1", "svs", "mp")
DATA_CRITERIA = ("dead", "svs", "mp")
MOMENT_MAX_CHANNELS = 1024  # channel covariances up to 8 MiB each; wider values compensate by the mean only


@dataclass
class Measure:
    """What one pass over the calibration data tells ``prune``."""

    samples: int = 0
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # site value -> per-channel score
    lo: dict[str, np.ndarray] = field(default_factory=dict)  # value read by conv/dense -> elementwise min
    hi: dict[str, np.ndarray] = field(default_factory=dict)  # ... and max over the samples
    level_sum: dict[str, np.ndarray] = field(default_factory=dict)  # column value -> non-zero level rate
    mean: dict[str, np.ndarray] = field(default_factory=dict)  # column value -> elementwise mean
    # column value -> [rows, sum, sum of outer products] over samples x positions, per channel: what
    # prune's compensation regresses a removed channel on the kept ones with.  The third is the
    # diagonal only for values wider than MOMENT_MAX_CHANNELS, and a list of the rows themselves
    # (float32, as computed) when the data has fewer rows than the value has channels
    moments: dict[str, list] = field(default_factory=dict)


def measure(graph: Graph, data, options, thetas: dict[str, np.ndarray], signed: set[str],
            column_values: list[str], criterion: str) -> Measure:
    """Run the float IR over ``data``: extremes of every value read as weight columns,
    the criterion's score per site channel (svs, mp), mean levels for the SOP estimate."""
    n_levels = int(options.levels)
    pre = {n.output: n.inputs[0] for n in graph.nodes if n.op == "relu"}
    sites = sorted(thetas)
    want_pre = {pre[v] for v in sites if v in pre} if criterion == "mp" else set()
    m = Measure()
    sums = {v: np.zeros(graph.shape(v)[0]) for v in sites}
    site_theta = {v: _source_theta(graph, v, thetas) for v in column_values}
    # fewer rows (samples x positions) than channels: keep the rows, the C x C Gram matrix would
    # cost more to build and to solve with (regression's dual form)
    keep_rows = {v for v in column_values if _moment_form(graph.shape(v), int(data.n)) == "rows"}
    captured: dict[str, np.ndarray] = {}

    def on_value(name: str, arr: np.ndarray) -> None:
        if name in want_pre or name in sites:
            captured[name] = arr
        if name in site_theta:
            lo, hi = arr.min(axis=0), arr.max(axis=0)
            m.lo[name] = lo if name not in m.lo else np.minimum(m.lo[name], lo)
            m.hi[name] = hi if name not in m.hi else np.maximum(m.hi[name], hi)
            m.mean[name] = m.mean.get(name, 0.0) + arr.sum(axis=0, dtype=np.float64)
            rows = np.moveaxis(arr.reshape(len(arr), arr.shape[1], -1), 1, 2).reshape(-1, arr.shape[1])
            acc = m.moments.setdefault(name, [0, 0.0, [] if name in keep_rows else 0.0])
            if name in keep_rows:
                acc[2].append(np.array(rows))
            rows = rows.astype(np.float64)
            acc[0] += len(rows)
            acc[1] = acc[1] + rows.sum(axis=0)
            if name not in keep_rows:  # wide values: the diagonal only
                acc[2] = acc[2] + (rows.T @ rows if arr.shape[1] <= MOMENT_MAX_CHANNELS else (rows * rows).sum(axis=0))
            theta = site_theta[name]
            if theta is not None:
                z = quantize_levels(arr.astype(np.float64), _per_channel(theta, arr.ndim), n_levels, name in signed)
                m.level_sum[name] = m.level_sum.get(name, 0.0) + (z != 0).sum(axis=0)

    batch = resources.batch_size(graph, options, itemsize=4, copies=2)
    for xb, _ in data.batches(batch, progress="prune"):
        captured.clear()
        run_graph(graph, xb, on_value=on_value)
        for v in sites:
            if criterion == "svs":
                z = quantize_levels(captured[v].astype(np.float64), _per_channel(thetas[v], captured[v].ndim),
                                    n_levels, v in signed)
                sums[v] += _nuclear(z)
            elif criterion == "mp":
                x = captured[pre[v]] if v in pre else captured[v]
                u = x.astype(np.float64) / _per_channel(thetas[v], x.ndim) + 0.5
                sums[v] += np.clip(u, 0, n_levels).reshape(len(x), len(thetas[v]), -1).mean(axis=2).sum(axis=0)
        m.samples += len(xb)
    m.scores = {v: sums[v] / max(m.samples, 1) for v in sites} if criterion in ("svs", "mp") else {}
    m.level_sum = {v: s / max(m.samples, 1) for v, s in m.level_sum.items()}
    m.mean = {v: s / max(m.samples, 1) for v, s in m.mean.items()}
    return m


def _nuclear(z: np.ndarray) -> np.ndarray:
    """Per channel, the sum over the batch of the nuclear norm of each sample's level map."""
    if z.ndim == 2:  # rank-1 values: a 1 x 1 map, its singular value is |z|
        return np.abs(z).sum(axis=0)
    sv = np.linalg.svd(z, compute_uv=False)  # (B, C, min(H, W))
    return sv.sum(axis=(0, 2))


def _per_channel(theta: np.ndarray, ndim: int) -> np.ndarray:
    return np.asarray(theta, dtype=np.float64).reshape((1, -1) + (1,) * (ndim - 2))


def _source_theta(graph: Graph, value: str, thetas: dict[str, np.ndarray]) -> np.ndarray | None:
    """Per-channel thresholds of ``value``: its site's, followed back through pools, pads and
    flatten (a feature takes its channel's threshold); None when no site feeds it."""
    prod = graph.producers()
    path: list = []
    v = value
    while v not in thetas:
        node = prod.get(v)
        if node is None or len(node.inputs) != 1 or node.op not in ops.DATA_MOVEMENT:
            return None
        path.append(node)
        v = node.inputs[0]
    theta = np.asarray(thetas[v], dtype=np.float64)
    for node in reversed(path):
        if ops.row(node.op).channel_map == "block":
            shape = graph.shape(node.inputs[0])
            theta = np.repeat(theta, int(np.prod(shape[1:])) if len(shape) == 3 else 1)
        elif not ops.channel_identity(node.op):
            return None
    return theta


def l1_scores(graph: Graph, thetas: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per output channel of every conv/dense: sum |W[o, c]| * theta_in[c]."""
    out = {}
    for node in graph.nodes:
        if node.op not in ops.WEIGHTED:
            continue
        w = np.abs(np.asarray(node.params["weight"], dtype=np.float64))
        theta = _source_theta(graph, node.inputs[0], thetas)
        if theta is not None:  # group G: output o reads input channels of group o // (O / G)
            groups = int(node.attrs.get("group", 1))
            o = w.shape[0]
            th = theta.reshape(groups, -1)[np.arange(o) // (o // groups)]  # (O, C / G)
            w = w * th.reshape(th.shape + (1,) * (w.ndim - 2))
        out[node.output] = w.reshape(w.shape[0], -1).sum(axis=1)
    return out


RIDGE = 1e-3  # of the kept channels' mean variance: keeps the fits stable for collinear channels


def _moment_form(shape, samples: int) -> str:
    """How ``measure`` keeps a column value's second moments: "diagonal" (wider than
    MOMENT_MAX_CHANNELS), "rows" (fewer samples x positions than channels) or "gram"."""
    c = int(shape[0]) if len(shape) else 1
    if c > MOMENT_MAX_CHANNELS:
        return "diagonal"
    return "rows" if samples * int(np.prod(shape[1:], dtype=np.int64)) < c else "gram"


def regression(m: Measure, x: str, loose: np.ndarray, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A, c): the channels ``loose`` of ``x`` ~ A @ the channels ``kept`` + c, the ridge least-squares
    fit on the calibration data (over samples and positions):
    A = C_lk (C_kk + lam I)^-1, lam = RIDGE x the kept channels' mean variance.

    With the Gram matrix, one solve of the K x K system.  With the n centred rows Z (fewer than
    the channels), the same A from an n x n solve (the push-through identity
    (Z_k'Z_k/n + lam I)^-1 Z_k' = Z_k' (Z_k Z_k'/n + lam I)^-1).  Values wider than
    MOMENT_MAX_CHANNELS have no cross-covariance: A = 0 (the mean fold)."""
    rows, s1, s2 = m.moments[x]
    mu = np.asarray(s1) / rows
    if not len(kept) or (not isinstance(s2, list) and np.ndim(s2) == 1):
        return np.zeros((len(loose), len(kept))), mu[loose]
    if isinstance(s2, list):
        z = np.concatenate(s2).astype(np.float64) - mu
        zk, zl = z[:, kept], z[:, loose]
        lam = RIDGE * max(float(np.mean((zk * zk).sum(axis=0) / rows)), 0.0) + 1e-12
        a = (zk.T @ np.linalg.solve(zk @ zk.T / rows + lam * np.eye(len(z)), zl) / rows).T
    else:
        cov = s2 / rows - np.outer(mu, mu)
        ckk = cov[np.ix_(kept, kept)]
        lam = RIDGE * max(float(np.mean(np.diag(ckk))), 0.0) + 1e-12
        a = np.linalg.solve(ckk + lam * np.eye(len(kept)), cov[np.ix_(kept, loose)]).T
    return a, mu[loose] - a @ mu[kept]


def snn_alive(graph: Graph, ctx, data) -> dict[str, np.ndarray]:
    """Per ANN value of ``graph`` that becomes a neuron: True for each channel that emits a
    non-zero level, in the float or the integer SNN, on some calibration sample.

    ``dead`` needs it: a channel that is zero in the ANN may still fire in the SNN (its
    inputs carry quantization error), and then removing it is not exact.  It compiles the
    unpruned graph once (residual, convert, quantize) and simulates both SNNs.
    """
    from snncc.pass_context import PassContext
    from snncc.passes import convert, quantize, residual
    from snncc.sim.int_runtime import quantize_input, run_int_levels
    from snncc.sim.snn_sim import simulate

    trial = PassContext(ctx.options, calib=data)  # a provisional compile: its notes are not the compile's
    ann = residual.run(graph, trial)
    snn = convert.run(ann, trial)
    ints = quantize.run(snn, trial)
    neurons = [n for n in snn.nodes if n.op == "neuron"]
    prod = ann.producers()

    def home(value: str) -> str | None:  # a barrier ReLU (added by residual) stands for the add it follows
        while value is not None and value not in graph.values:
            node = prod.get(value)
            value = node.inputs[0] if node is not None and node.inputs else None
        return value

    alive: dict[str, np.ndarray] = {}
    batch = resources.batch_size(snn, ctx.options, copies=3)
    for xb, _ in data.batches(batch, progress="prune (dead)"):
        sim = simulate(snn, np.asarray(xb, np.float64), capture=[n.name for n in neurons], batch_size=batch,
                       activity=False)
        _, stats = run_int_levels(ints, quantize_input(ints, xb))
        for n in neurons:
            v = home(n.attrs.get("ann_value") or "")
            if v is None or tuple(graph.shape(v)) != tuple(snn.shape(n.output)):
                continue
            hit = np.abs(sim.captured[n.name]) + np.abs(stats[n.name]["levels"])
            hit = hit.reshape(len(xb), hit.shape[1], -1).max(axis=(0, 2)) > 0
            alive[v] = hit if v not in alive else alive[v] | hit
    return alive
