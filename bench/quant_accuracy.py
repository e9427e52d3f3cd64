"""Digits accuracy of the integer SNN x weight bits x weight quantizer x spike levels N.

Usage: ``python bench/quant_accuracy.py [--levels 2 4] [--bits 2 4 8]``

The model is the committed example (examples/digits/digits_cnn.onnx, trained by
examples/digits/train.py).  Calibration: the first 256 training images; accuracy:
the 540 held-out test images.  T = 1, mse thresholds (threshold search on), 16-bit
membrane.  For each N the float SNN is converted once and then quantized with every
combination.  ``acc`` is the default (GPTQ rounding + bias correction), ``drop_pt``
its loss in points against the ANN, ``nearest`` nearest rounding + bias correction,
``plain`` nearest rounding alone; ``2*`` rows keep the first and last layers at 8 bits.  ``compr`` is the model-size
compression against the fp32 ONNX parameters (weights, biases, thresholds, shortcut
weights at their integer widths); ``w_compr`` compares the weights alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "digits"))

import train  # noqa: E402

from snncc.compiler import build_snn  # noqa: E402
from snncc.memory_report import memory_report  # noqa: E402
from snncc.options import CompileOptions  # noqa: E402
from snncc.pass_context import PassContext  # noqa: E402
from snncc.passes import quantize  # noqa: E402
from snncc.sim.float_runtime import run  # noqa: E402
from snncc.sim.int_runtime import quantize_input, run_int  # noqa: E402
from snncc.sim.snn_sim import simulate  # noqa: E402

QUANTIZERS = ("max", "percentile", "mse", "rescaw")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--bits", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--model", type=Path, default=ROOT / "examples" / "digits" / "digits_cnn.onnx")
    args = ap.parse_args(argv)

    x_tr, _, x_te, y_te = train.load_digits_split()
    calib = x_tr[:256]
    t0 = time.perf_counter()
    rows = []
    ann_acc = None
    for n in args.levels:
        options = CompileOptions(levels=n, timesteps=1, threshold="mse")
        res = build_snn(args.model, options, calib, pipeline=["canonicalize", "calibrate", "convert"],
                        echo=lambda _m: None)
        if ann_acc is None:
            ann_acc = float((run(res.float_graph, x_te).argmax(1) == y_te).mean())
        snn_acc = float((simulate(res.snn_graph, x_te).logits.argmax(1) == y_te).mean())
        configs = [(b, {}) for b in sorted(args.bits, reverse=True)]
        if 2 in args.bits:
            configs.append((2, {"first": 8, "last": 8}))
        for bits, layer_bits in configs:
            for q in QUANTIZERS:
                accs = []
                for rounding, bc in (("gptq", True), ("nearest", True), ("nearest", False)):
                    opts = replace(options, weight_bits=bits, layer_bits=layer_bits, weight_quantizer=q,
                                   bias_correction=bc, weight_rounding=rounding)
                    gi = quantize.run(res.snn_graph, PassContext(opts, res.context.calib))
                    out = run_int(gi, quantize_input(gi, x_te))[gi.outputs[0]]
                    accs.append(float((out.argmax(1) == y_te).mean()))
                    if rounding == "gptq":
                        mem = memory_report(gi, res.float_graph)
                rows.append((n, f"{bits}*" if layer_bits else str(bits), q, snn_acc, *accs,
                             mem["compression"], mem["weight_compression"], mem["param_bytes"]))
    print(f"digits CNN: ANN test accuracy {ann_acc:.4f} ({len(y_te)} test images, calibration 256 train images)")
    print(f"{'N':>2} {'bits':>4} {'quantizer':<10} {'snn_float':>9} {'acc':>7} {'drop_pt':>7} {'nearest':>7} "
          f"{'plain':>7} {'compr':>6} {'w_compr':>7} {'bytes':>6}")
    for n, bits, q, snn_acc, acc, acc_near, acc_plain, compr, wcompr, nbytes in rows:
        print(f"{n:>2} {bits:>4} {q:<10} {snn_acc:>9.4f} {acc:>7.4f} {100 * (ann_acc - acc):>7.2f} "
              f"{acc_near:>7.4f} {acc_plain:>7.4f} {compr:>6.2f} {wcompr:>7.2f} {nbytes:>6}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
