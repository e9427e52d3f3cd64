"""Schedule and memory plan of the C backend.

``build_plan(graph)`` walks the integer IR once and produces, per node, the kernel
call(s) of one timestep, the const arrays (weights, biases, thresholds) and the
buffers they touch.  Buffers are then placed in one arena by liveness: a buffer
lives from the step that writes it to the last step that reads it; membranes
(T > 1) live for the whole run.  Placement is greedy by size (largest first, lowest
free offset), and the peak of simultaneously live bytes is its lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from snncc.backends.c import layout as L
from snncc.errors import SnnccError, sanitize_name
from snncc.ir import Graph, Node
from snncc.sim import neuron

CTYPE = {"i8": "int8_t", "i32": "int32_t"}
ESIZE = {"i8": 1, "i32": 4}
ALIGN = 16
SPARSE_RATE_LIMIT = 0.15  # above this measured spike rate the branch-free dense path is faster (measured)
BLOCK = 16  # SNNCC_OBLOCK: output channels per register block of snncc_conv_block_i8
FAST_NEURON_STEPS = 32  # compare-table neurons up to this many threshold steps
FUSED_ROW_BYTES = 1024  # currents of a conv feeding a neuron: computed this many bytes of rows at a time


@dataclass
class Buffer:
    index: int
    nbytes: int
    persistent: bool = False
    external: str = ""  # a caller pointer (the input), not in the arena
    first: int = -1
    last: int = -1
    offset: int = 0


@dataclass
class Array:
    """A const array in flash."""

    ident: str
    ctype: str
    values: np.ndarray
    comment: str

    @property
    def length(self) -> int:
        return int(self.values.size)

    @property
    def nbytes(self) -> int:
        return self.length * (4 if self.ctype == "int32_t" else 1)


@dataclass
class Tensor:
    """How one IR value is stored: buffer, element kind, logical shape."""

    buf: int
    kind: str
    shape: tuple[int, ...]
    levels: bool = False  # spike levels: zero-skipping pays off
    rate: float | None = None  # measured spike rate, when known
    nonneg: bool = False  # every value >= 0 (levels of unsigned neurons): u8 dot products
    bound: int = 128  # every |value| of an int8 tensor is at most this (N for levels)
    fused: dict | None = None  # a conv computed row by row inside its neuron's step (never stored whole)


@dataclass
class Step:
    code: list[str]


@dataclass
class Plan:
    timesteps: int
    input_size: int
    output_size: int
    buffers: list[Buffer] = field(default_factory=list)
    arrays: list[Array] = field(default_factory=list)
    param_decls: list[str] = field(default_factory=list)
    prologue: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    layer_info: list[dict] = field(default_factory=list)
    arena_bytes: int = 0
    peak_live_bytes: int = 0
    membrane_bytes: int = 0
    host_arena_bytes: int = 0  # the arena of the unfused schedule (x86-64 SIMD builds)


def build_plan(graph: Graph, spike_rates: dict[str, float] | None = None, *, fuse: bool = True) -> Plan:
    """``spike_rates``: measured fraction of non-zero levels per value name (optional).
    ``fuse``: convs feeding a neuron run row by row inside its step (the small-RAM schedule
    of builds without x86 SIMD; on x86-64 the multi-pixel kernels measured 35 % slower on
    the digits CNN called a row at a time, so hosts take the unfused schedule)."""
    if graph.stage != "int":
        raise SnnccError(f"the C backend needs the integer IR (stage 'int'), got stage {graph.stage!r}")
    if len(graph.inputs) != 1:
        raise SnnccError(f"the C backend supports one graph input, got {len(graph.inputs)}")
    b = _Builder(graph, spike_rates, fuse)
    b.run()
    _place(b.plan)
    return b.plan


class _Builder:
    def __init__(self, graph: Graph, spike_rates: dict[str, float] | None = None, fuse: bool = True):
        self.g = graph
        self.fuse = fuse
        self.T = int(graph.meta.get("timesteps", 1))
        in_shape = tuple(graph.values[graph.inputs[0]].shape)
        out_size = sum(int(np.prod(graph.values[v].shape)) for v in graph.outputs)
        self.plan = Plan(timesteps=self.T, input_size=int(np.prod(in_shape)), output_size=out_size)
        self.tensors: dict[str, Tensor] = {}
        self.producers = graph.producers()
        self.rates = dict(spike_rates or {})
        self.consumers = graph.consumer_map()

    # --- helpers ------------------------------------------------------------
    def buffer(self, nbytes: int, *, persistent: bool = False, external: str = "") -> int:
        buf = Buffer(len(self.plan.buffers), int(nbytes), persistent, external)
        self.plan.buffers.append(buf)
        return buf.index

    def tensor(self, kind: str, shape, **kw) -> Tensor:
        shape = tuple(int(s) for s in shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * ESIZE[kind]
        return Tensor(self.buffer(nbytes), kind, shape, **kw)

    def step(self, code: list[str], bufs: list[int]) -> None:
        idx = len(self.plan.steps)
        for i in bufs:
            buf = self.plan.buffers[i]
            buf.first = idx if buf.first < 0 else min(buf.first, idx)
            buf.last = max(buf.last, idx)
        self.plan.steps.append(Step(code))

    def array(self, ident: str, values: np.ndarray, ctype: str, comment: str) -> str:
        self.plan.arrays.append(Array(ident, ctype, np.ascontiguousarray(values), comment))
        return f"@W{len(self.plan.arrays) - 1}@"

    @staticmethod
    def ptr(t: Tensor) -> str:
        return f"@B{t.buf}:{CTYPE[t.kind]}@"

    def widen(self, t: Tensor) -> Tensor:
        """An int32 copy of an int8 tensor (for ops that take currents)."""
        if t.kind == "i32":
            return t
        w = self.tensor("i32", t.shape)
        n = int(np.prod(t.shape))
        self.step([f"snncc_widen_i8({self.ptr(t)}, {self.ptr(w)}, {n});"], [t.buf, w.buf])
        return w

    def int_param(self, node: Node, key: str, lo: int, hi: int) -> np.ndarray:
        if key not in node.params:
            raise SnnccError(f"missing integer param {key!r}", node=node.name, op=node.op)
        arr = np.asarray(node.params[key])
        if not np.issubdtype(arr.dtype, np.integer):
            raise SnnccError(f"param {key!r} is not integer", node=node.name, op=node.op)
        if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
            raise SnnccError(f"param {key!r} is outside [{lo}, {hi}]", node=node.name, op=node.op)
        return arr.astype(np.int64)

    # --- walk ---------------------------------------------------------------
    def run(self) -> None:
        g = self.g
        name = g.inputs[0]
        shape = tuple(g.values[name].shape)
        ext = self.buffer(0, external="input")
        src = Tensor(ext, "i8", shape)
        if L.c_order_equal(shape):
            self.tensors[name] = src
        else:
            h, w, c = L.hwc_dims(shape)
            dst = self.tensor("i8", shape)
            self.step([f"snncc_chw_to_hwc(input, {self.ptr(dst)}, {h}, {w}, {c}, 1);"], [dst.buf])
            self.tensors[name] = dst
        out_offsets: dict[str, list[int]] = {}
        off = 0
        for v in g.outputs:
            if v in g.inputs:
                raise SnnccError(f"graph output {v!r} is the graph input; nothing to compute")
            out_offsets.setdefault(v, []).append(off)
            off += int(np.prod(g.values[v].shape))
        for i, node in enumerate(g.nodes):
            ident = f"l{i}_{node.op}"
            handler = getattr(self, "op_" + node.op, None)
            if handler is None:
                raise SnnccError("the C backend cannot emit this op (it is not part of the integer IR)",
                                 node=node.name, op=node.op)
            self.plan.steps.append(Step([f"/* {ident}: {node.op} {sanitize_name(node.name)} */"]))
            out = handler(node, ident, [self.tensors[v] for v in node.inputs])
            self.tensors[node.output] = out
            if out.fused is None:  # a fused conv's currents never exist whole: its neuron is dumped
                self.debug_dump(i, out)
            for o in out_offsets.get(node.output, []):
                h, w, c = L.hwc_dims(out.shape)
                self.step([f"snncc_accum_{out.kind}(output + {o}, {self.ptr(out)}, {h}, {w}, {c}, t == 0);"],
                          [out.buf])
            self.step(["#ifdef SNNCC_PROFILE", f"@PROFILE_HOOK@({i});", "#endif"], [])

    def debug_dump(self, index: int, t: Tensor) -> None:
        h, w, c = L.hwc_dims(t.shape)
        hwc = int(L.is_hwc(t.shape))
        self.step(["#ifdef SNNCC_DEBUG",
                   f"if (t == {self.T - 1}) {{ @DEBUG_HOOK@({index}, {self.ptr(t)}, {ESIZE[t.kind]}, "
                   f"{h}, {w}, {c}, {hwc}); }}",
                   "#endif"], [t.buf])

    def sparse(self, t: Tensor) -> int:
        return int(t.levels and (t.rate is None or t.rate < SPARSE_RATE_LIMIT))

    # --- ops ------------------------------------------------------------------
    def weights(self, node: Node, ident: str, slices: np.ndarray, bits: int) -> tuple[str, int]:
        sb = L.storage_bits(bits)
        lim = 2 ** (sb - 1)
        if int(slices.min(initial=0)) < -lim or int(slices.max(initial=0)) > lim - 1:
            raise SnnccError(f"weights do not fit {bits} bits", node=node.name, op=node.op)
        desc = f"{ident} weights, {bits}-bit"
        if sb == 8:
            ref = self.array(f"{ident}_w", slices.astype(np.int8), "int8_t", desc + ", int8")
        else:
            ref = self.array(f"{ident}_w", L.pack_slices(slices, sb), "uint8_t", desc + f", packed {sb}-bit fields")
        return ref, sb

    def bias(self, node: Node, ident: str, n: int, pad_to: int = 1) -> str:
        if "bias" in node.params:
            b = self.int_param(node, "bias", -(2**31), 2**31 - 1)
        else:
            b = np.zeros(n, dtype=np.int64)
        b = np.pad(b, (0, -len(b) % pad_to))
        return self.array(f"{ident}_b", b.astype(np.int32), "int32_t", f"{ident} bias")

    def layer(self, node: Node, ident: str, mode: str, bits: int, sb: int, fused: bool = False) -> None:
        self.plan.layer_info.append({"name": node.name, "op": node.op, "ident": ident, "mode": mode,
                                     "weight_bits": bits, "storage_bits": sb, "fused": fused})

    def op_conv(self, node: Node, ident: str, ins: list[Tensor]) -> Tensor:
        x = ins[0]
        a = node.attrs
        wt = self.int_param(node, "weight", -128, 127)
        o, ig, kh, kw = wt.shape
        c, h, w = x.shape
        group = int(a.get("group", 1))
        bits = int(a.get("bits", 8))
        out_shape = self.g.values[node.output].shape
        depthwise = group == c == o and ig == 1
        sb = L.storage_bits(bits)
        block = group == 1 and x.kind == "i8" and (sb == 8 or self.packed_fits(wt, sb, x.bound))
        sh, sw = a.get("strides", (1, 1))
        pt, pl, _, _ = a.get("pads", (0, 0, 0, 0))
        dh, dw = a.get("dilations", (1, 1))
        kq = -(-(kh * kw * c) // 4) * 4  # a window's values, in whole quads
        pre, pname = None, ident
        if block and c < 4 and kq // 4 < kh * kw:
            # Few input channels (the image): in the firmware schedule a window's values in
            # quads (im2col) and a 1x1 conv on them, not every tap's channels padded to a
            # quad (9 quads -> 3 for one channel and a 3x3 kernel).  The x86 (unfused)
            # schedule, where a whole-image im2col cost far more than the conv behind it:
            # 1 or 2 channels carry 4 // c horizontal taps per quad (snncc_pack_taps_i8;
            # LeNet's 5x5 conv on one channel: 10 quads per pixel, not 25 padded ones), 3
            # channels are padded to 4.  Both schedules declare both forms (--gc-sections
            # drops the other).  Only below 4 channels: a layer with more (a pruned one with
            # 58) would save a few percent of its quads and carry its weights twice.
            _, oh, ow = out_shape
            wt_i = np.ascontiguousarray(wt.transpose(0, 2, 3, 1)).reshape(o, kh * kw * c, 1, 1)
            taps = sb == 8 and c <= 2
            wt_p, g, dw_p = L.tap_quads(wt, dw) if taps else (wt, 1, dw)
            wref_p, bref_p = self.block_consts(node, ident, wt_p, bits, sb, x.nonneg)
            wref_i, bref_i = self.block_consts(node, ident + "i", wt_i, bits, sb, x.nonneg)
            cp = -(-c // 4) * 4 if sb == 8 else c
            wp, pl_p = (w + pl, 0) if taps else (w, pl)
            self.plan.param_decls += [
                f"static const snncc_conv_t {ident}_ip = {{{h}, {w}, {c}, {oh}, {ow}, {o}, {kh}, {kw}, {sh}, {sw}, "
                f"{pt}, {pl}, {dh}, {dw}, 1, 8, {int(x.nonneg)}}};",
                f"static const snncc_conv_t {ident}i_p = {{{oh}, {ow}, {kq}, {oh}, {ow}, {o}, 1, 1, 1, 1, 0, 0, 1, 1, "
                f"1, {sb}, {int(x.nonneg)}}};",
                f"static const snncc_conv_t {ident}_p = {{{h}, {wp}, {cp}, {oh}, {ow}, {o}, {kh}, {wt_p.shape[3]}, "
                f"{sh}, {sw}, {pt}, {pl_p}, {dh}, {dw_p}, 1, {sb}, {int(x.nonneg)}}};"]
            # the other schedule's geometry, referenced (static constants must be used)
            self.step([f"(void)&{ident}_ip; (void)&{ident}i_p;" if not self.fuse else f"(void)&{ident}_p;"], [])
            if not self.fuse:
                wref, bref = wref_p, bref_p
                if taps:
                    xt = self.tensor("i8", (4, h, wp), levels=x.levels, rate=x.rate, nonneg=x.nonneg, bound=x.bound)
                    self.step([f"snncc_pack_taps_i8({self.ptr(x)}, {self.ptr(xt)}, {h}, {w}, {c}, {pl}, {dw});"],
                              [x.buf, xt.buf])
                    x = xt
                elif sb == 8:
                    x = self.pad_channels(x)
            else:
                pname, wref, bref = ident + "i", wref_i, bref_i
                fused_rows = self.fused_rows(out_shape) if self.fusable(node) else oh
                xi = self.tensor("i8", (kq, fused_rows, ow), levels=x.levels, rate=x.rate, nonneg=x.nonneg,
                                 bound=x.bound)
                if fused_rows == oh:
                    self.step([f"snncc_im2col_i8(&{ident}_ip, {self.ptr(x)}, {self.ptr(xi)}, {kq});"],
                              [x.buf, xi.buf])
                else:  # the fused schedule fills the rows it computes
                    pre = ([f"{{ snncc_conv_t i_ = {ident}_ip; i_.out_h = g_.out_h; i_.pad_t = {pt} - r_ * {sh}; "
                            f"snncc_im2col_i8(&i_, {self.ptr(x)}, {self.ptr(xi)}, {kq}); }}"], [x.buf])
                x, pt, sh = xi, 0, 1
            slices = None
        else:
            if block:
                slices = L.conv_weight_block(wt, BLOCK)
            else:
                slices = L.dwconv_weight(wt) if depthwise else L.conv_weight_slices(wt, group)
            if block and sb < 8:  # packed block layout: no x86 SIMD kernel reads it, so no padding/offset row
                wref = self.packed_block(node, ident, slices, bits, sb)
            else:
                wref, sb = self.weights(node, ident, slices, bits)
            if block and sb == 8 and c % 4:
                x = self.pad_channels(x)
            if block and sb == 8 and not x.nonneg:
                bref = self.bias_offset(node, ident, wt)
            else:
                bref = self.bias(node, ident, o, pad_to=BLOCK if block else 1)
            self.plan.param_decls.append(
                f"static const snncc_conv_t {ident}_p = {{{h}, {w}, {x.shape[0]}, {out_shape[1]}, {out_shape[2]}, "
                f"{o}, {kh}, {kw}, {sh}, {sw}, {pt}, {pl}, {dh}, {dw}, {group}, {sb}, {int(x.nonneg)}}};")
        if block and self.fusable(node):
            sparse = self.sparse(x)
            self.layer(node, ident, "event" if sparse else "dense", bits, sb, fused=True)
            call = f"{self.block_kernel(sb)}(&g_, {self.ptr(x)}, @CUR@, {wref}, {bref}, {sparse});"
            fused = {"ident": pname, "x": x, "index": int(ident[1:].split("_")[0]), "call": call, "pad_t": pt,
                     "stride_h": 0 if pre else sh, "pre": pre}
            return Tensor(-1, "i32", tuple(out_shape), fused=fused)
        y = self.tensor("i32", out_shape)
        bufs = [x.buf, y.buf]
        if block:
            return self.conv_block(node, pname, x, y, wref, bref, bufs, bits, sb)
        scratch = "NULL"
        if sb < 8:
            s = self.tensor("i8", (slices.shape[1],))
            scratch, bufs = self.ptr(s), bufs + [s.buf]
        if depthwise:
            mode = "gather"
            call = f"snncc_dwconv_{x.kind}(&{ident}_p, {self.ptr(x)}, {self.ptr(y)}, {wref}, {bref}, {scratch});"
        else:
            sparse = self.sparse(x)
            mode = "event" if sparse else "dense"
            call = (f"snncc_conv_{x.kind}(&{ident}_p, {self.ptr(x)}, {self.ptr(y)}, {wref}, {bref}, "
                    f"{scratch}, {sparse});")
            if group > 1 and x.kind == "i8" and sb == 8 and ig % 4 == 0:
                # x86 schedule: a group at a time on the block kernels (whole channel quads
                # per group); the firmware schedule keeps the scatter (both declare both
                # weight forms, --gc-sections drops the other)
                wg, bg = self.group_block_consts(node, ident, wt, group, x.nonneg)
                if not self.fuse:
                    call = f"snncc_conv_group_i8(&{ident}_p, {self.ptr(x)}, {self.ptr(y)}, {wg}, {bg}, {sparse});"
        self.layer(node, ident, mode, bits, sb)
        self.step([call], bufs)
        return y

    def block_consts(self, node: Node, name: str, wt: np.ndarray, bits: int, sb: int, nonneg: bool) -> tuple[str, str]:
        """Weights and bias of a block conv (O, C, kh, kw) as arrays ``name``_w, ``name``_b."""
        slices = L.conv_weight_block(wt, BLOCK)
        if sb < 8:
            wref = self.packed_block(node, name, slices, bits, sb)
        else:
            wref, _ = self.weights(node, name, slices, bits)
        if sb == 8 and not nonneg:
            return wref, self.bias_offset(node, name, wt)
        return wref, self.bias(node, name, len(wt), pad_to=BLOCK)

    def group_block_consts(self, node: Node, ident: str, wt: np.ndarray, group: int, nonneg: bool) -> tuple[str, str]:
        """8-bit weights and bias of a grouped conv for snncc_conv_group_i8: per group its
        block layout, then per group its padded bias (and, for signed input, its
        bias - 128 * sum(W) row), as bias_offset for one group."""
        o = wt.shape[0]
        og = o // group
        b = self.int_param(node, "bias", -(2**31), 2**31 - 1) if "bias" in node.params else np.zeros(o, np.int64)
        wsum = wt.reshape(o, -1).sum(axis=1)
        blocks, biases = [], []
        for g in range(group):
            sl = slice(g * og, (g + 1) * og)
            blocks.append(L.conv_weight_block(wt[sl], BLOCK))
            rows = [b[sl]] if nonneg else [b[sl], (b[sl] - 128 * wsum[sl] + 2**31) % 2**32 - 2**31]
            biases += [np.pad(r, (0, -og % BLOCK)) for r in rows]
        wref, _ = self.weights(node, ident + "g", np.concatenate(blocks), 8)
        bref = self.array(f"{ident}g_b", np.concatenate(biases).astype(np.int32), "int32_t",
                          f"{ident} bias per group" + ("" if nonneg else ", each then bias - 128 * sum(W)"))
        return wref, bref

    @staticmethod
    def block_kernel(sb: int) -> str:
        return "snncc_conv_block_i8" if sb == 8 else f"snncc_conv_block_w{sb}"

    @staticmethod
    def packed_fits(wt: np.ndarray, sb: int, xmax: int) -> bool:
        """The Arm DSP packed kernels sum an output's products times up to 2^(16-sb) (the
        scale of its fields in a halfword, layout.pack_block): exact while the input bound
        |x| <= xmax times sum |w| times that scale stays below 2^31 (every partial sum then
        fits int32)."""
        fan = np.abs(wt.astype(np.int64)).reshape(len(wt), -1).sum(axis=1).max(initial=0)
        return xmax * int(fan) * 2 ** (16 - sb) < 2**31

    def packed_block(self, node: Node, ident: str, block: np.ndarray, bits: int, sb: int) -> str:
        lim = 2 ** (sb - 1)
        if int(block.min(initial=0)) < -lim or int(block.max(initial=0)) > lim - 1:
            raise SnnccError(f"weights do not fit {bits} bits", node=node.name, op=node.op)
        return self.array(f"{ident}_w", L.pack_block(block, sb), "uint8_t",
                          f"{ident} weights, {bits}-bit, packed block layout ({sb}-bit fields)")

    def fusable(self, node: Node) -> bool:
        """A conv whose only reader is a neuron: its currents are computed a few rows at a
        time into a small scratch that the neuron consumes at once."""
        users = self.consumers.get(node.output, [])
        return (self.fuse and node.output not in self.g.outputs and len(users) == 1 and users[0].op == "neuron"
                and users[0].inputs == [node.output])

    def bias_offset(self, node: Node, ident: str, wt: np.ndarray) -> str:
        """Bias of a block conv on signed input: the padded bias, then bias - 128 * sum(W)
        wrapped to int32 (the x86 VNNI kernels feed x + 128 as u8; int32 sums wrap)."""
        o = wt.shape[0]
        b = self.int_param(node, "bias", -(2**31), 2**31 - 1) if "bias" in node.params else np.zeros(o, np.int64)
        b = np.pad(b, (0, -o % BLOCK))
        wsum = np.pad(wt.reshape(o, -1).sum(axis=1), (0, -o % BLOCK))
        off = (b - 128 * wsum + 2**31) % 2**32 - 2**31
        return self.array(f"{ident}_b", np.concatenate([b, off]).astype(np.int32), "int32_t",
                          f"{ident} bias; then bias - 128 * sum(W) for offset inputs")

    def pad_channels(self, x: Tensor) -> Tensor:
        """A copy of the HWC int8 tensor x with channels zero-padded to a multiple of 4:
        block convs then read whole channel quads (the weights of padded channels are 0)."""
        c, h, w = x.shape
        cp = -(-c // 4) * 4
        y = self.tensor("i8", (cp, h, w), levels=x.levels, rate=x.rate, nonneg=x.nonneg, bound=x.bound)
        self.step([f"snncc_pad_channels_i8({self.ptr(x)}, {self.ptr(y)}, {h * w}, {c}, {cp});"], [x.buf, y.buf])
        return y

    def conv_block(self, node: Node, ident: str, x: Tensor, y: Tensor, wref: str, bref: str,
                   bufs: list[int], bits: int, sb: int) -> Tensor:
        sparse = self.sparse(x)
        self.layer(node, ident, "event" if sparse else "dense", bits, sb)
        self.step([f"{self.block_kernel(sb)}(&{ident}_p, {self.ptr(x)}, {self.ptr(y)}, {wref}, {bref}, {sparse});"],
                  bufs)
        return y

    def op_dense(self, node: Node, ident: str, ins: list[Tensor]) -> Tensor:
        x = ins[0]
        wt = self.int_param(node, "weight", -128, 127)
        o, f = wt.shape
        bits = int(node.attrs.get("bits", 8))
        sb = L.storage_bits(bits)
        if x.kind == "i8" and (sb == 8 or self.packed_fits(wt, sb, x.bound)):
            return self.dense_block(node, ident, x, wt, bits, sb)
        wref, sb = self.weights(node, ident, L.dense_weight_slices(wt), bits)
        bref = self.bias(node, ident, o)
        self.plan.param_decls.append(f"static const snncc_dense_t {ident}_p = {{{f}, {o}, {sb}}};")
        y = self.tensor("i32", (o,))
        bufs = [x.buf, y.buf]
        scratch = "NULL"
        if sb < 8:
            s = self.tensor("i8", (o,))
            scratch, bufs = self.ptr(s), bufs + [s.buf]
        sparse = self.sparse(x)
        self.layer(node, ident, "event" if sparse else "dense", bits, sb)
        self.step([f"snncc_dense_{x.kind}(&{ident}_p, {self.ptr(x)}, {self.ptr(y)}, {wref}, {bref}, "
                   f"{scratch}, {sparse});"], bufs)
        return y

    def dense_block(self, node: Node, ident: str, x: Tensor, wt: np.ndarray, bits: int, sb: int) -> Tensor:
        """A dense layer on int8 input as a 1x1 conv of one pixel with in_f channels: the
        block kernels (x86 VNNI/AVX2, Arm DSP, packed low-bit) instead of the scatter."""
        o, f = wt.shape
        w4 = wt.reshape(o, f, 1, 1)
        block = L.conv_weight_block(w4, BLOCK)
        if sb < 8:
            wref = self.packed_block(node, ident, block, bits, sb)
        else:
            wref, _ = self.weights(node, ident, block, bits)
        if sb == 8 and f % 4:  # x86 block kernels read whole channel quads
            fp = -(-f // 4) * 4
            y = self.tensor("i8", (fp,), levels=x.levels, rate=x.rate, nonneg=x.nonneg, bound=x.bound)
            self.step([f"snncc_pad_channels_i8({self.ptr(x)}, {self.ptr(y)}, 1, {f}, {fp});"], [x.buf, y.buf])
            x, f = y, fp
        bref = self.bias_offset(node, ident, w4) if sb == 8 and not x.nonneg else self.bias(node, ident, o, BLOCK)
        self.plan.param_decls.append(f"static const snncc_conv_t {ident}_p = {{1, 1, {f}, 1, 1, {o}, 1, 1, 1, 1, "
                                     f"0, 0, 1, 1, 1, {sb}, {int(x.nonneg)}}};")
        y = self.tensor("i32", (o,))
        return self.conv_block(node, ident, x, y, wref, bref, [x.buf, y.buf], bits, sb)

    def op_affine(self, node: Node, ident: str, ins: list[Tensor]) -> Tensor:
        x = ins[0]
        outer, ch, inner = L.channel_split(x.shape)
        scale = self.int_param(node, "scale", -(2**31), 2**31 - 1)
        shift = self.int_param(node, "shift", -(2**31), 2**31 - 1)
        sref = self.array(f"{ident}_scale", np.broadcast_to(scale, (ch,)).astype(np.int32), "int32_t",
                          f"{ident} per-channel scale")
        tref = self.array(f"{ident}_shift", np.broadcast_to(shift, (ch,)).astype(np.int32), "int32_t",
                          f"{ident} per-channel shift")
        y = self.tensor("i32", x.shape)
        self.step([f"snncc_affine_{x.kind}({self.ptr(x)}, {self.ptr(y)}, {sref}, {tref}, {outer}, {ch}, {inner});"],
                  [x.buf, y.buf])
        return y

    def op_add(self, node: Node, ident: str, ins: list[Tensor]) -> Tensor:
        xs = [self.widen(t) for t in ins]
        y = self.tensor("i32", xs[0].shape)
        n = int(np.prod(y.shape))
        if len(xs) == 1:
            code = [f"snncc_concat_part({self.ptr(y)}, {self.ptr(xs[0])}, 1, {n}, {n}, 0, 4);"]
        else:
            code = [f"snncc_add_i32({self.ptr(y)}, {self.ptr(xs[0])}, {self.ptr(xs[1])}, {n});"]
            code += [f"snncc_addto_i32({self.ptr(y)}, {self.ptr(t)}, {n});" for t in xs[2:]]
        self.step(code, [t.buf for t in xs] + [y.buf])
        return y

    def pool_decl(self, node: Node, ident: str, x: Tensor) -> str:
        a = node.attrs
        c, h, w = x.shape
        out = self.g.values[node.output].shape
        kh, kw = a["kernel"]
        sh, sw = a.get("strides", (1, 1))
        pt, pl, _, _ = a.get("pads", (0, 0, 0, 0))
        dh, dw = a.get("dilations", (1, 1))
        self.plan.param_decls.append(f"static const snncc_pool_t {ident}_p = {{{h}, {w}, {c}, {out[1]}, {out[2]}, "
                                     f"{kh}, {kw}, {sh}, {sw}, {pt}, {pl}, {dh}, {dw}}};")
        return f"&{ident}_p"

    def op_maxpool(self, node: Node, ident: str, ins: list[Tensor]) -> Tensor:
        x = ins[0]
        p = self.pool_decl(node, ident, x)
        y = self.tensor(x.kind, self.g.values[node.output].shape, levels=x.levels, rate=x.rate, nonneg=x.nonneg,
                        bound=x.bound)
        self.step([f"snncc_maxpool_{x.kind}({p}, {self.ptr(x)}, {self.ptr(y)});"], [x.buf, y.buf])
        return y

    def op_global_maxpool(self, node: Node, ident: str, ins: list[Tensor]) -> Tensor:
        """y[ch] = max over the H*W positions of x (channel-last: x[pos * C + ch])."""
        x = ins[0]
        c, h, w = x.shape
        y = self.tensor(x.kind, (c, 1, 1), levels=x.levels, rate=x.rate, nonneg=x.nonneg, bound=x.bound)
        t = CTYPE[x.kind]
        self.step([
            "{",
            f"    const {t} *gx = {self.ptr(x)};",
            f"    {t} *gy = {self.ptr(y)};",
            "    int32_t pos, ch;",
            f"    for (ch = 0; ch < {c}; ++ch) {{",
            "        gy[ch] = gx[ch];",
            "    }",
            f"    for (pos = 1; pos < {h * w}; ++pos) {{",
            f"        for (ch = 0; ch < {c}; ++ch) {{",
            f"            if (gx[pos * {c} + ch] > gy[ch]) {{",
            f"                gy[ch] = gx[pos * {c} + ch];",
            "            }",
            "        }",
            "    }",
            "}",
        ], [x.buf, y.buf])
        return y

    def op_sumpool(self, node: Node, ident: str, ins: list[Tensor]) -> Tensor:
        x = ins[0]
        p = self.pool_decl(node, ident, x)
        y = self.tensor("i32", self.g.values[node.output].shape)
        self.step([f"snncc_sumpool_{x.kind}({p}, {self.ptr(x)}, {self.ptr(y)});"], [x.buf, y.buf])
        return y

    def op_neuron(self, node: Node, ident: str, ins: list[Tensor]) -> Tensor:
        x = self.widen(ins[0])
        a = node.attrs
        outer, ch, inner = L.channel_split(x.shape)
        levels = int(a.get("levels", 1))
        if not 1 <= levels <= 127:
            raise SnnccError(f"levels must be in 1..127, got {levels}", node=node.name, op=node.op)
        bits = int(a.get("membrane_bits", 32))
        shift = int(a.get("membrane_shift", 0) or 0)
        if not 2 <= bits <= 32 or not 0 <= shift < bits - 1:
            raise SnnccError(f"membrane_bits {bits} / membrane_shift {shift} out of range",
                             node=node.name, op=node.op)
        theta = self.int_param(node, "theta", 1, 2**31 - 1)
        v_init = (self.int_param(node, "v_init", -(2**31), 2**31 - 1) if "v_init" in node.params
                  else neuron.v_init(theta))
        vmin, vmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        thref = self.array(f"{ident}_theta", np.broadcast_to(theta, (ch,)).astype(np.int32), "int32_t",
                           f"{ident} thresholds")
        vref = self.array(f"{ident}_vinit", np.broadcast_to(v_init, (ch,)).astype(np.int32), "int32_t",
                          f"{ident} initial membrane")
        self.plan.param_decls.append(
            f"static const snncc_neuron_t {ident}_p = {{{outer}, {ch}, {inner}, {levels}, "
            f"{int(bool(a.get('signed', False)))}, {L.c_int(vmin)}, {L.c_int(vmax)}, {shift}}};")
        rate = self.rates.get(node.output, a.get("spike_rate"))
        z = self.tensor("i8", x.shape, levels=True, rate=None if rate is None else float(rate),
                        nonneg=not a.get("signed", False), bound=levels)
        vptr = "NULL"
        bufs = [x.buf, z.buf]
        if self.T > 1:
            v = self.buffer(4 * int(np.prod(x.shape)), persistent=True)
            self.plan.membrane_bytes += self.plan.buffers[v].nbytes
            vptr = f"@B{v}:int32_t@"
            self.plan.prologue.append(f"snncc_neuron_init(&{ident}_p, {vptr}, {vref});")
        lo = -levels if a.get("signed", False) else 0
        thr = np.arange(lo + 1, levels + 1, dtype=np.int64)[:, None] * np.broadcast_to(theta, (ch,))[None, :]
        cur_bound = self.current_bound(node)
        fast = (inner == 1 and levels - lo <= FAST_NEURON_STEPS and cur_bound is not None
                and np.abs(thr).max() < 2**31 and max(-vmin, vmax, int(np.abs(v_init).max())) + cur_bound < 2**31)
        if fast:
            tref = self.array(f"{ident}_thr", thr.astype(np.int32), "int32_t", f"{ident} threshold table k*theta")
            call = f"snncc_neuron_fast(@P@, @CUR@, @V@, {thref}, {vref}, SNNCC_NEURON_THR({tref}), @Z@);"
        else:
            call = f"snncc_neuron_step(@P@, @CUR@, @V@, {thref}, {vref}, @Z@);"
        if x.fused is None:
            self.step([call.replace("@P@", f"&{ident}_p").replace("@CUR@", self.ptr(x)).replace("@V@", vptr)
                       .replace("@Z@", self.ptr(z))], bufs)
        else:
            self.fused_step(x, ident, call, vptr, z)
        return z

    def fused_step(self, x: Tensor, ident: str, call: str, vptr: str, z: Tensor) -> None:
        """The conv of ``x.fused`` and this neuron, a few output rows at a time: the conv
        runs on a copy of its geometry narrowed to those rows (pad_t shifted), the neuron on
        the rows' currents."""
        f = x.fused
        _, oh, ow = x.shape
        row = ow * x.shape[0]
        rows = self.fused_rows(x.shape)
        pre, pre_bufs = f["pre"] or ([], [])
        cur = self.tensor("i32", (rows * row,))
        vrow = "NULL" if vptr == "NULL" else f"{vptr} + r_ * {row}"
        self.step([
            "{",
            f"    snncc_conv_t g_ = {f['ident']}_p;",
            f"    snncc_neuron_t n_ = {ident}_p;",
            "    int32_t r_;",
            "#ifdef SNNCC_DEBUG",
            f"    static int32_t dbg_[{oh * row}];",
            "#endif",
            f"    for (r_ = 0; r_ < {oh}; r_ += {rows}) {{",
            f"        g_.out_h = {oh} - r_ < {rows} ? {oh} - r_ : {rows};",
            f"        g_.pad_t = {f['pad_t']} - r_ * {f['stride_h']};",
            f"        n_.outer = g_.out_h * {ow};",
            *["        " + line for line in pre],
            "        " + f["call"].replace("@CUR@", self.ptr(cur)),
            "#ifdef SNNCC_DEBUG",
            "        {",
            "            int32_t k_;",
            f"            for (k_ = 0; k_ < g_.out_h * {row}; ++k_) {{",
            f"                dbg_[r_ * {row} + k_] = {self.ptr(cur)}[k_];",
            "            }",
            "        }",
            "#endif",
            "        " + call.replace("@P@", "&n_").replace("@CUR@", self.ptr(cur)).replace("@V@", vrow)
            .replace("@Z@", f"{self.ptr(z)} + r_ * {row}"),
            "    }",
            "#ifdef SNNCC_DEBUG",  # the whole currents, for the debug hook (debug builds only)
            f"    if (t == {self.T - 1}) {{ @DEBUG_HOOK@({f['index']}, dbg_, 4, {oh}, {ow}, {x.shape[0]}, 1); }}",
            "#endif",
            "}",
        ], [f["x"].buf, *pre_bufs, cur.buf, z.buf])

    @staticmethod
    def fused_rows(shape: tuple[int, ...]) -> int:
        """Output rows a fused conv computes at a time: at most FUSED_ROW_BYTES of currents."""
        o, oh, ow = shape
        return max(1, min(oh, FUSED_ROW_BYTES // (4 * ow * o)))

    def current_bound(self, node: Node) -> int | None:
        """max |input current| of a neuron from the range analysis, if recorded."""
        prod = self.producers.get(node.inputs[0])
        rng = prod.attrs.get("range") if prod is not None else None
        if rng is None:
            return None
        return max(abs(int(rng[0])), abs(int(rng[1])))

    def relayout(self, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        """flatten / reshape: an alias when the stored order is unchanged, else a copy."""
        shape = tuple(int(s) for s in shape)
        if L.c_order_equal(x.shape) and L.c_order_equal(shape):
            return Tensor(x.buf, x.kind, shape, x.levels, x.rate, x.nonneg)
        es = ESIZE[x.kind]
        src = x
        if not L.c_order_equal(x.shape):
            h, w, c = L.hwc_dims(x.shape)
            src = self.tensor(x.kind, (int(np.prod(x.shape)),), levels=x.levels, rate=x.rate, nonneg=x.nonneg,
                              bound=x.bound)
            self.step([f"snncc_hwc_to_chw({self.ptr(x)}, {self.ptr(src)}, {h}, {w}, {c}, {es});"],
                      [x.buf, src.buf])
        if L.c_order_equal(shape):
            return Tensor(src.buf, src.kind, shape, src.levels, src.rate, src.nonneg)
        y = self.tensor(x.kind, shape, levels=x.levels, rate=x.rate, nonneg=x.nonneg, bound=x.bound)
        h, w, c = L.hwc_dims(shape)
        self.step([f"snncc_chw_to_hwc({self.ptr(src)}, {self.ptr(y)}, {h}, {w}, {c}, {es});"], [src.buf, y.buf])
        return y

    def op_flatten(self, node: Node, ident: str, ins: list[Tensor]) -> Tensor:
        return self.relayout(ins[0], self.g.values[node.output].shape)

    def op_reshape(self, node: Node, ident: str, ins: list[Tensor]) -> Tensor:
        return self.relayout(ins[0], self.g.values[node.output].shape)

    def op_concat(self, node: Node, ident: str, ins: list[Tensor]) -> Tensor:
        kind = "i32" if any(t.kind == "i32" for t in ins) else "i8"
        xs = [self.widen(t) if kind == "i32" else t for t in ins]
        shape = self.g.values[node.output].shape
        y = self.tensor(kind, shape, levels=all(t.levels for t in xs), nonneg=all(t.nonneg for t in xs),
                        bound=max(t.bound for t in xs))
        axis = int(node.attrs.get("axis", 0))
        dims, amap = L.physical_dims(shape)
        p = amap[axis]
        outer = int(np.prod(dims[:p], dtype=np.int64))
        inner = int(np.prod(dims[p + 1:], dtype=np.int64))
        code, off = [], 0
        for t in xs:
            tdims, _ = L.physical_dims(t.shape)
            chunk = tdims[p] * inner
            code.append(f"snncc_concat_part({self.ptr(y)}, {self.ptr(t)}, {outer}, {chunk}, {dims[p] * inner}, "
                        f"{off}, {ESIZE[kind]});")
            off += chunk
        self.step(code, [t.buf for t in xs] + [y.buf])
        return y

    def op_pad(self, node: Node, ident: str, ins: list[Tensor]) -> Tensor:
        x = ins[0]
        c, h, w = x.shape
        t, l_, b, r = node.attrs["pads"]
        y = self.tensor(x.kind, self.g.values[node.output].shape, levels=x.levels, rate=x.rate, nonneg=x.nonneg,
                        bound=x.bound)
        self.step([f"snncc_pad_hwc({self.ptr(x)}, {self.ptr(y)}, {h}, {w}, {c}, {t}, {l_}, {b}, {r}, "
                   f"{ESIZE[x.kind]});"], [x.buf, y.buf])
        return y

    def op_channel_shuffle(self, node: Node, ident: str, ins: list[Tensor]) -> Tensor:
        x = ins[0]
        outer, ch, inner = L.channel_split(x.shape)
        groups = int(node.attrs["groups"])
        y = self.tensor(x.kind, x.shape, levels=x.levels, rate=x.rate, nonneg=x.nonneg, bound=x.bound)
        self.step([f"snncc_channel_shuffle({self.ptr(x)}, {self.ptr(y)}, {outer}, {ch}, {inner}, {groups}, "
                   f"{ESIZE[x.kind]});"], [x.buf, y.buf])
        return y


def _place(plan: Plan) -> None:
    """Greedy-by-size placement of buffers in the arena, and the peak-live bound."""
    bufs = [b for b in plan.buffers if not b.external and b.nbytes > 0]
    nsteps = len(plan.steps)
    for b in bufs:
        if b.persistent or b.first < 0:
            b.first, b.last = 0, max(nsteps - 1, 0)
    placed: list[Buffer] = []
    for b in sorted(bufs, key=lambda b: (-b.nbytes, b.first, b.index)):
        clash = sorted((p for p in placed if p.first <= b.last and b.first <= p.last), key=lambda p: p.offset)
        off = 0
        for p in clash:
            if off + b.nbytes <= p.offset:
                break
            off = max(off, _align(p.offset + p.nbytes))
        b.offset = off
        placed.append(b)
    plan.arena_bytes = _align(max((b.offset + b.nbytes for b in bufs), default=0)) or ALIGN
    live = np.zeros(max(nsteps, 1), dtype=np.int64)
    for b in bufs:
        live[b.first:b.last + 1] += b.nbytes
    plan.peak_live_bytes = int(live.max())


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN
