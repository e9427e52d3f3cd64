"""The fine-tuning loop: Adam with cosine decay over a seeded shuffle of int8 inputs.

An optional activity term (``Schedule.activity``, the Python API and bench/finetune.py only)
adds ``activity * sum|z| / (the first batch's sum|z|)``: spike levels over all neurons and
timesteps per sample, through the neuron's surrogate gradient, so that training trades
accuracy for fewer spikes (Sparse-ResNet's aim).  The loss is cross-entropy on the labels,
or with distillation ``(1 - DISTILL_WEIGHT) * CE +
DISTILL_WEIGHT * tau^2 * KL(softmax(teacher / tau) || softmax(student / tau))``, the teacher
being the float ANN's logits on the same samples (Hinton et al. 2015).  With validation
data the epoch with the best validation accuracy is kept (the last one on ties), else
the last epoch.  A terminal shows a progress bar; elsewhere (CI, a pipe) each epoch
prints one line.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from snncc.finetune.twin import Twin
from snncc.progress import on_terminal

DISTILL_WEIGHT = 0.5
DISTILL_TAU = 2.0
EVAL_BATCH = 512


@dataclass
class Schedule:
    epochs: int
    lr: float = 2e-3
    batch: int = 64
    seed: int = 0
    distill: bool = False
    activity: float = 0.0  # weight of the spike-activity term (0: none), relative to the starting activity


def accuracy(twin: Twin, x_q: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of the twin (= the integer SNN) on int8 inputs."""
    return float((predict(twin, x_q) == np.asarray(y)).mean()) if len(y) else 0.0


@torch.no_grad()
def predict(twin: Twin, x_q: np.ndarray) -> np.ndarray:
    out = [twin(torch.as_tensor(x_q[i:i + EVAL_BATCH])).argmax(dim=1).numpy()
           for i in range(0, len(x_q), EVAL_BATCH)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def fit(twin: Twin, x_q: np.ndarray, y: np.ndarray, sched: Schedule, *, teacher: np.ndarray | None = None,
        val: tuple[np.ndarray, np.ndarray] | None = None,
        echo: Callable[[str], None] = print) -> list[dict]:
    """Train ``twin`` in place; return one record per epoch (loss, accuracies, seconds)."""
    torch.manual_seed(sched.seed)
    rng = np.random.default_rng(sched.seed)
    params = [p for p in twin.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=sched.lr)
    steps = sched.epochs * math.ceil(len(x_q) / sched.batch)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    y_t = torch.as_tensor(np.asarray(y, np.int64))
    t_t = None if teacher is None else torch.as_tensor(np.asarray(teacher, np.float64))
    bar = _Bar(sched.epochs, math.ceil(len(x_q) / sched.batch)) if on_terminal() else None
    history: list[dict] = []
    best = None
    base_activity = None
    for epoch in range(sched.epochs):
        t0 = time.perf_counter()
        order = rng.permutation(len(x_q))
        total, count = 0.0, 0
        twin.train()
        for b, start in enumerate(range(0, len(order), sched.batch)):
            idx = order[start:start + sched.batch]
            logits = twin(torch.as_tensor(x_q[idx]))
            loss = F.cross_entropy(logits, y_t[idx])
            if t_t is not None and sched.distill:
                tau = DISTILL_TAU
                kd = F.kl_div(F.log_softmax(logits / tau, dim=1), F.log_softmax(t_t[idx] / tau, dim=1),
                              reduction="batchmean", log_target=True) * tau * tau
                loss = (1 - DISTILL_WEIGHT) * loss + DISTILL_WEIGHT * kd
            if sched.activity:
                if base_activity is None:
                    base_activity = max(float(twin.activity.detach()), 1.0)
                loss = loss + sched.activity * twin.activity / base_activity
            opt.zero_grad()
            loss.backward()
            opt.step()
            decay.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            if bar:
                bar.draw(epoch, b + 1, total / count)
        twin.eval()
        rec = {"epoch": epoch + 1, "loss": total / max(count, 1)}
        if val is not None:
            rec["val_accuracy"] = accuracy(twin, *val)
            if best is None or rec["val_accuracy"] >= best[0]:
                best = (rec["val_accuracy"], {k: v.detach().clone() for k, v in twin.state_dict().items()})
        rec["seconds"] = time.perf_counter() - t0
        history.append(rec)
        line = f"finetune epoch {epoch + 1}/{sched.epochs}: loss {rec['loss']:.4f}"
        if "val_accuracy" in rec:
            line += f", val accuracy {100 * rec['val_accuracy']:.2f}%"
        if bar:
            bar.clear()
        echo(line + f" ({rec['seconds']:.1f} s)")
    if best is not None:
        twin.load_state_dict(best[1])
    return history


class _Bar:
    """One line on stderr: epoch, batches done, running loss (a terminal only)."""

    def __init__(self, epochs: int, batches: int):
        self.epochs, self.batches = epochs, batches

    def draw(self, epoch: int, done: int, loss: float) -> None:
        import sys

        width = 30
        fill = int(width * done / max(self.batches, 1))
        sys.stderr.write(f"\r\033[Kfinetune {epoch + 1}/{self.epochs} [{'=' * fill}{' ' * (width - fill)}] "
                         f"{done}/{self.batches} loss {loss:.4f}")
        sys.stderr.flush()

    def clear(self) -> None:
        import sys

        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
