"""Hand-built integer-IR graphs (stage "int", docs/ir.md) for the C backend tests."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from snncc.ir import Graph, Node, Value, infer_shape


class IntGraphBuilder:
    """Builds small random integer SNNs op by op; thresholds follow the current scale."""

    def __init__(self, shape, *, timesteps=1, seed=0, name="g", ranges=True):
        self.rng = np.random.default_rng(seed)
        self.g = Graph(name=name, inputs=["x"], outputs=[], nodes=[],
                       values={"x": Value("x", tuple(shape), "int8")}, stage="int",
                       meta={"timesteps": timesteps, "input_scale": 0.0078125})
        self.mag = {"x": 64.0}  # rough mean |value| per value, to pick thresholds
        self.bound = {"x": 128}  # proven max |value|, recorded as attrs["range"] like quantize does
        self.ranges = ranges

    def _add(self, op, inputs, attrs=None, params=None, name=None, dtype="int32", mag=1.0):
        i = len(self.g.nodes)
        out = f"v{i}"
        node = Node(name or f"n{i}", op, list(inputs), out, attrs or {}, params or {})
        self.g.values[out] = Value(out, (), dtype)
        self.g.values[out].shape = tuple(infer_shape(self.g, node))
        self.g.nodes.append(node)
        self.mag[out] = mag
        self.bound[out] = self._bound(node)
        if self.ranges:
            node.attrs["range"] = [-self.bound[out], self.bound[out]]
        return out

    def _bound(self, node) -> int:
        """A simple worst-case |output| from the input bounds (what range analysis proves)."""
        ins = [self.bound[v] for v in node.inputs]
        p, a = node.params, node.attrs
        if node.op in ("conv", "dense"):
            w = np.abs(p["weight"].astype(np.int64)).reshape(len(p["weight"]), -1).sum(axis=1)
            return int((w * ins[0] + np.abs(p["bias"].astype(np.int64))).max())
        if node.op == "affine":
            return int((np.abs(p["scale"].astype(np.int64)) * ins[0] + np.abs(p["shift"].astype(np.int64))).max())
        if node.op == "neuron":
            return int(a["levels"])
        if node.op == "add":
            return int(sum(ins))
        if node.op == "sumpool":
            return int(ins[0] * a["kernel"][0] * a["kernel"][1])
        return int(max(ins))

    def _weights(self, shape, bits):
        q = 2 ** (bits - 1) - 1
        return self.rng.integers(-q, q + 1, size=shape).astype(np.int8)

    def conv(self, x, o, k=3, stride=1, pad=1, group=1, dil=1, bits=8, bias=True, name=None, extreme=False):
        c = self.g.values[x].shape[0]
        w = self._weights((o, c // group, k, k), bits)
        if extreme:  # the extremes of the weight width on the first and last output channels
            w[0, ::2] = -(2 ** (bits - 1))
            w[-1, ::3] = 2 ** (bits - 1) - 1
        b = self.rng.integers(-50, 51, size=o).astype(np.int32) if bias else np.zeros(o, np.int32)
        fan = (c // group) * k * k
        mag = np.sqrt(fan) * (2 ** (bits - 1)) / 2 * self.mag[x]
        attrs = {"strides": (stride, stride), "pads": (pad, pad, pad, pad), "dilations": (dil, dil),
                 "group": group, "bits": bits}
        return self._add("conv", [x], attrs, {"weight": w, "bias": b}, name=name, mag=mag)

    def dense(self, x, o, bits=8, name=None):
        f = self.g.values[x].shape[0]
        w = self._weights((o, f), bits)
        b = self.rng.integers(-50, 51, size=o).astype(np.int32)
        mag = np.sqrt(f) * (2 ** (bits - 1)) / 2 * self.mag[x]
        return self._add("dense", [x], {"bits": bits}, {"weight": w, "bias": b}, name=name, mag=mag)

    def neuron(self, x, levels=4, signed=False, membrane_bits=16, shift=0, scale=1.0, name=None):
        c = self.g.values[x].shape[0]
        base = max(2.0, self.mag[x] / max(levels, 1) * scale)
        theta = np.maximum(1, self.rng.uniform(0.5, 1.5, size=c) * base).astype(np.int32)
        theta = np.minimum(theta, 2 ** (membrane_bits - 2))
        attrs = {"levels": levels, "signed": signed, "barrier": False,
                 "membrane_bits": membrane_bits, "membrane_shift": shift}
        params = {"theta": theta.astype(np.int32), "v_init": (theta // 2).astype(np.int32)}
        return self._add("neuron", [x], attrs, params, name=name, dtype="int8", mag=levels / 3)

    def affine(self, x, name=None):
        c = self.g.values[x].shape[0]
        scale = self.rng.integers(1, 40, size=c).astype(np.int32)
        shift = self.rng.integers(-20, 21, size=c).astype(np.int32)
        return self._add("affine", [x], {}, {"scale": scale, "shift": shift}, name=name,
                         mag=self.mag[x] * 20)

    def add(self, *xs):
        return self._add("add", list(xs), mag=sum(self.mag[x] for x in xs))

    def pool(self, op, x, k=2, stride=2, pad=0):
        attrs = {"kernel": (k, k), "strides": (stride, stride), "pads": (pad, pad, pad, pad)}
        if op == "maxpool":
            attrs["dilations"] = (1, 1)
        mag = self.mag[x] * (k * k if op == "sumpool" else 1)
        return self._add(op, [x], attrs, mag=mag, dtype=self.g.values[x].dtype if op == "maxpool" else "int32")

    def flatten(self, x):
        return self._add("flatten", [x], mag=self.mag[x], dtype=self.g.values[x].dtype)

    def reshape(self, x, shape):
        return self._add("reshape", [x], {"shape": tuple(shape)}, mag=self.mag[x], dtype=self.g.values[x].dtype)

    def concat(self, *xs, axis=0):
        return self._add("concat", list(xs), {"axis": axis}, mag=max(self.mag[x] for x in xs))

    def pad(self, x, pads):
        return self._add("pad", [x], {"pads": tuple(pads)}, mag=self.mag[x], dtype=self.g.values[x].dtype)

    def shuffle(self, x, groups):
        return self._add("channel_shuffle", [x], {"groups": groups}, mag=self.mag[x], dtype=self.g.values[x].dtype)

    def build(self, *outputs) -> Graph:
        self.g.outputs = list(outputs)
        self.g.verify()
        return self.g


def sample_inputs(shape, n=100, seed=1) -> np.ndarray:
    """n random int8 samples plus all -128 and all 127."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(n,) + tuple(shape)).astype(np.int8)
    ext = np.stack([np.full(shape, -128, np.int8), np.full(shape, 127, np.int8)])
    return np.concatenate([x, ext])


def block_conv_net(T=2) -> Graph:
    """Every variant of the blocked int8 conv (snncc_conv_block_i8): signed input (the
    image, a signed neuron), unsigned levels up to N = 127, weights at -128 and 127,
    output channels 20/64/48/33/514/16 (register blocks of 1, 2, 3 and 4 x 16, partial
    ones), input channels not a multiple of 4 (3, 33, 514: quad reads past the tensor),
    more than 512 input channels (channel chunks), stride, dilation, 1x1, odd sizes."""
    b = IntGraphBuilder((3, 11, 9), timesteps=T, seed=5)
    a = b.neuron(b.conv("x", 20, extreme=True), levels=127, scale=0.02)
    h = b.neuron(b.conv(a, 64, stride=2, extreme=True), levels=4, shift=1)
    h = b.neuron(b.conv(h, 48, pad=2, dil=2, extreme=True), levels=3, signed=True)
    h = b.neuron(b.conv(h, 33, k=1, pad=0, extreme=True), levels=2)
    h = b.neuron(b.conv(h, 514, k=1, pad=0, extreme=True), levels=1)
    return b.build(b.conv(h, 16, k=3, pad=1, extreme=True))


def conv_geometry_net(seed=0, branches=12) -> Graph:
    """Block convs of random geometry side by side (kernel 1-3, stride 1-2, padding 0-2,
    dilation 1-2, 1-70 output channels; 16 or fewer on the 16- and 32-channel sources
    half the time), on the signed image, unsigned levels of 3 and 32 channels and signed
    levels of 16, every one a graph output: the interior, row-clipped and border pixel
    sets of the SIMD kernels and their 16-channel group variant."""
    b = IntGraphBuilder((3, 9, 7), seed=seed)
    rng = np.random.default_rng(seed)
    sources = ["x", b.neuron(b.conv("x", 3), levels=5), b.neuron(b.conv("x", 16), levels=2, signed=True),
               b.neuron(b.conv("x", 32), levels=4)]
    outs = []
    for i in range(branches):
        src = sources[i % 4]
        o = int(rng.integers(1, 17 if i % 8 >= 6 else 71))
        outs.append(b.conv(src, o, k=int(rng.integers(1, 4)), stride=int(rng.integers(1, 3)),
                           pad=int(rng.integers(0, 3)), dil=int(rng.integers(1, 3)), extreme=True))
    return b.build(*outs)


def few_channel_net(seed=0, branches=12) -> Graph:
    """Block convs of random geometry (kernel 1-5, stride 1-2, padding 0-2, dilation 1-2,
    1-20 output channels) on one and two input channels: the signed 1-channel image and
    unsigned or signed levels of 1 and 2 channels, every one a graph output.  The x86
    schedule packs 4 // C taps per channel quad there (snncc_pack_taps_i8), the firmware
    one copies windows (im2col)."""
    b = IntGraphBuilder((1, 11, 9), seed=seed)
    rng = np.random.default_rng(seed)
    sources = ["x", b.neuron(b.conv("x", 2), levels=5), b.neuron(b.conv("x", 1), levels=3, signed=True),
               b.neuron(b.conv("x", 2), levels=2, signed=True)]
    outs = []
    for i in range(branches):
        k = int(rng.integers(1, 6))
        dil = int(rng.integers(1, 3))
        pad = int(rng.integers(0, 3))
        if (k - 1) * dil + 1 > 9 + 2 * pad:  # the window must fit the padded input
            dil = 1
        outs.append(b.conv(sources[i % 4], int(rng.integers(1, 21)), k=k, stride=int(rng.integers(1, 3)), pad=pad,
                           dil=dil, extreme=True))
    return b.build(*outs)


def group_block_net(seed=0, branches=10) -> Graph:
    """Grouped convs whose groups hold whole channel quads (the x86 schedule runs them a
    group at a time on the block kernels), random geometry (kernel 1-3, stride 1-2,
    padding 0-2, dilation 1-2, 1-20 outputs per group), on a signed 8-channel image and
    on unsigned and signed levels of 16 and 24 channels, every one a graph output."""
    b = IntGraphBuilder((8, 9, 7), seed=seed)
    rng = np.random.default_rng(seed)
    sources = ["x", b.neuron(b.conv("x", 16), levels=4), b.neuron(b.conv("x", 24), levels=2, signed=True)]
    outs = []
    for i in range(branches):
        src = sources[i % 3]
        c = b.g.values[src].shape[0]
        groups = [g for g in range(2, c + 1) if c % g == 0 and (c // g) % 4 == 0]
        g = int(rng.choice(groups))
        outs.append(b.conv(src, g * int(rng.integers(1, 21)), k=int(rng.integers(1, 4)), stride=int(rng.integers(1, 3)),
                           pad=int(rng.integers(0, 3)), dil=int(rng.integers(1, 3)), group=g, extreme=True))
    return b.build(*outs)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def dw_group_geometry_net(seed=0, branches=10) -> Graph:
    """Depthwise and grouped convs of random geometry (kernel 1-5, stride 1-2, padding
    0-2, dilation 1-2, channel counts that fill no 8- or 16-lane vector, 8/4/2-bit
    weights) and 4-/2-bit group-1 convs and a dense layer (the packed block kernels), on
    the signed image and on unsigned and signed levels, every one a graph output."""
    b = IntGraphBuilder((3, 9, 7), seed=seed)
    rng = np.random.default_rng(seed)
    sources = [b.neuron(b.conv("x", 21), levels=5), b.neuron(b.conv("x", 12), levels=2, signed=True),
               b.neuron(b.conv("x", 40), levels=4)]
    outs = []
    for i in range(branches):
        src = sources[i % 3]
        c = b.g.values[src].shape[0]
        bits = int(rng.choice([8, 4, 2]))
        geo = {"k": int(rng.integers(1, 6)), "stride": int(rng.integers(1, 3)), "pad": int(rng.integers(0, 3)),
               "dil": int(rng.integers(1, 3)), "bits": bits, "extreme": True}
        if (geo["k"] - 1) * geo["dil"] + 1 > 7 + 2 * geo["pad"]:  # the window must fit the padded input
            geo["dil"] = 1
        kind = i % 3
        if kind == 0:  # depthwise
            outs.append(b.conv(src, c, group=c, **geo))
        elif kind == 1:  # grouped
            g = 4 if c % 4 == 0 else 3
            outs.append(b.conv(src, g * int(rng.integers(1, 5)), group=g, **geo))
        else:  # packed group-1
            geo["bits"] = int(rng.choice([4, 2]))
            outs.append(b.conv(src, int(rng.integers(1, 40)), **geo))
    outs.append(b.dense(b.flatten(sources[2]), 13, bits=4))
    outs.append(b.dense(b.flatten(sources[1]), 7, bits=2))
    return b.build(*outs)


def simd_builds(sse2: bool = True, portable: bool = True) -> list[tuple[str, str]]:
    """(compiler flags, what snncc_simd() reports) for every kernel path this host runs:
    the best one, each x86 level below it (left out with -DSNNCC_NO_AVX512 /
    -DSNNCC_NO_AVX2; the SSE2 fallback only with ``sse2``), and the portable C
    (-DSNNCC_NO_SIMD, with ``portable``)."""
    builds = []
    if platform.machine() in ("x86_64", "AMD64"):
        flags = _cpu_flags()
        avx512 = {"avx512f", "avx512_vnni"} <= flags
        avx2 = "avx2" in flags
        builds.append(("-O2", "avx512vnni" if avx512 else "avx2" if avx2 else "sse2"))
        if avx512 and (avx2 or sse2):
            builds.append(("-O2 -DSNNCC_NO_AVX512", "avx2" if avx2 else "sse2"))
        if (avx512 or avx2) and sse2:
            builds.append(("-O2 -DSNNCC_NO_AVX512 -DSNNCC_NO_AVX2", "sse2"))
    if portable:
        builds.append(("-O2 -DSNNCC_NO_SIMD", "c"))
    return builds or [("-O2", "c")]
