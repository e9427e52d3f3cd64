"""Fine-tuning on the exact integer semantics (snncc finetune): what it recovers, measured.

Everything is measured on held-out data: the digits CNN (examples/digits/digits_cnn.onnx)
and the SEW digits net (tests/residual_models.py) on sklearn's 8x8 digits split as the
example makes it (1257 train / 540 test, examples/digits/train.py).  Compile calibrates on
256 training images, fine-tuning uses the 1257 training images (labels), the test split
is never seen before the figures.  No validation split: the last epoch is kept.

Rows (digits CNN, the integer SNN, i.e. what the C code computes):

- ``N=2``, 8-bit weights, T=1 (goal: within 1 point of the ANN);
- ``2-bit weights``, first and last layers at 8 bits, N=4, T=1 (goal: within 1.5 points);
- ``binary N=1, T=4`` (goal: within 1.5 points); ``binary N=1, T=1`` (reported);
- ``rescaw`` against ``mse`` at 2 and 4 bits, N=4, T=1, the same fine-tune;
- Sparse-ResNet barriers against SEW on the SEW digits net, both fine-tuned the same way:
  accuracy and synaptic events per inference (a synaptic event: one non-zero input level
  reaching one synapse, counted on the integer SNN's inputs of every conv/dense/affine
  that reads spike levels; the first conv reads the image and is left out).
- the same on the deep SEW digits net (``--only sew_deep``: 8 SEW blocks in one stage,
  identity shortcuts only, where the sums of levels run through every join), with the
  fine-tuned integer SNN's spike events and level mass as well (snncc/activity.py's spike
  sources: neurons and SEW joins, a SEW sum being one multi-level spike); ``--only
  sew_depth``: sew, sparse k=1 and k=2 on that net with 2, 4, 8 and 12 blocks;
  ``--seed``: the deep nets' training seed (default 0, residual_models.SEED).

- prune + fine-tune: structured pruning (l1) at low bits, N=4, T=1, and the integer
  parameter memory against the fp32 ANN's (memory_report's ``compression``);
- real data (``--only fashion_cnn,cifar10_vgg,cifar10_resnet20``): the example models of
  bench/real_data.py, compiled with their snncc.toml and committed calibration set,
  fine-tuned on a seeded subset of their training split (``--train-count``), tested on
  their test split (``--test-samples`` evenly spaced images, default all).  CIFAR-10 is
  the lossy-JPEG copy in ../shared/data (examples/cifar10/README.md).

The wall time of each fine-tune is printed (torch on ``--threads`` threads, default 1);
the machine is shared, so it is noisy.

    .venv/bin/python bench/finetune.py [--epochs 20] [--threads 1] [--only digits,rescaw,sew,prune,fashion_cnn]
        [--only sew_deep,sew_depth --seed 0]
        [--train-count 20000 --lr 5e-4 --distill --test-samples 1000]
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
sys.path.insert(0, str(ROOT / "examples" / "digits"))

import train as digits_train  # noqa: E402

from snncc import ops  # noqa: E402
from snncc.calib_data import CalibData  # noqa: E402
from snncc.compiler import build_snn  # noqa: E402
from snncc.finetune.run import Request, tune  # noqa: E402
from snncc.options import CompileOptions  # noqa: E402
from snncc.sim import kernels as K  # noqa: E402
from snncc.sim.float_runtime import run_graph  # noqa: E402
from snncc.sim.int_runtime import quantize_input, run_int  # noqa: E402

DIGITS = ROOT / "examples" / "digits" / "digits_cnn.onnx"
CALIB = 256
THREADS = [1]
# (residual mode, --barrier-scale k, activity weight a): a > 0 adds the spike-activity term to the loss
SEW_POINTS = [("sew", 1.0, 0.0), ("sparse", 1.0, 0.0), ("sparse", 1.5, 0.0), ("sparse", 2.0, 0.0), ("sparse", 3.0, 0.0),
              ("sew", 1.0, 0.5), ("sparse", 1.0, 0.5)]
SEW_DEEP_POINTS = [("sew", 1.0, 0.0), ("sparse", 1.0, 0.0), ("sparse", 1.5, 0.0), ("sparse", 2.0, 0.0),
                   ("sparse", 3.0, 0.0)]
SEW_DEPTHS = (2, 4, 8, 12)  # blocks in the one stage of the sew_depth rows
SEW_DEPTH_POINTS = [("sew", 1.0), ("sparse", 1.0), ("sparse", 2.0)]


def int_accuracy(graph, x, y) -> float:
    out = run_int(graph, quantize_input(graph, x))[graph.outputs[0]]
    return float((out.reshape(len(y), -1).argmax(1) == y).mean())


def ann_accuracy(onnx_path, x, y) -> float:
    from snncc.frontend.onnx_import import load_onnx

    g = load_onnx(onnx_path)
    return float((run_graph(g, x)[g.outputs[0]].argmax(1) == y).mean())


def synaptic_events(graph, x) -> float:
    """Per inference: non-zero input levels times the synapses each reaches, over the layers reading spikes."""
    readers = [n for n in graph.nodes if n.op in ops.SYNAPTIC and n.inputs[0] not in graph.inputs]
    got = run_int(graph, quantize_input(graph, x), capture=sorted({n.inputs[0] for n in readers}))
    total = 0.0
    for n in readers:
        nz = (got[n.inputs[0]] != 0).astype(np.float64)
        if n.op == "conv":
            a = n.attrs
            ones = np.ones(n.params["weight"].shape, np.float64)
            total += float(K.conv2d(nz, ones, None, a["strides"], a["pads"], a["dilations"], a["group"]).sum())
        elif n.op == "dense":
            total += float(nz.sum()) * n.params["weight"].shape[0]
        else:  # affine: one synapse per element
            total += float(nz.sum())
    return total / len(x)


def spike_activity(graph, x) -> tuple[float, float]:
    """Per inference on the integer SNN (T=1): spike events and level mass of the spike sources.

    The sources are snncc/activity.py's: every neuron, and every SEW join (an add of levels),
    whose non-zero sums are multi-level spikes.  The first layer's direct input is not a spike.
    """
    from snncc.activity import level_adds
    from snncc.sim.int_runtime import run_int_levels

    if int(graph.meta.get("timesteps", 1)) != 1:
        raise ValueError("spike_activity counts the SEW joins at T=1 only")
    joins = [n.output for n in level_adds(graph)]
    got, stats = run_int_levels(graph, quantize_input(graph, x), capture=joins)
    events = sum(float(s["events"].sum()) for s in stats.values())
    levels = sum(float(s["levels"].sum()) for s in stats.values())
    for v in joins:
        events += float(np.count_nonzero(got[v]))
        levels += float(np.abs(got[v].astype(np.int64)).sum())
    return events / len(x), levels / len(x)


def point(onnx_path, opts: dict, data, epochs: int, distill: bool = False, events: bool = False,
          activity: float = 0.0) -> dict:
    x_tr, y_tr, x_te, y_te = data
    options = CompileOptions(**opts).validate()
    result = build_snn(onnx_path, options, x_tr[:CALIB], echo=lambda s: None)
    row = {"post": int_accuracy(result.int_graph, x_te, y_te)}
    if events:
        row["events_post"] = synaptic_events(result.int_graph, x_te)
    train = CalibData(x_tr, y_tr, x_tr.shape[1:], "train split", "data")
    req = Request(data="train split", epochs=epochs, distill=distill, threads=THREADS[0], activity=activity)
    out = tune(result, options, req, train, None, echo=lambda s: None)
    row["tuned"] = int_accuracy(result.int_graph, x_te, y_te)
    row["seconds"] = out.seconds
    if events:
        row["events"] = synaptic_events(result.int_graph, x_te)
        row["spikes"], row["levels"] = spike_activity(result.int_graph, x_te)
    return row


def digits_rows(data, epochs: int, ann: float) -> None:
    rows = [
        ("N=2, 8-bit, T=1", {"levels": 2}, 1.0),
        ("2-bit (first/last 8), N=4, T=1", {"weight_bits": 2, "layer_bits": {"first": 8, "last": 8}}, 1.5),
        ("binary N=1, 8-bit, T=4", {"levels": 1, "timesteps": 4}, 1.5),
        ("binary N=1, 8-bit, T=1", {"levels": 1}, None),
    ]
    print(f"digits CNN, ANN test accuracy {100 * ann:.2f}% ({len(data[3])} test images), "
          f"{epochs} epochs of fine-tuning on {len(data[1])} training images")
    print(f"{'row':<32s} {'post-train':>10s} {'fine-tuned':>10s} {'drop':>7s} {'goal':>6s} {'met':>4s} "
          f"{'time':>7s}")
    for label, opts, goal in rows:
        r = point(DIGITS, opts, data, epochs)
        drop = 100 * (ann - r["tuned"])
        met = "-" if goal is None else ("yes" if drop <= goal else "no")
        print(f"{label:<32s} {100 * r['post']:>9.2f}% {100 * r['tuned']:>9.2f}% {drop:>6.2f} "
              f"{'-' if goal is None else f'{goal:.1f}':>6s} {met:>4s} {r['seconds']:>6.1f}s", flush=True)


def rescaw_rows(data, epochs: int, ann: float) -> None:
    print(f"\nReScaW vs mse after the same fine-tune ({epochs} epochs), digits CNN, N=4, T=1, all layers at b bits")
    print(f"{'bits':>4s} {'quantizer':<9s} {'post-train':>10s} {'fine-tuned':>10s} {'drop':>7s} {'time':>7s}")
    for bits in (2, 4):
        for q in ("mse", "rescaw"):
            r = point(DIGITS, {"weight_bits": bits, "weight_quantizer": q}, data, epochs)
            print(f"{bits:>4d} {q:<9s} {100 * r['post']:>9.2f}% {100 * r['tuned']:>9.2f}% "
                  f"{100 * (ann - r['tuned']):>6.2f} {r['seconds']:>6.1f}s", flush=True)


def sew_compare(onnx_path, points, data, epochs: int, detail: bool) -> None:
    """Fine-tune ``onnx_path`` at each (residual mode, k, a) of ``points``; print each row and each sparse row
    against the sew row of the same a (or a = 0).  ``detail`` adds spikes and level mass (and the points gap)."""
    extra = f" {'spikes tuned':>12s} {'levels tuned':>12s}" if detail else ""
    print(f"{'residual':<14s} {'post-train':>10s} {'fine-tuned':>10s} {'syn. events post':>16s} "
          f"{'syn. events tuned':>17s}{extra} {'time':>7s}")
    res = {}
    for mode, k, act in points:
        r = point(onnx_path, {"residual": mode, "barrier_scale": k}, data, epochs, events=True, activity=act)
        res[(mode, k, act)] = r
        label = (mode if mode == "sew" else f"sparse k={k:g}") + (f" a={act:g}" if act else "")
        extra = f" {r['spikes']:>12.1f} {r['levels']:>12.1f}" if detail else ""
        print(f"{label:<14s} {100 * r['post']:>9.2f}% {100 * r['tuned']:>9.2f}% {r['events_post']:>16.1f} "
              f"{r['events']:>17.1f}{extra} {r['seconds']:>6.1f}s", flush=True)
    for (mode, k, act), r in res.items():
        if mode != "sparse":
            continue
        sew = res[("sew", 1.0, act)] if ("sew", 1.0, act) in res else res[("sew", 1.0, 0.0)]
        tag = f" a={act:g}" if act else ""
        fewer = {key: 100 * (1 - r[key] / sew[key]) for key in ("events", "spikes", "levels")}
        more = (f", {fewer['spikes']:.2f}% fewer spikes, {fewer['levels']:.2f}% less level mass" if detail else "")
        gap = f" ({100 * (r['tuned'] - sew['tuned']):+.2f} points)" if detail else ""
        print(f"sparse k={k:g}{tag} vs sew{tag} after fine-tuning: {fewer['events']:.2f}% fewer synaptic events "
              f"(goal >= 20%){more}, accuracy {100 * r['tuned']:.2f}% vs {100 * sew['tuned']:.2f}%{gap}")


def sew_rows(data, epochs: int) -> None:
    import residual_models

    with tempfile.TemporaryDirectory() as tmp:
        models = residual_models.train_all(Path(tmp), names=("sew",))
        m = models["sew"]
        print(f"\nSEW digits net (tests/residual_models.py net (a)), ANN test accuracy "
              f"{100 * m.ann_test_accuracy:.2f}%,"
              f" N=4, T=1, 8-bit weights, {epochs} epochs of fine-tuning each")
        print("(k: --barrier-scale, the barrier neurons' thresholds times k before fine-tuning; a: weight of the "
              "spike-activity term in the fine-tune's loss)")
        sew_compare(m.onnx_path, SEW_POINTS, data, epochs, detail=False)


def deep_sew_net(folder, data, blocks: int, seed: int):
    """The deep SEW digits net (tests/residual_models.py sew_deep) with ``blocks`` blocks, trained from ``seed``."""
    import residual_models

    return residual_models.train_one("sew_deep", Path(folder), data, seed, blocks=blocks)


def sew_deep_rows(data, epochs: int, seed: int) -> None:
    """Sparse-ResNet against SEW on the deep SEW digits net: events, spikes and level mass after fine-tuning."""
    with tempfile.TemporaryDirectory() as tmp:
        m = deep_sew_net(tmp, data, 8, seed)
        print(f"\ndeep SEW digits net (tests/residual_models.py sew_deep: 8 SEW blocks in one stage, identity "
              f"shortcuts, trained from seed {seed}), ANN test accuracy {100 * m.ann_test_accuracy:.2f}%, N=4, T=1, "
              f"8-bit weights, {epochs} epochs of fine-tuning each")
        print("(syn. events: as in the SEW section; spikes and level mass: per inference on the fine-tuned "
              "integer SNN, neurons and SEW joins)")
        sew_compare(m.onnx_path, SEW_DEEP_POINTS, data, epochs, detail=True)


def sew_depth_rows(data, epochs: int, seed: int) -> None:
    """The same comparison against depth: one stage of 2, 4, 8 and 12 SEW blocks (the avalanche needs depth)."""
    print(f"\nSparse-ResNet vs SEW against depth: sew_deep with B blocks in one stage (identity shortcuts), "
          f"trained from seed {seed}, N=4, T=1, 8-bit weights, {epochs} epochs of fine-tuning each; "
          "'vs sew': change against the same net's sew row after fine-tuning")
    print(f"{'B':>2s} {'ANN':>6s} {'residual':<11s} {'post-train':>10s} {'fine-tuned':>10s} {'syn. events':>11s} "
          f"{'vs sew':>7s} {'spikes':>8s} {'vs sew':>7s} {'levels':>8s} {'vs sew':>7s} {'time':>7s}")
    for blocks in SEW_DEPTHS:
        with tempfile.TemporaryDirectory() as tmp:
            m = deep_sew_net(tmp, data, blocks, seed)
            sew = None
            for mode, k in SEW_DEPTH_POINTS:
                r = point(m.onnx_path, {"residual": mode, "barrier_scale": k}, data, epochs, events=True)
                sew = sew or r
                label = mode if mode == "sew" else f"sparse k={k:g}"
                vs = {key: 100 * (r[key] / sew[key] - 1) for key in ("events", "spikes", "levels")}
                print(f"{blocks:>2d} {100 * m.ann_test_accuracy:>5.2f}% {label:<11s} {100 * r['post']:>9.2f}% "
                      f"{100 * r['tuned']:>9.2f}% {r['events']:>11.1f} {vs['events']:>+6.2f}% {r['spikes']:>8.1f} "
                      f"{vs['spikes']:>+6.2f}% {r['levels']:>8.1f} {vs['levels']:>+6.2f}% {r['seconds']:>6.1f}s",
                      flush=True)


def prune_rows(data, epochs: int, ann: float) -> None:
    from snncc.memory_report import memory_report

    configs = [
        ("prune 0.25, 4-bit", {"prune": 0.25, "weight_bits": 4}),
        ("prune 0.5, 4-bit", {"prune": 0.5, "weight_bits": 4}),
        ("prune 0.5, 2-bit (first/last 4)", {"prune": 0.5, "weight_bits": 2, "layer_bits": {"first": 4, "last": 4}}),
        ("prune 0.5, 2-bit (first/last 8)", {"prune": 0.5, "weight_bits": 2, "layer_bits": {"first": 8, "last": 8}}),
        ("prune 0.2, 4-bit", {"prune": 0.2, "weight_bits": 4}),
        ("prune 0.25, 3-bit", {"prune": 0.25, "weight_bits": 3}),
        ("prune 0.3, 3-bit", {"prune": 0.3, "weight_bits": 3}),
        ("prune 0.25, 4-bit, distilled", {"prune": 0.25, "weight_bits": 4}, True),
        ("/7/Conv=0.5 /3/Conv=0.25, 4-bit", {"prune_layers": {"/7/Conv": 0.5, "/3/Conv": 0.25}, "weight_bits": 4}),
        ("/7/Conv=0.4 /3/Conv=0.2, 4-bit", {"prune_layers": {"/7/Conv": 0.4, "/3/Conv": 0.2}, "weight_bits": 4}),
        ("prune 0.3, 3-bit, distilled", {"prune": 0.3, "weight_bits": 3}, True),
    ]
    print(f"\nprune + fine-tune ({epochs} epochs), digits CNN, N=4, T=1: integer parameter memory (weights, biases, "
          "thresholds, shortcut weights) against the fp32 ANN's parameters (goal: >= 13x at <= 1 point drop)")
    print(f"{'config':<34s} {'post-train':>10s} {'fine-tuned':>10s} {'drop':>7s} {'param bytes':>11s} "
          f"{'vs fp32':>8s} {'time':>7s}")
    x_tr, y_tr, x_te, y_te = data
    for label, opts, *distill in configs:
        options = CompileOptions(**opts).validate()
        result = build_snn(DIGITS, options, x_tr[:CALIB], echo=lambda s: None)
        post = int_accuracy(result.int_graph, x_te, y_te)
        train = CalibData(x_tr, y_tr, x_tr.shape[1:], "train split", "data")
        req = Request(data="train split", epochs=epochs, threads=THREADS[0], distill=bool(distill and distill[0]))
        out = tune(result, options, req, train, None, echo=lambda s: None)
        tuned = int_accuracy(result.int_graph, x_te, y_te)
        mem = memory_report(result.int_graph, result.float_graph)
        print(f"{label:<34s} {100 * post:>9.2f}% {100 * tuned:>9.2f}% {100 * (ann - tuned):>6.2f} "
              f"{mem['param_bytes']:>11d} {mem['compression']:>7.2f}x {out.seconds:>6.1f}s", flush=True)


REAL_ROWS = {  # the acceptance rows on real data (#15): label, compile options over the example's snncc.toml
    "fashion_cnn": [("N=4, 8-bit, T=1", {"levels": 4}),
                    ("N=2, 8-bit, T=1", {"levels": 2}),
                    ("2-bit (first/last 8), N=4, T=1", {"weight_bits": 2, "layer_bits": {"first": 8, "last": 8}}),
                    ("binary N=1, 8-bit, T=4", {"levels": 1, "timesteps": 4}),
                    ("binary N=1, 8-bit, T=1", {"levels": 1})],
    "cifar10_vgg": [("N=4, 8-bit, T=1", {"levels": 4}), ("N=2, 8-bit, T=1", {"levels": 2})],
    "cifar10_resnet20": [("N=4, 8-bit, T=1", {"levels": 4}), ("N=2, 8-bit, T=1", {"levels": 2})],
}


def real_rows(name: str, epochs: int, train_count: int, test_count: int | None, lr: float, distill: bool,
              levels: set[int] | None = None, sets: tuple[str, ...] = ()) -> None:
    """An example model (bench/real_data.py's loaders): post-training and fine-tuned accuracy on its test set.

    Compile calibrates on the example's committed calibration set with its snncc.toml; the
    fine-tune uses a seeded subset of the training split; the test split is never seen before
    the figures.
    """
    import real_data
    from ptq_layers import options_for

    onnx_path, config, calib, x_te, y_te = real_data.MODELS[name]()
    x_te, y_te = real_data.test_subset(x_te, y_te, test_count)
    folder = onnx_path.parent
    module = real_data.example_train(folder)
    x_tr, y_tr = getattr(module, f"load_{folder.name}")("train")
    pick = np.sort(np.random.default_rng(0).permutation(len(x_tr))[:train_count])
    train = CalibData(x_tr[pick], y_tr[pick], x_tr.shape[1:], "train split", "data")
    calib_x = np.load(calib)["x"]
    ann = real_data.ann_accuracy(onnx_path, x_te, y_te)

    print(f"\n{name} ({folder.relative_to(ROOT)}), ANN test accuracy {100 * ann:.2f}% ({len(y_te)} test images), "
          f"{epochs} epochs of fine-tuning on {len(pick)} training images (a seeded subset), lr {lr:g}"
          f"{', distilled from the ANN' if distill else ''}{', options ' + ' '.join(sets) if sets else ''}")
    print(f"{'row':<32s} {'post-train':>10s} {'fine-tuned':>10s} {'drop':>7s} {'time':>7s}")
    for label, opts in REAL_ROWS[name]:
        if levels and opts.get("levels", 4) not in levels:
            continue
        options = options_for(config, sets)
        for key, value in opts.items():
            setattr(options, key, value)
        options.validate()
        result = build_snn(onnx_path, options, calib_x, echo=lambda s: None)
        post = real_data.int_accuracy(result.int_graph, x_te, y_te)
        req = Request(data="train split", epochs=epochs, lr=lr, distill=distill, threads=THREADS[0])
        out = tune(result, options, req, train, None, echo=lambda s: None)
        tuned = real_data.int_accuracy(result.int_graph, x_te, y_te)
        print(f"{label:<32s} {100 * post:>9.2f}% {100 * tuned:>9.2f}% {100 * (ann - tuned):>6.2f} "
              f"{out.seconds:>6.1f}s", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20, help="fine-tune epochs per row (default 20)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--only", default="digits,rescaw,sew,prune",
                    help="comma list: sections digits, rescaw, sew, prune (default these four), sew_deep, "
                         "sew_depth, and the real-data models " + ",".join(REAL_ROWS))
    ap.add_argument("--seed", type=int, default=0, help="training seed of the deep SEW nets (sew_deep, sew_depth)")
    ap.add_argument("--train-count", type=int, default=10000, help="training images for the real-data rows")
    ap.add_argument("--test-samples", type=int, help="evenly spaced test images for the real-data rows (default all)")
    ap.add_argument("--lr", type=float, default=2e-3,
                    help="Adam's learning rate (the CLI's default; real-data rows only)")
    ap.add_argument("--distill", action="store_true", help="distill from the float ANN's logits (real-data rows only)")
    ap.add_argument("--levels", help="only the real-data rows at these N (comma list)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="compile option override for the real-data rows (e.g. threshold_refine=all)")
    args = ap.parse_args(argv)
    THREADS[0] = args.threads
    t0 = time.perf_counter()
    x_tr, y_tr, x_te, y_te = digits_train.load_digits_split()
    data = (x_tr, y_tr, x_te, y_te)
    ann = ann_accuracy(DIGITS, x_te, y_te)
    parts = set(args.only.split(","))
    if "digits" in parts:
        digits_rows(data, args.epochs, ann)
    if "rescaw" in parts:
        rescaw_rows(data, args.epochs, ann)
    if "sew" in parts:
        sew_rows(data, args.epochs)
    if "sew_deep" in parts:
        sew_deep_rows(data, args.epochs, args.seed)
    if "sew_depth" in parts:
        sew_depth_rows(data, args.epochs, args.seed)
    if "prune" in parts:
        prune_rows(data, args.epochs, ann)
    for name in REAL_ROWS:
        if name in parts:
            real_rows(name, args.epochs, args.train_count, args.test_samples, args.lr, args.distill,
                      {int(n) for n in args.levels.split(",")} if args.levels else None, tuple(args.set))
    print(f"\n({time.perf_counter() - t0:.0f} s in all, torch threads {args.threads}; the machine is shared: "
          "times are noisy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
