"""snncc's integer SNN against hls4ml's C emulation of the same integer network, side by side.

    .venv/bin/python bench/fpga_hls4ml.py [--hls4ml-python /work/hls4ml-venv/bin/python] [--digits 540]

The digits CNN is compiled by snncc (N=4 levels, T=1, 4- and 8-bit weights).  Its integer
network (weights, biases, per-channel thresholds theta) is handed to hls4ml as a
hls4ml user would write it with hls4ml's fixed-point types: each conv/dense in
``ap_int`` weights with the neuron's start value theta//2 folded into the bias, then the
multi-level integrate-and-fire neuron at T=1 as a per-channel fixed-point multiply by
1/theta (a ``BatchNormalization`` layer, scale ``ap_ufixed<18,.>``: the one approximation)
followed by ``hard_sigmoid`` with slope 1/N (clip to [0, N], floor to a level by the
``ap_ufixed`` result type), max pool, global average pool, dense.  Every other type is
wide enough (taken from snncc's range analysis), so every difference comes from 1/theta.

Rows: the thresholds snncc chose, and the same network with every theta forced to the
nearest power of two (capped so that N*theta fits the membrane), where 1/theta is exact;
each with 1/theta quantized by hls4ml's default truncation (``AP_TRN``), by its rounding
(``AP_RND``), and rounded up by the user before hls4ml sees it (``UP``, a magic-number
division: exact when the grid is fine enough for the proven membrane range).
Inputs: all -128, all 127, 16 random int8 images and the ``--digits`` held-out digits.
Columns: the samples whose every output integer equals snncc's, the argmax agreement,
the neuron levels (every layer, every sample) that agree, the first neuron layer's wrong
levels (it sees the same currents on both sides) and how many of them sit at v = k*theta,
and top-1 accuracy on the digits of both.

The hls4ml half runs in hls4ml's own environment (a subprocess: bench/hls4ml_peer.py,
``pip install hls4ml``; it is not a snncc dependency); this file runs in snncc's.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from fpga import build_graph  # noqa: E402

from snncc.errors import SnnccError  # noqa: E402
from snncc.signals import Interrupted, handle_signals, run_child  # noqa: E402
from snncc.sim.int_runtime import quantize_input, run_int  # noqa: E402

PEER = ROOT / "bench" / "hls4ml_peer.py"
SCALE_BITS = 18  # the width of 1/theta: a DSP48's B port


def _bits(n: int) -> int:
    return int(n).bit_length()


def fixed(max_abs: float, frac: int, signed: bool = True) -> str:
    """The ap_fixed type that holds every multiple of 2**-frac up to max_abs in magnitude."""
    whole = _bits(math.ceil(max_abs)) + 1  # one spare bit
    return f"ap_fixed<{whole + frac + 1},{whole + 1}>" if signed else f"ap_ufixed<{whole + frac},{whole}>"


def pow2_thresholds(graph):
    """A copy of ``graph`` with every theta the nearest power of two (in log2), capped so
    that N*theta fits the membrane (then saturation never changes a level at T=1)."""
    g = copy.deepcopy(graph)
    for node in g.nodes:
        if node.op != "neuron":
            continue
        vmax = 2 ** (int(node.attrs["membrane_bits"]) - 1) - 1
        cap = 2 ** int(math.floor(math.log2(vmax / int(node.attrs["levels"]))))
        theta = node.params["theta"].astype(np.int64)
        p2 = np.minimum(2 ** np.rint(np.log2(theta)).astype(np.int64), cap)
        node.params["theta"] = p2.astype(node.params["theta"].dtype)
        node.params["v_init"] = (p2 // 2).astype(node.params["v_init"].dtype)
    return g


def reciprocal(scale: np.ndarray, rounding: str) -> tuple[np.ndarray, int]:
    """(values, integer bits) of the ap_ufixed<SCALE_BITS, .> that holds ``scale`` (1/theta) with its top
    bit used.  ``UP``: the user rounds 1/theta up to that grid before hls4ml sees it (a magic-number
    division; hls4ml then stores it exactly); otherwise hls4ml's own quantization mode applies."""
    top = math.floor(math.log2(scale.max())) + 1
    if rounding != "UP":
        return scale, top
    up = np.ceil(scale * 2.0 ** (SCALE_BITS - top))
    if up.max() >= 2 ** SCALE_BITS:  # rounding up reached the next power of two
        top += 1
        up = np.ceil(scale * 2.0 ** (SCALE_BITS - top))
    return up * 2.0 ** (top - SCALE_BITS), top


def to_spec(graph, rounding: str) -> tuple[dict, dict, dict]:
    """(spec, arrays, facts): ``graph`` (integer IR, T=1) as hls4ml layer dicts.

    Each value v of snncc is carried in hls4ml as v * 2**-frac[v]: the input and
    currents at the scale of their input, levels z as z/N (hard_sigmoid clips to [0, 1]).
    """
    if int(graph.meta.get("timesteps", 1)) != 1:
        raise SnnccError("the hls4ml peer models the T=1 neuron only")
    arrays: dict[str, np.ndarray] = {}
    c, h, w = graph.values[graph.inputs[0]].shape
    layers = [{"class_name": "InputLayer", "name": "x", "input_shape": [h, w, c],
               "precision": {"result": "ap_int<8>"}}]
    frac = {graph.inputs[0]: 0}
    bound = {graph.inputs[0]: 128.0}  # max |value| in hls4ml's units
    nodes = list(graph.nodes)
    neurons = []
    out_name = None
    i = 0
    while i < len(nodes):
        node = nodes[i]
        a, p = node.attrs, node.params
        src = node.inputs[0]
        f_in = frac[src]
        name = f"l{i}_{node.op}"
        if node.op in ("conv", "dense"):
            wq = p["weight"].astype(np.int64)
            nxt = nodes[i + 1] if i + 1 < len(nodes) else None
            fused = nxt is not None and nxt.op == "neuron" and nxt.inputs == [node.output]
            v_init = nxt.params["v_init"].astype(np.int64) if fused else 0
            b_eff = p["bias"].astype(np.int64) + v_init  # the membrane at T=1: theta//2 + I
            b_hls = b_eff * 2.0 ** -f_in
            fan = np.abs(wq.reshape(len(wq), -1)).sum(axis=1)
            acc_max = float(np.abs(b_hls).max() + fan.max() * bound[src])
            prec = {"weight": f"ap_int<{int(a['bits'])}>", "bias": fixed(np.abs(b_hls).max(), f_in),
                    "accum": fixed(acc_max, f_in), "result": fixed(acc_max, f_in)}
            arrays[f"{name}_b"] = b_hls
            if node.op == "conv":
                if int(a["group"]) != 1 or tuple(a["dilations"]) != (1, 1):
                    raise SnnccError("the hls4ml peer maps group-1, undilated convs only", node=node.name)
                ci, hi, wi = graph.values[src].shape
                co, ho, wo = graph.values[node.output].shape
                (kh, kw), (sh, sw), (pt, pl, pb, pr) = wq.shape[2:], a["strides"], a["pads"]
                arrays[f"{name}_w"] = wq.transpose(2, 3, 1, 0)  # (kh, kw, cin, cout), Keras layout
                layers.append({"class_name": "Conv2D", "name": name, "data_format": "channels_last",
                               "in_height": hi, "in_width": wi, "n_chan": ci, "n_filt": co,
                               "filt_height": kh, "filt_width": kw, "stride_height": sh, "stride_width": sw,
                               "pad_top": pt, "pad_left": pl, "pad_bottom": pb, "pad_right": pr,
                               "out_height": ho, "out_width": wo, "precision": prec,
                               "arrays": {"weight_data": f"{name}_w", "bias_data": f"{name}_b"}})
            else:
                arrays[f"{name}_w"] = wq.T  # (n_in, n_out)
                layers.append({"class_name": "Dense", "name": name, "n_in": wq.shape[1], "n_out": wq.shape[0],
                               "precision": prec, "arrays": {"weight_data": f"{name}_w", "bias_data": f"{name}_b"}})
            frac[node.output], bound[node.output] = f_in, acc_max
            out_name = node.output
            if fused:
                i += 1
                n = int(nxt.attrs["levels"])
                if nxt.attrs.get("signed") or n & (n - 1) or int(nxt.attrs.get("membrane_shift", 0)):
                    raise SnnccError("the hls4ml peer maps unsigned neurons with a power-of-two N, no shift",
                                     node=nxt.name)
                theta = nxt.params["theta"].astype(np.int64)
                if n * int(theta.max()) > 2 ** (int(nxt.attrs["membrane_bits"]) - 1) - 1:
                    raise SnnccError("N*theta exceeds the membrane: saturation would change levels", node=nxt.name)
                scale, top = reciprocal(2.0 ** f_in / theta, rounding)  # v*2**-f_in times scale = v / theta
                rnd = "" if rounding in ("AP_TRN", "UP") else f",{rounding}"
                bn, hs = f"{name}_theta", f"{name}_level"
                arrays[f"{bn}_s"], arrays[f"{bn}_b"] = scale, np.zeros_like(scale)
                size = int(np.prod(graph.values[nxt.output].shape))
                channels = graph.values[nxt.output].shape[0]
                y_max = acc_max * float(scale.max())
                layers.append({"class_name": "BatchNormalization", "name": bn, "n_in": size, "n_filt": channels,
                               "data_format": "channels_last",
                               "precision": {"scale": f"ap_ufixed<{SCALE_BITS},{top}{rnd}>", "bias": "ap_uint<1>",
                                             "result": fixed(y_max, 8)},
                               "arrays": {"scale_data": f"{bn}_s", "bias_data": f"{bn}_b"}})
                lv = n.bit_length() - 1
                layers.append({"class_name": "HardActivation", "name": hs, "activation": "hard_sigmoid",
                               "slope": 1.0 / n, "shift": 0.0, "n_in": size,
                               "precision": {"result": f"ap_ufixed<{lv + 1},1>"}, "trace": True})
                neurons.append((nxt.output, hs, n))
                frac[nxt.output], bound[nxt.output] = lv, 1.0
                out_name = nxt.output
        elif node.op == "maxpool":
            ci, hi, wi = graph.values[src].shape
            co, ho, wo = graph.values[node.output].shape
            (kh, kw), (sh, sw), (pt, pl, pb, pr) = a["kernel"], a["strides"], a["pads"]
            layers.append({"class_name": "MaxPooling2D", "name": name, "data_format": "channels_last",
                           "in_height": hi, "in_width": wi, "n_filt": ci, "pool_height": kh, "pool_width": kw,
                           "stride_height": sh, "stride_width": sw, "pad_top": pt, "pad_left": pl,
                           "pad_bottom": pb, "pad_right": pr, "out_height": ho, "out_width": wo,
                           "precision": {"result": f"ap_ufixed<{frac[src] + 1},1>",
                                         "accum": f"ap_ufixed<{frac[src] + 1},1>"}})
            frac[node.output], bound[node.output] = frac[src], bound[src]
        elif node.op == "sumpool":
            ci, hi, wi = graph.values[src].shape
            k = hi * wi
            if tuple(a["kernel"]) != (hi, wi) or any(a["pads"]) or k & (k - 1):
                raise SnnccError("the hls4ml peer maps a global sum pool over a power-of-two area only",
                                 node=node.name)
            f_out = frac[src] + k.bit_length() - 1  # the average: the sum times 2**-log2(k)
            layers.append({"class_name": "GlobalAveragePooling2D", "name": name, "data_format": "channels_last",
                           "in_height": hi, "in_width": wi, "n_filt": ci, "keepdims": False,
                           "precision": {"accum": fixed(bound[src] * k, f_out, signed=False),
                                         "result": fixed(bound[src], f_out, signed=False)}})
            frac[node.output], bound[node.output] = f_out, bound[src]
        elif node.op == "flatten":
            if int(np.prod(graph.values[src].shape)) != graph.values[src].shape[0]:
                raise SnnccError("the hls4ml peer flattens (C, 1, 1) only", node=node.name)
            frac[node.output], bound[node.output] = frac[src], bound[src]
        else:
            raise SnnccError("the hls4ml peer has no mapping for this op", node=node.name, op=node.op)
        i += 1
    if out_name != graph.outputs[0]:
        raise SnnccError("the hls4ml peer needs the graph output to come from the last layer")
    spec = {"default_precision": "ap_fixed<32,16>", "layers": layers}
    facts = {"out_frac": frac[out_name], "neurons": neurons}
    return spec, arrays, facts


def run_peer(python: str, graph, x_q: np.ndarray, rounding: str, work: Path) -> dict:
    """Run ``graph`` on ``x_q`` (N, C, H, W int8) in hls4ml's C emulation: out_q and the levels of every neuron."""
    spec, arrays, facts = to_spec(graph, rounding)
    work.mkdir(parents=True)
    (work / "spec.json").write_text(json.dumps(spec, indent=1))
    np.savez(work / "in.npz", x=x_q.transpose(0, 2, 3, 1).astype(np.float64), **arrays)
    t0 = time.time()
    proc = run_child([python, str(PEER), str(work / "spec.json"), str(work / "in.npz"), str(work / "out.npz"),
                      str(work / "prj")])
    if proc.returncode:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
        raise SnnccError("hls4ml failed:\n" + "\n".join(tail))
    res = np.load(work / "out.npz")
    out_q = res["y"] * 2.0 ** facts["out_frac"]
    levels = {v: (res[f"trace_{hs}"] * n).transpose(0, 3, 1, 2) for v, hs, n in facts["neurons"]}
    return {"out_q": out_q, "levels": levels, "seconds": float(res["seconds"]), "wall_s": time.time() - t0,
            "version": str(res["hls4ml_version"])}


def bench_inputs(graph, calib: np.ndarray, n_digits: int, seed: int = 0) -> np.ndarray:
    """all -128, all 127, 16 random int8 images, then ``n_digits`` held-out digits."""
    shape = graph.values[graph.inputs[0]].shape
    rng = np.random.default_rng(seed)
    extremes = np.stack([np.full(shape, -128), np.full(shape, 127)]).astype(np.int8)
    rand = rng.integers(-128, 128, size=(16, *shape)).astype(np.int8)
    return np.concatenate([extremes, rand, quantize_input(graph, calib[:n_digits])])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hls4ml-python", default="/work/hls4ml-venv/bin/python",
                    help="a Python with hls4ml installed (pip install hls4ml; default /work/hls4ml-venv/bin/python)")
    ap.add_argument("--digits", type=int, default=540, help="held-out digits to run (at most 540)")
    ap.add_argument("--bits", default="4,8", help="weight bits, comma list")
    ap.add_argument("--rounding", default="AP_TRN,AP_RND,UP",
                    help="how 1/theta is quantized, comma list: hls4ml's AP_TRN (its default) or AP_RND, or UP "
                         "(rounded up by the user before hls4ml sees it)")
    args = ap.parse_args()
    if not Path(args.hls4ml_python).is_file():
        ap.error(f"--hls4ml-python: {args.hls4ml_python} not found (python -m venv h && h/bin/pip install hls4ml)")
    handle_signals()
    try:
        _bench(args)
    except Interrupted as exc:
        sys.exit(128 + exc.signum)


HEAD = ("| weights | thresholds | theta (min..max) | 1/theta | samples | outputs exact | argmax agree "
        "| levels agree | 1st layer wrong (at v=k*theta / all v=k*theta) | top-1 snncc | top-1 hls4ml |")


def _row(args, bits: int, kind: str, g, x: np.ndarray, labels: np.ndarray, rounding: str, work: Path) -> str:
    neurons = [n for n in g.nodes if n.op == "neuron"]
    first = neurons[0]
    ref = run_int(g, x, capture=[n.output for n in neurons] + [first.inputs[0]])
    out_ref = ref[g.outputs[0]].astype(np.int64)
    peer = run_peer(args.hls4ml_python, g, x, rounding, work)
    got = peer["out_q"]
    exact = int((got == out_ref).all(axis=1).sum())
    agree = float((got.argmax(1) == out_ref.argmax(1)).mean())
    lv_eq = sum(int((peer["levels"][n.output] == ref[n.output]).sum()) for n in neurons)
    lv_n = sum(ref[n.output].size for n in neurons)
    # the first neuron layer sees the same currents on both sides: where does it differ?
    theta = first.params["theta"].astype(np.int64).reshape(1, -1, 1, 1)
    v = ref[first.inputs[0]].astype(np.int64) + first.params["v_init"].astype(np.int64).reshape(1, -1, 1, 1)
    multiple = (v > 0) & (v % theta == 0) & (v <= int(first.attrs["levels"]) * theta)
    wrong = peer["levels"][first.output] != ref[first.output]
    d = slice(len(x) - len(labels), None)
    acc_s = float((out_ref[d].argmax(1) == labels).mean())
    acc_h = float((got[d].argmax(1) == labels).mean())
    thetas = np.concatenate([n.params["theta"] for n in neurons])
    mode = "rounded up by the user" if rounding == "UP" else rounding
    return (f"| {bits}-bit | {kind} | {thetas.min()}..{thetas.max()} | ap_ufixed<{SCALE_BITS},.> {mode} "
            f"| {len(x)} | {exact}/{len(x)} | {agree:.4f} | {lv_eq}/{lv_n} ({lv_eq / lv_n:.4f}) "
            f"| {int(wrong.sum())} ({int((wrong & multiple).sum())} / {int(multiple.sum())}) "
            f"| {acc_s:.4f} | {acc_h:.4f} |"), peer["version"]


def _bench(args) -> None:
    labels = np.load(ROOT / "examples" / "digits" / "digits_calib.npz")["y"][: args.digits]
    print(HEAD)
    print("|---" * (HEAD.count("|") - 1) + "|", flush=True)
    version, t0 = "?", time.time()
    with tempfile.TemporaryDirectory(prefix="snncc_bench_hls4ml_") as tmpdir:
        tmp = Path(tmpdir)
        for bits in (int(b) for b in args.bits.split(",")):
            graph, calib = build_graph("digits", dict(levels=4, timesteps=1, weight_bits=bits), tmp)
            x = bench_inputs(graph, calib, len(labels))
            for tag, kind, g in (("chosen", "snncc's", graph), ("pow2", "power of two", pow2_thresholds(graph))):
                for rounding in args.rounding.split(","):
                    row, version = _row(args, bits, kind, g, x, labels, rounding, tmp / f"w{bits}_{tag}_{rounding}")
                    print(row, flush=True)
    print(f"\nhls4ml {version}, C emulation (g++), io_parallel; samples = all -128, all 127, 16 random, "
          f"{len(labels)} digits.  Wall time {time.time() - t0:.0f} s (noisy: shared machine).")


if __name__ == "__main__":
    main()
