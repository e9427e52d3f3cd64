"""Digits CNN: SNN test accuracy by spike levels N and timesteps T, and what each conversion aid gains.

Trains the digits CNN of ``examples/digits/train.py`` (seeded, about 10 s on CPU),
calibrates on the first 256 training images and measures top-1 accuracy of the
float SNN on the held-out test split (540 images).

    .venv/bin/python bench/conversion_accuracy.py [--levels 1,2,4,8,15] [--timesteps 1,2,4,8]

Prints two tables: (1) accuracy for every N x T with the default conversion
(mse thresholds, output-aware threshold search, bias correction); (2) at T=1, the
plain per-channel thresholds (max, percentile, mse) and what bias correction and
threshold search add on top of mse.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "digits"))

import snncc  # noqa: E402
from snncc.calib_data import load_calib  # noqa: E402
from snncc.options import CompileOptions  # noqa: E402
from snncc.pass_context import PassContext  # noqa: E402
from snncc.pass_manager import run_pipeline  # noqa: E402
from snncc.sim.snn_sim import simulate  # noqa: E402


def snn_accuracy(graph, x_cal, x_te, y_te, **kw) -> tuple[float, float]:
    ctx = PassContext(CompileOptions(**kw).validate(), load_calib(x_cal, x_cal.shape[1:]))
    t0 = time.perf_counter()
    snn = run_pipeline(graph, ["canonicalize", "calibrate", "convert"], ctx)
    seconds = time.perf_counter() - t0
    pred = simulate(snn, x_te).logits.argmax(1)
    return float((pred == y_te).mean()), seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", default="1,2,4,8,15")
    ap.add_argument("--timesteps", default="1,2,4,8")
    args = ap.parse_args(argv)
    levels = [int(v) for v in args.levels.split(",")]
    steps = [int(v) for v in args.timesteps.split(",")]

    import train

    x_tr, y_tr, x_te, y_te = train.load_digits_split()
    model = train.train(train.build_cnn(), x_tr, y_tr)
    with tempfile.TemporaryDirectory() as tmp:
        graph = snncc.load_onnx(train.export_onnx(model, Path(tmp) / "digits.onnx"))
    x_cal = x_tr[:256]
    ann = float((snncc.run(graph, x_te).argmax(1) == y_te).mean())
    print(f"digits CNN, ANN test accuracy {100 * ann:.2f} % ({len(y_te)} test images, calibration: "
          f"256 training images)\n")

    print("SNN test accuracy (%), default conversion: mse thresholds + threshold search + bias correction")
    print("N \\ T " + "".join(f"{t:>9d}" for t in steps))
    total = 0.0
    for n in levels:
        row = []
        for t in steps:
            acc, sec = snn_accuracy(graph, x_cal, x_te, y_te, levels=n, timesteps=t)
            total += sec
            row.append(f"{100 * acc:9.2f}")
        print(f"{n:<6d}" + "".join(row))
    print(f"(conversion time, all cells: {total:.1f} s)\n")

    print("T=1 ablation, SNN test accuracy (%) and drop vs ANN (points)")
    variants = [
        ("max", {"threshold": "max", "threshold_search": "none", "bias_correction": False}),
        ("percentile:99.99", {"threshold": "percentile:99.99", "threshold_search": "none", "bias_correction": False}),
        ("mse", {"threshold": "mse", "threshold_search": "none", "bias_correction": False}),
        ("mse + bias corr.", {"threshold": "mse", "threshold_search": "none", "bias_correction": True}),
        ("mse + search", {"threshold": "mse", "threshold_search": "output", "bias_correction": False}),
        ("mse + search + bias", {"threshold": "mse", "threshold_search": "output", "bias_correction": True}),
    ]
    print(f"{'method':<22s}" + "".join(f"{'N=' + str(n):>16s}" for n in levels))
    for label, kw in variants:
        cells = []
        for n in levels:
            acc, _ = snn_accuracy(graph, x_cal, x_te, y_te, levels=n, timesteps=1, **kw)
            cells.append(f"{100 * acc:8.2f} ({100 * (acc - ann):+5.2f})")
        print(f"{label:<22s}" + "".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
