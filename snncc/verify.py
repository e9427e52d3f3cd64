"""`snncc verify`: the verification ladder (docs/ci.md).

    onnxruntime ANN ~ float IR          (max|diff| <= 1e-4 * max|ref| + 1e-5)
    quantized ANN == float SNN at T=1   (exact, every neuron)
    float SNN vs integer SNN            (level agreement reported, per layer and end to end)
    integer runtime == target code      (bit-exact, every output of every sample)

Each rung prints one line; the first broken rung prints a per-layer table of where
equivalence first fails.  The result is True only when every rung holds and the
top-1 drop stays within the allowed budget.  The ladder and the accuracy run on the
evaluation data (``data``, verify's --data), by default the calibration data itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from snncc.errors import SnnccError
from snncc.options import CompileOptions
from snncc.verify_parts import (  # noqa: F401  (Rung: verify's public name)
    Rung,
    check_target,
    integer_parts,
    integer_rung,
)

ORT_RTOL = 1e-4
ORT_ATOL = 1e-5
# Without --max-top1-drop verify checks equivalence only; above this drop it says so.
WARN_DROP_POINTS = 1.0


def collect(data) -> tuple[np.ndarray, np.ndarray | None]:
    """All samples of a CalibData as one array (verify needs every sample anyway)."""
    xs, ys = [], []
    for x, y in data.batches(256):
        xs.append(x)
        if y is not None:
            ys.append(y)
    x = np.concatenate(xs)
    y = np.concatenate(ys) if ys else None
    return x, y


def onnxruntime_outputs(model_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    batch_dim = inp.shape[0]
    if isinstance(batch_dim, int):  # fixed batch (often 1): feed in chunks of that size
        outs = [sess.run(None, {inp.name: x[i:i + batch_dim]})[0] for i in range(0, len(x), batch_dim)]
        return np.concatenate(outs)
    return sess.run(None, {inp.name: x})[0]


def rung_onnxruntime(model_path: Path, graph, x: np.ndarray) -> Rung:
    from snncc.sim.float_runtime import run_graph
    from snncc.verify_parts import chunks

    scale, err = 1e-12, 0.0
    for xc in chunks(x):
        ref = onnxruntime_outputs(model_path, xc).reshape(len(xc), -1).astype(np.float64)
        ours = run_graph(graph, xc)[graph.outputs[0]].reshape(len(xc), -1).astype(np.float64)
        scale = max(scale, float(np.abs(ref).max()))
        err = max(err, float(np.abs(ours - ref).max()))
    ok = err <= ORT_RTOL * scale + ORT_ATOL
    return Rung("onnxruntime ~ float IR", ok, f"max |diff| {err:.3g} (allowed {ORT_RTOL * scale + ORT_ATOL:.3g})")


def rung_oracle(ann_graph, snn_graph, x: np.ndarray, timesteps: int) -> Rung:
    """At T=1 every neuron's level equals the activation-quantized ANN's, exactly."""
    from snncc.sim.snn_sim import quantized_ann_levels, simulate

    if timesteps != 1:
        return Rung("quantized ANN == float SNN", True, f"skipped: exact only at T=1 (T={timesteps})")
    if ann_graph is None:
        return Rung("quantized ANN == float SNN", True, "skipped: no pass turned a float graph into the SNN")
    from snncc.verify_parts import chunks

    bad_by_layer: dict[str, list[int]] = {}  # name -> [mismatches, levels]
    for xc in chunks(x):  # every neuron's levels are captured, per chunk
        expected = quantized_ann_levels(ann_graph, snn_graph, xc)
        neurons = [n.name for n in snn_graph.nodes if n.op == "neuron" and n.name in expected]
        sim = simulate(snn_graph, xc, capture=neurons, activity=False)
        for name in neurons:
            got = sim.captured[name]
            counts = bad_by_layer.setdefault(name, [0, 0])
            counts[0] += int(np.count_nonzero(got != expected[name].reshape(got.shape)))
            counts[1] += got.size
    neurons = list(bad_by_layer)
    total = sum(size for _, size in bad_by_layer.values())
    wrong = sum(bad for bad, _ in bad_by_layer.values())
    table = [(name, f"{bad}/{size} levels differ") for name, (bad, size) in bad_by_layer.items() if bad]
    return Rung("quantized ANN == float SNN", wrong == 0,
                f"{len(neurons)} neuron layers, {total} levels, {wrong} mismatches", table)


def rung_integer(snn_graph, int_graph, x: np.ndarray) -> tuple[Rung, np.ndarray, np.ndarray]:
    """The integer rung on ``x`` here; its rung, raw integer outputs and dequantized logits."""
    parts = integer_parts(snn_graph, int_graph, x)
    return integer_rung(parts), parts.int_out, parts.int_logits


def rung_target(int_graph, x_q: np.ndarray, target: str, reference: np.ndarray, **target_options) -> Rung:
    """The deployed code against the integer runtime, every output of every sample."""
    from snncc.backends import target as get_target

    check = check_target(int_graph, x_q, target, reference, **target_options)
    return Rung(f"integer runtime == {get_target(target).LABEL}", check.ok, check.detail, check.table)


def check_data_path(data) -> None:
    """Fail fast (before the slow build) on a --data file that cannot be evaluation data."""
    from snncc.arrays import check_array_path

    if data is not None and isinstance(data, (str, Path)):
        check_array_path(data, "data")


def load_eval_data(data, input_shape: tuple) -> tuple[np.ndarray, np.ndarray | None]:
    """All samples of the --data file (same format as --calib), errors naming --data."""
    from snncc.calib_data import load_calib

    return collect(load_calib(data, input_shape, option="data"))


def run_verify(model_path: Path | str, *, options: CompileOptions, calib, target: str = "c",
               max_top1_drop: float | None = None, cc: str = "cc", data=None,
               echo: Callable[[str], None] = print, warn: Callable[[str], None] | None = None,
               target_options: dict | None = None, executor: str = "local", ray_address: str | None = None,
               ray_runtime_env: dict | None = None, note: Callable[[str], None] | None = None) -> bool:
    """The ladder; ``data`` (a .npy/.npz path or an array) is the evaluation set, default ``calib``.

    ``warn`` prints the ``warning:`` line (the CLI sends it to stderr); default ``echo``.
    ``executor="ray"`` runs the per-sample rungs (the integer runtime, the target's code) on
    shards of the data as Ray tasks (snncc.verify_shard); the lines printed are the same.
    ``note`` says where they ran (default ``echo``).
    """
    from snncc.backends import target as get_target
    from snncc.compiler import build_snn
    from snncc.sim.int_runtime import quantize_input

    backend = get_target(target)
    if max_top1_drop is not None and not 0 <= max_top1_drop <= 100:
        raise SnnccError(f"must be in 0..100 points, got {max_top1_drop}", option="max_top1_drop")
    target_options = {"cc": cc, **(target_options or {})}
    backend.check_tools(**target_options, options=options)  # fail fast, before the slow work
    if executor not in ("local", "ray"):
        raise SnnccError(f"must be local or ray, got {executor!r}", option="executor")
    if executor == "ray":
        from snncc.cluster import require_ray

        require_ray()
    check_data_path(data)
    model_path = Path(model_path)
    result = build_snn(model_path, options, calib, echo=echo, flash_bytes=getattr(backend, "flash_bytes", None))
    if data is None:
        x, y = collect(result.context.calib)
        where = "the calibration data"
    else:
        x, y = load_eval_data(data, result.float_graph.values[result.float_graph.inputs[0]].shape)
        where = str(data) if isinstance(data, (str, Path)) else "the given data"
    rungs = [rung_onnxruntime(model_path, result.float_graph, x),
             rung_oracle(result.ann_graph, result.snn_graph, x, options.timesteps)]
    if executor == "ray":
        from snncc.verify_shard import sharded_rungs

        int_rung, int_out, int_logits, target_rung = sharded_rungs(
            result.snn_graph, result.int_graph, x, target, target_options, ray_address, note or echo,
            ray_runtime_env)
        rungs += [int_rung, target_rung]
    else:
        int_rung, int_out, int_logits = rung_integer(result.snn_graph, result.int_graph, x)
        rungs.append(int_rung)
        rungs.append(rung_target(result.int_graph, quantize_input(result.int_graph, x), target, int_out,
                                 **target_options))

    from snncc.sim.float_runtime import run_graph
    from snncc.verify_parts import chunks

    ann = np.concatenate([run_graph(result.float_graph, xc)[result.float_graph.outputs[0]].reshape(len(xc), -1)
                          for xc in chunks(x)])
    agreement = float(np.mean(ann.argmax(1) == int_logits.argmax(1)))
    summary = [f"top-1 agreement ANN vs integer SNN: {agreement:.4f} on {len(x)} samples of {where}"]
    drop, measure = (1.0 - agreement) * 100.0, "top-1 agreement with the ANN"
    if y is not None:
        acc_ann = float(np.mean(ann.argmax(1) == y))
        acc_snn = float(np.mean(int_logits.argmax(1) == y))
        drop, measure = (acc_ann - acc_snn) * 100.0, "top-1 accuracy"
        summary.append(f"accuracy on {where}: ANN {acc_ann:.4f}, integer SNN {acc_snn:.4f} "
                       f"(drop {drop:.2f} points)")
    ok = True
    for rung in rungs:
        ok &= rung.ok
        echo(f"[{'ok' if rung.ok else 'FAIL'}] {rung.name}: {rung.detail}")
        if not rung.ok and rung.table:
            echo("      first failing layers:")
            for row in rung.table[:10]:
                echo("        " + "  ".join(row))
    for line in summary:
        echo(line)
    if max_top1_drop is not None and drop > max_top1_drop:
        echo(f"[FAIL] top-1 drop {drop:.2f} points exceeds --max-top1-drop {max_top1_drop}")
        ok = False
    elif max_top1_drop is None and drop > WARN_DROP_POINTS:
        (warn or echo)(f"warning: the integer SNN loses {drop:.2f} points of {measure} on {where}, but "
                       "without --max-top1-drop verify checks equivalence only; give --max-top1-drop P "
                       "to fail on a drop")
    echo("verify: " + ("PASSED" if ok else "FAILED"))
    return ok
