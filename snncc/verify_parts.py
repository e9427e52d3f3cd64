"""The pieces of `snncc verify`'s ladder that run per sample, wherever they run.

The integer rung (float SNN vs integer SNN) and the target rung (integer runtime vs the
emitted code) depend on each sample alone, so they can run on shards of the evaluation
set (snncc.verify_shard) and merge into exactly the local figures.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# The per-sample rungs run in chunks of this many samples (and shards are whole chunks).
CHUNK = 128


def chunks(x):
    """``x`` in consecutive slices of CHUNK samples: every per-sample rung walks the data this way,
    so memory stays flat on a large evaluation set and shards see the same batches."""
    return (x[start:start + CHUNK] for start in range(0, len(x), CHUNK))


@dataclass
class Rung:
    name: str
    ok: bool
    detail: str
    table: list[tuple[str, ...]] = field(default_factory=list)


@dataclass
class IntegerParts:
    """The per-sample figures of the integer rung, for a run of consecutive samples; parts of
    consecutive runs concatenate into the whole set's (merge_parts), wherever they ran."""

    int_out: np.ndarray  # the integer runtime's raw outputs (N, OUT)
    int_logits: np.ndarray  # dequantized
    float_top1: np.ndarray  # the float SNN's top-1 class per sample
    levels: dict[str, list[int]] | None  # T=1: per neuron layer [isolated matches, end-to-end matches, positions]


def integer_parts(snn_graph, int_graph, x: np.ndarray) -> IntegerParts:
    """Float SNN and integer SNN on ``x``, in chunks of CHUNK samples: the chunks are the same
    batches whether the whole set runs here or its shards run on a cluster (float GEMMs on
    other batch sizes may round differently), so the counts are identical either way."""
    from snncc.sim.int_runtime import dequantize_output, level_agreement, quantize_input, run_int
    from snncc.sim.snn_sim import simulate

    snn_names = {n.name for n in snn_graph.nodes}
    with_levels = int(int_graph.meta.get("timesteps", 1)) == 1 and all(
        n.name in snn_names for n in int_graph.nodes if n.op == "neuron")
    parts = []
    for xc in chunks(x):
        sim = simulate(snn_graph, xc, activity=False)
        res = run_int(int_graph, quantize_input(int_graph, xc))
        levels = None
        if with_levels:
            levels = {name: [int(round(v["isolated"] * v["positions"])), int(round(v["end_to_end"] * v["positions"])),
                             int(v["positions"])] for name, v in level_agreement(int_graph, snn_graph, xc).items()}
        parts.append(IntegerParts(res[int_graph.outputs[0]].reshape(len(xc), -1),
                                  dequantize_output(int_graph, res[int_graph.outputs[0]]).reshape(len(xc), -1),
                                  sim.logits.reshape(len(xc), -1).argmax(1), levels))
    return merge_parts(parts)


def merge_parts(parts: list[IntegerParts]) -> IntegerParts:
    """The parts of consecutive runs of samples, in order, as one."""
    levels = None
    if parts[0].levels is not None:
        levels = {name: [sum(p.levels[name][k] for p in parts) for k in range(3)] for name in parts[0].levels}
    return IntegerParts(np.concatenate([p.int_out for p in parts]), np.concatenate([p.int_logits for p in parts]),
                        np.concatenate([p.float_top1 for p in parts]), levels)


def integer_rung(parts: IntegerParts) -> Rung:
    """Float SNN against integer SNN: top-1 agreement and, at T=1, spike-level agreement.

    Levels are compared two ways (int_runtime.level_agreement): layer by layer, each
    integer layer fed the float SNN's levels (its own quantization error), and end to
    end, where a flipped level also perturbs every later layer.
    """
    from snncc.sim.int_runtime import pooled_agreement

    agreement = float(np.mean(parts.float_top1 == parts.int_logits.argmax(1)))
    detail = f"top-1 agreement {agreement:.4f}"
    table = []
    if parts.levels:
        per_layer = {name: {"isolated": iso / pos, "end_to_end": e2e / pos, "positions": pos}
                     for name, (iso, e2e, pos) in parts.levels.items()}
        table = [(name, f"{v['isolated']:.4f}", f"{v['end_to_end']:.4f}") for name, v in per_layer.items()]
        worst = min(table, key=lambda row: float(row[1]))
        detail += (f"; spike levels agree on {pooled_agreement(per_layer, 'isolated'):.2%} of positions "
                   f"layer by layer (lowest {float(worst[1]):.2%}: {worst[0]}) and on "
                   f"{pooled_agreement(per_layer, 'end_to_end'):.2%} end to end")
    return Rung("float SNN vs integer SNN", True, detail + " (reported)", table)


def check_target(int_graph, x_q: np.ndarray, target: str, reference: np.ndarray, **target_options):
    """Emit the target's code into a temporary folder and check it against ``reference``; a Check."""
    from snncc.backends import target as get_target

    backend = get_target(target)
    with tempfile.TemporaryDirectory(prefix="snncc-verify-") as tmp:
        backend.emit(int_graph, Path(tmp), name="model", **target_options)
        return backend.verify(int_graph, Path(tmp), x_q, reference=reference, **target_options)
