"""Range analysis of the integer SNN: prove every accumulator fits int32.

Interval arithmetic per element of every value (per-sample shape), starting from the
input range [-128, 127]:

- conv/dense/affine: [sum W+ * lo + W- * hi + b, sum W+ * hi + W- * lo + b]; zero
  padding contributes 0 exactly, because the interval arrays go through the same
  kernels as the data.
- add sums intervals, sumpool sums windows; max pools and data movement are
  monotone, so they map both ends.
- neuron: the membrane is iterated as an interval for t = 1..T (stopping early at a
  fixed point): pre-saturation v + I, saturation to B bits, the level
  z = clamp(floor(v / theta), lo, N) (monotone in v), the subtractive reset, the
  optional 2**k floor shift.
- graph outputs: the accumulator over T steps.

Partial sums matter too (C accumulates term by term), so the int32 check uses the
intervals widened to contain 0: every prefix of the sum then lies within the
widened total.  Results go to ``node.attrs``: ``range`` = [lo, hi] of the output
(per step), on neurons ``v_range`` = [lo, hi] of v + I before saturation and
``v_state_range`` = [lo, hi] of the membrane kept between steps, and on the
producers of graph outputs ``acc_range`` = [lo, hi] of the T-step accumulator.
"""

from __future__ import annotations

import numpy as np

from snncc import ops
from snncc.errors import SnnccError
from snncc.ir import Graph, Node
from snncc.sim import kernels as K
from snncc.sim.float_runtime import eval_node
from snncc.sim.int_runtime import exact_float
from snncc.sim.neuron import floor_to_grid, levels, saturate
from snncc.sim.walk import walk

LIMIT = 2 ** 31
INPUT_RANGE = (-128, 127)


def analyze(graph: Graph) -> dict[str, dict]:
    """Annotate every node of the integer IR with proven bounds; return them by node name.

    Raises SnnccError naming the layer if any accumulator can leave int32.
    """
    T = int(graph.meta.get("timesteps", 1))
    env: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in graph.inputs:
        shape = graph.shape(name)
        env[name] = (np.full(shape, float(INPUT_RANGE[0])), np.full(shape, float(INPUT_RANGE[1])))
    result: dict[str, dict] = {}

    def step(i: int, node: Node, env: dict) -> tuple[np.ndarray, np.ndarray]:
        info: dict[str, list[int]] = {}
        lo, hi = _node_interval(node, [env[v] for v in node.inputs], info, T)
        info["range"] = [int(lo.min()), int(hi.max())]
        _check(node, info["range"], "the output")
        result[node.name] = info
        return lo, hi

    walk(graph, env, step)
    for name in graph.outputs:
        node = graph.producer(name)
        lo, hi = env[name]
        acc = [int(T * min(lo.min(), 0)), int(T * max(hi.max(), 0))]
        _check(node, acc, f"the output accumulator over T={T} timesteps",
               fix="use fewer timesteps, fewer weight bits or a smaller fan-in in this layer")
        result[node.name]["acc_range"] = [int(T * lo.min()), int(T * hi.max())]
    for node in graph.nodes:
        node.attrs.update(result[node.name])
    return result


def _node_interval(node: Node, ins, info: dict, T: int) -> tuple[np.ndarray, np.ndarray]:
    op, p, a = node.op, node.params, node.attrs
    if op in ops.SYNAPTIC:
        lo, hi = ins[0]
        bias = np.asarray(p["shift" if op == "affine" else "bias"], dtype=np.float64)
        tight, wide = _synaptic(node, lo, hi, bias)
        _check(node, [wide[0].min(), wide[1].max()], "the accumulator")
        return tight
    if op == "add":
        lo = sum(x[0] for x in ins)
        hi = sum(x[1] for x in ins)
        _check(node, [sum(np.minimum(x[0], 0) for x in ins).min(),
                      sum(np.maximum(x[1], 0) for x in ins).max()], "the sum")
        return lo, hi
    if op == "sumpool":
        lo, hi = ins[0]
        out = K.sumpool(np.stack([lo, hi, np.minimum(lo, 0), np.maximum(hi, 0)]), a["kernel"], a["strides"],
                        a["pads"])
        _check(node, [out[2].min(), out[3].max()], "the window sum")
        return out[0], out[1]
    if op in ops.MOVES or op in ops.MAX_POOLS:  # monotone: the bounds map through the op itself
        lo = eval_node(node, [x[0][None] for x in ins])[0]
        hi = eval_node(node, [x[1][None] for x in ins])[0]
        return lo, hi
    if op == "neuron":
        return _neuron(node, ins[0], info, T)
    raise SnnccError("range analysis cannot handle this op in the integer IR", node=node.name, op=op)


def _synaptic(node: Node, lo, hi, bias):
    """(tight, wide) output intervals: of [lo, hi], and of [min(lo, 0), max(hi, 0)] with the bias
    widened to contain 0 (every partial sum).  A conv/dense computes all four ends in one call:
    integer bounds, exact sums."""
    p, a = node.params, node.attrs
    wlo, whi = np.minimum(lo, 0), np.maximum(hi, 0)
    if node.op == "affine":
        s = np.asarray(p["scale"], dtype=np.float64)
        shape = (-1,) + (1,) * (lo.ndim - 1)
        sp, sn = np.maximum(s, 0).reshape(shape), np.minimum(s, 0).reshape(shape)
        ends = [(sp * lo + sn * hi, sp * hi + sn * lo), (sp * wlo + sn * whi, sp * whi + sn * wlo)]
        b = bias.reshape(shape)
    else:
        x = np.stack([lo, hi, wlo, whi])  # integer bounds: the kernels are exact in float32 where it holds them
        dt = exact_float(x, np.asarray(p["weight"]))
        w = np.asarray(p["weight"], dtype=dt)
        o = w.shape[0]
        both = np.concatenate([np.maximum(w, 0), np.minimum(w, 0)])  # W+ then W- as 2*O outputs
        if node.op == "conv":
            out = K.conv2d(x.astype(dt), both, None, a["strides"], a["pads"], a["dilations"],
                           a["group"]) if int(a["group"]) == 1 else np.concatenate(
                [K.conv2d(x.astype(dt), wt, None, a["strides"], a["pads"], a["dilations"], a["group"])
                 for wt in (both[:o], both[o:])], axis=1)
            b = bias.reshape(-1, 1, 1)
        else:
            out = K.dense(x.astype(dt), both, None)
            b = bias
        out = out.astype(np.float64)
        pos, neg = out[:, :o], out[:, o:]
        ends = [(pos[0] + neg[1], pos[1] + neg[0]), (pos[2] + neg[3], pos[3] + neg[2])]
    (tlo, thi), (wl, wh) = ends
    return (tlo + b, thi + b), (wl + np.minimum(b, 0), wh + np.maximum(b, 0))


def _neuron(node: Node, current, info: dict, T: int):
    """Interval iteration of the membrane over T steps (until a fixed point)."""
    ilo, ihi = current
    a, p = node.attrs, node.params
    n_hi = int(a["levels"])
    signed = bool(a.get("signed"))
    n_lo = n_hi if signed else 0
    B = int(a.get("membrane_bits", 32))
    k = int(a.get("membrane_shift", 0))
    shape = (-1,) + (1,) * (ilo.ndim - 1)
    th = np.asarray(p["theta"], dtype=np.float64).reshape(shape)
    v0 = np.broadcast_to(np.asarray(p["v_init"], dtype=np.float64).reshape(shape), ilo.shape)
    vlo, vhi = v0.copy(), v0.copy()
    pre = [np.inf, -np.inf]
    state = [float(v0.min()), float(v0.max())]
    zlo_all = np.full(ilo.shape, np.inf)
    zhi_all = np.full(ilo.shape, -np.inf)
    for _ in range(T):
        plo, phi = vlo + ilo, vhi + ihi
        pre = [min(pre[0], float(plo.min())), max(pre[1], float(phi.max()))]
        slo, shi = saturate(plo, B), saturate(phi, B)
        zlo_all = np.minimum(zlo_all, levels(slo, th, n_hi, signed))
        zhi_all = np.maximum(zhi_all, levels(shi, th, n_hi, signed))
        # Image of [slo, shi] under the subtractive reset v - z*theta (see module doc).
        nlo = np.where(slo < -n_lo * th, slo + n_lo * th, np.maximum(0, slo - n_hi * th))
        nhi = np.where(shi < -n_lo * th, shi + n_lo * th,
                       np.maximum(np.minimum(th - 1, shi + n_lo * th), shi - n_hi * th))
        nlo, nhi = floor_to_grid(nlo, k), floor_to_grid(nhi, k)
        state = [min(state[0], float(nlo.min())), max(state[1], float(nhi.max()))]
        if np.array_equal(nlo, vlo) and np.array_equal(nhi, vhi):
            break  # fixed point: every later step gives the same intervals
        vlo, vhi = nlo, nhi
    info["v_range"] = [int(pre[0]), int(pre[1])]
    info["v_state_range"] = [int(state[0]), int(state[1])]
    _check(node, info["v_range"], "the membrane before saturation (v + I)",
           fix=f"use a smaller --membrane-bits than {B}, fewer weight bits or a smaller fan-in upstream")
    return zlo_all, zhi_all


def _check(node: Node, bounds, what: str, fix: str | None = None) -> None:
    worst = max(abs(float(bounds[0])), abs(float(bounds[1])))
    if worst >= LIMIT:
        fix = fix or "use fewer weight bits (--weight-bits, or --layer-bits for this layer) or a smaller fan-in"
        raise SnnccError(f"range analysis: {what} can reach {int(worst)}, which does not fit int32 "
                         f"(limit 2^31); {fix}", node=node.name, op=node.op)
