"""Sparse-ResNet barriers vs SEW sums of levels on the SEW-like digits ResNets.

Trains net (a) of ``tests/residual_models.py`` (``--net sew``, 6 blocks in 3 stages whose
downsampling shortcuts re-spike the stream) or its deep variant (``--net sew_deep``, one
stage of 8 blocks, identity shortcuts only), seeded, compiles it with
``--residual sew`` and ``--residual sparse`` for barrier scales k in {1, 1.25, 1.5, 2},
and prints, per inference on the digits test split: spike events, level mass,
synaptic input events and SOPs (definitions in ``snncc/activity.py``; measured on the
float SNN's simulation), top-1
accuracy of the float SNN and of the integer SNN, and each mode's per-block
avalanche profile, with the event density of each join output (the fraction of its
elements that are non-zero: what the next block's synapses see as events) and, in
sparse mode, the fraction of positive join sums that each barrier rounds to 0 (on the
integer SNN: the only way a barrier removes an event).

    .venv/bin/python bench/residual_activity.py [--net sew|sew_deep] [--levels 4] [--threshold-search none|output]

The barriers here are post-training: no fine-tuning with the barriers in place.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import residual_models  # noqa: E402

from snncc.activity import format_activity, simulate_activity  # noqa: E402
from snncc.calib_data import load_calib  # noqa: E402
from snncc.frontend.onnx_import import load_onnx  # noqa: E402
from snncc.options import CompileOptions  # noqa: E402
from snncc.pass_context import PassContext  # noqa: E402
from snncc.pass_manager import run_pipeline  # noqa: E402
from snncc.sim.int_runtime import quantize_input, run_int  # noqa: E402

KS = (1.0, 1.25, 1.5, 2.0)
NETS = {"sew": "net (a): SEW-like ResNet, 6 blocks (3 stages x 2)",
        "sew_deep": "net sew_deep: SEW-like ResNet, 8 blocks in one stage (identity shortcuts)"}


def run_point(onnx_path, models, mode: str, k: float, levels: int, search: str):
    opts = CompileOptions(levels=levels, residual=mode, barrier_scale=k, threshold_search=search).validate()
    ctx = PassContext(opts, load_calib(models.x_calib, (1, 8, 8)))
    snn = run_pipeline(load_onnx(onnx_path), ["canonicalize", "calibrate", "residual", "convert"], ctx)
    sim, rep = simulate_activity(snn, models.x_test)
    intg = run_pipeline(snn, ["quantize"], ctx)
    bars = barriers(intg)
    got = run_int(intg, quantize_input(intg, models.x_test),
                  capture=sorted({v for n in bars for v in (n.inputs[0], n.output)}))
    out = got[intg.outputs[0]]
    rep["barrier_zeroed"] = [float(np.count_nonzero((got[n.inputs[0]] > 0) & (got[n.output] == 0))
                                   / max(np.count_nonzero(got[n.inputs[0]] > 0), 1)) for n in bars]
    y = models.y_test
    acc = float((sim.logits.argmax(1) == y).mean())
    acc_int = float((out.reshape(len(y), -1).argmax(1) == y).mean())
    return acc, acc_int, rep


def barriers(graph):
    """The barrier neurons of an integer SNN, in graph order."""
    return [n for n in graph.nodes if n.op == "neuron" and n.attrs.get("barrier")]


def join_density(rep: dict) -> list[float]:
    """Per block: non-zero join outputs (barrier spikes, or non-zero SEW sums) / join elements."""
    joins = [b["join"] for b in rep["blocks"] if "join" in b]
    return [j["events"] / (j["elements"] * rep["timesteps"]) for j in joins]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="sew", choices=tuple(NETS))
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--threshold-search", default="none", choices=("none", "output"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        models = residual_models.train_all(Path(tmp), names=(args.net,))
        path = models[args.net].onnx_path
        print(f"{NETS[args.net]}, ANN test accuracy {models[args.net].ann_test_accuracy:.4f} "
              f"({len(models.y_test)} test images), N={args.levels}, T=1, 8-bit weights, "
              f"threshold search {args.threshold_search}")
        points = [("sew", 1.0)] + [("sparse", k) for k in KS]
        results = {p: run_point(path, models, *p, args.levels, args.threshold_search) for p in points}
    base = results[("sew", 1.0)][2]["totals"]
    print()
    print(f"{'mode':<8s} {'k':>5s} {'spike ev.':>10s} {'level mass':>10s} {'syn. events':>11s} {'vs sew':>7s} "
          f"{'SOPs':>10s} {'vs sew':>7s} {'max join':>8s} {'aval.':>6s} {'top-1 SNN':>9s} {'top-1 int':>9s}")
    for (mode, k), (acc, acc_int, rep) in results.items():
        t = rep["totals"]
        k_text = f"{k:.2f}" if mode == "sparse" else "-"
        print(f"{mode:<8s} {k_text:>5s} {t['spike_events']:>10.1f} "
              f"{t['spike_levels']:>10.1f} {t['synaptic_events']:>11.1f} "
              f"{100 * (t['synaptic_events'] / base['synaptic_events'] - 1):>+6.2f}% {t['sops']:>10.0f} "
              f"{100 * (t['sops'] / base['sops'] - 1):>+6.2f}% {rep['max_join_level']:>8d} "
              f"{rep['avalanche']['geomean']:>6.3f} {acc:>9.4f} {acc_int:>9.4f}")
    for (mode, k), (_, _, rep) in results.items():
        if mode == "sew" or k in (1.0, 2.0):
            print()
            print(f"[{mode}{'' if mode == 'sew' else f', k={k:g}'}]")
            print(format_activity(rep))
            print("join event density per block: " + " ".join(f"{d:.3f}" for d in join_density(rep)))
            if rep["barrier_zeroed"]:
                print("positive join sums a barrier maps to 0, per block: "
                      + " ".join(f"{z:.3f}" for z in rep["barrier_zeroed"]))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
