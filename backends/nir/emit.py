"""The integer IR as a NIR graph (``nir.write``, HDF5), portable nodes only:
Input, Affine, Conv2d, SumPool2d, Flatten, IF (or Threshold), Output.

Three profiles (docs/interop.md says why each looks as it does):

``multispike`` (default)
    One ``IF`` per neuron population, for consumers that read an IF as a multi-spike
    neuron with subtractive reset (Sinabs). Weights, biases and thresholds are snncc's
    integers, so every float32 sum is exact. N>1 and T>1 allowed.
``binary``
    For consumers that read an IF as a binary neuron with one threshold per layer
    (snnTorch): N=1 only; each output channel's weights and bias are divided by its
    threshold so every IF has the threshold 1; sum pooling is a depthwise Conv2d with
    ones (snnTorch imports no SumPool2d).
``threshold``
    The exact multi-level neuron at T=1 as N ``Threshold`` nodes on the same current,
    summed by their fan-out edges (NIR sums the edges into a node): level z = #{k: I > t_k}.

Numeric mapping (all profiles): NIR fires on ``v > v_threshold``; snncc on
``v >= theta``. For integer membranes ``v >= theta`` is ``v > theta - eps`` for any
0 < eps < 1. Reset by subtraction then removes ``theta - eps``, so after k spikes the
consumer's membrane is the integer one plus ``k*eps``; with ``eps = 2**-e`` and
``(N*T + N + 1) * eps < 1`` that offset never crosses an integer, and every comparison
(and Sinabs's ``floor(v / thr)``) gives snncc's level. ``eps`` is a power of two, so the
float32 membrane stays exact while it is below 2**(24-e).

The initial membrane ``theta // 2`` has no NIR field: at T=1 it is folded into the bias
(exact); at T>1 it is in each IF's metadata (``snncc.v_init``) for consumers that set
the initial state. The membrane clamp (``--membrane-bits``) is in the metadata too.
"""

from __future__ import annotations

from math import ceil, log2
from pathlib import Path

import numpy as np

from snncc import ops
from snncc.errors import SnnccError
from snncc.ir import Graph, Node

PROFILES = ("multispike", "binary", "threshold")
DEFAULT_PROFILE = "multispike"
FLOAT_EXACT = 1 << 24


def threshold_eps(levels: int, timesteps: int) -> float:
    """The offset eps = 2**-e below theta: (N*T + N + 1) * eps < 1 keeps every comparison exact."""
    return 2.0 ** -ceil(log2(levels * timesteps + levels + 2))


def check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise SnnccError(f"must be one of {', '.join(PROFILES)}, got {profile!r}", option="nir_profile")


def check_options(profile: str, *, levels: int = 1, timesteps: int = 1, membrane_shift: int = 0) -> None:
    """SnnccError naming the option when ``profile`` cannot carry these neuron options (checked
    from the compile options before the compile, and from the integer IR on export)."""
    check_profile(profile)
    if profile == "threshold" and timesteps != 1:
        raise SnnccError(f"is {timesteps}; --nir-profile threshold needs 1 (its Threshold nodes have no membrane)",
                         option="timesteps")
    if profile == "binary" and levels > 1:
        raise SnnccError(f"is {levels}; --nir-profile binary takes binary spikes only (snnTorch reads one spike "
                         "per step): use --levels 1 or --nir-profile multispike", option="levels")
    if membrane_shift and timesteps > 1:
        raise SnnccError("keeps the membrane on a grid between steps, which NIR's IF cannot say: "
                         "--target nir needs 0 at --timesteps > 1", option="membrane_shift")


def check_graph(graph: Graph, profile: str) -> None:
    """SnnccError (naming node, op or option) unless ``graph`` has a portable NIR form in ``profile``."""
    T = int(graph.meta.get("timesteps", 1))
    check_options(profile, timesteps=T)
    for node in graph.nodes:
        if node.op not in _EMIT:
            why = ("NIR has no max pool" if node.op in ops.MAX_POOLS else "it has no portable NIR node "
                   "(Input, Affine, Conv2d, SumPool2d, Flatten, IF, Threshold, Output)")
            raise SnnccError(f"cannot go to NIR: {why}", node=node.name, op=node.op)
        if node.op == "reshape" and len(graph.shape(node.output)) != 1:
            raise SnnccError("cannot go to NIR: only a reshape to one axis (a Flatten) is portable",
                             node=node.name, op=node.op)
        if "pads" in node.attrs:
            t, l_, b, r = node.attrs["pads"]
            if (t, l_) != (b, r):
                raise SnnccError("cannot go to NIR: asymmetric padding (NIR Conv2d pads both sides alike)",
                                 node=node.name, op=node.op)
        if node.op != "neuron":
            continue
        n = int(node.attrs["levels"])
        check_options(profile, levels=n, timesteps=T, membrane_shift=int(node.attrs.get("membrane_shift", 0)))
        if node.attrs.get("signed"):
            raise SnnccError("cannot go to NIR: a signed neuron (IF and Threshold emit no negative spikes)",
                             node=node.name, op=node.op)
        if profile == "binary" and _synaptic_sources(graph, node.inputs[0]) is None:
            raise SnnccError("cannot go to NIR with --nir-profile binary: its current does not come from "
                             "synaptic layers alone, so it cannot be divided by the threshold",
                             node=node.name, op=node.op)
        e = -log2(threshold_eps(n, T))
        top = int(np.max(node.params["theta"])) * (n + 1)
        if top >= 2 ** (24 - e):
            raise SnnccError(f"thresholds up to {top // (n + 1)} leave float32 too few bits for the threshold "
                             f"offset 2**-{e:g}", node=node.name, op=node.op)
    for node in graph.nodes:
        bound = max((abs(int(b)) for key in ("range", "acc_range") for b in node.attrs.get(key) or ()), default=0)
        if bound > FLOAT_EXACT:
            raise SnnccError(f"its values reach {bound}, beyond the 2**24 that float32 holds exactly",
                             node=node.name, op=node.op)


def _synaptic_sources(graph: Graph, value: str) -> list[Node] | None:
    """The synaptic layers whose currents, summed through adds, make ``value``; None when
    another op (a pool, a move) makes part of it."""
    node = graph.producer(value)
    if node is not None and node.op in ops.SYNAPTIC:
        return [node]
    if node is None or node.op != "add":
        return None
    parts = [_synaptic_sources(graph, v) for v in node.inputs]
    return None if any(p is None for p in parts) else [n for p in parts for n in p]


class _Builder:
    def __init__(self, graph: Graph, profile: str):
        self.graph, self.profile = graph, profile
        self.T = int(graph.meta.get("timesteps", 1))
        self.nodes: dict = {}
        self.edges: list[tuple[str, str]] = []
        # IR value -> the NIR nodes whose outputs, summed, carry it (an add is several)
        self.sources: dict[str, list[str]] = {}
        # per NIR node name: the weight bits, real scale and divisor of each synaptic layer
        self.meta: dict = {}
        # T=1: synaptic node name -> the v_init its bias carries; the neurons whose v_init is folded
        self.fold: dict[str, np.ndarray] = {}
        self.folded: set[str] = set()
        if self.T == 1 and profile != "threshold":
            for node in graph.nodes:
                if node.op == "neuron":
                    self._fold(node)

    def _fold(self, neuron: Node) -> None:
        """Fold the neuron's initial membrane into the bias of one synaptic layer that feeds
        it alone (the first input of a residual join); else it stays in the metadata."""
        src = self.graph.producer(neuron.inputs[0])
        while src is not None and len(self.graph.consumers(src.output)) == 1:
            if src.op in ops.SYNAPTIC:
                self.fold[src.name] = neuron.params["v_init"].astype(np.float64)
                self.folded.add(neuron.name)
                return
            if src.op != "add":
                return
            src = self.graph.producer(src.inputs[0])

    def add(self, ir_node: Node, kind: str, nir_node, inputs: list[str]) -> str:
        name = f"l{len(self.nodes)}_{kind}"
        self.nodes[name] = nir_node
        if "scale_real" in ir_node.params:  # the real meaning of one unit of this layer's integer current
            self.meta[f"{name}.scale_real"] = _f32(ir_node.params["scale_real"])
            self.meta[f"{name}.divided_by"] = _f32(self.out_scale(ir_node))
        if "bits" in ir_node.attrs:
            self.meta[f"{name}.weight_bits"] = int(ir_node.attrs["bits"])
        for v in inputs:
            self.edges.extend((src, name) for src in self.sources[v])
        return name

    def out_scale(self, node: Node) -> np.ndarray:
        """Binary profile: what this synaptic layer's current is divided by (its neuron's
        threshold minus eps), 1 when no neuron reads it."""
        c = self.graph.shape(node.output)[0]
        if self.profile != "binary":
            return np.ones(c)
        for consumer in self.graph.consumers(node.output):
            if consumer.op == "neuron":
                return consumer.params["theta"].astype(np.float64) - threshold_eps(1, self.T)
            if consumer.op == "add":
                return self.out_scale(consumer)
        return np.ones(c)

    def v_init_bias(self, node: Node) -> np.ndarray:
        """The initial membrane this layer's bias carries (T=1), else 0."""
        return self.fold.get(node.name, np.zeros(self.graph.shape(node.output)[0]))


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _conv2d(b: _Builder, in_shape, weight: np.ndarray, bias: np.ndarray, stride, padding, dilation, groups: int):
    """A Conv2d; a grouped one goes out as its block-diagonal groups=1 equal: Sinabs and
    snnTorch both build torch's Conv2d with in_channels = weight.shape[1]."""
    import nir

    if groups > 1:
        o, ig, kh, kw = weight.shape
        full = np.zeros((o, ig * groups, kh, kw), weight.dtype)
        og = o // groups
        for g in range(groups):
            full[g * og:(g + 1) * og, g * ig:(g + 1) * ig] = weight[g * og:(g + 1) * og]
        weight, groups = full, 1
    return nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=_f32(weight), stride=tuple(stride),
                      padding=tuple(padding), dilation=tuple(dilation), groups=int(groups), bias=_f32(bias))


def _conv(b: _Builder, n: Node):

    s = b.out_scale(n)
    w = n.params["weight"].astype(np.float64) / s.reshape(-1, 1, 1, 1)
    bias = (n.params["bias"].astype(np.float64) + b.v_init_bias(n)) / s
    t, l_, _, _ = n.attrs["pads"]
    return "conv", _conv2d(b, b.graph.shape(n.inputs[0]), w, bias, n.attrs["strides"], (t, l_),
                           n.attrs["dilations"], int(n.attrs["group"]))


def _dense(b: _Builder, n: Node):
    import nir

    s = b.out_scale(n)
    w = n.params["weight"].astype(np.float64) / s[:, None]
    bias = (n.params["bias"].astype(np.float64) + b.v_init_bias(n)) / s
    return "affine", nir.Affine(weight=_f32(w), bias=_f32(bias))


def _affine(b: _Builder, n: Node):
    """snncc's per-channel integer affine (a weighted shortcut) as a depthwise 1x1 Conv2d or a diagonal Affine."""
    import nir

    s = b.out_scale(n)
    scale = n.params["scale"].astype(np.float64) / s
    shift = (n.params["shift"].astype(np.float64) + b.v_init_bias(n)) / s
    shape = b.graph.shape(n.output)
    if len(shape) == 1:
        return "affine", nir.Affine(weight=_f32(np.diag(scale)), bias=_f32(shift))
    return "conv", _conv2d(b, shape, scale.reshape(-1, 1, 1, 1), shift, (1, 1), (0, 0), (1, 1), shape[0])


def _sumpool(b: _Builder, n: Node):
    import nir

    t, l_, _, _ = n.attrs["pads"]
    c, *hw = b.graph.shape(n.inputs[0])
    if b.profile == "binary" or t or l_:  # snnTorch has no SumPool2d, Sinabs drops its padding: a Conv2d of ones
        kh, kw = n.attrs["kernel"]
        return "sumpool", _conv2d(b, (c, *hw), np.ones((c, 1, kh, kw)), np.zeros(c), n.attrs["strides"], (t, l_),
                                  (1, 1), c)
    return "sumpool", nir.SumPool2d(kernel_size=np.array(n.attrs["kernel"]), stride=np.array(n.attrs["strides"]),
                                    padding=np.array([t, l_]))


def _flatten(b: _Builder, n: Node):
    import nir

    return "flatten", nir.Flatten(input_type={"input": np.array(b.graph.shape(n.inputs[0]))}, start_dim=0,
                                  end_dim=-1)


def neuron_metadata(b: _Builder, n: Node) -> dict:
    """What the IF node cannot say: levels per step, the reset, the initial membrane (in the
    units of the file's membrane: divided by theta - eps in the binary profile), the clamp."""
    a = n.attrs
    v0 = n.params["v_init"].astype(np.float64)
    if b.profile == "binary":
        v0 = v0 / (n.params["theta"].astype(np.float64) - threshold_eps(1, b.T))
    return {"snncc.levels": int(a["levels"]), "snncc.reset": "subtract",
            "snncc.theta": _f32(n.params["theta"]), "snncc.v_init": _f32(v0),
            "snncc.v_init_folded_into_bias": int(n.name in b.folded), "snncc.membrane_bits": int(a["membrane_bits"]),
            "snncc.membrane_shift": int(a.get("membrane_shift", 0)),
            "snncc.may_saturate": int(_may_saturate(n)),
            "snncc.threshold_eps": threshold_eps(int(a["levels"]), b.T)}


def _may_saturate(n: Node) -> bool:
    """Range analysis says the membrane can reach snncc's B-bit clamp, which NIR consumers do not apply."""
    bits = int(n.attrs["membrane_bits"])
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    v_lo, v_hi = (int(v) for v in n.attrs.get("v_range", (lo - 1, hi + 1)))
    return v_lo < lo or v_hi > hi


def _neuron(b: _Builder, n: Node):
    import nir

    shape = b.graph.shape(n.output)
    theta = n.params["theta"].astype(np.float64)
    eps = threshold_eps(int(n.attrs["levels"]), b.T)
    thr = np.ones(shape) if b.profile == "binary" else np.broadcast_to(
        (theta - eps).reshape((-1,) + (1,) * (len(shape) - 1)), shape)
    return "if", nir.IF(r=np.ones(shape, np.float32), v_threshold=_f32(thr), metadata=neuron_metadata(b, n))


def _thresholds(b: _Builder, n: Node) -> list[str]:
    """Threshold profile: level z = #{k : I > k*theta - v_init - 1/2}, one Threshold node per k."""
    import nir

    shape = b.graph.shape(n.output)
    theta = n.params["theta"].astype(np.float64)
    v0 = n.params["v_init"].astype(np.float64)
    names = []
    for k in range(1, int(n.attrs["levels"]) + 1):
        t = np.broadcast_to((k * theta - v0 - 0.5).reshape((-1,) + (1,) * (len(shape) - 1)), shape)
        names.append(b.add(n, f"threshold{k}", nir.Threshold(threshold=_f32(t), metadata=neuron_metadata(b, n)),
                           n.inputs))
    return names


_EMIT = {"conv": _conv, "dense": _dense, "affine": _affine, "sumpool": _sumpool, "flatten": _flatten,
         "reshape": _flatten, "neuron": _neuron, "add": None}


def build_graph(graph: Graph, profile: str = DEFAULT_PROFILE):
    """The NIR graph of the integer IR in ``profile``."""
    import nir

    check_graph(graph, profile)
    b = _Builder(graph, profile)
    x = graph.inputs[0]
    b.nodes["input"] = nir.Input(input_type={"input": np.array(graph.shape(x))})
    b.sources[x] = ["input"]
    for node in graph.nodes:
        if node.op == "add":  # NIR sums every edge into a node: an add is its inputs' sources together
            b.sources[node.output] = [s for v in node.inputs for s in b.sources[v]]
        elif node.op == "neuron" and profile == "threshold":
            b.sources[node.output] = _thresholds(b, node)
        else:
            kind, nir_node = _EMIT[node.op](b, node)
            b.sources[node.output] = [b.add(node, kind, nir_node, node.inputs)]
    for k, out in enumerate(graph.outputs):
        name = "output" if len(graph.outputs) == 1 else f"output{k}"
        b.nodes[name] = nir.Output(output_type={"output": np.array(graph.shape(out))})
        b.edges.extend((src, name) for src in b.sources[out])
    meta = {"snncc.profile": profile, "snncc.timesteps": b.T, "snncc.input_scale": float(graph.meta["input_scale"]),
            "snncc.input": "int8 x_q = clamp(rint(x / input_scale), -128, 127), the same current at every step",
            "snncc.output": "out_q = sum over the T steps of the output current; logits = out_q * scale / T"}
    meta.update({f"snncc.{key}": value for key, value in b.meta.items()})
    for k, out in enumerate(graph.outputs):
        meta[f"snncc.output_scale{k}"] = _f32(graph.meta["output_scales"][out])
    return nir.NIRGraph(nodes=b.nodes, edges=b.edges, metadata=meta)


def write_nir(graph: Graph, path: Path, profile: str = DEFAULT_PROFILE) -> Path:
    import nir

    nir.write(Path(path), build_graph(graph, profile))
    return Path(path)
