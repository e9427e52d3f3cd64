"""Fine-tuning a compiled result: the request, its checks, and the run.

``check_request`` refuses bad input before any slow work (epochs, torch, data without
labels or of the wrong shape); ``tune`` fine-tunes a compiled result in place (its
integer IR becomes the tuned one).  ``snncc compile --finetune-epochs`` calls both;
``snncc finetune`` is snncc/finetune/command.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snncc.errors import SnnccError
from snncc.finetune import need_torch


@dataclass
class Request:
    data: Path | str
    epochs: int
    val: Path | str | None = None
    lr: float = 2e-3
    batch: int = 64
    distill: bool = False
    activity: float = 0.0  # the spike-activity term's weight (snncc/finetune/train.py)
    threads: int = 1  # torch threads: the twin's ops are small, and more threads mostly wait on each other
    option: str = "data"  # the option that named the data, for messages ("finetune_data" on compile)
    epochs_option: str = "epochs"


@dataclass
class Outcome:
    history: list[dict] = field(default_factory=list)
    before: dict = field(default_factory=dict)  # accuracies of the compiled (post-training) SNN
    after: dict = field(default_factory=dict)  # ... and of the fine-tuned one
    seconds: float = 0.0


def check_request(req: Request, input_shape: tuple[int, ...]):
    """The training (and validation) data, checked; SnnccError for any bad input."""
    if isinstance(req.epochs, bool) or not isinstance(req.epochs, (int, np.integer)) or req.epochs <= 0:
        raise SnnccError(f"must be an integer >= 1, got {req.epochs!r}", option=req.epochs_option)
    if not (isinstance(req.lr, (int, float)) and 0 < req.lr < float("inf")):
        raise SnnccError(f"must be a finite number > 0, got {req.lr!r}", option="lr")
    if isinstance(req.batch, bool) or not isinstance(req.batch, int) or req.batch < 1:
        raise SnnccError(f"must be an integer >= 1, got {req.batch!r}", option="batch_size")
    if isinstance(req.threads, bool) or not isinstance(req.threads, int) or req.threads < 1:
        raise SnnccError(f"must be an integer >= 1, got {req.threads!r}", option="threads")
    need_torch()
    train = _labelled(req.data, input_shape, req.option)
    val = _labelled(req.val, input_shape, "val") if req.val is not None else None
    return train, val


def _labelled(path, input_shape, option: str):
    from snncc.calib_data import load_calib

    data = load_calib(str(path), input_shape, option=option)
    if not data.has_labels:
        raise SnnccError(f": {Path(path).name!r} holds no labels; fine-tuning needs integer class labels "
                         "in an array 'y' next to the inputs 'x'", option=option)
    return data


def tune(result, options, req: Request, train, val, *, echo: Callable[[str], None] = print) -> Outcome:
    """Fine-tune ``result.int_graph`` (a CompileResult) on ``train``; replace it with the tuned IR."""
    import time

    torch = need_torch()
    torch.set_num_threads(int(req.threads))
    from snncc.finetune.train import Schedule, accuracy, fit
    from snncc.finetune.twin import Twin
    from snncc.sim.int_runtime import quantize_input

    t0 = time.perf_counter()
    graph = result.int_graph
    x, y = _all(train)
    x_q = quantize_input(graph, x)
    val_q = None
    if val is not None:
        xv, yv = _all(val)
        val_q = (quantize_input(graph, xv), yv)
    teacher = None
    if req.distill:
        teacher = _teacher_logits(result.float_graph, x, options)
        if teacher.ndim != 2:
            raise SnnccError(f"--distill needs (N, classes) logits from the ANN, got shape {list(teacher.shape)}",
                             option="distill")
    n_out = int(np.prod(graph.values[graph.outputs[0]].shape))
    if len(graph.values[graph.outputs[0]].shape) != 1 or y.min() < 0 or y.max() >= n_out:
        raise SnnccError(f": labels must be class indices in 0..{n_out - 1} of the model's output "
                         f"{list(graph.values[graph.outputs[0]].shape)}, got {int(y.min())}..{int(y.max())}",
                         option=req.option)
    twin = Twin(graph, learn_gamma=options.weight_quantizer == "rescaw")
    out = Outcome()
    out.before["train"] = accuracy(twin, x_q, y)
    if val_q is not None:
        out.before["val"] = accuracy(twin, *val_q)
    sched = Schedule(epochs=int(req.epochs), lr=float(req.lr), batch=int(req.batch), seed=int(options.seed),
                     distill=req.distill, activity=float(req.activity))
    out.history = fit(twin, x_q, y, sched, teacher=teacher, val=val_q, echo=echo)
    result.int_graph = twin.to_graph()
    result.context.notes.append(f"finetune: {req.epochs} epoch(s) on {len(x)} labelled samples "
                                "(the integer weights, biases and thresholds are fine-tuned)")
    out.after["train"] = accuracy(twin, x_q, y)
    if val_q is not None:
        out.after["val"] = accuracy(twin, *val_q)
    out.seconds = time.perf_counter() - t0
    return out


def _teacher_logits(ann, x: np.ndarray, options) -> np.ndarray:
    """The float ANN's outputs on ``x``, in batches that fit --max-memory (a whole training set at once does not)."""
    from snncc import resources
    from snncc.sim.float_runtime import run_graph

    batch = resources.batch_size(ann, options)
    return np.concatenate([np.asarray(run_graph(ann, x[i:i + batch])[ann.outputs[0]], np.float64)
                           for i in range(0, len(x), batch)])


def _all(data) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for xb, yb in data.batches(4096):
        xs.append(xb)
        ys.append(yb)
    return np.concatenate(xs), np.concatenate(ys)


def check_output_model(out: Path, model: Path, inputs=()) -> None:
    """-o must name a new or replaceable .onnx file in an existing folder, not one of the inputs."""
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise SnnccError(f": {str(out)!r} must be an .onnx file", option="output")
    if out.is_dir():
        raise SnnccError(f": {str(out)!r} is a folder; give a file name", option="output")
    if not out.resolve().parent.is_dir():
        raise SnnccError(f": folder {str(out.parent)!r} does not exist", option="output")
    for item in (model, *inputs):
        if item is not None and Path(item).exists() and Path(item).resolve() == out.resolve():
            raise SnnccError(f": {str(out)!r} is an input of this command; write the tuned model elsewhere",
                             option="output")
