"""``snncc finetune``: compile the model, fine-tune its integer SNN, write the tuned ONNX."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from snncc.compiler import build_snn
from snncc.errors import SnnccError
from snncc.finetune import pinned
from snncc.finetune.run import Outcome, Request, check_output_model, check_request, tune
from snncc.frontend.onnx_import import load_onnx


def finetune_model(model: Path | str, output: Path | str, req: Request, *, options, calib,
                   echo: Callable[[str], None] = print) -> tuple[object, Outcome]:
    """``snncc finetune``: compile ``model``, fine-tune it, write the tuned ONNX to ``output``."""
    model, output = Path(model), Path(output)
    options.validate()
    check_output_model(output, model, [req.data, req.val, calib if calib != "random" else None])
    graph = load_onnx(model)
    shape = tuple(graph.values[graph.inputs[0]].shape)
    if "finetune" in graph.meta:
        echo("note: the model already carries fine-tuned parameters; fine-tuning starts from them")
    train, val = check_request(req, shape)
    result = build_snn(model, options, calib, echo=echo)
    if result.int_graph.stage != "int":
        raise SnnccError("the pipeline did not reach the integer SNN")
    out = tune(result, options, req, train, val, echo=echo)
    pinned.write_onnx(model, output, result.int_graph,
                      extra={"options": options.to_dict(), "epochs": int(req.epochs), "lr": float(req.lr),
                             "batch": int(req.batch), "distill": bool(req.distill),
                             "data": Path(req.data).name})
    return result, out
