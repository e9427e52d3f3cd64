"""Integer reference runtime: executes the integer IR (stage "int") exactly.

This is the golden model of the numeric contract (docs/ir.md, "Integer SNN"); the C
and Verilog backends must match it bit for bit.  Values are int64 numpy arrays.
Conv and dense run through the float kernels on float arrays holding integers:
float32 where every partial sum provably stays below 2**24 (``exact_float``), else
float64, where every product and partial sum is an integer below 2**53 (range
analysis proved |I| < 2**31); so the results are exact, and ``np.rint`` only
converts the type.  The integer bias is added after, in int64.  Nothing
that range analysis proved is checked again here.

Direct encoding: the input current is the same at every timestep, so every value
that depends only on the input is computed once.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from snncc import ops
from snncc.errors import SnnccError
from snncc.ir import Graph, Node
from snncc.sim import kernels as K
from snncc.sim.float_runtime import eval_node
from snncc.sim.neuron import channel_view, neuron_step
from snncc.sim.walk import batch_input, last_uses, static_values, walk


def quantize_input(graph: Graph, x: np.ndarray) -> np.ndarray:
    """x_q = clamp(round_half_even(x / s_x), -128, 127) as int8, computed in float64."""
    _need_int(graph)
    s_x = float(graph.meta["input_scale"])
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) / s_x), -128, 127).astype(np.int8)


def dequantize_output(graph: Graph, out_q: np.ndarray, name: str | None = None,
                      timesteps: int | None = None) -> np.ndarray:
    """Real logits out_q * S[o] / T of one graph output (the first by default)."""
    name = name or graph.outputs[0]
    T = int(timesteps or graph.meta["timesteps"])
    s = np.asarray(graph.meta["output_scales"][name], dtype=np.float64)
    shape = (1, -1) + (1,) * (out_q.ndim - 2)
    return np.asarray(out_q, dtype=np.float64) * s.reshape(shape) / T


def run_int(graph: Graph, x_q: np.ndarray, *, capture: Iterable[str] = (),
            timesteps: int | None = None) -> dict[str, np.ndarray]:
    """Run the integer IR on a batch of int8 inputs (N, *shape).

    Returns the graph outputs (int32 accumulators summed over T) and every value
    named in ``capture`` (its value at the last timestep, int32).
    """
    outputs, _ = _simulate(graph, x_q, capture, timesteps, record=False)
    return outputs


def run_int_levels(graph: Graph, x_q: np.ndarray, *, capture: Iterable[str] = (),
                   timesteps: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """Like :func:`run_int`, plus spike statistics per neuron node name.

    ``stats[name]["levels"]`` is sum over t of |z| and ``stats[name]["events"]`` the
    number of timesteps with z != 0, both int64 arrays of shape (N, *shape).
    """
    return _simulate(graph, x_q, capture, timesteps, record=True)


def _need_int(graph: Graph) -> None:
    if graph.stage != "int":
        raise SnnccError(f"the integer runtime needs the integer IR (stage 'int'), got stage {graph.stage!r}")


def _simulate(graph: Graph, x_q, capture, timesteps, record: bool):
    _need_int(graph)
    T = int(timesteps if timesteps is not None else graph.meta.get("timesteps", 1))
    if T < 1:
        raise SnnccError(f"timesteps must be >= 1, got {T}")
    name = graph.inputs[0]
    x = batch_input(graph, x_q, None)
    if not np.issubdtype(x.dtype, np.integer) or x.min(initial=0) < -128 or x.max(initial=0) > 127:
        raise SnnccError(f"input {name!r} must be int8 values in [-128, 127] (use quantize_input)")
    x = x.astype(np.int64)
    capture = set(capture)
    unknown = sorted(capture - set(graph.values))
    if unknown:
        raise SnnccError(f"cannot capture unknown value(s) {', '.join(unknown)}")

    static = static_values(graph)
    env: dict[str, np.ndarray] = {name: x}
    state: dict[str, np.ndarray] = {}
    stats: dict[str, dict[str, np.ndarray]] = {}
    acc = {o: None for o in graph.outputs}
    last = last_uses(graph)
    for t in range(T):
        def step(i: int, node: Node, env: dict, t: int = t) -> np.ndarray:
            if t > 0 and node.output in static:
                return env[node.output]  # constant input current: computed at t = 0
            args = [env[v] for v in node.inputs]
            if node.op != "neuron":
                return _eval(node, args)
            z = _neuron_step(node, args[0], state)
            if record:
                s = stats.setdefault(node.name, {"levels": np.zeros(z.shape, np.int64),
                                                 "events": np.zeros(z.shape, np.int64)})
                s["levels"] += np.abs(z)
                s["events"] += z != 0
            return z

        walk(graph, env, step, keep=static | capture, last=last)
        for o in graph.outputs:
            acc[o] = env[o].copy() if acc[o] is None else acc[o] + env[o]
    result = {o: acc[o].astype(np.int32) for o in graph.outputs}
    for v in sorted(capture):
        if v not in result:
            result[v] = env[v].astype(np.int32)
    return result, stats


def _neuron_step(node: Node, current: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
    a, p = node.attrs, node.params
    theta = channel_view(p["theta"].astype(np.int64), current.ndim)
    v = state.get(node.name)
    if v is None:
        v = np.broadcast_to(channel_view(p["v_init"].astype(np.int64), current.ndim), current.shape)
    z, state[node.name] = neuron_step(v, current, theta, int(a["levels"]), bool(a.get("signed")),
                                      bits=int(a["membrane_bits"]), shift=int(a.get("membrane_shift", 0)))
    return z


def exact_float(x: np.ndarray, weight: np.ndarray):
    """The float type in which a conv/dense of integer ``x`` by integer ``weight`` is exact
    (float64 when either holds anything but whole numbers).

    Every partial sum of output o, in any summation order, is at most
    max|x| * sum_i |W[o, i]| in magnitude.  float32 holds every integer below 2**24,
    so when that bound stays below it the float32 kernel (twice as fast) gives the
    exact sums; otherwise float64, exact below 2**53 (range analysis proved |I| < 2**31).
    """
    if x.size == 0 or weight.size == 0 or not (_integral(x) and _integral(weight)):
        return np.float64
    fan = np.abs(weight.reshape(weight.shape[0], -1).astype(np.float64)).sum(axis=1).max()
    bound = float(np.abs(x).max()) * float(fan)
    return np.float32 if bound < FLOAT32_EXACT else np.float64


FLOAT32_EXACT = 1 << 24


def _integral(a: np.ndarray) -> bool:
    """Integer dtype, or finite floats that are all whole numbers."""
    if np.issubdtype(a.dtype, np.integer):
        return True
    return bool(np.isfinite(a).all() and (a == np.rint(a)).all())


def _eval(node: Node, args: list[np.ndarray]) -> np.ndarray:
    a, p, op = node.attrs, node.params, node.op
    x = args[0]
    if op in ops.WEIGHTED:
        w = p["weight"]
        dt = exact_float(x, w)
        if op == "conv":
            out = K.conv2d(x.astype(dt), w.astype(dt), None, a["strides"], a["pads"], a["dilations"], a["group"])
        else:
            out = K.dense(x.astype(dt), w.astype(dt), None)
        bias = p["bias"].astype(np.int64)
        return np.rint(out).astype(np.int64) + bias.reshape((1, -1) + (1,) * (out.ndim - 2))
    if op == "affine":
        return K.affine(x, p["scale"].astype(np.int64), p["shift"].astype(np.int64))
    if op in ops.INT_EXACT:  # integer-exact as they are: share the float runtime's code
        return eval_node(node, args)
    raise SnnccError("the integer runtime cannot execute this op", node=node.name, op=op)


def level_agreement(graph_int: Graph, graph_snn: Graph, x: np.ndarray) -> dict[str, dict[str, float]]:
    """Per neuron: fraction of positions where integer and float SNN levels agree (T=1 view).

    ``end_to_end``: both networks run on their own (the integer one on x_q, the float
    one on the dequantized x_q * s_x, so input rounding is not counted).
    ``isolated``: each integer neuron layer is fed the float SNN's levels from the
    layer before, so it measures that layer's quantization alone; end-to-end adds
    the propagation of earlier mismatches, which untrained deep nets amplify.
    Levels are compared at the last timestep (T=1: the only one).
    """
    from snncc.sim.snn_sim import simulate

    xq = quantize_input(graph_int, x)
    neurons = [n for n in graph_int.nodes if n.op == "neuron"]
    fs = simulate(graph_snn, xq * float(graph_int.meta["input_scale"]), timesteps=1,
                  capture=[n.name for n in neurons])
    e2e = run_int(graph_int, xq, capture=[n.output for n in neurons], timesteps=1)
    out: dict[str, dict[str, float]] = {}

    def step(i: int, node: Node, env: dict) -> np.ndarray:
        if node.op != "neuron":
            return _eval(node, [env[v] for v in node.inputs])
        ref = fs.captured[node.name]
        z = _neuron_step(node, env[node.inputs[0]], {})
        out[node.name] = {"isolated": float((z == ref).mean()),
                          "end_to_end": float((e2e[node.output] == ref).mean()),
                          "positions": int(ref.size)}
        return ref.astype(np.int64)  # the next layer reads the float SNN's levels

    walk(graph_int, {graph_int.inputs[0]: xq.astype(np.int64)}, step)
    return out


def pooled_agreement(per_layer: dict[str, dict[str, float]], key: str = "isolated") -> float:
    """Agreement over all neuron positions of all layers."""
    total = sum(v["positions"] for v in per_layer.values())
    return sum(v[key] * v["positions"] for v in per_layer.values()) / total if total else 1.0
