"""prune: structured channel pruning of the calibrated float IR (before residual/convert/quantize).

Channels are *removed*, not masked: the conv/dense rows that produce a channel, the
columns that read it, the per-channel affine parameters and the calibration
statistics all shrink, so every later pass, the emitted code and the report see the
smaller network.  What goes together comes from ``prune_groups`` (dependency groups
from the op table's channel map); how important a group is from ``prune_criteria``.

- importance of a group: the **sum** over its scored members of the member's score
  divided by the mean score of that member's layer (so layers of different scale
  compare).  Sum, not max: removing a group removes every member's contribution, so
  the loss adds up over branches; with max, one strong branch of an ``add`` join
  would keep a channel that all other branches could lose.  Global budgets compare
  groups of different families by the sum divided by the number of scored members.
- how much: ``--prune R`` a fraction of every family (floor(R * groups)),
  ``--prune-layer NAME=R`` per layer (its family), ``--prune-target-params`` /
  ``--prune-target-flash`` a global budget met by removing the globally least
  important groups first.  Every family keeps at least one group; groups that touch
  the graph input or outputs (the last synaptic layer) are never removed.
- ``dead`` removes the groups that are exact on the calibration data (zero, or a
  constant folded into the readers' biases), at most R per family when R is given.
- a removed channel that is constant on the data is folded into its readers' biases
  (where the fold is exact: dense, or conv without padding and a spatially uniform
  channel); any other removed channel is replaced by its least-squares estimate from the
  kept channels (``_fold``: weights into the kept columns, the intercept into the bias
  as the padding-aware mean current).
- re-calibration: statistics of every value downstream of a layer that lost non-exact
  input columns are collected again on the pruned graph; ``convert`` then selects
  thresholds, searches them and corrects biases on the pruned network.

The pass records ``graph.meta["prune"]`` (report.json's ``prune`` section).
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

from snncc import ops
from snncc.errors import SnnccError
from snncc.ir import Graph, freeze
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.passes import prune_groups
from snncc.passes.calibrate import collect_stats
from snncc.passes.convert import initial_thresholds
from snncc.passes.convert_plan import calibrated_values, plan
from snncc.passes.prune_criteria import DATA_CRITERIA, l1_scores, measure, regression, snn_alive
from snncc.passes.quantize import layer_names, resolve_layer_bits
from snncc.passes.residual import value_graph
from snncc.sim.kernels import conv2d

HIST_BINS = 10


def active(options: CompileOptions) -> bool:
    """Whether the options ask for any pruning (ratio 0 and no budget: the identity)."""
    return bool(float(options.prune) > 0 or any(float(r) > 0 for r in options.prune_layers.values())
                or int(options.prune_target_params) > 0 or int(options.prune_target_flash) > 0
                or options.prune_criterion == "dead")


def calibration(ctx: PassContext):
    """The calibration data, or None; the one place this pass reads it."""
    data = ctx.calib
    return None if data is None or getattr(data, "source", None) == "random" else data


def run(graph: Graph, ctx: PassContext) -> Graph:
    options = ctx.options
    if graph.stage != "float":
        raise SnnccError(f"pass prune needs the calibrated float IR, got stage {graph.stage!r}")
    options.validate()
    if not active(options):
        return graph
    crit = options.prune_criterion
    data = calibration(ctx)
    if crit in DATA_CRITERIA and data is None:
        raise SnnccError(f": criterion {crit!r} needs calibration data (--calib FILE, not 'random'); "
                         "l1 needs none", option="prune_criterion")
    g = graph.copy()
    groups = prune_groups.build(g)
    ratios = _family_ratios(g, groups, options)
    p = plan(g)
    thetas, _ = initial_thresholds(g, p, options)
    cols = sorted(groups.columns)
    m = measure(g, data, options, thetas, set(p.signed_sites), cols, crit) if data is not None else None
    alive = snn_alive(g, ctx, data) if crit == "dead" else {}
    exact = [_exact(g, groups, gr, m, alive) for gr in groups.groups]
    raw = _raw_scores(g, crit, thetas, m)
    importance, scored = _importance(groups, raw)
    sizes = _Sizes(g, options, thetas)
    before = sizes.totals()
    removed, floor_ = _select(groups, ratios, importance, scored, exact, sizes, options)
    report = {"criterion": crit, "group_importance": "sum", "ratio": float(options.prune),
              "layer_ratios": dict(options.prune_layers), "target_params": int(options.prune_target_params),
              "target_flash_bytes": int(options.prune_target_flash), "multiple": int(options.prune_multiple),
              **({"flash_floor_estimate": floor_} if floor_ is not None else {}),
              "groups": {"prunable": len(groups.groups), "removed": len(removed),
                         "exact": int(sum(exact[i] for i in removed))},
              "exact": all(exact[i] for i in removed),
              "histograms": _histograms(g, groups, importance, removed, crit)}
    shapes_before = _layer_channels(g)
    # quantize's step search sizes its grid by these (so exact removal changes nothing there)
    report["weight_shapes_before"] = {n.name: [int(n.params["weight"].shape[0]),
                                               int(np.prod(n.params["weight"].shape[1:]))]
                                      for n in g.nodes if n.op in ops.WEIGHTED}
    sops_before = _sops(g, groups, m, None)
    keep = _keep(g, groups, removed)
    folded, changed = _apply(g, groups, keep, m)
    sops_after = _sops(g, groups, m, keep)
    recal = _recalibrate(g, ctx, data, changed)
    after_channels = _layer_channels(g)
    report.update({
        "folded_constants": folded,
        "recalibrated_values": recal,
        "params": {"before": before[0], "after": _Sizes(g, options, _sliced(thetas, keep)).totals()[0]},
        "flash_bytes_estimate": {"before": before[1], "after": _Sizes(g, options, _sliced(thetas, keep)).totals()[1]},
        "sops_estimate": {"before": sops_before, "after": sops_after},
        "layers": [{"name": n, "op": op, "out_channels_before": b, "out_channels_after": after_channels[n][1]}
                   for n, (op, b) in shapes_before.items()],
        "note": ("dead/constant channels are exact on the calibration data: removing them leaves the "
                 "outputs unchanged there" if report["exact"] else
                 "removal is not exact: the statistics of the affected layers were collected again "
                 "and convert re-selects thresholds and bias corrections on the pruned network"),
    })
    g.meta["prune"] = report
    ctx.note(
        f"prune ({crit}): removed {len(removed)} of {len(groups.groups)} channel groups, "
        f"params {before[0]} -> {report['params']['after']}")
    return g


# --- how much ----------------------------------------------------------------------------

def _family_ratios(g: Graph, groups: prune_groups.Groups, options: CompileOptions) -> dict:
    """Ratio per family: --prune R, overridden by --prune-layer NAME=R (the largest if two name one family)."""
    ratios = {fam: float(options.prune) for fam in groups.families}
    weighted = [n for n in g.nodes if n.op in ops.WEIGHTED]
    named: dict = {}
    for key, r in sorted(options.prune_layers.items()):
        node = next((n for n in weighted if key in layer_names(n)), None)
        if node is None:
            names = "; ".join(repr(layer_names(n)[0]) for n in weighted[:4])
            raise SnnccError(f": unknown layer {key!r}; give a conv/dense layer's IR name, ONNX name or "
                             f"torch path, e.g. {names}", option="prune_layers", key=key)
        fam = groups.family_of(node.output)
        if fam is None:
            raise SnnccError(f": layer {key!r} cannot be pruned: its output channels reach a graph output, "
                             "the graph input or an op that cannot be pruned through", option="prune_layers",
                             key=key)
        named[fam] = max(named.get(fam, 0.0), float(r))
    ratios.update(named)
    return ratios


def _select(groups, ratios, importance, scored, exact, sizes, options) -> tuple[list[int], int | None]:
    """The groups to remove; and with a budget, the smallest size reachable (in its unit).

    With ``--prune-multiple K`` a family that loses groups keeps a multiple of K of them
    (never fewer than K, all of them when it has K or fewer): the count asked for is
    rounded down to that, so a ratio removes at most what it says."""
    k = int(options.prune_multiple)
    order = {fam: sorted(idx, key=lambda i: (importance[i], i)) for fam, idx in groups.families.items()}
    if options.prune_criterion == "dead":
        out = []
        for fam, idx in order.items():
            cand = [i for i in idx if exact[i]][:len(idx) - 1]
            r = ratios[fam]
            cand = cand[:math.floor(r * len(idx))] if r > 0 else cand
            out += cand[:_rounded(len(cand), len(idx), k)]
        return sorted(out), None
    budget = int(options.prune_target_params) or int(options.prune_target_flash)
    if not budget:
        out = []
        for fam, idx in order.items():
            out += idx[:_rounded(min(math.floor(ratios[fam] * len(idx)), len(idx) - 1), len(idx), k)]
        return sorted(out), None
    which = 0 if int(options.prune_target_params) else 1
    option = "prune_target_params" if which == 0 else "prune_target_flash"
    floor_ = sizes.copy()
    for idx in order.values():
        for i in idx[:_rounded(len(idx) - 1, len(idx), k)]:
            floor_.remove(groups.groups[i])
    minimum = floor_.totals()[which]
    if budget < minimum:
        what = "parameters" if which == 0 else "bytes of estimated flash"
        keeping = "one channel" if k == 1 else f"{k} channels (--prune-multiple)"
        raise SnnccError(f": {budget} is below the smallest reachable size, {minimum} {what} (every prunable "
                         f"layer keeping {keeping}, the first and last layers whole)", option=option)
    left = {fam: len(idx) for fam, idx in order.items()}
    fam_of = {i: fam for fam, idx in order.items() for i in idx}
    glob = sorted(range(len(groups.groups)), key=lambda i: (importance[i] / max(scored[i], 1), i))
    out: list[int] = []
    taken: set[int] = set()
    for i in glob:
        if sizes.totals()[which] <= budget:
            break
        fam = fam_of[i]
        if left[fam] <= k or i in taken:
            continue  # the family is at its smallest, or i went with an earlier step of K
        # i, and the family's next least important groups down to the next multiple of K
        step = left[fam] % k or k
        more = [j for j in order[fam] if j != i and j not in taken][:step - 1] if step > 1 else []
        for j in [i] + more:
            sizes.remove(groups.groups[j])
            out.append(j)
            taken.add(j)
        left[fam] -= step
    return sorted(out), minimum


def _rounded(n: int, total: int, k: int) -> int:
    """How many of ``total`` groups to remove when ``n`` are asked for and the rest must be a
    multiple of ``k`` (or all of them): the kept count rounded up, as Torch-Pruning's round_to."""
    if n <= 0:
        return 0
    kept = min(total, -(-(total - n) // k) * k)
    return total - kept


# --- scores ------------------------------------------------------------------------------

def _raw_scores(g: Graph, crit: str, thetas: dict, m) -> dict[str, np.ndarray]:
    if crit == "l1":
        return l1_scores(g, thetas)
    if crit in ("svs", "mp"):
        return m.scores
    # dead: the largest |value| a channel takes on the data (0 = dead), per column value
    out = {}
    for v in m.lo:
        a = np.maximum(np.abs(m.lo[v]), np.abs(m.hi[v]))
        out[v] = a.reshape(len(a), -1).max(axis=1)
    return out


def _importance(groups: prune_groups.Groups, raw: dict[str, np.ndarray]) -> tuple[list[float], list[int]]:
    """Per group: sum of its members' layer-normalized scores, and how many members were scored."""
    norm = {v: (s / s.mean() if s.mean() > 0 else np.zeros_like(s)) for v, s in raw.items() if len(s)}
    imp, count = [], []
    for gr in groups.groups:
        vals = [float(norm[v][c]) for v, c in gr.members if v in norm]
        imp.append(float(sum(vals)))
        count.append(len(vals))
    return imp, count


def _exact(g: Graph, groups: prune_groups.Groups, gr: prune_groups.Group, m, alive: dict) -> bool:
    """Removing ``gr`` leaves every reader's current unchanged on the calibration data
    (and, with ``alive`` from the SNNs, no removed neuron ever fires there)."""
    if m is None:
        return False
    if any(v in alive and alive[v][c] for v, c in gr.members):
        return False
    for v, c in gr.members:
        if v not in groups.columns:
            continue
        lo, hi = m.lo[v][c], m.hi[v][c]
        if not np.array_equal(lo, hi):
            return False
        if not np.any(lo):
            continue
        for name in groups.columns[v]:
            node = g.node(name)
            if node.op == "conv" and (any(node.attrs["pads"]) or np.ptp(lo) != 0):
                return False
    return True


# --- the edit ----------------------------------------------------------------------------

def _keep(g: Graph, groups: prune_groups.Groups, removed: list[int]) -> dict[str, np.ndarray]:
    drop: dict[str, set[int]] = {}
    for i in removed:
        for v, c in groups.groups[i].members:
            drop.setdefault(v, set()).add(c)
    return {v: np.array([c for c in range(g.shape(v)[0]) if c not in d], dtype=np.int64) for v, d in drop.items()}


def _apply(g: Graph, groups: prune_groups.Groups, keep: dict[str, np.ndarray], m) -> tuple[int, list[str]]:
    """Remove the channels not in ``keep``; fold constant ones into readers' biases.

    Returns (constants folded, readers whose input lost non-constant channels)."""
    folded, changed = 0, []
    fits: dict = {}  # (value, removed channels) -> the regression: one solve per value, not per reader
    for node in g.nodes:
        p = node.params
        x = node.inputs[0] if node.inputs else None
        if node.op in ops.WEIGHTED:
            w = np.asarray(p["weight"])
            if x in keep and not ops.depthwise(node):
                gone = np.setdiff1d(np.arange(w.shape[1]), keep[x])
                n, exact = _fold(node, gone, keep[x], m, x, g.shape(x), fits)
                folded += n
                if not exact:
                    changed.append(node.name)
                w = np.asarray(p["weight"])[:, keep[x]]
            if node.output in keep:
                w = w[keep[node.output]]
                p["bias"] = np.asarray(p["bias"])[keep[node.output]]
            if ops.depthwise(node) and x in keep:
                node.attrs["group"] = int(len(keep[x]))
            p["weight"] = w
        elif node.op == "affine" and node.output in keep:
            for key in ("scale", "shift"):
                arr = np.asarray(p[key])
                if arr.ndim and arr.shape[0] > 1:
                    p[key] = arr[keep[node.output]]
        elif node.op == "reshape" and node.output in keep:
            node.attrs["shape"] = (int(len(keep[node.output])),)
    for node in g.nodes:
        if node.output in keep or any(v in keep for v in node.inputs):
            g.values[node.output].shape = tuple(ops.infer_shape(g, node))
    for v, k in keep.items():
        if v in g.stats:
            g.stats[v] = _slice_stats(g.stats[v], k)
    return folded, changed


def _fold(node, gone: np.ndarray, kept: np.ndarray, m, x: str, shape, fits: dict) -> tuple[int, bool]:
    """Compensate ``node`` (a reader of ``x``) for its removed input channels ``gone``.

    A channel constant on the data folds into the bias exactly (dense; conv without padding
    and a spatially uniform channel).  Any other removed channel is replaced by its least-
    squares estimate from the kept channels of ``x`` on the calibration data,
    x_r ~ A_r . x_kept + c_r (ridge regression over samples x positions, a 1x1 map that
    commutes with the reader's conv): A moves into the kept columns of the weight, c into
    the bias.  For a dense reader this is the least-squares fit of the reader's output
    (what channel-pruning reconstruction solves); with no moments it is the mean fold
    (A = 0).  ``fits`` caches the regressions of ``x`` for its other readers.  Returns (constants
    folded, whether every removed channel was zero or exact)."""
    if not len(gone):
        return 0, True
    if m is None or x not in m.lo:
        return 0, False
    lo, hi, mean = m.lo[x], m.hi[x], m.mean[x]
    w = np.asarray(node.params["weight"], dtype=np.float64).copy()
    bias = np.asarray(node.params["bias"], dtype=np.float64).copy()
    n, loose = 0, []
    for c in gone:
        const = np.array_equal(lo[c], hi[c])
        if const and not np.any(lo[c]):
            continue
        uniform = node.op == "dense" or (not any(node.attrs["pads"]) and np.ptp(lo[c]) == 0)
        if const and uniform:
            n += 1
            bias += w[:, c].reshape(len(w), -1).sum(axis=1) * float(np.mean(mean[c]))
        else:
            loose.append(int(c))
    if loose:
        key = (x, tuple(loose))
        if key not in fits:
            fits[key] = regression(m, x, np.array(loose), kept)
        a, c0 = fits[key]
        w_r = w[:, loose]
        if np.any(a):  # W[:, k] += W[:, r] A, as one BLAS product over the kernel taps
            w[:, kept] += np.moveaxis(np.tensordot(w_r, a, axes=([1], [0])), -1, 1)
        bias += _constant_current(node, w_r, c0, shape)
        node.params["weight"] = w.astype(np.asarray(node.params["weight"]).dtype)
    node.params["bias"] = bias.astype(np.asarray(node.params["bias"]).dtype)
    return n, not loose


def _constant_current(node, w_r: np.ndarray, c0: np.ndarray, shape) -> np.ndarray:
    """The per-output-channel bias that best stands for input channels held at the constants
    ``c0`` (weights ``w_r``): for a conv, the mean over output positions of their current, which
    near a zero-padded border reads fewer taps than sum(W) (on a 4x4 map, most positions)."""
    if node.op == "dense":
        return w_r.reshape(len(w_r), len(c0), -1).sum(axis=2) @ c0
    # the channels are constant maps: sum_r c0[r] W[:, r] is one kernel on a map of ones
    w1 = np.tensordot(w_r, c0, axes=([1], [0]))[:, None]  # (O, 1, kh, kw)
    ones = np.ones((1, 1) + tuple(shape[1:]))
    a = node.attrs
    cur = conv2d(ones, w1, np.zeros(len(w_r)), a["strides"], a["pads"], a["dilations"], 1)
    return cur.reshape(len(w_r), -1).mean(axis=1)


def _slice_stats(st: dict, k: np.ndarray) -> dict:
    st = dict(st)
    c = int(st["shape"][0]) if st.get("shape") else None
    for key, val in list(st.items()):
        if isinstance(val, np.ndarray) and val.ndim and val.shape[0] == c:
            st[key] = freeze(val[k])
    st["shape"] = [len(k)] + list(st["shape"][1:])
    if "max" in st:
        st["layer_max"] = float(np.max(st["max"]))
    if "absmax" in st:
        st["layer_absmax"] = float(np.max(st["absmax"]))
    return st


def _recalibrate(g: Graph, ctx: PassContext, data, changed: list[str]) -> list[str]:
    """Collect the statistics again for every calibrated value downstream of a changed reader."""
    if not changed or data is None:
        return []
    vg = value_graph(g)
    down: set[str] = set()
    for name in changed:
        out = g.node(name).output
        down |= {out} | nx.descendants(vg, out)
    names = [v for v in calibrated_values(g) if v in down]
    if names:
        g.stats.update(collect_stats(g, ctx, data, names))
    return names


def _sliced(thetas: dict, keep: dict) -> dict:
    return {v: (np.asarray(t)[keep[v]] if v in keep else t) for v, t in thetas.items()}


# --- sizes and report --------------------------------------------------------------------

class _Sizes:
    """Parameters and estimated C flash bytes as channels are removed (for budgets and the report).

    Flash estimate: weights packed at 2, 4 or 8 bits (what the C backend packs a bit width
    into), int32 biases, one int32 threshold per neuron channel, two int32 per affine channel.
    """

    def __init__(self, g: Graph, options: CompileOptions, thetas: dict, _copy: dict | None = None):
        if _copy is not None:
            self.__dict__.update(_copy)
            self.kept = dict(_copy["kept"])
            self._total = list(_copy["_total"])
            return
        self.g = g
        self.kept = {v: int(val.shape[0]) if len(val.shape) else 1 for v, val in g.values.items()}
        doms = {v: "current" for v in g.values}
        doms.update({v: "input" for v in g.inputs})
        doms.update({n.output: "level" for n in g.nodes if n.op == "relu"})
        self.bits = resolve_layer_bits(g, options.weight_bits, options.layer_bits, doms)
        self.nodes = [n for n in g.nodes if n.op in ops.WEIGHTED or n.op == "affine"]
        self.sites = sorted(thetas)
        self.per_value: dict[str, list] = {}
        for n in self.nodes:
            for v in {n.inputs[0], n.output}:
                self.per_value.setdefault(v, []).append(n)
        self._total = self._full()

    def copy(self) -> _Sizes:
        return _Sizes(None, None, None, _copy=self.__dict__)

    def _node(self, n) -> tuple[int, int]:
        o, i = self.kept[n.output], self.kept[n.inputs[0]]
        if n.op == "affine":
            return 2 * o, 8 * o
        w = n.params["weight"]
        k = int(np.prod(w.shape[2:])) if w.ndim > 2 else 1
        per_out = k if ops.depthwise(n) else (i // int(n.attrs.get("group", 1))) * k
        weights = o * per_out
        bits = self.bits[n.name]
        pack = 2 if bits <= 2 else 4 if bits <= 4 else 8
        return weights + o, (weights * pack + 7) // 8 + 4 * o

    def _full(self) -> list[int]:
        tot = [0, 0]
        for n in self.nodes:
            a, b = self._node(n)
            tot[0] += a
            tot[1] += b
        tot[1] += sum(4 * self.kept[v] for v in self.sites)
        return tot

    def totals(self) -> tuple[int, int]:
        return int(self._total[0]), int(self._total[1])

    def remove(self, gr: prune_groups.Group) -> None:
        touched = {id(n): n for v in gr.values for n in self.per_value.get(v, [])}
        for n in touched.values():
            a, b = self._node(n)
            self._total[0] -= a
            self._total[1] -= b
        for v, _ in gr.members:
            self.kept[v] -= 1
            if v in self.sites:
                self._total[1] -= 4
        for n in touched.values():
            a, b = self._node(n)
            self._total[0] += a
            self._total[1] += b


def _layer_channels(g: Graph) -> dict[str, tuple[str, int]]:
    return {n.name: (n.op, int(g.shape(n.output)[0])) for n in g.nodes if n.op in ops.WEIGHTED}


def _sops(g: Graph, groups: prune_groups.Groups, m, keep: dict | None) -> float | None:
    """Synaptic operations per inference estimated from the pre-pruning activity at T=1:
    sum over conv/dense of the input levels times each input's fan-out."""
    if m is None:
        return None
    total = 0.0
    for x, readers in groups.columns.items():
        if x not in m.level_sum:
            continue
        act = m.level_sum[x]
        if keep is not None and x in keep:
            act = act[keep[x]]
        for name in readers:
            node = g.node(name)
            o = g.shape(node.output)[0]  # after _apply when keep is given
            if node.op == "dense":
                fan = o
            else:
                kh, kw = node.params["weight"].shape[2:]
                sh, sw = node.attrs["strides"]
                fan = o * kh * kw / (sh * sw)
            total += float(act.sum()) * fan
    return total


def _histograms(g: Graph, groups: prune_groups.Groups, importance: list[float], removed: list[int],
                crit: str) -> list[dict]:
    """Per family (named by its first conv/dense layer): a histogram of group importance."""
    gone = set(removed)
    producers = {n.output: n.name for n in g.nodes if n.op in ops.WEIGHTED}
    out = []
    for fam, idx in groups.families.items():
        layers = [producers[v] for v in sorted(fam, key=lambda v: list(g.values).index(v)) if v in producers]
        vals = np.array([importance[i] for i in idx])
        lo, hi = float(vals.min()), float(vals.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, HIST_BINS + 1)
        counts = np.histogram(vals, edges)[0]
        rem = np.histogram([importance[i] for i in idx if i in gone], edges)[0]
        out.append({"layer": layers[0] if layers else sorted(fam)[0], "layers": layers, "criterion": crit,
                    "groups": len(idx), "removed": int(sum(i in gone for i in idx)),
                    "edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
                    "removed_counts": [int(c) for c in rem]})
    return out
