"""Integer SNN against float SNN: spike-level agreement on digits-trained models.

Usage: ``python bench/level_agreement.py [--models digits resnet8 ...] [--bits 8 10 12 16]``

Models: the committed example CNN (examples/digits/digits_cnn.onnx) and the zoo
architectures of tests/zoo.py that take 1x8x8 inputs, each trained here on digits
with examples/digits/train.py (seeded, a few seconds each).  Calibration: the first
256 training images; measured on the 540 held-out test images.  Compile defaults:
T=1, N=4, 8-bit weights, 16-bit membrane, GPTQ rounding, step search.

Table 1, for each model: ``iso`` is the pooled agreement when every integer neuron
layer is fed the float SNN's levels from the layer before (the layer's own
quantization error), ``iso_min`` its worst layer, ``e2e`` the pooled agreement when
both networks run on their own (errors propagate), ``e2e_min`` its worst layer; then
top-1 accuracy of the ANN, the float SNN and the integer SNN.  ``e2e (no search)``
repeats e2e with ``step_search`` off.

Table 2 asks how many weight bits the end-to-end view would need: the float SNN with
its weights fake-quantized (per channel, max scaling, nearest rounding) at b bits
against the float SNN itself, pooled end-to-end level agreement.  Only weights are
quantized there, so it is an upper bound on what an integer SNN at b bits reaches.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "digits"))
sys.path.insert(0, str(ROOT / "tests"))

import train  # noqa: E402
import zoo  # noqa: E402

from snncc.compiler import build_snn  # noqa: E402
from snncc.options import CompileOptions  # noqa: E402
from snncc.pass_context import PassContext  # noqa: E402
from snncc.passes import quantize  # noqa: E402
from snncc.sim.float_runtime import run  # noqa: E402
from snncc.sim.int_runtime import level_agreement, pooled_agreement, quantize_input, run_int  # noqa: E402
from snncc.sim.snn_sim import simulate  # noqa: E402

MODELS = ("digits", "resnet8", "concat_net", "mobilenetv2_block", "sew_resnet", "preact_resnet")


def _quiet(_msg):
    pass


def model_path(name: str, folder: Path, x_tr, y_tr) -> Path:
    if name == "digits":
        return ROOT / "examples" / "digits" / "digits_cnn.onnx"
    model = train.train(zoo.build_for_digits(name), x_tr, y_tr)
    return train.export_onnx(model, folder / f"{name}.onnx")


def fake_quant_weights(snn, bits: int):
    """The float SNN with every conv/dense weight on a per-channel b-bit grid (max scaling)."""
    g = snn.copy()
    qmax = (1 << (bits - 1)) - 1
    for node in g.nodes:
        if node.op in ("conv", "dense"):
            w = np.asarray(node.params["weight"], dtype=np.float64)
            rows = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
            step = np.where(rows > 0, rows / qmax, 1.0).reshape((-1,) + (1,) * (w.ndim - 1))
            node.params["weight"] = np.rint(w / step) * step
    return g


def e2e_float(snn, snn_q, x) -> float:
    names = [n.name for n in snn.nodes if n.op == "neuron"]
    ref = simulate(snn, x, timesteps=1, capture=names).captured
    got = simulate(snn_q, x, timesteps=1, capture=names).captured
    same = sum(int((ref[n] == got[n]).sum()) for n in names)
    return same / sum(ref[n].size for n in names)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--bits", nargs="+", type=int, default=[6, 8, 10, 12, 14, 16])
    args = ap.parse_args(argv)
    x_tr, y_tr, x_te, y_te = train.load_digits_split()
    x_cal = x_tr[:256]
    rows, bit_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            t0 = time.perf_counter()
            path = model_path(name, Path(tmp), x_tr, y_tr)
            options = CompileOptions()
            res = build_snn(path, options, x_cal, echo=_quiet)
            gi, snn = res.int_graph, res.snn_graph
            agree = level_agreement(gi, snn, x_te)
            off = quantize.run(snn, PassContext(replace(options, step_search=False), res.context.calib))
            e2e_off = pooled_agreement(level_agreement(off, snn, x_te), "end_to_end")
            ann = np.asarray(run(res.float_graph, x_te)).reshape(len(x_te), -1)
            fsnn = simulate(snn, x_te).logits.reshape(len(x_te), -1)
            isnn = run_int(gi, quantize_input(gi, x_te))[gi.outputs[0]].reshape(len(x_te), -1)
            acc = [float((a.argmax(1) == y_te).mean()) for a in (ann, fsnn, isnn)]
            rows.append((name, pooled_agreement(agree, "isolated"), min(v["isolated"] for v in agree.values()),
                         pooled_agreement(agree, "end_to_end"), min(v["end_to_end"] for v in agree.values()),
                         e2e_off, *acc, time.perf_counter() - t0))
            bit_rows.append((name, [e2e_float(snn, fake_quant_weights(snn, b), x_te) for b in args.bits]))
            print(f"{name}: done in {rows[-1][-1]:.1f} s", file=sys.stderr, flush=True)
    print("| model | iso | iso_min | e2e | e2e_min | e2e (no search) | ANN | float SNN | int SNN |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | " + " | ".join(f"{v:.4f}" for v in r[1:9]) + " |")
    print()
    print("| model | " + " | ".join(f"{b}-bit" for b in args.bits) + " |")
    print("|---|" + "---|" * len(args.bits))
    for name, vals in bit_rows:
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
