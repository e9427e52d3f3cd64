"""quantize: float SNN (stage "snn") -> integer SNN (stage "int"), the golden model.

Numeric contract (design.md, docs/ir.md "Integer SNN"):

- input: x_q = clamp(round_half_even(x / s_x), -128, 127), s_x = max|x| / 127 from
  the calibration statistics of the graph input (or options.input_scale); the synaptic layers reading the
  input absorb s_x into their weights.
- every neuron population, and every graph output, integrates one current that may
  be the sum (``add``) of several synaptic ops, possibly through data movement
  (pools, flatten, concat...).  All those ops share one real step S per population
  channel, so that I_real = S * I_int with no run-time rescale.  S is chosen jointly:
  the largest of the per-channel weight-quantizer steps of the conv/dense members,
  so that no member's weights exceed qmax.
- W_q = clamp(round(W / S), -qmax, qmax), b_q = round(b / S), the identity-shortcut
  weight (an ``affine``) = round(theta_prev / S), theta_q = max(1, round(theta / S)),
  v_init = theta_q // 2.
- an affine on a current (BN on a pre-activation stream, feeding neurons) has the
  integer scale sign(a) and the derived step |a| * S_stream; a coarse join branch of
  such a stream gets an inserted integer rescale affine (passes/current_affine.py).
- the neuron membrane saturates to B bits; optional stored precision 2**k.

The pass ends with range analysis (passes/range_analysis.py), which proves every
accumulator fits int32 or fails naming the layer.
"""

from __future__ import annotations

import numpy as np

from snncc import ops, resources
from snncc.errors import SnnccError
from snncc.ir import Graph, Node
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.passes import current_affine, range_analysis, step_search, weight_quant, weight_rounding
from snncc.sim.neuron import v_init
from snncc.unionfind import UnionFind

INPUT_BITS = 8
INPUT_QMAX = 127
AFFINE_BITS = 8  # step of a population fed only by affines: its weight uses +-127


def run(graph: Graph, ctx: PassContext) -> Graph:
    options, notes = ctx.options, ctx.notes
    if graph.stage != "snn":
        raise SnnccError(f"pass quantize needs the float SNN (stage 'snn'), got stage {graph.stage!r}; "
                         "run convert first")
    options.validate()
    g = graph.copy()
    domains = value_domains(g)
    bits = resolve_layer_bits(g, options.weight_bits, options.layer_bits, domains)
    s_x = float(options.input_scale) or input_scale(g)  # a given step keeps integer inputs (event counts) exact
    data = ctx.calib
    rounding = _pick_rounding(g, getattr(options, "weight_rounding", "auto"), notes)
    correct = bool(getattr(options, "bias_correction", True))
    means, mean_xq, hs, live = {}, None, {}, {}
    if data is not None and (correct or rounding == "gptq"):
        syn = [n for n in g.nodes if n.op in ops.SYNAPTIC]
        samples = resources.sample_budget(g, data.n, cap=weight_rounding.SAMPLES)
        if samples < min(data.n, weight_rounding.SAMPLES):
            notes.append(f"quantize: weight-rounding statistics on {samples} of {data.n} calibration samples "
                         f"({resources.activation_elements(g)} activation elements per sample)")
        hess_bytes = _hessian_bytes(g, syn, options) if rounding == "gptq" else 0
        means, mean_xq, hs = weight_rounding.collect(
            g, syn, lambda xb: np.clip(np.rint(xb / s_x), -128, 127), data, want_h=rounding == "gptq",
            centred=correct, seed=int(options.seed), live=live,
            samples=samples,
            # the run captures every synaptic input for the whole batch, and keeps a copy divided by T
            batch=resources.batch_size(g, options, copies=3, cap=weight_rounding.BATCH, reserved=hess_bytes,
                                       kept=sorted({n.inputs[0] for n in syn}) * 2))
        wide = [f"{n.name} ({weight_rounding.fan_in(n)})" for n in syn
                if rounding == "gptq" and weight_rounding.gptq_kind(n) and not weight_rounding.gptq_applies(n)]
        if wide:
            notes.append(
                f"quantize: nearest weight rounding in {len(wide)} layer(s) whose fan-in exceeds GPTQ's "
                f"{weight_rounding.GPTQ_MAX_FAN_IN}: {', '.join(wide)}")
    elif rounding == "gptq" or correct:
        notes.append("quantize: no calibration data: nearest weight rounding, "
                                              "no step search, no bias correction")
    scales = _joint_scales(g, domains, bits, s_x, options, notes, live)
    if hs and getattr(options, "step_search", True):
        _search_steps(g, domains, bits, s_x, scales, hs, notes)
    elif getattr(options, "step_search", True) and data is not None and rounding == "nearest":
        notes.append("quantize: no step search: it needs GPTQ weight rounding "
                                              "(--weight-rounding gptq)")
    if int(options.membrane_shift) > 0 and int(g.meta.get("timesteps", 1)) == 1:
        notes.append(
            "quantize: --membrane-shift has no effect at T=1 (no membrane is kept between timesteps)")
    wq = _int_weights(g, domains, bits, s_x, scales, hs)
    if hs:
        notes.append(f"quantize: GPTQ weight rounding in {len(hs)} layer(s)")
    if correct and means:
        _correct_biases(g, domains, s_x, wq, means, mean_xq)
        notes.append("quantize: biases corrected for the mean weight-quantization error")
    _merge_join_biases(g, domains)
    _quantize_nodes(g, bits, wq, scales, options)
    g.stage = "int"
    for name in g.inputs:
        g.values[name].dtype = "int8"
    for node in g.nodes:
        g.values[node.output].dtype = "int32"
    g.meta["input_scale"] = float(s_x)
    g.meta["input_bits"] = INPUT_BITS
    outs = {name: [float(s) for s in scales.sink_scale(name)] for name in g.outputs}
    g.meta["output_scale"] = outs[g.outputs[0]]
    g.meta["output_scales"] = outs
    g.meta["weight_quantizer"] = options.weight_quantizer
    range_analysis.analyze(g)
    return g


# --- value domains -----------------------------------------------------------------

def value_domains(graph: Graph) -> dict[str, str]:
    """``ops.value_kinds`` of the float SNN ('input', 'levels' or 'current'), checked: every
    synaptic op reads levels or the input, every neuron a current, adds and data movement
    do not mix kinds, and the graph outputs are currents."""
    dom = ops.value_kinds(graph)
    consumers = graph.consumer_map()
    for node in graph.nodes:
        ins = [dom[v] for v in node.inputs]
        if node.op == "affine" and ins[0] == "current":
            current_affine.check_consumers(graph, node, consumers)
        elif node.op in ops.SYNAPTIC:
            if ins[0] == "current":
                raise SnnccError("synaptic op reads a current, not spike levels or the input "
                                 "(convert should have put a neuron in between)", node=node.name, op=node.op)
        elif node.op == "neuron":
            if ins[0] != "current":
                raise SnnccError("neuron input is not a current", node=node.name, op=node.op)
        elif node.op == "add":
            if any(d != "current" for d in ins) and any(d != "levels" for d in ins):
                raise SnnccError("add joins spike levels, not currents (convert should have made the "
                                 "identity shortcut an affine)", node=node.name, op=node.op)
        elif node.op in ops.INT_DATA_MOVEMENT:
            if len(set(ins)) != 1:
                raise SnnccError(f"inputs mix {sorted(set(ins))} values", node=node.name, op=node.op)
        else:
            raise SnnccError("op is not allowed in the float SNN (convert should have removed it)",
                             node=node.name, op=node.op)
    for name in graph.outputs:
        if dom[name] != "current":
            raise SnnccError(f"graph output {name!r} is not a synaptic current (stage 'snn' ends "
                             "with synaptic layers)")
    return dom


# --- layer names and per-layer bits -------------------------------------------------

def origin_name(node: Node) -> str:
    """The ONNX node name from ``origin`` ("OnnxOp:name")."""
    return node.origin.split(":", 1)[1] if ":" in node.origin else ""


def short_alias(onnx_name: str) -> str:
    """Module path of a torch-exported node name: "/layer1/layer1.0/conv1/Conv" -> "layer1.0.conv1".

    The last component is the op type.  Torch repeats the parent in Sequential
    children ("layer1/layer1.0"), so a component that extends the previous one
    replaces it.
    """
    parts = [p for p in onnx_name.split("/") if p]
    if len(parts) < 2:
        return ""
    path: list[str] = []
    for part in parts[:-1]:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    return ".".join(path)


def layer_names(node: Node) -> list[str]:
    """Names a user may give for ``node`` in --layer-bits (node name, ONNX name, alias)."""
    names = [node.name, origin_name(node), short_alias(origin_name(node))]
    return [n for i, n in enumerate(names) if n and n not in names[:i]]


def first_last_layers(graph: Graph, domains: dict[str, str]) -> tuple[list[str], list[str]]:
    """conv/dense nodes reading the graph input, and those whose current reaches a graph output."""
    first = [n.name for n in graph.nodes if n.op in ops.WEIGHTED and domains[n.inputs[0]] == "input"]
    prod = graph.producers()
    last: set[str] = set()
    stack = list(graph.outputs)
    while stack:  # walk back through adds and data movement of currents
        node = prod.get(stack.pop())
        if node is None:
            continue
        if node.op in ops.WEIGHTED:
            last.add(node.name)
        elif node.op == "add" or (node.op in ops.INT_DATA_MOVEMENT and domains[node.output] == "current"):
            stack.extend(node.inputs)
    return first, [n.name for n in graph.nodes if n.name in last]


def resolve_layer_bits(graph: Graph, weight_bits: int, layer_bits: dict[str, int],
                       domains: dict[str, str] | None = None) -> dict[str, int]:
    """Bits of every conv/dense node: ``weight_bits`` with ``layer_bits`` overrides.

    A key may be the IR node name, the ONNX node name, its short torch alias, or
    ``first`` / ``last``.  ``first``/``last`` apply before named layers, so a name
    overrides them.  Two keys of the same kind (two names, or first and last) that
    reach one layer with different bits are refused: no silent winner.
    """
    domains = domains if domains is not None else value_domains(graph)
    layers = [n for n in graph.nodes if n.op in ops.WEIGHTED]
    bits = {n.name: int(weight_bits) for n in layers}
    lookup: dict[str, list[str]] = {}
    for n in layers:
        for name in layer_names(n):
            lookup.setdefault(name, []).append(n.name)
    first, last = first_last_layers(graph, domains)
    ordered = sorted(layer_bits.items(), key=lambda kv: (kv[0] not in ("first", "last"), kv[0]))
    set_by: dict[str, tuple[str, int]] = {}  # layer -> (key, bits) of the last override
    for key, b in ordered:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 2 <= b <= 8:
            raise SnnccError(f"{key} must be an integer in 2..8, got {b!r}", option="layer_bits", key=key)
        targets = first if key == "first" else last if key == "last" else lookup.get(key)
        if targets is None:
            raise SnnccError(_unknown_layer(graph, layers, key), option="layer_bits", key=key)
        for name in targets:
            prev = set_by.get(name)
            same_kind = prev is not None and (prev[0] in ("first", "last")) == (key in ("first", "last"))
            if same_kind and prev[1] != int(b):
                raise SnnccError(f": {prev[0]}={prev[1]} and {key}={b} both set layer {name!r}; give it one value",
                                 option="layer_bits", key=key)
            set_by[name] = (key, int(b))
            bits[name] = int(b)
    return bits


def _unknown_layer(graph: Graph, layers: list[Node], key: str) -> str:
    other = next((n for n in graph.nodes if key in layer_names(n)), None)
    if other is not None:
        return (f": layer {key!r} is a {other.op}, not a conv or dense layer "
                "(only those have weight bits)")
    examples = []
    for n in layers[:4]:
        names = layer_names(n)
        examples.append(repr(names[0]) + (f" (or {', '.join(repr(a) for a in names[1:])})" if names[1:] else ""))
    return (f": unknown layer {key!r}; valid names are first, last, or a conv/dense "
            f"layer's IR name, ONNX name or torch path, e.g. {'; '.join(examples)}")


# --- input scale -------------------------------------------------------------------

# GPTQ's cost grows with out x fan-in^2 per layer: beyond this many weights in the
# model, "auto" rounding falls back to nearest so that large models compile in
# seconds (a ResNet-50 took over 10 minutes with GPTQ).
GPTQ_AUTO_MAX_WEIGHTS = 2_000_000


def _hessian_bytes(g: Graph, syn: list[Node], options: CompileOptions) -> int:
    """Bytes of GPTQ's Hessians (fan-in^2 float64 per layer, summed and then normalized: two
    copies at once), refused early when they leave no room for one sample under --max-memory."""
    need = 2 * 8 * sum(weight_rounding.fan_in(n) ** 2 for n in syn if weight_rounding.gptq_applies(n))
    left = resources.activation_budget(g, options.max_memory)
    per_sample = resources.per_sample_bytes(g, 8)[0]
    if need + per_sample > left:
        least = resources.parse_size(options.max_memory) - left + need + per_sample
        raise SnnccError(f": GPTQ weight rounding keeps {resources.format_size(need)} ({need} bytes) of Hessians, "
                         f"more than {options.max_memory} leaves beside the parameters and one "
                         f"sample; raise --max-memory to at least {resources.format_size(least)} or pass "
                         f"--weight-rounding nearest", option="max_memory")
    return need


def _pick_rounding(g: Graph, requested: str, notes: list[str]) -> str:
    if requested != "auto":
        return requested
    total = sum(int(n.params["weight"].size) for n in g.nodes if n.op in ops.WEIGHTED)
    if total <= GPTQ_AUTO_MAX_WEIGHTS:
        return "gptq"
    notes.append(
        f"quantize: {total} weights > {GPTQ_AUTO_MAX_WEIGHTS}: nearest weight rounding "
        "(pass --weight-rounding gptq to force the slower data-aware rounding)")
    return "nearest"


def input_scale(graph: Graph) -> float:
    """s_x = max|x| / 127 from the calibration statistics of the graph input."""
    if len(graph.inputs) != 1:
        raise SnnccError(f"pass quantize supports one graph input, got {len(graph.inputs)}")
    name = graph.inputs[0]
    st = graph.stats.get(name)
    if not st:
        raise SnnccError(f"pass quantize needs calibration statistics of the graph input {name!r}; "
                         "run calibrate first")
    absmax = _stat_absmax(st)
    if not np.isfinite(absmax):
        raise SnnccError(f"calibration statistics of input {name!r} are not finite")
    return float(absmax) / INPUT_QMAX if absmax > 0 else 1.0 / INPUT_QMAX


def _stat_absmax(st) -> float:
    if isinstance(st, dict):
        for key in ("absmax", "abs_max", "max_abs"):
            if key in st:
                return float(np.max(np.abs(np.asarray(st[key], dtype=np.float64))))
        if "max" in st:
            hi = float(np.max(np.asarray(st["max"], dtype=np.float64)))
            lo = float(np.min(np.asarray(st.get("min", 0.0), dtype=np.float64)))
            return max(abs(hi), abs(lo))
    raise SnnccError("calibration statistics of the graph input hold no max/absmax")


# --- joint current scales ------------------------------------------------------------

class _UnionFind(UnionFind):
    """Scale variables 0..n-1; ids < 0 mean "no variable"."""

    def __init__(self, n: int):
        super().__init__(range(n))

    def union_all(self, ids: np.ndarray) -> None:
        """Put every id >= 0 in ``ids`` into one class (smallest root wins: deterministic)."""
        self.union(int(i) for i in np.unique(ids[ids >= 0]))

    def roots(self, ids: np.ndarray) -> np.ndarray:
        return np.array([self.find(int(i)) if i >= 0 else -1 for i in ids.ravel()],
                        dtype=np.int64).reshape(ids.shape)


class _Scales:
    """Scale variables: one per (synaptic node, output channel), merged into classes."""

    def __init__(self, graph: Graph, domains: dict[str, str]):
        self.base: dict[str, int] = {}
        self.ids: dict[str, np.ndarray] = {}  # current value -> per-sample array of scale ids
        n = 0
        for node in graph.nodes:
            if node.op in ops.SYNAPTIC:
                self.base[node.name] = n
                n += graph.shape(node.output)[0]
        self.uf = _UnionFind(n)
        self._ties: list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]] = []  # see derive()
        self.S = np.zeros(n)
        self.graph = graph
        for node in graph.nodes:
            if domains[node.output] != "current":
                continue
            shape = graph.shape(node.output)
            if node.op in ops.SYNAPTIC:
                ch = self.base[node.name] + np.arange(shape[0])
                self.ids[node.output] = np.broadcast_to(ch.reshape((-1,) + (1,) * (len(shape) - 1)), shape)
            elif node.op == "add":
                stack = np.stack([self.ids[v] for v in node.inputs]).reshape(len(node.inputs), -1)
                for col in _unique_columns(stack, n).T:  # elementwise: joined currents share S
                    self.uf.union_all(col)
                self.ids[node.output] = self.ids[node.inputs[0]]
            else:
                self.ids[node.output] = self._move(node, shape)
        for node in graph.nodes:  # a population (neuron channel) has one S
            if node.op == "neuron":
                self._unify_channels(self.ids[node.inputs[0]])
        for name in graph.outputs:
            # One step for the whole output, not per channel: then the raw accumulators
            # compare like the logits, and firmware may take argmax(out_q) directly.
            self.uf.union_all(np.asarray(self.ids[name]).ravel())

    @property
    def S(self) -> np.ndarray:
        """Step per class root.  Derived steps (affines on currents) are refreshed from
        their source steps on every read, so a later change of a source step carries over."""
        for out, src, value, multiple in self._ties:
            step = self._S[src]
            self._S[out] = (np.maximum(1.0, np.ceil(value / step * (1 - 1e-12))) if multiple else value) * step
        return self._S

    @S.setter
    def S(self, value) -> None:
        self._S = np.array(value, dtype=np.float64)

    def derive(self, out: np.ndarray, src: np.ndarray, value: np.ndarray, multiple: bool = False) -> None:
        """Tie class roots ``out`` to S[src] (sources must not be derived): S[out] =
        value * S[src], or with ``multiple`` the least integer multiple k * S[src] >= value
        (k >= 1), recomputed from the current S[src] whenever S is read."""
        self._ties.append((np.asarray(out, dtype=np.int64), np.asarray(src, dtype=np.int64),
                           np.asarray(value, dtype=np.float64), bool(multiple)))

    def derived_mask(self) -> np.ndarray:
        """True for class roots whose step is derived (see derive())."""
        mask = np.zeros(self._S.size, dtype=bool)
        for out, _src, _value, _multiple in self._ties:
            mask[out] = True
        return mask

    def _unify_channels(self, ids: np.ndarray) -> None:
        flat = np.asarray(ids).reshape(ids.shape[0], -1)
        valid = flat >= 0
        lo = np.where(valid, flat, np.iinfo(np.int64).max).min(axis=1, initial=np.iinfo(np.int64).max)
        hi = np.where(valid, flat, -1).max(axis=1, initial=-1)
        for c in np.flatnonzero(lo < hi):  # a channel with one id (or none) has nothing to join
            self.uf.union_all(flat[c])

    def _move(self, node: Node, shape) -> np.ndarray:
        """Scale ids through data movement: apply the same movement to the id array."""
        from snncc.sim.float_runtime import eval_node

        src = [np.asarray(self.ids[v]) for v in node.inputs]
        if node.op in ops.POOLS:
            self._unify_channels(src[0])  # a window stays in one channel
            per_ch = np.array([self.uf.find(int(ids.ravel()[0])) for ids in src[0]])
            return np.broadcast_to(per_ch.reshape((-1, 1, 1)), shape)
        if node.op == "pad":
            out = np.full(shape, -1, dtype=np.int64)  # padding zeros carry no scale
            t, l_, _, _ = node.attrs["pads"]
            h, w = src[0].shape[1:]
            out[:, t:t + h, l_:l_ + w] = src[0]
            return out
        out = eval_node(node, [s[None].astype(np.int64) for s in src])
        return np.asarray(out[0], dtype=np.int64)

    def channel_roots(self, value: str) -> np.ndarray:
        """Class root per channel (axis 0) of a sink current value."""
        ids = np.asarray(self.ids[value])
        first = np.array([int(ch.ravel()[ch.ravel() >= 0][0]) if (ch >= 0).any() else -1 for ch in ids])
        return self.uf.roots(first)

    def node_roots(self, node: Node) -> np.ndarray:
        o = self.graph.shape(node.output)[0]
        return self.uf.roots(self.base[node.name] + np.arange(o))

    def sink_scale(self, value: str) -> np.ndarray:
        roots = self.channel_roots(value)
        return np.where(roots >= 0, self.S[np.maximum(roots, 0)], 1.0)


def _unique_columns(stack: np.ndarray, n: int) -> np.ndarray:
    """np.unique(stack, axis=1) for ids in [-1, n): two rows as one int64 key (much faster)."""
    if stack.shape[0] != 2 or (n + 1) ** 2 >= 2 ** 62:
        return np.unique(stack, axis=1)
    key = np.unique((stack[0].astype(np.int64) + 1) * (n + 1) + (stack[1] + 1))
    return np.stack([key // (n + 1) - 1, key % (n + 1) - 1])


def _input_factor(node: Node, domains: dict[str, str], s_x: float) -> float:
    return s_x if domains[node.inputs[0]] == "input" else 1.0


def _real_weights(node: Node, domains: dict[str, str], s_x: float) -> np.ndarray:
    """A conv/dense node's float64 weights as the integer layer sees them (input scale folded in)."""
    return np.asarray(node.params["weight"], dtype=np.float64) * _input_factor(node, domains, s_x)


def _own_step(node: Node, domains: dict[str, str], bits: dict[str, int], s_x: float,
              options: CompileOptions, live: dict | None = None) -> np.ndarray:
    """The weight quantizer's per-channel step of a conv/dense node on its own.

    Weight columns that read an input channel that is zero on every calibration sample
    (``live``) never carry current there: they do not set the step, so removing such a
    channel (``prune --prune-criterion dead``) leaves the step unchanged."""
    w = _real_weights(node, domains, s_x)
    mask = (live or {}).get(node.inputs[0])
    if mask is not None and not mask.all() and mask.any() and int(node.attrs.get("group", 1)) == 1 \
            and len(mask) == w.shape[1]:
        w = w[:, mask]
    return weight_quant.channel_scales(w, bits[node.name], options.weight_quantizer)


def _joint_scales(g: Graph, domains: dict[str, str], bits: dict[str, int], s_x: float,
                  options: CompileOptions, notes: list[str], live: dict | None = None) -> _Scales:
    """Per-channel current steps by class.  Where an affine reads a current (a
    pre-activation stream) this may first insert rescale affines into ``g`` (and
    ``domains``) behind coarse join branches (passes/current_affine.py)."""
    cur = current_affine.current_affines(g, domains)
    if cur:
        own = {n.name: _own_step(n, domains, bits, s_x, options, live) for n in g.nodes if n.op in ops.WEIGHTED}
        rescaled = current_affine.insert_rescales(g, domains, _Scales(g, domains), own)
        if rescaled:
            notes.append(
                f"quantize: {rescaled} residual branch(es) join the stream through an integer rescale, "
                "so that the stream keeps a fine step")
            cur = current_affine.current_affines(g, domains)
    sc = _Scales(g, domains)
    n = sc.S.size
    from_weights = np.zeros(n)  # max conv/dense step per class
    from_affine = np.zeros(n)
    from_bias = np.zeros(n)
    affine_mag = np.zeros(n)
    affine_count = np.zeros(n, dtype=np.int64)
    for node in g.nodes:
        if node.op not in ops.SYNAPTIC or node.output in cur:
            continue  # an affine on a current gets a derived step (current_affine.derive_steps)
        roots = sc.node_roots(node)
        f = _input_factor(node, domains, s_x)
        if node.op == "affine":
            mag = np.abs(np.asarray(node.params["scale"], dtype=np.float64)) * f
            np.maximum.at(from_affine, roots, mag / weight_quant.qmax(AFFINE_BITS))
            np.maximum.at(affine_mag, roots, mag)
            np.add.at(affine_count, roots, 1)
            bias = node.params["shift"]
        else:
            np.maximum.at(from_weights, roots, _own_step(node, domains, bits, s_x, options, live))
            bias = node.params["bias"]
        np.maximum.at(from_bias, roots, np.abs(np.asarray(bias, dtype=np.float64)) / INPUT_QMAX)
    S = np.where(from_weights > 0, from_weights, np.where(from_affine > 0, from_affine, from_bias))
    S = np.where(S > 0, S, 1.0)
    # The membrane must hold N levels plus a residual: (N+1) * theta_q <= 2^(B-1) - 1.
    # If theta / S is too large for B bits, coarsen S (the weights then use fewer steps).
    vmax = float(2 ** (int(options.membrane_bits) - 1) - 1)
    need = np.zeros(n)
    const_need = np.zeros(n)  # a == 0 channels of affines on currents
    for node in g.nodes:
        if node.op == "neuron":
            theta = np.asarray(node.params["theta"], dtype=np.float64)
            fit = theta * (int(node.attrs["levels"]) + 1) / vmax
            aff = cur.get(node.inputs[0])
            if aff is not None:
                # theta_q = theta / (|a| S_in): the fit bounds the step of the affine's input.
                a, src = current_affine.split(sc, aff)
                nz = src >= 0
                np.maximum.at(need, src[nz], fit[nz] / a[nz])
                np.maximum.at(const_need, sc.node_roots(aff)[~nz], fit[~nz])
                continue
            roots = sc.channel_roots(node.inputs[0])
            ok = roots >= 0
            np.maximum.at(need, roots[ok], fit[ok])
    coarsened = int((need > S).sum())
    if coarsened:
        notes.append(
            f"quantize: {coarsened} channel scale(s) coarsened so that (levels+1)*theta fits "
            f"the {options.membrane_bits}-bit membrane")
    S = np.maximum(S, need)
    # A join of conv branches and one identity shortcut: make the shortcut weight exact
    # (|a| / S an integer k) by coarsening S by at most a factor (k+1)/k.
    k = np.floor(affine_mag / S)
    exact = (affine_count == 1) & (from_weights > 0) & (k >= 1)
    sc.S = np.where(exact, affine_mag / np.maximum(k, 1), S)
    current_affine.derive_steps(sc, cur, const_need, vmax)
    return sc


def _search_steps(g: Graph, domains: dict[str, str], bits: dict[str, int], s_x: float,
                  sc: _Scales, hs: dict[str, np.ndarray], notes: list[str]) -> None:
    """Coarsen class steps where the GPTQ-rounded current error drops (passes/step_search.py)."""
    members = {}
    for node in g.nodes:
        if node.op in ops.WEIGHTED:
            members[node.name] = (_real_weights(node, domains, s_x), sc.node_roots(node),
                                  weight_quant.qmax(bits[node.name]))
    sizes = {k: tuple(v) for k, v in g.meta.get("prune", {}).get("weight_shapes_before", {}).items()}
    sc.S, changed = step_search.search(members, hs, sc.S, frozen=sc.derived_mask(), sizes=sizes)
    if changed:
        notes.append(
            f"quantize: step search coarsened {changed} channel scale(s) to lower the current error")


def _int_weights(g: Graph, domains: dict[str, str], bits: dict[str, int], s_x: float,
                 sc: _Scales, hs: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """node name -> (integer weights, per-channel S): conv/dense weight, or affine scale.

    conv/dense weights are GPTQ-rounded where a Hessian was collected, else nearest.
    """
    out = {}
    for node in g.nodes:
        if node.op not in ops.SYNAPTIC:
            continue
        S = sc.S[sc.node_roots(node)]
        f = _input_factor(node, domains, s_x)
        if node.op == "affine" and domains[node.inputs[0]] == "current":
            out[node.name] = (current_affine.int_scale(sc, node), S)  # |a| is in the derived S
            continue
        if node.op == "affine":
            out[node.name] = (_to_int32(np.asarray(node.params["scale"], dtype=np.float64) * f / S, node), S)
            continue
        w = _real_weights(node, domains, s_x)
        if node.name in hs:
            q = weight_rounding.gptq(w, S, weight_quant.qmax(bits[node.name]), hs[node.name])
        else:
            q = weight_quant.quantize_with(w, S, bits[node.name])
        # int8 as emitted (|q| <= qmax <= 127): every layer's weights are alive at once, and
        # int64 would cost twice the float64 model (--max-memory counts resources.PARAM_BYTES)
        out[node.name] = (q.astype(np.int8), S)
    return out


def _bias_key(node: Node) -> str:
    return "shift" if node.op == "affine" else "bias"


def _correct_biases(g: Graph, domains: dict[str, str], s_x: float, wq: dict, means: dict,
                    mean_xq: np.ndarray) -> None:
    """Empirical bias correction (Nagel et al. 2019) of the weight quantization error.

    The error of a synaptic op is linear in its input, so its mean over the
    calibration data is the op applied to the mean input: W on the float SNN's mean
    input against W_q * S on the integer network's (x_q for the input layer).  Its
    mean over positions goes into the real bias before rounding.
    """
    from snncc.sim.float_runtime import eval_node

    for node in g.nodes:
        if node.name not in wq or domains[node.inputs[0]] == "current":
            continue  # an affine on a current is exact (sign weight, derived step): no error
        q, S = wq[node.name]
        v = node.inputs[0]
        shape = (-1,) + (1,) * (q.ndim - 1)
        key = "scale" if node.op == "affine" else "weight"
        zero = {_bias_key(node): np.zeros(S.size)}

        def apply(weights, x, node=node, key=key, zero=zero):
            tmp = Node(node.name, node.op, node.inputs, node.output, node.attrs, {key: weights, **zero})
            return np.asarray(eval_node(tmp, [x]), dtype=np.float64)[0]

        real = np.asarray(node.params[key], dtype=np.float64)
        approx = q * S.reshape(shape)  # real weights applied to the integer input
        if v in g.inputs:
            err = apply(real, means[v]) - apply(approx, mean_xq)
        else:
            err = apply(real - approx, means[v])
        delta = err.reshape(err.shape[0], -1).mean(axis=1)
        node.params[_bias_key(node)] = np.asarray(node.params[_bias_key(node)], dtype=np.float64) + delta


def _merge_join_biases(g: Graph, domains: dict[str, str]) -> None:
    """Sum the real biases of the branches of an add into its first branch.

    Rounding one summed bias loses at most half a step; rounding each branch would
    lose up to half a step per branch.  Only branches used by nothing but the add.
    """
    consumers = g.consumer_map()
    prod = g.producers()
    outputs = set(g.outputs)
    for node in g.nodes:
        if node.op != "add":
            continue
        branches = []
        for v in node.inputs:
            p = prod.get(v)
            if (p is not None and p.op in ops.SYNAPTIC and v not in outputs
                    and len(consumers.get(v, [])) == 1 and p not in branches):
                branches.append(p)
        if len(branches) < 2:
            continue
        total = sum(np.asarray(b.params[_bias_key(b)], dtype=np.float64) for b in branches)
        for i, b in enumerate(branches):
            b.params[_bias_key(b)] = total if i == 0 else np.zeros_like(total)


def _quantize_nodes(g: Graph, bits: dict[str, int], wq: dict, sc: _Scales, options: CompileOptions) -> None:
    for node in g.nodes:
        if node.name in wq:
            q, S = wq[node.name]
            bias = _to_int32(np.asarray(node.params[_bias_key(node)], dtype=np.float64) / S, node)
            if node.op == "affine":
                node.params = {"scale": q.astype(np.int32), "shift": bias, "scale_real": S.copy()}
            else:
                node.params = {"weight": q.astype(np.int8), "bias": bias, "scale_real": S.copy()}
                node.attrs["bits"] = int(bits[node.name])
        elif node.op == "neuron":
            S = sc.sink_scale(node.inputs[0])
            theta = np.asarray(node.params["theta"], dtype=np.float64)
            theta_q = np.maximum(1, _to_int32(theta / S, node))
            node.params = {
                "theta": theta_q.astype(np.int32),
                "v_init": v_init(theta_q).astype(np.int32),
                "theta_real": theta.copy(),
            }
            node.attrs["membrane_bits"] = int(options.membrane_bits)
            node.attrs["membrane_shift"] = int(options.membrane_shift)


def _to_int32(x: np.ndarray, node: Node) -> np.ndarray:
    r = np.rint(np.asarray(x, dtype=np.float64))
    if not np.all(np.abs(r) < 2 ** 31):
        raise SnnccError(f"an integer parameter reaches {float(np.max(np.abs(r))):.4g}, beyond int32; "
                         "the layer's scales are degenerate (check calibration data)", node=node.name, op=node.op)
    return r.astype(np.int32)
