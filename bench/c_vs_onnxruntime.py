"""Latency of the emitted C against onnxruntime fp32 (one thread), and memory.

    .venv/bin/python bench/c_vs_onnxruntime.py [--rounds 3] [--native]

Models: the digits CNN (examples/digits), the ResNet-20-style zoo model at
3x32x32 (tests/zoo.py, seeded random weights, calibrated on seeded Gaussian noise), a
MobileNetV2-style digits net (zoo ``mobilenetv2_block`` with a 1-channel stem: expansion
4, depthwise 3x3; seeded weights, calibrated on the digits training split) and a 28x28
CNN (zoo ``lenet``, seeded, Gaussian noise).  All compile at T=1, N=4, 8-bit weights.  ResNet-20 uses
``threshold_search="none", bias_correction=False`` to keep the compile short (the
kernels and their speed do not depend on it).  An extra row, ``resnet20_digits
(trained)``, is the same architecture with a 1-channel stem trained on digits
(examples/digits/train.py, ~15 s) and compiled with the default options, timed on the
digits test split: a trained network's spike rates on real data.

C latency is timed inside the host runner (``-O3``, plus ``-O3 -march=native`` with
``--native``) over many inferences; the kernels a build ran (``snncc_simd()``: the x86
SIMD level is chosen at run time, so plain ``-O3`` runs AVX-512 VNNI or AVX2 kernels on
CPUs that have them) are listed below the table.  onnxruntime runs the same samples one at a time
with ``intra_op_num_threads=1``.  Both are measured as process CPU time (robust on a
busy machine) and as wall time, alternately over ``--rounds`` rounds; the table
reports the median of the rounds and the ratio ORT / C (> 1: C is faster).
Memory: flash (weights, and library text+data from arm-none-eabi-size when the
tools are installed) against the fp32 weight bytes; RAM (arena) against the
peak-live lower bound.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "examples" / "digits"))

from snncc.backends.c.emit import c_memory, emit_c  # noqa: E402
from snncc.backends.c.verify_c import STRICT_FLAGS, build_firmware, firmware_size, flat_outputs, run_host  # noqa: E402
from snncc.calib_data import load_calib  # noqa: E402
from snncc.frontend.onnx_import import load_onnx  # noqa: E402
from snncc.options import CompileOptions  # noqa: E402
from snncc.pass_context import PassContext  # noqa: E402
from snncc.pass_manager import run_pipeline  # noqa: E402
from snncc.passes import DEFAULT_PIPELINE  # noqa: E402
from snncc.sim.int_runtime import quantize_input, run_int, run_int_levels  # noqa: E402


def spike_rates(graph, x_q) -> dict[str, float]:
    """Measured fraction of non-zero levels per neuron output (for the kernel choice)."""
    _, stats = run_int_levels(graph, x_q)
    T = int(graph.meta.get("timesteps", 1))
    rates = {}
    for node in graph.nodes:
        if node.op == "neuron" and node.name in stats:
            rates[node.output] = float(stats[node.name]["events"].sum()) / (stats[node.name]["events"].size * T)
    return rates


def build(out: Path, flags: list[str]) -> Path:
    exe = out / "build" / ("host" + "_".join(f.replace("-", "").replace("=", "") for f in flags))
    exe.parent.mkdir(parents=True, exist_ok=True)
    srcs = [str(p) for p in sorted(out.glob("*.c"))]
    subprocess.run(["cc", *STRICT_FLAGS, *flags, "-I", str(out), *srcs, "-o", str(exe)], check=True)
    return exe


def time_ort(path: Path, x: np.ndarray, iters: int) -> dict:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    xs = [x[i:i + 1] for i in range(len(x))]
    for i in range(min(50, iters)):
        sess.run(None, {name: xs[i % len(xs)]})
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(iters):
        sess.run(None, {name: xs[i % len(xs)]})
    return {"cpu_ns": (time.process_time() - c0) / iters * 1e9, "wall_ns": (time.perf_counter() - t0) / iters * 1e9}


def fp32_bytes(path: Path) -> int:
    model = onnx.load(str(path))
    return int(sum(np.prod(t.dims) * 4 for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT))


def bench_model(label, onnx_path, calib_x, eval_x, options, iters, rounds, variants, work):
    graph = load_onnx(onnx_path)
    ctx = PassContext(CompileOptions(**options), load_calib(calib_x, graph.values[graph.inputs[0]].shape))
    t0 = time.perf_counter()
    graph = run_pipeline(graph, DEFAULT_PIPELINE, ctx, echo=lambda s: None)
    compile_s = time.perf_counter() - t0
    x_q = quantize_input(graph, eval_x)
    rates = spike_rates(graph, quantize_input(graph, calib_x))
    out = work / re.sub(r"\W+", "_", label)
    out.mkdir()
    emit_c(graph, out, spike_rates=rates)
    mem = c_memory(graph, rates)
    exes = {v: build(out, v.split()) for v in variants}
    ref = flat_outputs(graph, run_int(graph, x_q))
    for exe in exes.values():  # the timed program is the bit-exact one
        assert np.array_equal(run_host(exe, x_q), ref), f"{label}: C differs from run_int"
    times = {v: [] for v in variants}
    times["ort"] = []
    for _ in range(rounds):
        times["ort"].append(time_ort(onnx_path, eval_x.astype(np.float32), iters))
        for v, exe in exes.items():
            times[v].append(run_host(exe, x_q, bench_iters=iters)[1])
    med = {k: {m: statistics.median(r[m] for r in rs) for m in ("cpu_ns", "wall_ns")} for k, rs in times.items()}
    simd = {v: times[v][0]["simd"] for v in variants}
    try:
        fw = firmware_size(out, build_firmware(out))["library"]
    except Exception as exc:  # tools missing: report weights only
        fw = {"flash_bytes": None, "ram_bytes": None, "error": str(exc).splitlines()[0]}
    return {"label": label, "compile_s": compile_s, "times": med, "mem": mem, "fp32": fp32_bytes(onnx_path),
            "fw": fw, "rates": rates, "simd": simd}


def trained_resnet20_digits(work: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """ResNet-20 with a 1-channel stem trained on digits: (onnx, calibration x, test x)."""
    import train
    import zoo

    x_tr, y_tr, x_te, _ = train.load_digits_split()
    model = train.train(zoo.build_for_digits("resnet20"), x_tr, y_tr)
    return train.export_onnx(model, work / "resnet20_digits.onnx"), x_tr[:256], x_te


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--native", action="store_true", help="also time -O3 -march=native")
    args = ap.parse_args()
    variants = ["-O3"] + (["-O3 -march=native"] if args.native else [])
    import zoo

    results = []
    with tempfile.TemporaryDirectory(prefix="snncc-bench-") as tmp:
        work = Path(tmp)
        d = np.load(ROOT / "examples" / "digits" / "digits_calib.npz")
        results.append(bench_model("digits_cnn", ROOT / "examples" / "digits" / "digits_cnn.onnx", d["x"][:256],
                                   d["x"], {"levels": 4, "timesteps": 1}, 5000, args.rounds, variants, work))
        model, shape = zoo.build("resnet20")
        path = work / "resnet20.onnx"
        zoo.export(model, shape, path)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((64,) + shape).astype(np.float32)
        results.append(bench_model("resnet20_32x32", path, x, x[:32],
                                   {"levels": 4, "timesteps": 1, "threshold_search": "none",
                                    "bias_correction": False}, 200, args.rounds, variants, work))
        path, calib, test = trained_resnet20_digits(work)
        results.append(bench_model("resnet20_digits (trained)", path, calib, test, {"levels": 4, "timesteps": 1},
                                   2000, args.rounds, variants, work))
        import train

        x_tr, _, x_te, _ = train.load_digits_split()
        path = work / "mobilenetv2_digits.onnx"
        zoo.export(zoo.build_for_digits("mobilenetv2_block"), (1, 8, 8), path)
        results.append(bench_model("mobilenetv2_digits", path, x_tr[:256], x_te[:256],
                                   {"levels": 4, "timesteps": 1, "threshold_search": "none",
                                    "bias_correction": False}, 2000, args.rounds, variants, work))
        model, shape = zoo.build("lenet")
        path = work / "lenet_28x28.onnx"
        zoo.export(model, shape, path)
        x = rng.standard_normal((64,) + shape).astype(np.float32)
        results.append(bench_model("lenet_28x28", path, x, x[:32],
                                   {"levels": 4, "timesteps": 1, "threshold_search": "none",
                                    "bias_correction": False}, 2000, args.rounds, variants, work))
    print("\nLatency per inference (median of rounds; CPU time, wall time in brackets)\n")
    head = "| model | onnxruntime fp32 1 thread | " + " | ".join(f"C {v}" for v in variants)
    head += " | " + " | ".join(f"ORT / C {v}" for v in variants) + " |"
    print(head)
    print("|" + "---|" * (2 + 2 * len(variants)))
    for r in results:
        t = r["times"]
        cells = [f"{t['ort']['cpu_ns'] / 1e3:.1f} us ({t['ort']['wall_ns'] / 1e3:.1f})"]
        cells += [f"{t[v]['cpu_ns'] / 1e3:.1f} us ({t[v]['wall_ns'] / 1e3:.1f})" for v in variants]
        cells += [f"{t['ort']['cpu_ns'] / t[v]['cpu_ns']:.2f}" for v in variants]
        print(f"| {r['label']} | " + " | ".join(cells) + " |")
    print("\nMemory\n")
    print("| model | fp32 weights | C weights (flash) | library flash (Cortex-M4) | arena (RAM, firmware) | "
          "peak-live bound | arena / bound | arena (x86-64 SIMD build) | mean spike rate |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        m, fw = r["mem"], r["fw"]
        rate = np.mean(list(r["rates"].values())) if r["rates"] else float("nan")
        print(f"| {r['label']} | {r['fp32']} | {m['weight_bytes']} | {fw.get('flash_bytes')} | {m['arena_bytes']} | "
              f"{m['peak_live_bytes']} | {m['arena_over_peak']:.3f} | {m['host_arena_bytes']} | {rate:.3f} |")
    for r in results:
        modes = ", ".join(f"{x['ident']}:{x['mode']}" for x in r["mem"]["layers"])
        simd = ", ".join(f"C {v}: {k}" for v, k in r["simd"].items())
        print(f"\n{r['label']}: pipeline {r['compile_s']:.1f} s; SIMD kernels {simd}; layers {modes}")


if __name__ == "__main__":
    main()
