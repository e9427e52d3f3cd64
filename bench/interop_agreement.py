"""How faithful each interop door is, measured: the tables of docs/interop.md.

    .venv/bin/python bench/interop_agreement.py [--samples 100] [--seed 0]

QONNX: the file run by ``qonnx.core.onnx_exec.execute_onnx`` against the integer
runtime, every output of every sample, at T=1 over N in {1, 2, 4, 15} x 2/4/8-bit
weights, on the digits CNN (trained from ``--seed``, digits test samples), and the zoo's
ResNet-8 (3x32x32) and MobileNetV2 blocks (3x16x16) (seeded random weights, random
inputs), each plus the all -128 and all 127 inputs.

NIR: the digits CNN with its max pool as an average pool (NIR has no max pool) and the
zoo's ResNet-8, in Sinabs (``from_nir``) and snnTorch (``import_from_nir``), as loaded
and with the file's snncc metadata applied (backends/nir/consumers.py), and in the
reference reader (backends/nir/simulate.py, what ``snncc verify --target nir`` runs).
Per run: spike-count agreement of each IF layer (fraction of neuron positions whose
count over T steps equals snncc's), the samples whose every output equals snncc's
out_q, and top-1 agreement with snncc.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "tests", ROOT / "examples" / "digits"):
    sys.path.insert(0, str(p))

import train  # noqa: E402
import zoo  # noqa: E402
from interop_models import Staged, digits_avgpool, probe_inputs  # noqa: E402

from snncc.backends.nir.consumers import run_sinabs, run_snntorch  # noqa: E402
from snncc.backends.nir.emit import write_nir  # noqa: E402
from snncc.backends.nir.simulate import run_nir  # noqa: E402
from snncc.backends.qonnx.emit import run_qonnx, to_out_q, write_qonnx  # noqa: E402
from snncc.errors import SnnccError  # noqa: E402
from snncc.sim.int_runtime import quantize_input, run_int, run_int_levels  # noqa: E402


def qonnx_table(models, folder: Path) -> None:
    print("\n### QONNX (execute_onnx) vs integer runtime, T=1\n")
    print("| model | samples | " + " | ".join(f"N={n}" for n in (1, 2, 4, 15)) + " |")
    print("|---|---|---|---|---|---|")
    for name, staged, x in models:
        for bits in (2, 4, 8):
            cells = []
            for n in (1, 2, 4, 15):
                graph = staged.finish(levels=n, timesteps=1, weight_bits=bits)
                path = write_qonnx(graph, folder / "q.onnx")
                got = to_out_q(run_qonnx(path, x)[0], graph.meta["output_scales"][graph.outputs[0]])
                ref = run_int(graph, x)[graph.outputs[0]]
                cells.append(f"{int((got == ref).sum())}/{ref.size}")
            print(f"| {name} {bits}-bit | {len(x)} | " + " | ".join(cells) + " |")


def _row(model, n, t, door, mode, run, ref, counts):
    try:
        out, got = run()
    except Exception as exc:  # a consumer that cannot load or run the file: say how
        print(f"| {model} | {n} | {t} | {door} | {mode} | fails: {type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:90]} | | |")
        return
    layers = [float((g.reshape(c.shape) == c).mean()) for g, c in zip(got.values(), counts)]
    out = np.asarray(out)
    if out.shape[0] != ref.shape[0] or out.size != ref.size:
        exact, top1 = f"wrong output shape {list(out.shape)}", "-"
    else:
        out = out.reshape(ref.shape)
        exact = f"{int((out == ref).all(axis=1).sum())}/{len(ref)}"
        top1 = f"{float((out.argmax(1) == ref.argmax(1)).mean()):.4f}"
    print(f"| {model} | {n} | {t} | {door} | {mode} | {', '.join(f'{a:.4f}' for a in layers)} | {exact} | {top1} |")


def nir_table(models, folder: Path) -> None:
    print("\n### NIR consumers vs integer runtime\n")
    print("| model | N | T | consumer (profile) | mode | spike-count agreement per IF layer | samples exact | "
          "top-1 agreement |")
    print("|---|---|---|---|---|---|---|---|")
    for name, staged, x in models:
        for n, t in [(1, 1), (1, 4), (4, 1), (4, 4)]:
            graph = staged.finish(levels=n, timesteps=t, weight_bits=4)
            ref, stats = run_int_levels(graph, x)
            ref, counts = ref[graph.outputs[0]], [s["levels"] for s in stats.values()]
            for profile in ("multispike", "binary", "threshold"):
                try:
                    path = write_nir(graph, folder / f"{profile}.nir", profile=profile)
                except SnnccError as exc:
                    if profile == "multispike":
                        print(f"| {name} | {n} | {t} | (export) | | error: {exc} | | |")
                    continue
                _row(name, n, t, f"reader ({profile})", "metadata", partial(_reader, path, x), ref, counts)
                if profile == "multispike":
                    for honour in (False, True):
                        _row(name, n, t, "Sinabs (multispike)", "metadata" if honour else "as loaded",
                             partial(run_sinabs, path, x, t, honour_metadata=honour), ref, counts)
                if profile == "binary":
                    xs = x[: min(len(x), 40)]  # snnTorch runs one sample at a time
                    refs, cs = run_int_levels(graph, xs)
                    for honour in (False, True):
                        _row(name, n, t, "snnTorch (binary)", "metadata" if honour else "as loaded",
                             partial(run_snntorch, path, xs, t, honour_metadata=honour),
                             refs[graph.outputs[0]], [s["levels"] for s in cs.values()])


def _reader(path, x):
    out, counts = run_nir(path, x, record=True)
    return next(iter(out.values())), counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100, help="digits test samples (default 100)")
    ap.add_argument("--seed", type=int, default=0, help="training seed of the digits CNN")
    args = ap.parse_args()
    x_tr, y_tr, x_te, _ = train.load_digits_split()
    with tempfile.TemporaryDirectory(prefix="snncc-interop-") as tmp:
        folder = Path(tmp)
        model = train.train(train.build_cnn(args.seed), x_tr, y_tr, seed=args.seed)
        digits = Staged(train.export_onnx(model, folder / "digits.onnx"), x_tr[:256])
        digits_avg = Staged(digits_avgpool(model, folder), x_tr[:256])
        x_digits = probe_inputs((1, 8, 8), quantize_input(digits.finish(), x_te[: args.samples]))
        zoo_models = []
        for name in ("resnet8", "mobilenetv2_block"):
            net, shape = zoo.build(name)
            calib = np.random.default_rng(0).standard_normal((16, *shape)).astype(np.float32)
            staged = Staged(zoo.export(net, shape, folder / f"{name}.onnx"), calib)
            zoo_models.append((name, staged, probe_inputs(shape, n_random=20)))
        print(f"digits CNN trained with seed {args.seed}; {args.samples} digits test samples + 3 random + 2 extremes")
        qonnx_table([("digits CNN", digits, x_digits), *zoo_models], folder)
        nir_table([("digits CNN (avg pool)", digits_avg, x_digits), zoo_models[0]], folder)


if __name__ == "__main__":
    main()
