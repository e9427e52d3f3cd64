"""finetuned: put the fine-tuned integers a model carries into the integer IR.

A model written by ``snncc finetune`` holds, in its ONNX metadata, the integer weights,
biases and thresholds it was fine-tuned to (snncc/finetune/pinned.py); the frontend keeps
them in ``meta["finetune"]``.  This pass, after ``quantize``, replaces the post-training
integers with them, once it has checked that the IR has the same nodes and settings,
and proves the new ranges.  Any other model passes through unchanged.
"""

from __future__ import annotations

from snncc.finetune import pinned
from snncc.ir import Graph
from snncc.pass_context import PassContext


def run(graph: Graph, ctx: PassContext) -> Graph:
    rec = graph.meta.get("finetune")
    if rec is None:
        return graph
    g = pinned.apply(graph, rec)
    del g.meta["finetune"]
    ctx.notes.append("finetuned: the integer weights, biases and thresholds are the fine-tuned ones the model "
                     "carries (snncc finetune), not the post-training ones")
    return g
