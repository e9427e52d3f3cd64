"""Where post-training accuracy goes: each quantizer alone, and each neuron layer alone.

Usage: ``python bench/ptq_layers.py --models fashion_cnn cifar10_resnet20 [--test-samples 2000]``

Compiles each example model with its snncc.toml (the compile options may be
overridden with ``--set key=value``) and scores, on the test subset:

- the ANN (float IR), the input quantization alone (x -> s_x round(x / s_x)),
  the weight quantization alone (the integer SNN's weights and biases, dequantized,
  in the float ANN), the activation quantization alone (the float SNN at T=1: the
  activation-quantized ANN with convert's bias correction), and the integer SNN;
- per neuron population: its activation quantization alone (every other activation
  float), and every population but it quantized.

Figures are top-1 accuracy and the logits' relative squared error against the ANN.

``--int-only --versus key=value`` also compiles with that override and compares the two
integer SNNs image by image: how many images only one of them gets right, and the exact
two-sided sign test on those (a 1,000-image subset rarely tells two settings apart).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import real_data  # noqa: E402

from snncc import ops  # noqa: E402
from snncc.compiler import build_snn  # noqa: E402
from snncc.config import open_config  # noqa: E402
from snncc.options import CompileOptions  # noqa: E402
from snncc.sim.float_runtime import run_graph  # noqa: E402
from snncc.sim.snn_sim import bias_deltas, neuron_specs, refitted_ann, run_quantized  # noqa: E402


def digits():
    d = ROOT.parent / "examples" / "digits"
    z = np.load(d / "digits_calib.npz")
    return d / "digits_cnn.onnx", d / "snncc.toml", d / "digits_calib.npz", z["x"], z["y"]


MODELS = dict(real_data.MODELS, digits_cnn=digits)


def load(model: str, k: int | None):
    """The model's files and test subset (the decoded subset is cached under /tmp)."""
    cache = Path("/tmp") / f"ptq_{model}_{k}.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=True)
        return Path(str(z["onnx"])), Path(str(z["config"])), Path(str(z["calib"])), z["x"], z["y"]
    onnx_path, config, calib, x, y = MODELS[model]()
    x, y = real_data.test_subset(x, y, k)
    np.savez(cache, onnx=str(onnx_path), config=str(config), calib=str(calib), x=x, y=y)
    return onnx_path, config, calib, x, y


def options_for(config: Path, sets: list[str]) -> CompileOptions:
    options = CompileOptions()
    for key, value in open_config(config).overrides.items():
        setattr(options, key, value)
    for kv in sets:
        key, _, value = kv.partition("=")
        old = getattr(options, key)
        setattr(options, key, type(old)(value) if not isinstance(old, bool) else value.lower() in ("1", "true"))
    return options


def batched(fn, x, batch=500):
    return np.concatenate([fn(x[i:i + batch]) for i in range(0, len(x), batch)])


def weights_only(ann, snn, int_graph):
    """The ANN with the integer SNN's weight and bias errors (activations float).

    The SNN's weights carry the input channel's threshold; the error of each weight,
    ``W_q S - W_snn``, is divided by it (the per-column ratio ``W_snn / W_ann``)."""
    g = ann.copy()
    by_int = {n.name: n for n in int_graph.nodes}
    by_snn = {n.name: n for n in snn.nodes}
    s_x = float(int_graph.meta["input_scale"])
    for node in g.nodes:
        q, f = by_int.get(node.name), by_snn.get(node.name)
        if q is None or f is None or node.op not in ops.WEIGHTED or "weight" not in q.params:
            continue
        S = np.asarray(q.params["scale_real"], np.float64)
        view = (-1,) + (1,) * (q.params["weight"].ndim - 1)
        wq = q.params["weight"].astype(np.float64) * S.reshape(view)
        if node.inputs[0] in g.inputs:
            wq = wq / s_x
        wa = np.asarray(node.params["weight"], np.float64)
        ws = np.asarray(f.params["weight"], np.float64)
        axes = (0,) + tuple(range(2, wa.ndim))
        r = np.abs(ws).sum(axis=axes, keepdims=True) / np.maximum(np.abs(wa).sum(axis=axes, keepdims=True), 1e-30)
        r = np.where(r > 0, r, 1.0)
        bq = q.params["bias"].astype(np.float64) * S
        node.params = dict(node.params, weight=wa + (wq - ws) / r,
                           bias=np.asarray(node.params["bias"], np.float64) + bq - np.asarray(f.params["bias"]))
    return g


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["fashion_cnn", "cifar10_resnet20"])
    ap.add_argument("--test-samples", type=int, default=None,
                    help="K evenly spaced test images (default: 2000, or all with --int-only; 0: all)")
    ap.add_argument("--set", action="append", default=[], help="compile option override key=value")
    ap.add_argument("--no-layers", action="store_true", help="skip the per-population rows")
    ap.add_argument("--int-only", action="store_true",
                    help="only the ANN and integer SNN rows (full test sets unless --test-samples)")
    ap.add_argument("--versus", action="append", default=[], metavar="KEY=VALUE",
                    help="with --int-only: also compile with these overrides and compare image by image")
    args = ap.parse_args(argv)
    for model in args.models:
        analyse(model, args)
    return 0


def analyse(model: str, args) -> None:
    k = args.test_samples if args.test_samples is not None else (None if args.int_only else 2000)
    onnx_path, config, calib, x, y = load(model, k or None)
    options = options_for(config, args.set)
    t0 = time.process_time()
    res = build_snn(onnx_path, options, str(calib), echo=lambda _m: None)
    cpu = time.process_time() - t0
    ann, snn, ig = res.ann_graph, res.snn_graph, res.int_graph
    ref = batched(lambda xb: run_graph(ann, xb, dtype=np.float64)[ann.outputs[0]].reshape(len(xb), -1), x)
    energy = float(np.sum(ref ** 2))

    def row(label, logits):
        logits = logits.reshape(len(x), -1)
        acc = float((logits.argmax(1) == y).mean())
        rel = float(np.sum((logits - ref) ** 2)) / energy
        print(f"| {label} | {acc:.4f} | {100 * (acc_ann - acc):.2f} | {rel:.4g} |", flush=True)

    acc_ann = float((ref.argmax(1) == y).mean())
    print(f"\n## {model}: {len(y)} test images, compile {cpu:.1f} s CPU, options {' '.join(args.set) or '-'}")
    print("notes: " + " / ".join(res.context.notes))
    print("\n| quantized | top-1 | drop pt | logits rel. sq. err |\n|---|---|---|---|")
    row("nothing (ANN)", ref)
    if args.int_only:
        logits = batched(lambda xb: _int_logits(ig, xb), x, 250)
        row("integer SNN", logits)
        if args.versus:
            other = build_snn(onnx_path, options_for(config, args.set + args.versus), str(calib),
                              echo=lambda _m: None).int_graph
            logits_b = batched(lambda xb: _int_logits(other, xb), x, 250)
            row(f"integer SNN, {' '.join(args.versus)}", logits_b)
            a, b = logits.reshape(len(x), -1).argmax(1), logits_b.reshape(len(x), -1).argmax(1)
            only_a, only_b, p = paired(a == y, b == y)
            print(f"\npaired: only the first right {only_a}, only the second right {only_b}, "
                  f"predictions differ on {int((a != b).sum())} of {len(y)}; sign test p = {p:.3g}")
        return
    s_x = float(ig.meta["input_scale"])
    xq = np.clip(np.rint(x / s_x), -128, 127) * s_x
    row("input only", batched(lambda xb: run_graph(ann, xb, dtype=np.float64)[ann.outputs[0]], xq))
    wo = weights_only(ann, snn, ig)
    row("weights only (int weights+biases)", batched(
        lambda xb: run_graph(wo, xb, dtype=np.float64)[wo.outputs[0]], x))
    specs, delta = neuron_specs(snn), bias_deltas(snn)
    fit = refitted_ann(ann, snn)  # the ANN the float SNN quantizes (--threshold-refine weights/all)
    row("activations only (float SNN)", batched(
        lambda xb: run_quantized(fit, specs, xb, bias_delta=delta)[ann.outputs[0]], x))
    row("activations only, no bias corr.", batched(
        lambda xb: run_quantized(fit, specs, xb)[ann.outputs[0]], x))
    row("input + weights", batched(lambda xb: run_graph(wo, xb, dtype=np.float64)[wo.outputs[0]], xq))
    row("integer SNN", batched(lambda xb: _int_logits(ig, xb), x, 250))
    if args.no_layers:
        return
    print("\n| population | its acts only: top-1 | drop | rel err | all but it: top-1 | drop | rel err |")
    print("|---|---|---|---|---|---|---|")
    for v in specs:
        one = {v: specs[v]}
        rest = {k: s for k, s in specs.items() if k != v}
        lo = batched(lambda xb, one=one: run_quantized(ann, one, xb)[ann.outputs[0]], x).reshape(len(x), -1)
        lr = batched(lambda xb, rest=rest: run_quantized(ann, rest, xb, bias_delta=delta)[ann.outputs[0]],
                     x).reshape(len(x), -1)
        cells = []
        for lg in (lo, lr):
            acc = float((lg.argmax(1) == y).mean())
            cells += [f"{acc:.4f}", f"{100 * (acc_ann - acc):.2f}", f"{float(np.sum((lg - ref) ** 2)) / energy:.4g}"]
        print(f"| {v} ({specs[v][0].size} ch) | " + " | ".join(cells) + " |", flush=True)


def paired(right_a: np.ndarray, right_b: np.ndarray) -> tuple[int, int, float]:
    """(images only A gets right, only B, exact two-sided sign-test p-value on those)."""
    only_a = int(np.sum(right_a & ~right_b))
    only_b = int(np.sum(right_b & ~right_a))
    n = only_a + only_b
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2 ** n  # exact ints: n may pass 1024
    return only_a, only_b, min(1.0, 2.0 * tail)


def _int_logits(ig, xb):
    from snncc.sim.int_runtime import dequantize_output, quantize_input, run_int

    out_q = run_int(ig, quantize_input(ig, xb))[ig.outputs[0]]
    return dequantize_output(ig, out_q).reshape(len(xb), -1)


if __name__ == "__main__":
    sys.exit(main())
