"""Real data: ANN against integer-SNN accuracy over levels N, timesteps T and weight bits.

Usage: ``python bench/real_data.py [--models fashion_cnn fashion_resnet] [--test-samples 10000]``

Models (their data must be installed; a missing one is reported with how to get it):
- ``fashion_cnn``, ``fashion_resnet``: the committed examples/fashion models on the
  10,000 Fashion-MNIST test images (``apt-get install -y dataset-fashion-mnist``).
- ``nmnist_cnn``: the committed examples/nmnist model on the 100 N-MNIST test recordings
  of ``../shared/data/nmnist-small`` (event-count frames, input scale 1: exact), read
  with tonic (the bench extra).  100 images: one image is one point.
- ``cifar10_resnet20``, ``cifar10_vgg``: the committed examples/cifar10 models on the
  CIFAR-10 test images of ``../shared/data/cifar10-jpeg`` (lossy JPEG, quality 75:
  figures are close to, not equal to, figures on the original images).  The integer
  runtime takes about a second per image per point here; ``--test-samples K`` scores
  an evenly spaced, class-balanced subset.

Each model compiles with its example's snncc.toml (mse thresholds, threshold search,
bias correction, GPTQ) and the committed 300-image calibration set, overriding N, T and
the weight bits; 4-bit rows keep the first and last layers at 8 bits.  For each point:
the integer SNN's top-1 on the test images (what every target runs, bit-exact), its
drop in points against the ANN (onnxruntime on the same images), and from the compile
report (calibration data): spike rate, SOPs per inference, the energy ratio SNN/ANN
(report.json's 45 nm model) and the weight compression against fp32.

The energy claim (Castagnetti et al.): at equal accuracy (within 0.5 points), a
multi-level neuron at T=1 against binary neurons (N=1) at the T they need.  The last
table pairs the best T=1 multi-level row with the cheapest N=1 row within 0.5 points
of it, when one exists among the T values run (``--binary-t``).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
FASHION = ROOT / "examples" / "fashion"
NMNIST = ROOT / "examples" / "nmnist"
CIFAR10 = ROOT / "examples" / "cifar10"

from snncc.compiler import compile_model  # noqa: E402
from snncc.config import open_config  # noqa: E402
from snncc.int_eval import integer_predictions  # noqa: E402
from snncc.options import CompileOptions  # noqa: E402


def example_train(folder: Path):
    """An example's train.py as a module (each example has its own loader)."""
    spec = importlib.util.spec_from_file_location(f"{folder.name}_train", folder / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fashion(name: str):
    def load():
        x, y = example_train(FASHION).load_fashion("test")
        return FASHION / f"fashion_{name}.onnx", FASHION / "snncc.toml", FASHION / "fashion_calib.npz", x, y
    return load


def nmnist():
    x, y = example_train(NMNIST).load_nmnist("test")
    return NMNIST / "nmnist_cnn.onnx", NMNIST / "snncc.toml", NMNIST / "nmnist_calib.npz", x, y


def cifar10(name: str):
    def load():
        x, y = example_train(CIFAR10).load_cifar10("test")
        return CIFAR10 / f"cifar10_{name}.onnx", CIFAR10 / "snncc.toml", CIFAR10 / "cifar10_calib.npz", x, y
    return load


MODELS = {"fashion_cnn": fashion("cnn"), "fashion_resnet": fashion("resnet"), "nmnist_cnn": nmnist,
          "cifar10_resnet20": cifar10("resnet20"), "cifar10_vgg": cifar10("vgg")}


def test_subset(x: np.ndarray, y: np.ndarray, k: int | None):
    """``k`` evenly spaced test images (all when None): balanced even when the set is sorted by class."""
    if not k or k >= len(y):
        return x, y
    idx = np.linspace(0, len(y) - 1, k).round().astype(int)
    return x[idx], y[idx]


def ann_accuracy(onnx_path: Path, x: np.ndarray, y: np.ndarray) -> float:
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    logits = np.concatenate([sess.run(None, {name: x[i:i + 1000]})[0] for i in range(0, len(x), 1000)])
    return float((logits.reshape(len(x), -1).argmax(1) == y).mean())


def int_accuracy(graph, x: np.ndarray, y: np.ndarray, batch: int = 250) -> float:
    hits = sum(int((integer_predictions(graph, x[i:i + batch]) == y[i:i + batch]).sum())
               for i in range(0, len(x), batch))
    return hits / len(x)


def point(onnx_path, config, calib, x, y, levels, timesteps, bits) -> dict:
    options = CompileOptions()
    for key, value in open_config(config).overrides.items():
        setattr(options, key, value)
    options.levels, options.timesteps, options.weight_bits = levels, timesteps, bits
    if bits < 8:
        options.layer_bits = {"first": 8, "last": 8}
    t0 = time.perf_counter()
    result = compile_model(onnx_path, options=options, calib=str(calib), target="c", echo=lambda _m: None)
    compile_s = time.perf_counter() - t0
    rep = result.report
    neurons = [layer for layer in rep["layers"] if layer["op"] == "neuron"]
    events = sum(layer["spike_events"] for layer in neurons)
    elements = sum(int(np.prod(layer["shape"])) * timesteps for layer in neurons)
    mem = rep["memory"]
    return {"N": levels, "T": timesteps, "bits": bits, "acc": int_accuracy(result.int_graph, x, y),
            "rate": events / elements if elements else 0.0, "sops": rep["activity"]["sops"],
            "energy": rep["energy"]["ratio"], "compr": mem["compression"],
            "compile_s": compile_s}


def energy_claim(rows: list[dict]) -> str:
    multi = [r for r in rows if r["T"] == 1 and r["N"] > 1]
    if not multi:
        return "no T=1 multi-level rows"
    best = max(multi, key=lambda r: (r["acc"], -r["sops"]))
    head = f"T=1 N={best['N']} {best['bits']}-bit: acc {best['acc']:.4f}, SOPs {best['sops']:.0f}, " \
           f"energy/ANN {best['energy']:.3f}"
    binary = [r for r in rows if r["N"] == 1 and r["bits"] == best["bits"] and r["acc"] >= best["acc"] - 0.005]
    if not binary:
        top = max((r for r in rows if r["N"] == 1 and r["bits"] == best["bits"]), key=lambda r: r["acc"])
        return f"{head} | no N=1 row within 0.5 points (best N=1: T={top['T']}, acc {top['acc']:.4f})"
    cheap = min(binary, key=lambda r: r["energy"])
    return (f"{head} | N=1 T={cheap['T']}: acc {cheap['acc']:.4f}, SOPs {cheap['sops']:.0f}, energy/ANN "
            f"{cheap['energy']:.3f} | binary / multi-level energy {cheap['energy'] / best['energy']:.2f}x")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--timesteps", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 4])
    ap.add_argument("--binary-t", type=int, nargs="*", default=[8, 16],
                    help="extra T values for N=1 only, for the energy claim (default 8 16)")
    ap.add_argument("--test-samples", type=int, default=None,
                    help="evaluate on K evenly spaced test images (default: all)")
    args = ap.parse_args(argv)

    for model in args.models:
        try:
            onnx_path, config, calib, x, y = MODELS[model]()
        except FileNotFoundError as exc:
            print(f"{model}: skipped: {exc}")
            continue
        x, y = test_subset(x, y, args.test_samples)
        ann = ann_accuracy(onnx_path, x, y)
        print(f"\n## {model}: ANN top-1 {ann:.4f} on {len(y)} test images\n", flush=True)
        print("| N | T | bits | int SNN acc | drop pt | spike rate | SOPs/inf | energy SNN/ANN | compr | compile s |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        grid = [(n, t, b) for b in args.bits for t in args.timesteps for n in args.levels]
        grid += [(1, t, b) for b in args.bits for t in args.binary_t if t not in args.timesteps]
        rows = []
        for n, t, b in grid:
            r = point(onnx_path, config, calib, x, y, n, t, b)
            rows.append(r)
            print(f"| {n} | {t} | {b} | {r['acc']:.4f} | {100 * (ann - r['acc']):.2f} | {r['rate']:.3f} | "
                  f"{r['sops']:.0f} | {r['energy']:.3f} | {r['compr']:.2f} | {r['compile_s']:.1f} |", flush=True)
        print(f"\nenergy claim, {model}: {energy_claim(rows)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
