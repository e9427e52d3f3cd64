"""Differential fuzzing: random small CNNs built as ONNX, compiled, checked end to end.

``random_case(chooser)`` draws a graph (conv with groups/stride/dilation/padding,
depthwise, BatchNorm, ReLU/Clip/none, max and average pools, residual adds, concat,
channel shuffle, Pad, flatten, dense heads) and a set of compile options (N, T, weight
bits, membrane width and shift, threshold and weight methods).  ``check_case`` runs it:

    float IR  ~ onnxruntime           (verify's tolerance)
    compile   -> a clean SnnccError, or an integer graph
    C         == integer runtime      (bit-exact: random inputs and all -128 / all 127)

Anything else (another exception, a mismatch, a multi-line error) is a failure.  The
chooser is either numpy (bench/fuzz.py: seeds) or hypothesis (tests/test_fuzz.py: shrinking).
"""

from __future__ import annotations

import json
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class NumpyChooser:
    """Draws from a seeded numpy generator (bench/fuzz.py)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def int(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def choice(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def bool(self, p: float = 0.5) -> bool:
        return bool(self.rng.random() < p)


class HypothesisChooser:
    """Draws through hypothesis' ``data`` so failures shrink toward small graphs."""

    def __init__(self, data):
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))

    def choice(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def bool(self, p: float = 0.5) -> bool:
        # shrinks to False; p is honoured roughly by drawing from 0..99
        return self.int(0, 99) >= 100 - round(p * 100)


class OnnxBuilder:
    """An ONNX graph built node by node, tracking per-sample shapes (C, H, W) or (F,)."""

    def __init__(self, shape: tuple[int, ...], rng: np.random.Generator, batch: str | int = "N"):
        self.rng = rng
        self.batch = batch  # the ONNX batch dimension: symbolic, or fixed at 1
        self.nodes: list = []
        self.inits: list = []
        self.shapes: dict[str, tuple[int, ...]] = {"x": tuple(shape)}
        self.input_shape = tuple(shape)

    def _name(self, op: str) -> str:
        return f"{op.lower()}{len(self.nodes)}"

    def const(self, name: str, arr) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], shape: tuple[int, ...], **attrs) -> str:
        name = self._name(op)
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        self.shapes[name] = tuple(int(s) for s in shape)
        return name

    def conv(self, x, out_c, k=3, stride=1, pads=(1, 1, 1, 1), dil=1, group=1, bias=True, dead=0,
             gain=1.0, bias_shift=0.0, auto_pad=None) -> str:
        c, h, w = self.shapes[x]
        fan = c // group * k * k
        wt = self.rng.normal(0, gain * np.sqrt(2.0 / fan), size=(out_c, c // group, k, k)).astype(np.float32)
        wt[:min(dead, out_c - 1)] = 0.0  # dead output channels (all-zero weights)
        name = self._name("Conv")
        ins = [x, self.const(name + "_w", wt)]
        if bias:
            b = self.rng.normal(bias_shift, 0.1, size=out_c) * gain
            ins.append(self.const(name + "_b", b.astype(np.float32)))
        attrs = {"strides": [stride, stride], "dilations": [dil, dil], "group": group}
        if self.rng.random() < 0.7:  # kernel_shape is optional (taken from the weight)
            attrs["kernel_shape"] = [k, k]
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            oh, ow = -(-h // stride), -(-w // stride)
            attrs["auto_pad"] = auto_pad
        else:
            if auto_pad == "VALID":
                pads = (0, 0, 0, 0)
                attrs["auto_pad"] = auto_pad
            else:
                attrs["pads"] = list(pads)
            oh = conv_out(h, k, stride, pads[0], pads[2], dil)
            ow = conv_out(w, k, stride, pads[1], pads[3], dil)
        return self.node("Conv", ins, (out_c, oh, ow), **attrs)

    def batchnorm(self, x) -> str:
        c = self.shapes[x][0]
        name = self._name("BatchNormalization")
        r = self.rng
        params = [r.uniform(0.5, 1.5, c), r.normal(0, 0.1, c), r.normal(0, 0.1, c), r.uniform(0.5, 1.5, c)]
        ins = [x] + [self.const(f"{name}_{i}", p.astype(np.float32)) for i, p in enumerate(params)]
        return self.node("BatchNormalization", ins, self.shapes[x], epsilon=1e-5)

    def act(self, x, kind: str) -> str:
        if kind == "relu":
            return self.node("Relu", [x], self.shapes[x])
        if kind == "clip":
            name = self._name("Clip")
            lo = self.const(name + "_lo", np.array(0.0, np.float32))
            hi = self.const(name + "_hi", np.array(6.0, np.float32))
            return self.node("Clip", [x, lo, hi], self.shapes[x])
        return x

    def pool(self, x, op: str, k: int, stride: int, pads, ceil: int = 0, dil: int = 1) -> str:
        c, h, w = self.shapes[x]
        oh = pool_out(h, k, stride, pads[0], pads[2], ceil, dil)
        ow = pool_out(w, k, stride, pads[1], pads[3], ceil, dil)
        attrs = {"kernel_shape": [k, k], "strides": [stride, stride], "pads": list(pads), "ceil_mode": ceil}
        if dil != 1:
            attrs["dilations"] = [dil, dil]
        if op == "AveragePool":
            attrs["count_include_pad"] = int(self.rng.integers(0, 2)) if not ceil else 0
        return self.node(op, [x], (c, oh, ow), **attrs)

    def global_pool(self, x, op: str = "GlobalAveragePool") -> str:
        if op == "ReduceMean":
            return self.node("ReduceMean", [x], (self.shapes[x][0], 1, 1), axes=[2, 3], keepdims=1)
        return self.node(op, [x], (self.shapes[x][0], 1, 1))

    def affine(self, x, op: str) -> str:
        """Add/Sub/Mul/Div by a per-channel or scalar constant (an IR affine)."""
        c = self.shapes[x][0]
        shape = (c, 1, 1) if len(self.shapes[x]) == 3 and self.rng.random() < 0.7 else ()
        if op in ("Mul", "Div"):
            k = self.rng.uniform(0.5, 2.0, size=shape) * self.rng.choice([1.0, -1.0], size=shape, p=[0.8, 0.2])
        else:
            k = self.rng.normal(0, 0.3, size=shape)
        name = self._name(op)
        return self.node(op, [x, self.const(name + "_k", np.asarray(k, np.float32))], self.shapes[x])

    def softmax(self, x) -> str:
        return self.node("Softmax", [x], self.shapes[x], axis=-1)

    def add(self, a, b, op: str = "Add") -> str:
        return self.node(op, [a, b], self.shapes[a])

    def concat(self, *xs) -> str:
        c = sum(self.shapes[x][0] for x in xs)
        return self.node("Concat", list(xs), (c,) + self.shapes[xs[0]][1:], axis=1)

    def shuffle(self, x, g: int) -> str:
        c, h, w = self.shapes[x]
        name = self._name("Reshape")
        s1 = self.const(name + "_s", np.array([-1, g, c // g, h, w], np.int64))
        r = self.node("Reshape", [x, s1], (g, c // g, h, w))
        t = self.node("Transpose", [r], (c // g, g, h, w), perm=[0, 2, 1, 3, 4])
        s2 = self.const(self._name("Reshape") + "_s", np.array([0, c, h, w], np.int64))
        return self.node("Reshape", [t, s2], (c, h, w))

    def pad(self, x, pads) -> str:
        c, h, w = self.shapes[x]
        t, left, b, r = pads
        p = self.const(self._name("Pad") + "_p", np.array([0, 0, t, left, 0, 0, b, r], np.int64))
        return self.node("Pad", [x, p], (c, h + t + b, w + left + r), mode="constant")

    def reshape(self, x, shape) -> str:
        s = self.const(self._name("Reshape") + "_s", np.array([-1, *shape], np.int64))
        return self.node("Reshape", [x, s], tuple(shape))

    def flatten(self, x) -> str:
        return self.node("Flatten", [x], (int(np.prod(self.shapes[x])),), axis=1)

    def dense(self, x, out_f: int, matmul: bool = False) -> str:
        f = self.shapes[x][0]
        wt = self.rng.normal(0, np.sqrt(2.0 / f), size=(out_f, f)).astype(np.float32)
        b = self.rng.normal(0, 0.1, size=out_f).astype(np.float32)
        name = self._name("Gemm")
        if matmul:
            m = self.node("MatMul", [x, self.const(name + "_w", wt.T.copy())], (out_f,))
            return self.node("Add", [m, self.const(name + "_b", b)], (out_f,))
        attrs = {}
        if self.rng.random() < 0.3:  # alpha/beta scale the product and the bias
            attrs = {"alpha": float(self.rng.uniform(0.5, 2.0)), "beta": float(self.rng.uniform(0.5, 2.0))}
        if self.rng.random() < 0.5:
            return self.node("Gemm", [x, self.const(name + "_w", wt), self.const(name + "_b", b)], (out_f,),
                             transB=1, **attrs)
        return self.node("Gemm", [x, self.const(name + "_w", wt.T.copy()), self.const(name + "_b", b)], (out_f,),
                         **attrs)

    def model(self, output: str) -> onnx.ModelProto:
        inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [self.batch, *self.input_shape])
        out = helper.make_tensor_value_info(output, TensorProto.FLOAT, [self.batch, *self.shapes[output]])
        graph = helper.make_graph(self.nodes, "fuzz", [inp], [out], initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        return model


def conv_out(size, k, s, p0, p1, d) -> int:
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def pool_out(size, k, s, p0, p1, ceil, d=1) -> int:
    span = size + p0 + p1 - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p0:
        out -= 1
    return out


@dataclass
class FuzzCase:
    model: onnx.ModelProto
    options: dict
    weight_seed: int
    input_shape: tuple[int, ...]
    ops: list[str] = field(default_factory=list)  # what the generator drew, for the report
    spike_rate: float | None = None  # emit_c's spike_rates for every neuron (None: its default)
    input_magnitude: float = 1.0  # std of the Gaussian calibration and test inputs

    def describe(self) -> str:
        return (f"{'-'.join(self.ops)} {self.input_shape} rate={self.spike_rate} x*{self.input_magnitude} "
                f"{json.dumps(self.options, sort_keys=True)}")


ACTS = ["relu", "relu", "relu", "clip", "none"]


def _conv_block(b: OnnxBuilder, ch, x: str, ops: list[str], *, out_c=None, group=1, act=None) -> str:
    """Conv (random geometry that keeps the output at least 1x1) [+ BatchNorm] + activation."""
    c, h, w = b.shapes[x]
    out_c = out_c or (ch.int(1, 12) if ch.bool(0.8) else ch.int(13, 40) if ch.bool(0.9) else ch.int(513, 530))
    k = ch.choice([1, 3, 3, 2, 5])
    dil = ch.choice([1, 1, 1, 2])
    stride = ch.choice([1, 1, 2, 3])
    pads = tuple(ch.int(0, 2) for _ in range(4)) if ch.bool(0.3) else (k // 2 * dil,) * 4
    while min(conv_out(h, k, stride, pads[0], pads[2], dil), conv_out(w, k, stride, pads[1], pads[3], dil)) < 1:
        k, dil = max(1, k - 1), 1
        if k == 1:
            pads, stride = (0, 0, 0, 0), 1
    auto_pad = ch.choice([None] * 7 + ["SAME_UPPER", "SAME_LOWER", "VALID"])
    if auto_pad and auto_pad != "VALID" and dil > 1:  # onnxruntime refuses dilated SAME convs
        auto_pad = None
    if auto_pad == "VALID" and min(conv_out(h, k, stride, 0, 0, dil), conv_out(w, k, stride, 0, 0, dil)) < 1:
        auto_pad = None
    dead = ch.int(1, 2) if ch.bool(0.1) else 0
    gain = ch.choice([1.0] * 6 + [1e-3, 30.0])  # tiny or huge weights (and biases)
    shift = ch.choice([0.0] * 6 + [-3.0, 3.0])  # mostly dead or mostly saturated channels
    y = b.conv(x, out_c, k=k, stride=stride, pads=pads, dil=dil, group=group, bias=ch.bool(0.8), dead=dead,
               gain=gain, bias_shift=shift, auto_pad=auto_pad)
    ops.append(f"conv{k}s{stride}d{dil}g{group}" + (f"dead{dead}" if dead else "") + (auto_pad or "").lower() +
               (f"x{gain:g}" if gain != 1 else "") + (f"b{shift:+g}" if shift else ""))
    if ch.bool(0.4):
        y = b.batchnorm(y)
        ops.append("bn")
    if ch.bool(0.15):
        op = ch.choice(["Add", "Sub", "Mul", "Div"])
        y = b.affine(y, op)
        ops.append(op.lower())
    a = act or ch.choice(ACTS)
    ops.append(a)
    return b.act(y, a)


def _block(b: OnnxBuilder, ch, x: str, ops: list[str]) -> str:
    c, h, w = b.shapes[x]
    kind = ch.choice(["conv", "depthwise", "group", "maxpool", "avgpool", "residual", "concat", "shuffle",
                      "pad", "reshape"])
    if kind == "reshape":  # fold rows into channels (C*H, 1, W) or split channels into rows
        if c % 2 == 0 and ch.bool():
            ops.append("reshape(c/2,2h)")
            return b.reshape(x, (c // 2, 2 * h, w))
        ops.append("reshape(ch,1,w)")
        return b.reshape(x, (c * h, 1, w))
    if kind == "depthwise":
        mult = ch.choice([1, 1, 2])
        return _conv_block(b, ch, x, ops, out_c=c * mult, group=c)
    if kind == "group":
        divisors = [g for g in range(2, c + 1) if c % g == 0]
        if not divisors:
            kind = "conv"
        else:
            g = ch.choice(divisors)
            return _conv_block(b, ch, x, ops, out_c=g * ch.int(1, 3), group=g)
    if kind in ("maxpool", "avgpool") and min(h, w) >= 2:
        k = ch.int(2, min(3, h, w))
        stride = ch.int(1, k)
        pad = ch.int(0, k // 2) if ch.bool(0.3) else 0
        ceil = int(ch.bool(0.2))
        dil = 2 if kind == "maxpool" and min(h, w) >= 2 * k - 1 and ch.bool(0.2) else 1
        ops.append(f"{kind}{k}s{stride}p{pad}c{ceil}d{dil}")
        return b.pool(x, "MaxPool" if kind == "maxpool" else "AveragePool", k, stride, (pad,) * 4, ceil, dil)
    if kind == "residual":
        ops.append("res(")
        m = _conv_block(b, ch, x, ops)
        m = _conv_block(b, ch, m, ops, out_c=ch.int(1, 12), act="none")
        mc, mh, mw = b.shapes[m]
        if (mc, mh, mw) == (c, h, w) and ch.bool(0.7):
            sc = x
            ops.append("id")
        else:
            stride_h = max(1, -(-h // mh))
            # a 1x1 conv (stride to match) shortcut; skip the join when geometry cannot match
            if conv_out(h, 1, stride_h, 0, 0, 1) != mh or conv_out(w, 1, stride_h, 0, 0, 1) != mw:
                ops.append(")nojoin")
                return b.act(m, "relu")
            sc = b.conv(x, mc, k=1, stride=stride_h, pads=(0, 0, 0, 0))
            ops.append(f"sc1x1s{stride_h}")
        a = ch.choice(["relu", "relu", "none"])
        join = ch.choice(["Add", "Add", "Sum"])
        ops.append(f"){join.lower()}-{a}")
        return b.act(b.add(m, sc, join) if ch.bool() else b.add(sc, m, join), a)
    if kind == "concat":
        ops.append("cat(")
        br = _conv_block(b, ch, x, ops, act="relu")
        if b.shapes[br][1:] != (h, w):
            ops.append(")noj")
            return br
        other = x if ch.bool(0.5) else b.act(b.conv(x, ch.int(1, 6), k=1, pads=(0, 0, 0, 0)), "relu")
        ops.append(")")
        return b.concat(br, other) if ch.bool(0.5) else b.concat(other, br)
    if kind == "shuffle":
        divisors = [g for g in range(2, c) if c % g == 0]
        if divisors:
            g = ch.choice(divisors)
            ops.append(f"shuffle{g}")
            return b.shuffle(x, g)
    if kind == "pad":
        pads = tuple(ch.int(0, 2) for _ in range(4))
        ops.append(f"pad{''.join(map(str, pads))}")
        return b.pad(x, pads)
    return _conv_block(b, ch, x, ops)


OPTION_CHOICES = {
    "levels": [1, 2, 3, 4, 4, 7, 15, 31, 127],
    "timesteps": [1, 1, 1, 2, 3, 4, 8, 16],
    "weight_bits": [2, 3, 4, 5, 6, 7, 8, 8],
    "membrane_bits": [16, 4, 6, 8, 10, 12, 24, 32],
    "threshold": ["mse", "max", "percentile", "percentile:99.5"],
    "threshold_granularity": ["channel", "layer"],
    "weight_quantizer": ["mse", "max", "percentile", "rescaw"],
    "residual": ["sparse", "sew"],
    "threshold_search": ["none", "output"],
    "weight_rounding": ["nearest", "auto", "gptq"],
    "bias_correction": [False, True],
    "step_search": [True, False],
    "calib_batch": [256, 256, 1, 5],
    "calib_reservoir": [4096, 4096, 16],
    "barrier_scale": [1.0, 1.0, 0.5, 2.0],
}


def random_options(ch, layers: list[str]) -> dict:
    opts = {key: ch.choice(values) for key, values in OPTION_CHOICES.items()}
    opts["membrane_shift"] = ch.int(0, min(3, opts["membrane_bits"] - 2)) if ch.bool(0.25) else 0
    opts["seed"] = ch.int(0, 3)
    if ch.bool(0.2):  # per-layer weight bits: an ONNX layer name, or first / last
        opts["layer_bits"] = {ch.choice(layers + ["first", "last"]): ch.int(2, 8)}
    return opts


def random_case(ch) -> FuzzCase:
    """One random model and option set; every draw goes through ``ch``."""
    shape = (ch.int(1, 4), ch.int(3, 10), ch.int(3, 10))
    weight_seed = ch.int(0, 2**31 - 1)
    b = OnnxBuilder(shape, np.random.default_rng(weight_seed), batch=ch.choice(["N", "N", 1]))
    ops: list[str] = []
    h = _conv_block(b, ch, "x", ops, act=ch.choice(["relu", "relu", "clip"]))
    for _ in range(ch.int(0, 4)):
        h = _block(b, ch, h, ops)
    head = ch.choice(["gap_dense", "flatten_dense", "flatten_mlp", "conv"])
    ops.append(head)
    if head == "conv":
        out = b.conv(h, ch.int(1, 6), k=1, pads=(0, 0, 0, 0))
    else:
        if head == "gap_dense":
            pool = ch.choice(["GlobalAveragePool", "GlobalAveragePool", "ReduceMean", "GlobalMaxPool"])
            ops[-1] += f"({pool})"
            h = b.global_pool(h, pool)
        h = b.flatten(h)
        if head == "flatten_mlp":
            h = b.act(b.dense(h, ch.int(2, 16), matmul=ch.bool()), "relu")
        out = b.dense(h, ch.int(2, 10), matmul=ch.bool())
        if ch.bool(0.1):
            out = b.softmax(out)
            ops.append("softmax")
    options = random_options(ch, [n.name for n in b.nodes if n.op_type in ("Conv", "Gemm", "MatMul")])
    rate = ch.choice([None, 0.0, 1.0])  # C kernels: from the graph, all event-driven, all dense
    scale = ch.choice([1.0, 1.0, 1.0, 0.01, 100.0])  # calibration and test input magnitude
    return FuzzCase(b.model(out), options, weight_seed, shape, ops, rate, scale)


# ---------------------------------------------------------------------------------------------
# the check


@dataclass
class Outcome:
    category: str  # "exact" | "rejected" | "failure"
    detail: str = ""
    stage: str = ""  # where a failure happened


def _calib(case: FuzzCase, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n,) + case.input_shape) * case.input_magnitude).astype(np.float32)


def check_case(case: FuzzCase, work: Path, *, n_calib: int = 16, n_random: int = 24, cc: str = "cc",
               opt: str = "-O2", sanitize: bool = False) -> Outcome:
    """Run one case; never raises (an unexpected exception is a failure outcome)."""
    stage = "setup"
    try:
        from snncc.backends.c.emit import emit_c
        from snncc.backends.c.verify_c import build_host, compare_c, flat_outputs
        from snncc.calib_data import load_calib
        from snncc.errors import SnnccError
        from snncc.frontend.onnx_import import load_onnx
        from snncc.options import CompileOptions
        from snncc.pass_context import PassContext
        from snncc.pass_manager import run_pipeline
        from snncc.passes import DEFAULT_PIPELINE
        from snncc.sim.int_runtime import quantize_input, run_int
        from snncc.verify import rung_onnxruntime

        work = Path(work)
        model_path = work / "model.onnx"
        onnx.save(case.model, model_path)
        calib = _calib(case, n_calib, 1)
        big = np.full((1,) + case.input_shape, 4.0 * case.input_magnitude, np.float32)
        x_real = np.concatenate([_calib(case, 8, 2), big, -big])
        stage = "import"
        try:
            graph = load_onnx(model_path)
            graph.verify()
        except SnnccError as exc:
            return _rejected(exc, "import")
        stage = "onnxruntime"
        rung = rung_onnxruntime(model_path, graph, x_real)
        if not rung.ok:
            return Outcome("failure", f"float IR vs onnxruntime: {rung.detail}", stage)
        stage = "compile"
        options = CompileOptions(**case.options)
        try:
            options.validate()
            ctx = PassContext(options, load_calib(calib, case.input_shape))
            int_graph = run_pipeline(graph, DEFAULT_PIPELINE, ctx, echo=lambda s: None)
        except SnnccError as exc:
            return _rejected(exc, "compile")
        stage = "emit"
        out = work / "c"
        out.mkdir()
        rates = None if case.spike_rate is None else {
            n.output: case.spike_rate for n in int_graph.nodes if n.op == "neuron"}
        emit_c(int_graph, out, spike_rates=rates)
        stage = "c"
        x_q = quantize_input(int_graph, np.concatenate([calib[:4], _calib(case, n_random, 3)]))
        ext = np.stack([np.full(case.input_shape, -128, np.int8), np.full(case.input_shape, 127, np.int8)])
        x_q = np.concatenate([x_q, ext, _random_int8(case, 8)])
        expected = flat_outputs(int_graph, run_int(int_graph, x_q))
        exe = build_host(out, cc=cc, opt=opt, sanitize=sanitize, build_dir=work / "build")
        res = compare_c(int_graph, out, x_q, exe=exe, expected=expected)
        if not res.ok:
            return Outcome("failure", f"C vs integer runtime ({opt}{' asan' if sanitize else ''}): "
                                      f"{res.summary()}", stage)
        return Outcome("exact", f"{expected.size} outputs of {len(x_q)} samples")
    except Exception:  # noqa: BLE001 - any other exception is exactly what the fuzzer looks for
        return Outcome("failure", traceback.format_exc(limit=12), stage)


def _random_int8(case: FuzzCase, n: int) -> np.ndarray:
    return np.random.default_rng(4).integers(-128, 128, size=(n,) + case.input_shape).astype(np.int8)


def _rejected(exc: Exception, stage: str) -> Outcome:
    """A clean rejection is one line; anything else (empty, multi-line) is a failure."""
    msg = str(exc)
    if not msg.strip() or "\n" in msg.strip() or "Traceback" in msg:
        return Outcome("failure", f"unclean SnnccError: {msg!r}", stage)
    return Outcome("rejected", msg, stage)


def run_case_in_tmp(case: FuzzCase, **kw) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="snncc-fuzz-") as tmp:
        return check_case(case, Path(tmp), **kw)


def save_reproducer(case: FuzzCase, outcome: Outcome, folder: Path, *, seed=None) -> Path:
    """model.onnx, options.json, calib.npy and what went wrong, enough to replay the case."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(case.model, folder / "model.onnx")
    np.save(folder / "calib.npy", _calib(case, 16, 1))
    (folder / "options.json").write_text(json.dumps(case.options, indent=1, sort_keys=True) + "\n")
    (folder / "case.json").write_text(json.dumps({"spike_rate": case.spike_rate, "ops": case.ops,
                                                  "input_magnitude": case.input_magnitude}) + "\n")
    (folder / "failure.txt").write_text(
        f"seed: {seed}\nstage: {outcome.stage}\ngraph: {case.describe()}\n\n{outcome.detail}\n")
    return folder
