"""Rewrite a calibrated float graph into the float SNN (stage ``snn``), given thresholds.

Levels carry a per-element real scale (``z * scale``), tracked through data
movement and folded into the weights of the synaptic op that reads them, per input
channel (per feature for dense). Levels that must become a current (a neuron's
input, an add of currents, a graph output) go through ``affine(scale=theta)``: the
identity-shortcut weight.
"""

from __future__ import annotations

import copy

import numpy as np

from snncc import ops
from snncc.errors import SnnccError
from snncc.ir import Graph, Node, Value, infer_shape
from snncc.passes.convert_plan import Plan
from snncc.sim import kernels as K


class _Builder:
    def __init__(self, graph: Graph, p: Plan, thetas: dict[str, np.ndarray], levels: int,
                 bias_delta: dict[str, np.ndarray]):
        self.src, self.p, self.thetas, self.levels = graph, p, thetas, int(levels)
        self.bias_delta = bias_delta
        self.g = Graph(name=graph.name, inputs=list(graph.inputs), outputs=[], nodes=[],
                       values={v: copy.deepcopy(graph.values[v]) for v in graph.inputs},
                       stage="snn", meta=copy.deepcopy(graph.meta), stats=dict(graph.stats))
        self.used = {n.name for n in graph.nodes} | set(graph.values)
        self.ref: dict[str, str] = {v: v for v in graph.inputs}  # float value -> snn value
        self.scale: dict[str, np.ndarray] = {v: np.ones(graph.values[v].shape) for v in graph.inputs}
        self.signed: dict[str, tuple[str, np.ndarray]] = {}  # signed site -> (snn value, scale)
        self.currents: dict[str, str] = {}  # levels value -> its affine current (cached)
        self.notes: list[str] = []  # for the report (build's notes=)

    # --- helpers ----------------------------------------------------------------
    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name

    def emit(self, node: Node) -> str:
        self.g.values[node.output] = Value(node.output, tuple(infer_shape(self.g, node)), "float64")
        self.g.nodes.append(node)
        return node.output

    def per_channel(self, f: str, node: Node) -> np.ndarray:
        return self._per_channel(self.scale[f], node)

    def _per_channel(self, m: np.ndarray, node: Node) -> np.ndarray:
        if m.ndim <= 1:
            return m.reshape(-1).astype(np.float64)
        rows = m.reshape(m.shape[0], -1)
        if not (rows == rows[:, :1]).all():
            raise SnnccError("cannot fold a per-position input scale here (it varies inside a channel, "
                             "e.g. after a reshape or an uneven average pool)", node=node.name, op=node.op)
        return rows[:, 0].astype(np.float64)

    def kind(self, f: str) -> str:
        return self.p.kind[f]

    def as_current(self, f: str, node: Node) -> str:
        """The snn value holding float value ``f`` as a current (levels -> identity-shortcut affine)."""
        if self.kind(f) == "current":
            return self.ref[f]
        if f not in self.currents:
            c = self.per_channel(f, node)
            out = self.fresh(f"{f}_current")
            self.emit(Node(self.fresh(f"{node.name}_shortcut"), "affine", [self.ref[f]], out, {},
                           {"scale": c.copy(), "shift": np.zeros_like(c)}, node.origin))
            self.currents[f] = out
        return self.currents[f]

    def as_levels(self, f: str, node: Node) -> tuple[str, np.ndarray]:
        if f in self.signed:
            return self.signed[f]
        if self.kind(f) == "current":
            raise SnnccError(f"internal: synaptic input {f!r} is a current without a neuron",
                             node=node.name, op=node.op)
        return self.ref[f], self.scale[f]

    def neuron(self, name: str, current: str, out: str, theta: np.ndarray, signed: bool, ann_value: str,
               origin: str, extra: dict | None = None) -> None:
        attrs = {"levels": self.levels, "signed": bool(signed), "barrier": False, "ann_value": ann_value}
        attrs.update(extra or {})
        self.emit(Node(name, "neuron", [current], out, attrs, {"theta": np.asarray(theta, np.float64).copy()}, origin))

    # --- the rewrite ---------------------------------------------------------------
    def run(self) -> Graph:
        for node in self.src.nodes:
            getattr(self, "_" + node.op, self._data_movement)(node)
            if node.output in self.p.signed_sites and node.output not in self.signed:
                theta = self.thetas[node.output]
                out = self.fresh(f"{node.output}_spk")
                self.neuron(self.fresh(f"{node.name}_neuron"), self.ref[node.output], out, theta, True,
                            node.output, node.origin, {"barrier": bool(node.attrs.get("barrier"))})
                self.signed[node.output] = (out, _broadcast(theta, self.src.values[node.output].shape))
        outs = []
        for f in self.src.outputs:
            outs.append(self.as_current(f, self.src.producer(f) or Node(f, "output", [], f)))
        self.g.outputs = outs
        return self.g

    def _relu(self, node: Node) -> None:
        f = node.inputs[0]
        if node.output in self.p.identity_relus:  # ReLU of non-negative levels: nothing to do
            self.ref[node.output] = self.ref[f]
            self.scale[node.output] = self.scale[f]
            return
        cur = self.as_current(f, node)
        theta = self.thetas[node.output]
        extra = {"barrier": bool(node.attrs.get("barrier", False))}
        if node.attrs.get("max") is not None:
            extra["clip"] = float(node.attrs["max"])
        self.neuron(node.name, cur, node.output, theta, False, node.output, node.origin, extra)
        self.ref[node.output] = node.output
        self.scale[node.output] = _broadcast(theta, self.src.values[node.output].shape)

    def _conv(self, node: Node) -> None:
        s, m = self.as_levels(node.inputs[0], node)
        c = self.per_channel_map(m, node)
        w = np.asarray(node.params["weight"], np.float64)
        o, ig = w.shape[:2]
        og = o // int(node.attrs["group"])
        idx = (np.arange(o) // og)[:, None] * ig + np.arange(ig)[None, :]
        self._synaptic(node, s, w * c[idx][:, :, None, None])

    def _dense(self, node: Node) -> None:
        s, m = self.as_levels(node.inputs[0], node)
        w = np.asarray(node.params["weight"], np.float64)
        self._synaptic(node, s, w * m.reshape(-1)[None, :])

    def _synaptic(self, node: Node, src: str, weight: np.ndarray) -> None:
        o = weight.shape[0]
        bias = node.params.get("bias")
        bias = np.zeros(o) if bias is None else np.asarray(bias, np.float64)
        attrs = copy.deepcopy(node.attrs)
        delta = self.bias_delta.get(node.name)
        if delta is not None:
            bias = bias + delta
            attrs["bias_delta"] = [float(d) for d in delta]
        params = {k: np.asarray(v, np.float64).copy() for k, v in node.params.items()}
        params.update(weight=weight, bias=bias)
        self.emit(Node(node.name, node.op, [src], node.output, attrs, params, node.origin))
        self.ref[node.output] = node.output

    def per_channel_map(self, m: np.ndarray, node: Node) -> np.ndarray:
        rows = m.reshape(m.shape[0], -1)
        if not (rows == rows[:, :1]).all():
            raise SnnccError("cannot fold a per-position input scale into a conv (the scale varies inside "
                             "a channel, e.g. after a reshape or an uneven average pool)", node=node.name, op=node.op)
        return rows[:, 0]

    def _affine(self, node: Node) -> None:
        f = node.inputs[0]
        scale = np.asarray(node.params["scale"], np.float64)
        shift = np.asarray(node.params["shift"], np.float64)
        if self.kind(f) != "current" and self.kind(node.output) != "current":  # a rescale: fold downstream
            self.ref[node.output] = self.ref[f]
            self.scale[node.output] = self.scale[f] * _broadcast(scale, self.src.values[f].shape)
            return
        if self.kind(f) != "current":  # levels, or the input (levels of scale 1)
            scale = scale * self.per_channel(f, node)
        self.emit(Node(node.name, "affine", [self.ref[f]], node.output, copy.deepcopy(node.attrs),
                       {"scale": scale, "shift": shift.copy()}, node.origin))
        self.ref[node.output] = node.output

    def _add(self, node: Node) -> None:
        if node.output in self.p.level_adds:  # spike + spike (SEW): a sum of levels, equal thetas
            maps = [self.scale[f] for f in node.inputs]
            for m in maps[1:]:
                if not np.allclose(m, maps[0], rtol=1e-12, atol=0):
                    raise SnnccError("the inputs of this spike + spike join carry different scales "
                                     "(e.g. an average pool on one path); cannot add their levels",
                                     node=node.name, op=node.op)
            self.emit(Node(node.name, "add", [self.ref[f] for f in node.inputs], node.output, {}, {}, node.origin))
            self.scale[node.output] = maps[0]
        else:
            ins = [self.as_current(f, node) for f in node.inputs]
            self.emit(Node(node.name, "add", ins, node.output, {}, {}, node.origin))
        self.ref[node.output] = node.output

    def _softmax(self, node: Node) -> None:
        self.ref[node.output] = self.ref[node.inputs[0]]
        if node.inputs[0] in self.scale:
            self.scale[node.output] = self.scale[node.inputs[0]]
        self.notes.append(
            f"dropped the trailing softmax {node.name!r}: the SNN outputs logits (argmax is unchanged)")

    def _data_movement(self, node: Node) -> None:
        op, a = node.op, node.attrs
        if op == "avgpool" and any(a["pads"]) and not a.get("count_include_pad", True):
            raise SnnccError("average pooling with padding that is not counted (count_include_pad=0) divides "
                             "border windows by different counts; it cannot become a sum pool with one scale",
                             node=node.name, op=op)
        levels = self.kind(node.output) != "current"
        ins = [self.as_levels(f, node)[0] if levels else self.as_current(f, node) for f in node.inputs]
        new_op = "sumpool" if op == "avgpool" else op
        attrs = copy.deepcopy(a)
        if op == "avgpool":
            attrs = {"kernel": tuple(a["kernel"]), "strides": tuple(a["strides"]), "pads": tuple(a["pads"])}
        self.emit(Node(node.name, new_op, ins, node.output, attrs, {}, node.origin))
        self.ref[node.output] = node.output
        k = float(np.prod(a["kernel"])) if op == "avgpool" else 1.0
        if not levels:
            if op == "avgpool":  # a current: the 1/k stays a per-channel affine on the current
                c = self.src.values[node.output].shape[0]
                out = self.fresh(f"{node.output}_avg")
                self.emit(Node(self.fresh(f"{node.name}_scale"), "affine", [node.output], out, {},
                               {"scale": np.full(c, 1.0 / k), "shift": np.zeros(c)}, node.origin))
                self.ref[node.output] = out
            return
        self.scale[node.output] = self._move_scale(node, k)

    def _move_scale(self, node: Node, k: float) -> np.ndarray:
        op, a = node.op, node.attrs
        out_shape = self.src.values[node.output].shape
        maps = [self.as_levels(f, node)[1] for f in node.inputs]
        if op in ops.POOLS:
            c = self._per_channel(maps[0], node)
            if op in ops.MAX_POOLS and (c <= 0).any():
                raise SnnccError("max pooling over levels with a non-positive scale is not a max of levels",
                                 node=node.name, op=op)
            return _broadcast(c / k, out_shape)
        if op in ops.RESHAPES:
            return maps[0].reshape(out_shape)
        if op == "concat":
            return np.concatenate(maps, axis=int(a["axis"]))
        if op == "pad":
            t, l_, b, r = a["pads"]
            return np.pad(maps[0], ((0, 0), (t, b), (l_, r)), mode="edge")
        if op == "channel_shuffle":
            return K.channel_shuffle(maps[0][None], int(a["groups"]))[0]
        raise SnnccError("convert cannot fold neuron thresholds through this op", node=node.name, op=op)


def _broadcast(per_channel: np.ndarray, shape) -> np.ndarray:
    v = np.asarray(per_channel, np.float64)
    return np.broadcast_to(v.reshape((-1,) + (1,) * (len(shape) - 1)), tuple(shape)).copy()


def build(graph: Graph, p: Plan, thetas: dict[str, np.ndarray], levels: int, timesteps: int,
          bias_delta: dict[str, np.ndarray] | None = None, notes: list[str] | None = None) -> Graph:
    """The float SNN for ``graph`` with neuron thresholds ``thetas`` (keyed by ReLU output / signed site);
    its notes for the report go to ``notes`` when given (the trial builds of the search drop them)."""
    b = _Builder(graph, p, thetas, levels, bias_delta or {})
    g = b.run()
    g.meta["timesteps"] = int(timesteps)
    g.meta["levels"] = int(levels)
    pools = [n.name for n in g.nodes if n.op in ops.MAX_POOLS]
    if timesteps > 1 and pools:
        b.notes.append(f"max pooling at T={timesteps} ({len(pools)} layer(s), first {pools[0]!r}) takes the "
                       "max of each timestep's levels: an approximation of the ANN's max, exact only at T=1")
    if notes is not None:
        notes.extend(b.notes)
    return g
