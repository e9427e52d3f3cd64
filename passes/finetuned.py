"""finetuned: put the fine-tuned integers a model carries into the integer IR.

A model written by ``snncc finetune`` holds, in its ONNX metadata, the integer weights,
biases and thresholds it was fine-tuned to (snncc/finetune/pinned.py); the frontend keeps
them in ``meta["finetune"]``.  This pass, after ``quantize``, replaces the post-training
integers with them, once it has checked that the IR has the same nodes and settings,
and proves the new ranges.  Any other model passes through unchanged.
"""

from __future__ import annotations

import numpy as np

from snncc.errors import SnnccError
from snncc.finetune import pinned
from snncc.ir import Graph
from snncc.pass_context import PassContext
from snncc.passes import range_analysis


def run(graph: Graph, ctx: PassContext) -> Graph:
    rec = graph.meta.get("finetune")
    if rec is None:
        return graph
    g = apply(graph, rec)
    del g.meta["finetune"]
    ctx.notes.append("finetuned: the integer weights, biases and thresholds are the fine-tuned ones the model "
                     "carries (snncc finetune), not the post-training ones")
    return g


def apply(graph: Graph, rec: dict) -> Graph:
    """``graph`` (stage int) with the pinned parameters; SnnccError naming the first node that differs."""
    if graph.stage != "int":
        raise SnnccError(f"fine-tuned parameters apply to the integer IR, got stage {graph.stage!r}")
    hint = ("; compile it with the options and calibration data it was fine-tuned with "
            "(snncc finetune prints them), or compile the original model")
    want_t = int(graph.meta.get("timesteps", 1))
    if int(rec.get("timesteps", 0)) != want_t:
        raise SnnccError(f"the model was fine-tuned at T={rec.get('timesteps')}, this compile has T={want_t}{hint}",
                         option="timesteps")
    g = graph.copy()
    nodes = dict(rec["nodes"])
    for node in g.nodes:
        if not node.params:
            continue
        saved = nodes.pop(node.name, None)
        if not isinstance(saved, dict) or saved.get("op") != node.op:
            raise SnnccError(f"the model's fine-tuned parameters do not describe this node{hint}",
                             node=node.name, op=node.op)
        for k in pinned.CHECKED_ATTRS:
            if k in node.attrs and saved.get("attrs", {}).get(k) != node.attrs[k]:
                raise SnnccError(f"the model was fine-tuned with {k}={saved.get('attrs', {}).get(k)!r}, "
                                 f"this compile gives {node.attrs[k]!r}{hint}", node=node.name, op=node.op)
        params = {k: pinned.decode(v, node.name) for k, v in saved.get("params", {}).items()}
        for k, old in node.params.items():
            new = params.get(k)
            if new is None or new.shape != np.shape(old):
                got = "missing" if new is None else f"shape {list(new.shape)}"
                raise SnnccError(f"fine-tuned parameter {k!r} is {got}, this compile has shape "
                                 f"{list(np.shape(old))}{hint}", node=node.name, op=node.op)
        node.params = {k: params[k] for k in node.params}
    if nodes:
        name = sorted(nodes)[0]
        raise SnnccError(f"the model's fine-tuned parameters name node {name!r}, which this compile does not "
                         f"have{hint}")
    g.meta.update({k: v for k, v in rec.get("meta", {}).items() if k in pinned.META_KEYS})
    range_analysis.analyze(g)
    return g
