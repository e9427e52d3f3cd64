"""Integer IR -> the FPGA netlist description (netlist.json).

The netlist is the single source the Verilog is generated from (``verilog.py``).  It
lists one *core* per layer, the frame *buffers* between cores, the *memories* (ROM
images and RAMs) and the *streams*, with every bit width taken from range analysis
(``attrs["range"]``, ``v_range``, ``v_state_range``, ``acc_range``) or from the integer
parameters themselves, each the minimum that is proven to fit.

Execution model (docs/fpga.md): the cores run one after another in graph order, once
per timestep; each core is a sequential engine that reads its input frame buffer(s)
and writes its output frame buffer.  A frame buffer is split into ``banks`` (Q RAMs,
channel c in bank c mod Q) when its producer computes Q channels at once and every
reader can take Q channels per read: then a conv reads Q input channels per cycle
(P x Q MACs) and the producer writes its P lanes in one cycle.  A neuron whose current is read by nothing else
is fused into the core that computes the current (its *epilogue*), so currents are
only stored where a join needs them.
"""

from __future__ import annotations

import math

import numpy as np

from snncc import ops
from snncc.backends.fpga.geometry import window_geometry
from snncc.errors import SnnccError
from snncc.ir import Graph, Node

SCHEMA_VERSION = 2

# IR op -> the core generator that implements it (the one place that maps ops to cores).
CORE_OF_OP = {
    "conv": "window",  # MAC over a kernel window, P output channels in parallel
    "dense": "window",  # a 1x1 "conv" on a (F, 1, 1) frame
    "sumpool": "window",
    "maxpool": "window",
    "add": "eltwise",
    "affine": "eltwise",
    "neuron": "eltwise",  # only when it cannot be fused into its producer
    "concat": "move",  # channel concatenation: the inputs copied one after another
    "pad": "move",  # zero padding that no conv absorbed
    "channel_shuffle": "move",  # a channel permutation
}
FUSES_NEURON = ("window", "eltwise")  # cores whose value a following neuron can take as its current
# Ops that are pure re-labelings of the same C-order frame: no core, the buffer is shared.
ALIAS_OPS = ops.RESHAPES

INPUT_BITS = 8
OUTPUT_BITS = 32
MAX_LANES = 256


def sbits(lo: int, hi: int) -> int:
    """Width of the smallest two's-complement type that holds [lo, hi] (at least 2)."""
    lo, hi = int(min(lo, 0)), int(max(hi, 0))
    w = 2
    while lo < -(1 << (w - 1)) or hi > (1 << (w - 1)) - 1:
        w += 1
    return w


def _chw(shape) -> tuple[int, int, int]:
    if len(shape) == 3:
        return tuple(int(s) for s in shape)
    if len(shape) == 1:
        return int(shape[0]), 1, 1
    raise SnnccError(f"the fpga target needs (C,H,W) or (F,) values, got shape {list(shape)}")


def clamp_lanes(want: int, limit: int) -> int:
    """The largest divisor of ``limit`` that is <= ``want``."""
    p = max(1, min(want, limit))
    while limit % p:
        p -= 1
    return p


def check_lanes(lanes: int) -> None:
    if not 1 <= int(lanes) <= MAX_LANES:
        raise SnnccError(f"must be in 1..{MAX_LANES}, got {lanes}", option="lanes")


SMALL_LAYER = 64  # a weighted layer with under 1/64 of the largest layer's MACs runs with one lane


def macs(graph: Graph, node: Node) -> int:
    """Multiply-accumulates of one weighted node per timestep."""
    w = node.params["weight"]
    return int(np.prod(graph.shape(node.output))) * int(np.prod(w.shape[1:]))


def small_layers(graph: Graph) -> set[str]:
    """Weighted nodes whose few MACs do not pay for lanes or banked reads: they run scalar."""
    counts = {n.name: macs(graph, n) for n in graph.nodes if n.op in ops.WEIGHTED}
    top = max(counts.values(), default=0)
    return {k for k, v in counts.items() if v * SMALL_LAYER < top}


def _bank_readers(graph: Graph, fused_neurons: set[str], small: set[str]) -> dict[str, bool]:
    """Value -> True when every reader (through reshapes) can read Q channels per word:
    a window core with group 1 that views the value with its stored (C,H,W) shape, or a
    diagonal one (pool, depthwise with one output per input channel)."""
    consumers = graph.consumer_map()
    ok: dict[str, bool] = {}

    def readers(value: str, seen: list) -> list:
        out = []
        for n in consumers.get(value, []):
            if n.op in ALIAS_OPS:
                out += readers(n.output, seen + [n])
            else:
                out.append((n, value))
        return out

    for node in graph.nodes:
        if node.op in ALIAS_OPS:
            continue
        v = node.output
        shape = _chw(graph.shape(v)) if len(graph.shape(v)) in (1, 3) else None
        rs = readers(v, [])
        good = bool(rs) and v not in graph.outputs and shape is not None
        for n, view in rs:
            if not good:
                break
            if (CORE_OF_OP.get(n.op) != "window" or n.name in fused_neurons or len(n.inputs) != 1
                    or n.name in small):
                good = False
            elif _chw(graph.shape(view)) != shape:
                good = False  # a reshape that regroups the flat C-order index
            else:
                C = shape[0]
                O = _chw(graph.shape(n.output))[0]
                group = C if n.op in ops.POOLS else int(n.attrs.get("group", 1))
                good = group == 1 or (group == C and O == C)
        ok[v] = good
    return ok


# Reductions where skipping a zero input word changes nothing (a max over signed values would).
EVENT_REDUCES = ("mac", "sum")


def build_netlist(graph: Graph, *, lanes: int = 1, name: str = "model",
                  event_driven: bool = False) -> tuple[dict, dict[str, list[int]]]:
    """Return (netlist, rom contents by memory name as lists of packed unsigned words).

    ``event_driven``: window cores that sum skip input words that are zero (every bank of a
    bank row), so their cycles depend on the data (``estimate.cycles`` is then the bound)."""
    if graph.stage != "int":
        raise SnnccError(f"the fpga target needs the integer IR, got stage {graph.stage!r}")
    check_lanes(lanes)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise SnnccError("the fpga target supports one graph input and one graph output, "
                         f"got {len(graph.inputs)} and {len(graph.outputs)}")
    T = int(graph.meta.get("timesteps", 1))
    consumers = graph.consumer_map()
    producers = graph.producers()
    out_value = graph.outputs[0]
    in_value = graph.inputs[0]

    # --- which nodes become cores, which neurons are fused ------------------------
    fused: dict[str, Node] = {}  # producer node name -> neuron fused into it
    for node in graph.nodes:
        if node.op in ALIAS_OPS or node.op in CORE_OF_OP:
            continue
        raise SnnccError("the fpga target has no core for this op", node=node.name, op=node.op)
    for node in graph.nodes:
        if node.op != "neuron":
            continue
        src = producers.get(node.inputs[0])
        if (src is not None and CORE_OF_OP.get(src.op) in FUSES_NEURON and src.op != "neuron"
                and len(consumers.get(src.output, [])) == 1 and src.output not in graph.outputs):
            fused[src.name] = node
    fused_neurons = {n.name for n in fused.values()}
    out_prod = producers.get(out_value)
    if out_prod is None or CORE_OF_OP.get(out_prod.op) not in FUSES_NEURON:
        raise SnnccError(f"the fpga target needs the graph output {out_value!r} to come from a core op",
                         node=getattr(out_prod, "name", out_value), op=getattr(out_prod, "op", "input"))
    if consumers.get(out_value):
        raise SnnccError("the fpga target needs the graph output to be read by nothing else",
                         node=out_prod.name, op=out_prod.op)

    # --- buffers: one per stored value (aliases share their source's) ---------------
    buffers: list[dict] = []
    buf_of: dict[str, str] = {}
    rng: dict[str, list[int]] = {in_value: [-128, 127]}
    for node in graph.nodes:
        rng[node.output] = [int(x) for x in node.attrs["range"]]

    small = small_layers(graph)
    bankable = _bank_readers(graph, fused_neurons, small)
    banks_of: dict[str, int] = {}

    def add_buffer(value: str, width: int, role: str, banks: int = 1) -> str:
        bname = "in" if role == "input" else f"b{len(buffers)}"
        buffers.append({"name": bname, "value": value, "depth": int(np.prod(graph.shape(value))),
                        "width": int(width), "role": role, "banks": int(banks)})
        buf_of[value] = bname
        banks_of[bname] = int(banks)
        return bname

    add_buffer(in_value, INPUT_BITS, "input")
    cores: list[dict] = []
    roms: dict[str, list[int]] = {}
    notes: list[str] = []
    for node in graph.nodes:
        if node.op in ALIAS_OPS:
            buf_of[node.output] = buf_of[node.inputs[0]]
            continue
        if node.name in fused_neurons:
            continue
        neuron = fused.get(node.name)
        final = neuron.output if neuron is not None else node.output
        idx = len(cores)
        cname = f"l{idx}_{node.op}"
        out_bankable = bankable.get(final, False) and final != out_value
        want = lanes
        if node.name in small and lanes > 1:
            want = 1
            notes.append(f"{cname}: 1 lane, not {lanes} (a small layer: {macs(graph, node)} MACs per step, under "
                         f"1/{SMALL_LAYER} of the largest layer)")
        core = _core(graph, node, neuron, cname, want, buf_of, banks_of, out_bankable, rng, roms, notes, T)
        if final == out_value:
            core["epilogue"] = {"kind": "acc", "acc_bits": _acc_bits(node, T)}
            core["output"] = add_buffer(final, core["epilogue"]["acc_bits"], "output")
        else:
            width = sbits(*rng[final])
            core["output"] = add_buffer(final, width, "frame", core["banks"]["out"])
        core["widths"]["out"] = next(b["width"] for b in buffers if b["name"] == core["output"])
        core["event_driven"] = bool(event_driven and core["kind"] == "window" and core["reduce"] in EVENT_REDUCES)
        cores.append(core)

    readers: dict[str, list[str]] = {b["name"]: [] for b in buffers}
    for core in cores:
        for b in core["inputs"]:
            readers[b].append(core["name"])
        if core["epilogue"]["kind"] == "acc":
            readers[core["output"]].append(core["name"])
    out_buf = buf_of[out_value]
    readers[out_buf].append("axis_out")
    streams = []
    for b in buffers:
        writer = "axis_in" if b["role"] == "input" else next(c["name"] for c in cores if c["output"] == b["name"])
        for r in readers[b["name"]]:
            if r != writer:
                streams.append({"from": writer, "to": r, "buffer": b["name"], "width": b["width"]})
        b["readers"] = readers[b["name"]]
        # a bit per bank row, set when any bank is non-zero: what event-driven readers skip on
        b["flags"] = any(c["event_driven"] and b["name"] in c["inputs"] for c in cores)

    memories = []
    for b in buffers:
        memories.append({"name": b["name"], "kind": "ram", "depth": b["depth"] // b["banks"], "width": b["width"],
                         "banks": b["banks"], "init": None, "core": None})
    for core in cores:
        for m in core["memories"]:
            memories.append(dict(m, core=core["name"]))

    from snncc.backends.fpga.estimate import annotate

    netlist = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "timesteps": T,
        "lanes": int(lanes),
        "event_driven": bool(event_driven),
        "input": {"value": in_value, "shape": list(graph.shape(in_value)), "words": buffers[0]["depth"],
                  "width": INPUT_BITS, "buffer": "in"},
        "output": {"value": out_value, "shape": list(graph.shape(out_value)),
                   "words": int(np.prod(graph.shape(out_value))), "width": OUTPUT_BITS, "buffer": out_buf},
        "buffers": buffers,
        "cores": cores,
        "memories": memories,
        "streams": streams,
        "notes": notes,
    }
    annotate(netlist)
    return netlist, roms


def _acc_bits(node: Node, T: int) -> int:
    lo, hi = node.attrs.get("acc_range", [T * node.attrs["range"][0], T * node.attrs["range"][1]])
    bits = sbits(min(lo, node.attrs["range"][0]), max(hi, node.attrs["range"][1]))
    if bits > OUTPUT_BITS:
        raise SnnccError(f"the output accumulator needs {bits} bits, more than 32", node=node.name, op=node.op)
    return bits


def _pack(fields: list[tuple[np.ndarray, int]]) -> list[int]:
    """Pack per-row signed fields LSB-first into unsigned words."""
    n = len(fields[0][0])
    words = []
    for i in range(n):
        word, pos = 0, 0
        for arr, bits in fields:
            word |= (int(arr[i]) & ((1 << bits) - 1)) << pos
            pos += bits
        words.append(word)
    return words


def _core(graph: Graph, node: Node, neuron: Node | None, cname: str, lanes: int, buf_of, banks_of,
          out_bankable: bool, rng, roms, notes, T: int) -> dict:
    op = node.op
    kind = CORE_OF_OP[op]
    in_vals = list(node.inputs)
    if len(set(in_vals)) != len(in_vals):
        raise SnnccError("the fpga target cannot read one value twice in one core", node=node.name, op=op)
    in_widths = [sbits(*rng[v]) for v in in_vals]
    in_banks = [banks_of[buf_of[v]] for v in in_vals]
    core: dict = {"name": cname, "kind": kind, "op": op, "node": node.name,
                  "inputs": [buf_of[v] for v in in_vals], "memories": [],
                  "widths": {"in": in_widths, "in_unsigned": [bool(rng[v][0] >= 0) for v in in_vals]},
                  "banks": {"in": in_banks, "out": 1}, "diagonal": False, "parallel": False}
    param_fields: list[tuple[str, np.ndarray]] = []
    if kind == "window":
        C, H, W = _chw(graph.shape(in_vals[0]))
        O, OH, OW = _chw(graph.shape(node.output))
        a = node.attrs
        if op == "dense":
            geo = dict(kernel=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1)
        elif op == "conv":
            geo = dict(kernel=list(node.params["weight"].shape[2:]), strides=list(a["strides"]),
                       pads=list(a["pads"]), dilations=list(a["dilations"]), group=int(a["group"]))
        else:
            geo = dict(kernel=list(a["kernel"]), strides=list(a["strides"]), pads=list(a["pads"]),
                       dilations=list(a.get("dilations", (1, 1))), group=C)
        og = O // geo["group"]
        q = in_banks[0]
        diagonal = geo["group"] == C == O  # output channel c reads input channel c only
        if diagonal and q > 1:
            p = q  # lane l reads bank l
        else:
            p = clamp_lanes(int(lanes), og) if op in ops.WEIGHTED else 1
            if op in ops.WEIGHTED and p != lanes:
                notes.append(f"{cname}: --lanes {lanes} clamped to {p} (a divisor of its {og} output channels "
                             "per group)")
        if q > 1 and not diagonal and geo["group"] != 1:
            raise SnnccError("internal: banked input to a grouped conv", node=node.name, op=op)
        geo.update(in_shape=[C, H, W], out_shape=[O, OH, OW])
        core.update(geometry=geo, lanes=p, reduce={"conv": "mac", "dense": "mac", "sumpool": "sum",
                                                   "maxpool": "max"}[op], diagonal=bool(diagonal and q > 1))
        if out_bankable and p > 1:
            core["banks"]["out"] = p  # the P lanes of one pixel go to P banks of one bank row
        # The epilogue of all P lanes in one cycle (P neurons) where one lane per cycle would add more
        # than half to the cycles of a pixel; otherwise one neuron serves the lanes in turn.
        core["parallel"] = False
        if core["banks"]["out"] > 1:
            fused_neuron = neuron is not None or op == "neuron"
            core["parallel"] = not fused_neuron or 2 * p > window_geometry(core)["taps"] + 3
        xw = in_widths[0]
        if op in ops.WEIGHTED:
            w = node.params["weight"].astype(np.int64)
            wbits = int(a["bits"])
            taps = w.reshape(O, -1)  # (O, IG*KH*KW) in (ic, ky, kx) order
            bias = node.params["bias"].astype(np.int64)
            acc_bound = int((np.abs(taps).sum(axis=1) * max(abs(rng[in_vals[0]][0]), abs(rng[in_vals[0]][1]))
                             + np.abs(bias)).max())
            acc_bits = sbits(-acc_bound, acc_bound)
            # Weight ROM: one word per (output block, tap); lane l of block ob is channel ob*p + l.
            # Weight ROM: one word per (output block, tap); lane l of block ob is channel ob*p + l.  With a
            # banked input (q channels per read, not diagonal) a tap is (input block, ky, kx) and the word
            # holds p x q weights, lane-major: field l*q + j is input channel block*q + j.
            qm = 1 if core["diagonal"] else q
            KH, KW = geo["kernel"]
            ig = w.shape[1]
            blocks = (w.reshape(O // p, p, ig // qm, qm, KH, KW).transpose(0, 2, 4, 5, 1, 3)
                      .reshape(-1, p * qm))
            roms[f"{cname}_w"] = _pack([(blocks[:, k], wbits) for k in range(p * qm)])
            core["memories"].append({"name": f"{cname}_w", "kind": "rom", "depth": len(blocks),
                                     "width": p * qm * wbits, "init": f"mem/{cname}_w.mem"})
            core["widths"].update(weight=wbits, acc=acc_bits)
            bias_bits = sbits(int(bias.min()), int(bias.max()))
            param_fields.append(("bias", bias, bias_bits))
        else:
            k = geo["kernel"][0] * geo["kernel"][1]
            lo, hi = rng[in_vals[0]]
            bound = max(abs(lo), abs(hi)) * (k if op == "sumpool" else 1)
            core["widths"].update(acc=max(sbits(-bound, bound), xw))
        value_bits = core["widths"]["acc"]
    elif kind == "move":
        if any(b != 1 for b in in_banks):
            raise SnnccError("internal: banked input to a move core", node=node.name, op=op)
        shapes = [list(_chw(graph.shape(v))) for v in in_vals]
        out_shape = list(_chw(graph.shape(node.output)))
        geo = {"in_shape": shapes[0], "out_shape": out_shape}
        if op == "concat":
            if int(node.attrs.get("axis", 0)) != 0:
                raise SnnccError("the fpga target concatenates on the channel axis only", node=node.name, op=op)
            geo["in_shapes"] = shapes
        elif op == "pad":
            geo["pads"] = [int(v) for v in node.attrs["pads"]]
        else:
            geo["group"] = int(node.attrs["groups"])
        core.update(geometry=geo, lanes=1, reduce="identity")
        value_bits = max(in_widths)
        core["widths"]["acc"] = value_bits
    else:
        C, H, W = _chw(graph.shape(in_vals[0]))
        if any(b != 1 for b in in_banks):
            raise SnnccError("internal: banked input to an eltwise core", node=node.name, op=op)
        core.update(geometry={"in_shape": [C, H, W], "out_shape": [C, H, W]}, lanes=1,
                    reduce={"add": "sum", "affine": "affine", "neuron": "identity"}[op])
        if op == "affine":
            scale = node.params["scale"].astype(np.int64)
            shift = node.params["shift"].astype(np.int64)
            param_fields.append(("scale", scale, sbits(int(scale.min()), int(scale.max()))))
            param_fields.append(("shift", shift, sbits(int(shift.min()), int(shift.max()))))
            lo, hi = rng[in_vals[0]]
            bound = max(abs(lo), abs(hi)) * int(np.abs(scale).max()) + int(np.abs(shift).max())
        else:
            bound = sum(max(abs(rng[v][0]), abs(rng[v][1])) for v in in_vals)
        value_bits = max(sbits(-bound, bound), *in_widths)
        core["widths"]["acc"] = value_bits
    if op == "neuron":
        neuron = node
    if neuron is not None:
        na, npar = neuron.attrs, neuron.params
        theta = npar["theta"].astype(np.int64)
        v_init = npar["v_init"].astype(np.int64)
        if theta.min() < 1:
            raise SnnccError("neuron threshold must be positive", node=neuron.name, op="neuron")
        levels, B = int(na["levels"]), int(na["membrane_bits"])
        vlo, vhi = na["v_range"]
        slo, shi = na["v_state_range"]
        state_bits = sbits(min(slo, int(v_init.min())), max(shi, int(v_init.max())))
        theta_bits = sbits(0, int(theta.max()))
        param_fields.append(("theta", theta, theta_bits))
        param_fields.append(("v_init", v_init, state_bits))
        core["epilogue"] = {"kind": "neuron", "node": neuron.name, "levels": levels,
                            "signed": bool(na.get("signed", False)), "membrane_bits": B,
                            "membrane_shift": int(na.get("membrane_shift", 0)), "theta_bits": theta_bits,
                            "state_bits": state_bits, "sum_bits": max(sbits(vlo, vhi), value_bits + 1),
                            "level_bits": sbits(-levels, levels), "stored": T > 1,
                            "saturates": not (-(1 << (B - 1)) <= vlo and vhi <= (1 << (B - 1)) - 1)}
        if T > 1:  # at T = 1 every membrane starts from v_init and is never read again: no RAM
            r = core["lanes"] if core["parallel"] else 1  # parallel: one word holds the r lanes of a pixel
            depth = int(np.prod(core["geometry"]["out_shape"])) // r
            core["memories"].append({"name": f"{cname}_v", "kind": "ram", "depth": depth,
                                     "width": r * state_bits, "init": None})
    else:
        core["epilogue"] = {"kind": "none"}
    if param_fields:
        r = core["lanes"] if core["parallel"] else 1  # parallel: one word per output block, lane-major
        words = _pack([(arr.reshape(-1, r)[:, lane], bits) for lane in range(r) for _, arr, bits in param_fields])
        width = r * sum(bits for _, _, bits in param_fields)
        roms[f"{cname}_p"] = words
        core["params"] = [{"name": n, "bits": bits} for n, _, bits in param_fields]
        core["memories"].append({"name": f"{cname}_p", "kind": "rom", "depth": len(words), "width": width,
                                 "init": f"mem/{cname}_p.mem"})
    else:
        core["params"] = []
    return core


def hex_lines(words: list[int], width: int) -> str:
    digits = max(1, math.ceil(width / 4))
    return "".join(f"{w:0{digits}x}\n" for w in words)
