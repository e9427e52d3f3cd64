"""Compile time of a ResNet-50-sized graph (about 25.5M parameters) to C.

    .venv/bin/python bench/compile_time.py [--size 64] [--cc]

The model is torchvision's ResNet-50 layout (bottleneck blocks 3-4-6-3, widths
64..2048, BatchNorm, 1000-way head) written out in torch with seeded random weights,
exported with the TorchScript exporter.  Parameters do not depend on the input size,
so the input is 3 x SIZE x SIZE (default 64) to keep calibration short; 8 Gaussian
calibration samples, T=1, N=4, 8-bit weights, ``threshold_search="none"`` and
``bias_correction=False`` (the data-driven tuning passes scale with the data, not
with the model size).  Prints the time of each stage: ONNX import, each pass, and C
emission, and with ``--cc`` the time ``cc -O2 -c`` takes on the emitted files.
"""

from __future__ import annotations

import argparse
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

from snncc.backends.c.emit import c_memory, emit_c  # noqa: E402
from snncc.calib_data import load_calib  # noqa: E402
from snncc.frontend.onnx_import import load_onnx  # noqa: E402
from snncc.options import CompileOptions  # noqa: E402
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--cc", action="store_true", help="also time cc -O2 -c on the emitted C")
    ap.add_argument("--defaults", action="store_true",
                    help="use every compile default (threshold search and bias correction on)")
    ap.add_argument("--weight-quantizer", default="mse", help="max | percentile | mse | rescaw (default mse)")
    ap.add_argument("--weight-rounding", default="auto", help="auto | gptq | nearest (default auto, as compile)")
    args = ap.parse_args()
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
        times = {}
        t = time.perf_counter()
        graph = load_onnx(onnx_path)
        times["import"] = time.perf_counter() - t
        opts = CompileOptions(levels=4, timesteps=1, threshold_search="none", bias_correction=False,
                              weight_quantizer=args.weight_quantizer, weight_rounding=args.weight_rounding)
        if args.defaults:
            opts = CompileOptions(weight_quantizer=args.weight_quantizer, weight_rounding=args.weight_rounding)
        opts.calib_data = load_calib(np.random.default_rng(0).standard_normal((8,) + shape).astype(np.float32),
                                     shape)
        for name in DEFAULT_PIPELINE:
            t = time.perf_counter()
            graph = run_pipeline(graph, [name], opts, echo=lambda s: None)
            times[name] = time.perf_counter() - t
        out = tmp / "c"
        out.mkdir()
        t = time.perf_counter()
        files = emit_c(graph, out, name="resnet50")
        times["emit_c"] = time.perf_counter() - t
        total = sum(times.values())
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
          f"rounding {args.weight_rounding}\n")
    print("| stage | seconds |")
    print("|---|---|")
    for k, v in times.items():
        print(f"| {k} | {v:.2f} |")
    print(f"| **total (ONNX -> C files)** | **{total:.2f}** |")
    if cc_s is not None:
        print(f"| (cc -O2 -c of the emitted files) | {cc_s:.2f} |")
    print(f"\nemitted {src_bytes / 1e6:.1f} MB of C; weights {mem['weight_bytes'] / 1e6:.2f} MB flash, "
          f"arena {mem['arena_bytes'] / 1e3:.1f} kB (peak-live bound {mem['peak_live_bytes'] / 1e3:.1f} kB)")


if __name__ == "__main__":
    main()
