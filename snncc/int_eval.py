"""Accuracy of the integer SNN (what every target runs) against the ANN and labels."""

from __future__ import annotations

import numpy as np


def integer_predictions(int_graph, x: np.ndarray) -> np.ndarray:
    """Top-1 class per sample of the integer SNN on float inputs ``x`` (one batch).

    Predictions use the real logits out_q[o] * S[o] / T, since S may differ per
    output channel (a raw argmax of out_q is not the prediction).
    """
    from snncc.sim.int_runtime import dequantize_output, quantize_input, run_int

    out_q = run_int(int_graph, quantize_input(int_graph, x))[int_graph.outputs[0]]
    return dequantize_output(int_graph, out_q).reshape(len(x), -1).argmax(1)


def integer_scores(result, options, ann_predictions=None, limit: int | None = None) -> dict:
    """Top-1 of the integer SNN, the golden model every target runs, on the calibration data.

    ``ann_predictions``: the ANN's top-1 per sample, in data order, when the caller has
    them (the fidelity report does); else the ANN runs here.  ``limit``: the first
    samples only (the report's sample budget).
    """
    from snncc.sim.float_runtime import run_graph

    g, ann = result.int_graph, result.float_graph
    n = hits_int = hits_ann = same = 0
    labelled = True
    from snncc import resources

    batch = resources.batch_size(g, options, copies=2)  # the integer SNN and the ANN
    for xb, yb in result.context.calib.batches(batch, limit=limit):
        p_int = integer_predictions(g, xb)
        if ann_predictions is not None:
            p_ann = ann_predictions[n:n + len(xb)]
        else:
            p_ann = run_graph(ann, xb)[ann.outputs[0]].reshape(len(xb), -1).argmax(1)
        n += len(xb)
        same += int((p_int == p_ann).sum())
        if yb is None:
            labelled = False
        else:
            hits_int += int((p_int == yb).sum())
            hits_ann += int((p_ann == yb).sum())
    if n == 0:
        return {}
    return {"snn_accuracy": hits_int / n if labelled else None, "agreement": same / n,
            "ann_accuracy": hits_ann / n if labelled else None}
