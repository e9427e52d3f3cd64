"""Compile time and peak memory: a ResNet-50-sized graph (about 25.5M parameters), or deep Conv+ReLU chains.

    .venv/bin/python bench/compile_time.py [--size 64] [--cc]
    .venv/bin/python bench/compile_time.py --size 224 --samples 256 --weight-bits 4 --defaults
    .venv/bin/python bench/compile_time.py --chain 100 1000 10000

The model is torchvision's ResNet-50 layout (bottleneck blocks 3-4-6-3, widths
64..2048, BatchNorm, 1000-way head) written out in torch with seeded random weights,
exported with the TorchScript exporter.  Parameters do not depend on the input size,
so the input is 3 x SIZE x SIZE (default 64) to keep calibration short; 8 Gaussian
calibration samples, T=1, N=4, 8-bit weights, ``threshold_search="none"`` and
``bias_correction=False`` (the data-driven tuning passes scale with the data, not
with the model size).  Prints the time of each stage: ONNX import, each pass, and C
emission, and with ``--cc`` the time ``cc -O2 -c`` takes on the emitted files.  ``--samples``,
``--weight-bits`` and ``--defaults`` give the ImageNet-scale case of issue 12 (224 x 224,
256 samples, 4-bit weights, every default).  Each stage gets its wall time, its CPU time
(all threads: the figure to compare on a loaded machine) and its own peak RSS (the kernel's
VmHWM mark, reset at the start of each stage; so `/usr/bin/time -v`'s maximum RSS of this
script is only the last stage's).  The report is also split into its simulations.

``--chain D [D ...]`` instead compiles, for each depth, a chain of D nodes written
directly in ONNX: (D - 3) / 2 pairs of a 3x3 Conv (4 channels, 6 x 6, seeded weights
0.5 x identity + noise and a 0.1 bias, so that activations neither vanish nor explode) and a ReLU, then
GlobalAveragePool, Flatten and a Gemm, with every compile default and 64 Gaussian
calibration samples.  It prints the time per depth and per node: linear in depth
means a flat time per node.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from chain_model import chain_onnx  # noqa: E402

from snncc.backends.c.emit import c_memory, emit_c  # noqa: E402
from snncc.calib_data import load_calib  # noqa: E402
from snncc.frontend.onnx_import import load_onnx  # noqa: E402
from snncc.options import CompileOptions  # noqa: E402
from snncc.pass_context import PassContext  # noqa: E402
from snncc.pass_manager import run_pipeline  # noqa: E402
from snncc.passes import DEFAULT_PIPELINE  # noqa: E402


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.short(x))


def resnet50() -> nn.Module:
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
            cin = width * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1000)]
    return nn.Sequential(*layers)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so that each stage reports its own peak (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _own_peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return peak_rss_mb()


class Meter:
    """Wall time, CPU time (all threads) and the peak RSS of each stage; ``rss`` is the stage's
    own peak where the kernel lets us reset the mark, else the process's peak so far."""

    def __init__(self, times: dict, rss: dict, cpu: dict | None = None):
        self.times, self.rss, self.cpu = times, rss, cpu if cpu is not None else {}

    def __call__(self, stage: str, fn, *args, **kwargs):
        own = _reset_peak()
        t, c = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        self.times[stage] = self.times.get(stage, 0.0) + time.perf_counter() - t
        self.cpu[stage] = self.cpu.get(stage, 0.0) + time.process_time() - c
        self.rss[stage] = max(self.rss.get(stage, 0.0), _own_peak_mb() if own else peak_rss_mb())
        print(f"  {stage}: {self.times[stage]:.1f} s, CPU {self.cpu[stage]:.1f} s, peak RSS {self.rss[stage]:.0f} MB",
              file=sys.stderr, flush=True)
        return out


def run_stages(graph, ctx, times: dict, rss: dict, report: bool = True, cpu: dict | None = None):
    """The compile pipeline pass by pass, then (``report``) report.json's figures, as `snncc compile`,
    the report split into its simulations (fidelity: ANN + float SNN; integer scores; residual activity)."""
    from snncc import compiler, fidelity, int_eval
    from snncc.compiler import CompileResult, make_report

    meter = Meter(times, rss, cpu)
    stages = {"float": graph}
    for name in DEFAULT_PIPELINE:
        graph = meter(name, run_pipeline, graph, [name], ctx, echo=lambda s: None)
        if name in ("residual", "convert"):  # what `snncc compile` keeps for the report, no more
            stages[name] = graph
    if report:
        result = CompileResult(float_graph=stages["float"], snn_graph=stages["convert"], int_graph=graph,
                               ann_graph=stages["residual"], context=ctx)
        parts = {"report: fidelity": (fidelity, "fidelity_report"), "report: integer scores":
                 (int_eval, "integer_scores"), "report: residual": (compiler, "_residual_section")}
        saved = {k: getattr(m, f) for k, (m, f) in parts.items()}
        try:
            for k, (m, f) in parts.items():
                setattr(m, f, lambda *a, _k=k, _fn=saved[k], **kw: meter(_k, _fn, *a, **kw))
            meter("report", make_report, result, ctx.options, model="bench", target="c")
        finally:
            for k, (m, f) in parts.items():
                setattr(m, f, saved[k])
        rss["report"] = max(rss["report"], *(rss.get(k, 0.0) for k in parts))  # the parts reset the mark
    return graph


def chain_main(depths: list[int], samples: int) -> None:
    rows = []
    for depth in depths:
        with tempfile.TemporaryDirectory(prefix="snncc-ct-") as tmp:
            path = chain_onnx(Path(tmp) / "chain.onnx", max(1, (depth - 3) // 2), channels=4, size=6,
                              weights="contraction", classes=10, seed=0)
            t0, cpu0 = time.perf_counter(), time.process_time()
            graph = load_onnx(path)
            shape = graph.values[graph.inputs[0]].shape
            ctx = PassContext(calib=load_calib(np.random.default_rng(0).standard_normal((samples,) + shape)
                                               .astype(np.float32), shape))
            times: dict = {"import": time.perf_counter() - t0}
            graph = run_stages(graph, ctx, times, {})
            t = time.perf_counter()
            emit_c(graph, Path(tmp), name="chain")
            times["emit_c"] = time.perf_counter() - t
        total = sum(v for k, v in times.items() if not k.startswith("report:"))  # parts of "report"
        rows.append((depth, total, times, time.process_time() - cpu0))
        print(f"depth {depth}: {total:.1f} s wall, {rows[-1][3]:.1f} s CPU", flush=True)
    stages = list(rows[0][2])
    print("\n| ONNX nodes | total s (wall) | CPU s | ms per node (wall) | " + " | ".join(stages) + " |")
    print("|---" * (4 + len(stages)) + "|")
    for depth, total, times, cpu in rows:
        print(f"| {depth} | {total:.1f} | {cpu:.1f} | {1000 * total / depth:.2f} | "
              + " | ".join(f"{times[k]:.1f}" for k in stages) + " |")
    print(f"\npeak RSS {peak_rss_mb():.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64, help="input is 3 x SIZE x SIZE (default 64)")
    ap.add_argument("--samples", type=int, default=8, help="Gaussian calibration samples (default 8; --chain always "
                                                              "uses 64)")
    ap.add_argument("--weight-bits", type=int, default=8, help="weight bits (default 8)")
    ap.add_argument("--chain", type=int, nargs="+", metavar="DEPTH",
                    help="compile Conv+ReLU chains of these node counts instead (every default)")
    ap.add_argument("--cc", action="store_true", help="also time cc -O2 -c on the emitted C")
    ap.add_argument("--defaults", action="store_true",
                    help="use every compile default (threshold search and bias correction on)")
    ap.add_argument("--weight-quantizer", default="mse", help="max | percentile | mse | rescaw (default mse)")
    ap.add_argument("--weight-rounding", default="auto", help="auto | gptq | nearest (default auto, as compile)")
    ap.add_argument("--threshold-refine", default=None, help="none | channel | weights | all (default: compile's)")
    args = ap.parse_args()
    if args.chain:
        chain_main(args.chain, 64)
        return
    import zoo

    torch.manual_seed(0)
    model = resnet50().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    params = sum(p.numel() for p in model.parameters())
    shape = (3, args.size, args.size)
    with tempfile.TemporaryDirectory(prefix="snncc-ct-") as tmp:
        tmp = Path(tmp)
        onnx_path = tmp / "resnet50.onnx"
        zoo.export(model, shape, onnx_path)
        times, rss, cpu = {}, {}, {}
        meter = Meter(times, rss, cpu)
        graph = meter("import", load_onnx, onnx_path)
        opts = CompileOptions(levels=4, timesteps=1, threshold_search="none", bias_correction=False,
                              weight_quantizer=args.weight_quantizer, weight_rounding=args.weight_rounding,
                              weight_bits=args.weight_bits)
        if args.defaults:
            opts = CompileOptions(weight_quantizer=args.weight_quantizer, weight_rounding=args.weight_rounding,
                                  weight_bits=args.weight_bits)
        if args.threshold_refine is not None:
            opts.threshold_refine = args.threshold_refine
        ctx = PassContext(opts, load_calib(np.random.default_rng(0).standard_normal((args.samples,) + shape)
                                           .astype(np.float32), shape))
        graph = run_stages(graph, ctx, times, rss, cpu=cpu)
        out = tmp / "c"
        out.mkdir()
        files = meter("emit_c", emit_c, graph, out, name="resnet50")
        total = sum(v for k, v in times.items() if not k.startswith("report:"))
        total_cpu = sum(v for k, v in cpu.items() if not k.startswith("report:"))
        src_bytes = sum(p.stat().st_size for p in files)
        cc_s = None
        if args.cc:
            t = time.perf_counter()
            for src in ("resnet50.c", "resnet50_weights.c", "snncc_kernels.c"):
                subprocess.run(["cc", "-std=c99", "-O2", "-c", str(out / src), "-o", str(tmp / (src + ".o"))],
                               check=True)
            cc_s = time.perf_counter() - t
    mem = c_memory(graph)
    print(f"\nResNet-50-sized graph: {params / 1e6:.2f}M parameters, input {list(shape)}, "
          f"{len(graph.nodes)} integer-IR nodes, weight quantizer {args.weight_quantizer}, "
          f"rounding {args.weight_rounding}, {args.weight_bits}-bit weights, {args.samples} calibration samples, "
          f"{'every default' if args.defaults else 'no threshold search, no bias correction'}\n")
    print("| stage | wall s | CPU s (all threads) | peak RSS MB (own) |")
    print("|---|---|---|---|")
    for k, v in times.items():
        print(f"| {k} | {v:.2f} | {cpu[k]:.2f} | {rss[k]:.0f} |")
    print(f"| **total (ONNX -> C files)** | **{total:.2f}** | **{total_cpu:.2f}** | {peak_rss_mb():.0f} (process) |")
    if cc_s is not None:
        print(f"| (cc -O2 -c of the emitted files) | {cc_s:.2f} |")
    print(f"\nemitted {src_bytes / 1e6:.1f} MB of C; weights {mem['weight_bytes'] / 1e6:.2f} MB flash, "
          f"arena {mem['arena_bytes'] / 1e3:.1f} kB (peak-live bound {mem['peak_live_bytes'] / 1e3:.1f} kB)")


if __name__ == "__main__":
    main()
