"""Structured pruning trade-off: accuracy, parameters, C flash and C latency per criterion and ratio.

    .venv/bin/python bench/prune_tradeoff.py [--iters 2000] [--no-compile-time] [--r50-size 32]

Models: the digits CNN (examples/digits) and ResNet-20 with a 1-channel stem trained on
digits (bench/c_vs_onnxruntime.py's helper, ~15 s of training).  Each compiles at T=1,
N=4, 8-bit weights, ``threshold_search="none"`` (to keep the sweep short), for each
criterion in {l1, svs, mp} x ratio in {0.1, 0.2, 0.3, 0.5, 0.7} (``--prune R``),
post-training, no fine-tuning.  Accuracy is the integer SNN's top-1 on the digits test
split; C latency is the emitted C (-O3, host runner, process CPU time per inference,
checked bit-exact against run_int first) against onnxruntime fp32 on one thread (the
unpruned ONNX model).  Then: the best flash compression (fp32 weight bytes / C const
table bytes) at <= 1 point accuracy drop from the fp32 ANN, with 4-bit weights
(first and last layers 8 bits), on the digits CNN.  The compression table also
tries per-layer ratios (``LAYER_SETS``), since the layers differ much in how much they tolerate.
Last: compile time with and without ``--prune 0.3`` on bench/compile_time.py's ResNet-50 at a
smaller image size (wall and process CPU seconds; run it with ``OPENBLAS_NUM_THREADS=1`` on a
shared machine, where the BLAS threads' spinning turns load into CPU seconds).
``--prune-multiple 1,4`` repeats the cnn / resnet rows per K (a K column).  ``--only fashion``
(not in the default run): the committed Fashion-MNIST CNN (examples/fashion) at 8-bit and at
4-bit weights, accuracy on the test split.
Timings come from a shared, loaded machine: noisy.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "examples" / "digits"))

from c_vs_onnxruntime import build, fp32_bytes, spike_rates, time_ort, trained_resnet20_digits  # noqa: E402

from snncc.backends.c.emit import c_memory, emit_c  # noqa: E402
from snncc.backends.c.verify_c import flat_outputs, run_host  # noqa: E402
from snncc.calib_data import load_calib  # noqa: E402
from snncc.frontend.onnx_import import load_onnx  # noqa: E402
from snncc.options import CompileOptions  # noqa: E402
from snncc.pass_context import PassContext  # noqa: E402
from snncc.pass_manager import run_pipeline  # noqa: E402
from snncc.passes import DEFAULT_PIPELINE  # noqa: E402
from snncc.sim.float_runtime import run_graph  # noqa: E402
from snncc.sim.int_runtime import dequantize_output, quantize_input, run_int  # noqa: E402

CRITERIA = ["l1", "svs", "mp"]
RATIOS = (0.1, 0.2, 0.3, 0.5, 0.7)
FASHION_LAYER_SETS = ({"/8/Conv": 0.25}, {"/8/Conv": 0.5})
LAYER_SETS = ({"/7/Conv": 0.5}, {"/7/Conv": 0.75}, {"/7/Conv": 0.5, "/3/Conv": 0.25},
              {"/7/Conv": 0.75, "/3/Conv": 0.25, "/0/Conv": 0.25})
BASE = {"levels": 4, "timesteps": 1, "threshold_search": "none"}


def compile_graph(onnx_path, calib_x, **opts):
    graph = load_onnx(onnx_path)
    calib = load_calib(calib_x, graph.values[graph.inputs[0]].shape)
    ctx = PassContext(CompileOptions(**{**BASE, **opts}), calib=calib)
    t0 = time.perf_counter()
    graph = run_pipeline(graph, DEFAULT_PIPELINE, ctx, echo=lambda s: None)
    return graph, time.perf_counter() - t0


def int_accuracy(graph, x, y) -> float:
    out = dequantize_output(graph, run_int(graph, quantize_input(graph, x))[graph.outputs[0]])
    return float((out.reshape(len(x), -1).argmax(1) == y).mean())


def params(graph) -> int:
    return int(sum(np.asarray(a).size for n in graph.nodes if n.op in ("conv", "dense") for a in
                   (n.params["weight"], n.params["bias"])))


def c_row(graph, calib_x, x_te, iters, work: Path, label: str) -> dict:
    rates = spike_rates(graph, quantize_input(graph, calib_x))
    out = work / label
    out.mkdir()
    emit_c(graph, out, spike_rates=rates)
    exe = build(out, ["-O3"])
    x_q = quantize_input(graph, x_te)
    assert np.array_equal(run_host(exe, x_q), flat_outputs(graph, run_int(graph, x_q))), label
    return {"flash": c_memory(graph, rates)["weight_bytes"], "c_ns": run_host(exe, x_q, bench_iters=iters)[1]["cpu_ns"]}


def sweep(label, onnx_path, calib_x, x_te, y_te, iters, work, multiples=None, **extra) -> None:
    """The ratio sweep; with ``multiples`` (--prune-multiple K,...) each pruned row once per K, in a K column."""
    ann = load_onnx(onnx_path)
    ann_acc = float((run_graph(ann, x_te)[ann.outputs[0]].argmax(1) == y_te).mean())
    ort_ns = time_ort(onnx_path, x_te.astype(np.float32), iters)["cpu_ns"]
    print(f"\n### {label}: fp32 ANN accuracy {100 * ann_acc:.2f}%, fp32 weights {fp32_bytes(onnx_path)} B, "
          f"onnxruntime fp32 1 thread {ort_ns / 1e3:.1f} us/inference\n")
    kcol = "K | " if multiples else ""
    print(f"| criterion | ratio | {kcol}int SNN acc | params | C flash (B) | C us/inf | ORT/C |")
    print("|---|---|---|---|---|---|---|" + ("---|" if multiples else ""))
    runs = [("none", 0.0, 1)] + [(c, r, k) for c in CRITERIA for r in RATIOS for k in (multiples or (1,))]
    for crit, ratio, k in runs:
        opts = {} if crit == "none" else {"prune": ratio, "prune_criterion": crit, "prune_multiple": k}
        graph, _ = compile_graph(onnx_path, calib_x, **opts, **extra)
        row = c_row(graph, calib_x, x_te, iters, work, f"{label}_{crit}_{ratio}_{k}")
        kval = f"{k} | " if multiples else ""
        print(f"| {crit} | {ratio} | {kval}{100 * int_accuracy(graph, x_te, y_te):.2f}% | {params(graph)} | "
              f"{row['flash']} | {row['c_ns'] / 1e3:.2f} | {ort_ns / row['c_ns']:.2f} |", flush=True)


def compression(onnx_path, calib_x, x_te, y_te, work, only: str | None = None) -> None:
    ann = load_onnx(onnx_path)
    ann_acc = float((run_graph(ann, x_te)[ann.outputs[0]].argmax(1) == y_te).mean())
    fp32 = fp32_bytes(onnx_path)
    four = {"weight_bits": 4, "layer_bits": {"first": 8, "last": 8}}
    print(f"\n### flash compression, 4-bit weights (first/last 8), digits CNN; fp32 ANN {100 * ann_acc:.2f}%, "
          f"fp32 weights {fp32} B\n")
    print("| criterion | ratio | int SNN acc | drop (points) | C flash (B) | compression |")
    print("|---|---|---|---|---|---|")
    best = None
    base_params = params(compile_graph(onnx_path, calib_x, **four)[0])
    # uniform ratios, then finer steps: a 5 % ratio, and global budgets of 97 % and 94 % of the parameters
    runs = [("none", 0.0, {})] + [(c, r, {"prune": r}) for c in CRITERIA for r in (0.05,) + RATIOS]
    runs += [(c, f"params<={f}", {"prune_target_params": int(f * base_params)}) for c in CRITERIA
             for f in (0.97, 0.94)]
    # per-layer ratios: the float ANN loses nothing when /7/Conv (the widest layer) loses half its
    # channels, much when /0/Conv or /3/Conv do (docs/pruning.md), so uniform ratios waste accuracy
    runs += [(c, "layers " + " ".join(f"{k}={v}" for k, v in layers.items()), {"prune_layers": layers})
             for c in CRITERIA for layers in LAYER_SETS]
    if only == "fine":
        runs = [r for r in runs if r[1] == 0.05 or str(r[1]).startswith("params")]
    elif only == "layers":
        runs = [r for r in runs if r[0] == "none" or str(r[1]).startswith("layers")]
    for crit, ratio, extra in runs:
        opts = dict(four) if crit == "none" else {**four, **extra, "prune_criterion": crit}
        graph, _ = compile_graph(onnx_path, calib_x, **opts)
        acc = int_accuracy(graph, x_te, y_te)
        flash = c_memory(graph)["weight_bytes"]
        drop = 100 * (ann_acc - acc)
        print(f"| {crit} | {ratio} | {100 * acc:.2f}% | {drop:.2f} | {flash} | {fp32 / flash:.2f}x |", flush=True)
        if drop <= 1.0 and (best is None or fp32 / flash > best[0]):
            best = (fp32 / flash, crit, ratio, acc)
    if best:
        print(f"\nbest at <= 1 point drop: {best[0]:.2f}x ({best[1]}, ratio {best[2]}, {100 * best[3]:.2f}%)")
    else:
        print("\nno setting within 1 point")


def fashion(n_test: int, layers_only: bool = False) -> None:
    """The committed Fashion-MNIST CNN (examples/fashion): its snncc.toml settings (N=4, T=1,
    mse thresholds and weight quantizer) but no threshold search, 300 calibration images; 8-bit
    weights, then 4-bit (first/last 8).  Integer-SNN accuracy on the first ``n_test`` test images."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fashion_train", ROOT / "examples" / "fashion" / "train.py")
    ftrain = importlib.util.module_from_spec(spec)  # not "train": that name is the digits example's
    spec.loader.exec_module(ftrain)

    onnx_path = ROOT / "examples" / "fashion" / "fashion_cnn.onnx"
    calib = np.load(ROOT / "examples" / "fashion" / "fashion_calib.npz")["x"]
    x_te, y_te = ftrain.load_fashion("test")
    x_te, y_te = x_te[:n_test], y_te[:n_test]
    ann = load_onnx(onnx_path)
    ann_acc = float((run_graph(ann, x_te)[ann.outputs[0]].argmax(1) == y_te).mean())
    fp32 = fp32_bytes(onnx_path)
    print(f"\n### Fashion-MNIST CNN, first {n_test} test images: fp32 ANN {100 * ann_acc:.2f}%, fp32 weights "
          f"{fp32} B\n")
    print("| weights | criterion | ratio | int SNN acc | drop (points) | params | C flash (B) | compression |")
    print("|---|---|---|---|---|---|---|---|")
    toml = {"threshold": "mse", "weight_quantizer": "mse"}
    for label, bits in (("8-bit", {"weight_bits": 8}),
                        ("4-bit", {"weight_bits": 4, "layer_bits": {"first": 8, "last": 8}})):
        runs = [("none", 0.0, {})] + [(c, r, {"prune": r}) for c in CRITERIA for r in (0.1, 0.2, 0.3, 0.5)]
        # per-layer: /8/Conv (64 channels, 3/4 of the weights) is the one that tolerates removal
        runs += [(c, "layers " + " ".join(f"{k}={v}" for k, v in layers.items()), {"prune_layers": layers})
                 for c in CRITERIA for layers in FASHION_LAYER_SETS]
        if layers_only:
            runs = [r for r in runs if r[0] == "none" or str(r[1]).startswith("layers")]
        for crit, ratio, extra in runs:
            opts = {**toml, **bits, **({} if crit == "none" else {**extra, "prune_criterion": crit})}
            graph, _ = compile_graph(onnx_path, calib, **opts)
            acc = int_accuracy(graph, x_te, y_te)
            flash = c_memory(graph)["weight_bytes"]
            print(f"| {label} | {crit} | {ratio} | {100 * acc:.2f}% | {100 * (ann_acc - acc):.2f} | {params(graph)} "
                  f"| {flash} | {fp32 / flash:.2f}x |", flush=True)


def compile_time(size: int, work: Path) -> None:
    import compile_time as ct
    import torch
    import zoo

    model = ct.resnet50().eval()
    path = zoo.export(model, (3, size, size), work / "r50.onnx")
    x = np.random.default_rng(0).standard_normal((16, 3, size, size)).astype(np.float32)
    del torch
    rows = []
    for opts in ({}, {"prune": 0.3, "prune_criterion": "l1"}, {"prune": 0.3, "prune_criterion": "mp"}):
        cpu0 = time.process_time()  # CPU seconds: the machine may be shared, wall time is noisy
        _, secs = compile_graph(path, x, bias_correction=False, **opts)
        rows.append((opts, secs, time.process_time() - cpu0))
    base, base_cpu = rows[0][1], rows[0][2]
    # OpenBLAS threads spin while they wait: on a shared machine their CPU seconds are mostly load;
    # OPENBLAS_NUM_THREADS=1 measures the work
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"\n### compile time, ResNet-50 (bench/compile_time.py) at 3x{size}x{size}, 16 calibration samples, "
          f"no threshold search, no bias correction; OPENBLAS_NUM_THREADS={threads}\n")
    print("| options | compile s (wall) | vs no pruning | CPU s | vs no pruning |")
    print("|---|---|---|---|---|")
    for opts, secs, cpu in rows:
        print(f"| {opts or 'no pruning'} | {secs:.1f} | {secs / base:.2f}x | {cpu:.1f} | {cpu / base_cpu:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=2000, help="C latency timing iterations (default 2000)")
    ap.add_argument("--r50-size", type=int, default=32,
                    help="ResNet-50 image size for the compile-time rows (default 32)")
    ap.add_argument("--no-compile-time", action="store_true", help="skip the compile-time rows")
    ap.add_argument("--prune-multiple", default=None, metavar="K[,K...]",
                    help="cnn / resnet sweeps: each pruned row once per --prune-multiple K, in a K column")
    ap.add_argument("--criteria", default=",".join(CRITERIA), help="the criteria of every section (default l1,svs,mp)")
    ap.add_argument("--fashion-test", type=int, default=10000, help="Fashion-MNIST test images (--only fashion)")
    ap.add_argument("--only", choices=["cnn", "resnet", "compression", "fine", "layers", "fashion", "fashion-layers",
                                       "time"],
                    default=None, help="one section: cnn / resnet (ratio sweeps), compression / fine / layers "
                                       "(4-bit compression), fashion / fashion-layers (not in the default run), "
                                       "time (compile time, wall and CPU s)")
    args = ap.parse_args()
    multiples = tuple(int(k) for k in args.prune_multiple.split(",")) if args.prune_multiple else None
    CRITERIA[:] = [c for c in args.criteria.split(",") if c]
    import train

    x_tr, _, x_te, y_te = train.load_digits_split()
    calib = x_tr[:256]
    cnn = ROOT / "examples" / "digits" / "digits_cnn.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.only in (None, "cnn"):
            sweep("digits CNN", cnn, calib, x_te, y_te, args.iters, work, multiples)
        if args.only in (None, "resnet"):
            onnx_path, rcalib, _ = trained_resnet20_digits(work)
            # nearest weight rounding (no GPTQ, no step search): 16 compiles of a 271k-weight model
            # with GPTQ took ~2.5 min each on the shared machine
            print("\n(digits ResNet-20 rows: --weight-rounding nearest, 128 calibration samples)")
            sweep("digits ResNet-20", onnx_path, rcalib[:128], x_te, y_te, args.iters, work, multiples,
                  weight_rounding="nearest")
        if args.only in (None, "compression", "fine", "layers"):
            compression(cnn, calib, x_te, y_te, work, only=args.only)
        if args.only in ("fashion", "fashion-layers"):  # not in the default run: needs dataset-fashion-mnist
            fashion(args.fashion_test, layers_only=args.only == "fashion-layers")
        if args.only in (None, "time") and not args.no_compile_time:
            compile_time(args.r50_size, work)


if __name__ == "__main__":
    main()
