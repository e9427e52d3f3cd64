"""Float reference runtime: executes the float IR (stage "float") with numpy.

``eval_node`` is the per-op semantics every other walker reuses for ops that only
move, pool or sum values."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from snncc.errors import SnnccError
from snncc.ir import Graph, Node
from snncc.sim import kernels as K
from snncc.sim.walk import batch_input, walk


def eval_node(node: Node, args: list[np.ndarray]) -> np.ndarray:
    """Evaluate one float-stage node on batch-major inputs."""
    a, p, op = node.attrs, node.params, node.op
    x = args[0]
    if op == "conv":
        return K.conv2d(x, p["weight"], p.get("bias"), a["strides"], a["pads"], a["dilations"], a["group"])
    if op == "dense":
        return K.dense(x, p["weight"], p.get("bias"))
    if op == "affine":
        return K.affine(x, p["scale"], p["shift"])
    if op == "relu":
        return K.relu(x, a.get("max"))
    if op == "add":
        out = args[0]
        for other in args[1:]:
            out = out + other
        return out
    if op == "maxpool":
        return K.maxpool(x, a["kernel"], a["strides"], a["pads"], a.get("dilations", (1, 1)))
    if op == "global_maxpool":
        return K.global_maxpool(x)
    if op == "avgpool":
        return K.avgpool(x, a["kernel"], a["strides"], a["pads"], a["count_include_pad"])
    if op == "sumpool":
        return K.sumpool(x, a["kernel"], a["strides"], a["pads"])
    if op == "flatten":
        return x.reshape(x.shape[0], -1)
    if op == "reshape":
        return x.reshape((x.shape[0],) + tuple(a["shape"]))
    if op == "concat":
        return np.concatenate(args, axis=a["axis"] + 1)
    if op == "pad":
        return K.pad_nchw(x, a["pads"])
    if op == "channel_shuffle":
        return K.channel_shuffle(x, a["groups"])
    if op == "softmax":
        return K.softmax(x, a["axis"] + 1)
    raise SnnccError("the float runtime cannot execute this op", node=node.name, op=op)


def run_graph(graph: Graph, x: np.ndarray | dict[str, np.ndarray], *,
              capture: Iterable[str] | None = None,
              on_value: Callable[[str, np.ndarray], None] | None = None,
              dtype=np.float32) -> dict[str, np.ndarray]:
    """Run the float IR on a batch.

    Returns the graph outputs plus any value named in ``capture`` (use
    ``capture="all"`` semantics by passing ``graph.values``).  ``on_value`` is called
    with every value as it is produced, so callers can stream statistics without
    keeping activations alive.
    """
    feeds = x if isinstance(x, dict) else {graph.inputs[0]: x}
    env: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        if name not in feeds:
            raise SnnccError(f"missing input {name!r}")
        env[name] = batch_input(graph, feeds[name], dtype, name)
        if on_value:
            on_value(name, env[name])
    keep = set(graph.outputs) | set(capture or ())

    def step(i: int, node: Node, env: dict) -> np.ndarray:
        return eval_node(node, [env[v] for v in node.inputs]).astype(dtype, copy=False)

    walk(graph, env, step, keep=keep, on_value=on_value)
    return {k: env[k] for k in env if k in keep}


def run(graph: Graph, x: np.ndarray) -> np.ndarray | list[np.ndarray]:
    """Public convenience: run and return the output (or list of outputs)."""
    res = run_graph(graph, x)
    outs = [res[name] for name in graph.outputs]
    return outs[0] if len(outs) == 1 else outs
