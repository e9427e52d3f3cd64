"""The torch twin of the integer SNN: the integer IR's forward pass, trainable.

``Twin(graph)`` reads a compiled integer IR (stage ``int``) and computes, on float
tensors that hold integers (``pick_dtype``), exactly what the integer runtime (snncc/sim/int_runtime.py)
computes: the same currents, the same levels at every neuron and timestep, the same
output accumulators.  tests/test_finetune_twin.py checks that bit for bit.

What it learns, and how each value becomes the integer the IR stores (the rule the
quantize pass uses, so an exported IR is the twin's forward):

- conv/dense: a latent weight ``w`` and bias ``b`` in integer units of the compiled step
  (they start at the IR's integers), ``W_q = clamp(round(w / g), -qmax, qmax)`` at the layer's
  bits, ``b_q = round(b / g)``; pruned layers keep their pruned shapes.
- neurons: a latent threshold per channel, ``theta_q = max(1, round(theta / g_in))``, and
  ``v_init = theta_q // 2``.
- ``g`` is the step multiplier of a layer's current (1 = the compiled step).  With
  ``--weight-quantizer rescaw`` it is learned per output channel (ReScaW's gamma, as a
  multiple of the compiled gamma) for every conv/dense whose current feeds one neuron
  population alone; a shared current (a residual join, a graph output) keeps its step.
- affines (identity shortcut weights), pools, data movement: fixed, as compiled.

Rounding is straight-through (``round_ste``), the neuron's floor takes the surrogate of
``neuron_torch.neuron_step_ste``.  Latents are stored as ``start + unit * delta`` with
``delta`` the trained parameter (zero at first), so the start is exact and one learning
rate fits every layer: ``unit`` is qmax for weights and biases, the mean threshold for
thresholds.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from snncc import ops
from snncc.errors import SnnccError
from snncc.ir import Graph, Node
from snncc.passes import range_analysis, weight_quant
from snncc.sim.neuron_torch import neuron_step_ste, round_ste
from snncc.sim.walk import static_values

FLOAT32_EXACT = 2 ** 24  # float32 holds every integer below this exactly


def pick_dtype(graph: Graph) -> torch.dtype:
    """float32 where it is exact, else float64 (exact for every integer the IR holds: |I| < 2**31).

    Range analysis proved bounds for every value, membrane and accumulator; every input
    interval holds 0 (int8 input, levels), so every partial sum of a conv or dense, in any
    order, lies within its output's bound too.  float32 is exact when all bounds and all
    parameters are below 2**24; training then runs on oneDNN's float32 kernels (faster).
    """
    top = 0
    for node in graph.nodes:
        for key in ("range", "v_range", "v_state_range", "acc_range"):
            if key in node.attrs:
                top = max(top, *(abs(int(b)) for b in node.attrs[key]))
        for key, arr in node.params.items():
            if key not in ("scale_real", "theta_real") and np.size(arr):
                top = max(top, int(np.abs(np.asarray(arr, np.int64)).max()))
    proven = all("range" in n.attrs for n in graph.nodes)
    return torch.float32 if proven and 2 * top < FLOAT32_EXACT else torch.float64


def _view(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


class Twin(nn.Module):
    def __init__(self, graph: Graph, *, learn_gamma: bool = False):
        super().__init__()
        if graph.stage != "int":
            raise SnnccError(f"fine-tuning needs the integer IR (stage 'int'), got stage {graph.stage!r}")
        if len(graph.outputs) != 1 or len(graph.inputs) != 1:
            raise SnnccError("fine-tuning supports a model with one input and one output")
        self.graph = graph.copy()
        self.dtype = pick_dtype(graph)
        self.T = int(graph.meta.get("timesteps", 1))
        self.static = static_values(graph)
        self.activity = None  # after a forward: mean over the batch of sum |z| over neurons and timesteps
        self.out_scale = self._t(graph.meta["output_scales"][graph.outputs[0]])
        self.delta = nn.ParameterDict()
        self.start: dict[str, torch.Tensor] = {}
        self.unit: dict[str, float] = {}
        self.gamma: dict[str, str] = {}  # neuron or layer name -> the layer whose step multiplier it uses
        consumers = graph.consumer_map()
        outputs = set(graph.outputs)
        for node in graph.nodes:
            p = node.params
            if node.op in ops.WEIGHTED:
                q = float(weight_quant.qmax(int(node.attrs["bits"])))
                self._latent(node.name, "weight", p["weight"], q)
                self._latent(node.name, "bias", p["bias"], q)
                readers = consumers.get(node.output, [])
                if (learn_gamma and node.output not in outputs and len(readers) == 1
                        and readers[0].op == "neuron"):
                    self.delta[self._key(node.name, "log_gamma")] = nn.Parameter(
                        torch.zeros(p["weight"].shape[0], dtype=self.dtype))
                    self.gamma[node.name] = node.name
                    self.gamma[readers[0].name] = node.name
            elif node.op == "neuron":
                theta = np.asarray(p["theta"], np.float64)
                self._latent(node.name, "theta", theta, float(max(theta.mean(), 1.0)))
            elif node.op not in ops.INT_EXACT and node.op != "affine":
                raise SnnccError("fine-tuning cannot run this op of the integer IR", node=node.name, op=node.op)

    # --- parameters -------------------------------------------------------------
    def _t(self, a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=self.dtype)

    @staticmethod
    def _key(node: str, what: str) -> str:
        return f"{len(node)}_{node}_{what}".replace(".", "_")  # ParameterDict keys may not hold '.'

    def _latent(self, node: str, what: str, start, unit: float) -> None:
        key = self._key(node, what)
        self.start[key] = self._t(start)
        self.unit[key] = float(unit)
        self.delta[key] = nn.Parameter(torch.zeros_like(self.start[key]))

    def latent(self, node: str, what: str) -> torch.Tensor:
        key = self._key(node, what)
        return self.start[key] + self.unit[key] * self.delta[key]

    def step_multiplier(self, name: str) -> torch.Tensor | None:
        """g per output channel of the layer ``name`` (or of the layer feeding neuron ``name``)."""
        layer = self.gamma.get(name)
        return None if layer is None else torch.exp(self.delta[self._key(layer, "log_gamma")])

    def int_weight(self, node: Node) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_q, b_q) of a conv/dense: exact integers in value, straight-through in gradient."""
        w, b = self.latent(node.name, "weight"), self.latent(node.name, "bias")
        g = self.step_multiplier(node.name)
        if g is not None:
            w = w / g.reshape((-1,) + (1,) * (w.ndim - 1))
            b = b / g
        q = float(weight_quant.qmax(int(node.attrs["bits"])))
        return torch.clamp(round_ste(w), -q, q), round_ste(b)

    def int_theta(self, node: Node) -> torch.Tensor:
        theta = self.latent(node.name, "theta")
        g = self.step_multiplier(node.name)
        if g is not None:
            theta = theta / g
        return torch.clamp(round_ste(theta), min=1.0)

    # --- forward ----------------------------------------------------------------
    def forward(self, x_q: torch.Tensor, *, record: bool = False):
        """Real logits (out_q * S / T) of a batch of int8 inputs (any dtype holding them).

        With ``record``: also {neuron name: [z at t = 1..T]} (levels, as float integers)
        and the integer output accumulator.
        """
        x = x_q.to(self.dtype)
        self.activity = torch.zeros((), dtype=self.dtype)
        params = {}
        for node in self.graph.nodes:
            if node.op in ops.WEIGHTED:
                params[node.name] = self.int_weight(node)
            elif node.op == "neuron":
                params[node.name] = self.int_theta(node)
        state: dict[str, torch.Tensor] = {}
        levels: dict[str, list[torch.Tensor]] = {}
        env: dict[str, torch.Tensor] = {}
        acc = None
        out = self.graph.outputs[0]
        for t in range(self.T):
            cur = {self.graph.inputs[0]: x}
            for node in self.graph.nodes:
                if t > 0 and node.output in self.static:
                    cur[node.output] = env[node.output]
                    continue
                args = [cur[v] for v in node.inputs]
                if node.op == "neuron":
                    z = self._neuron(node, args[0], params[node.name], state)
                    if record:
                        levels.setdefault(node.name, []).append(z.detach())
                    cur[node.output] = z
                else:
                    cur[node.output] = self._eval(node, args, params.get(node.name))
            if t == 0:
                env = {v: cur[v] for v in self.static if v in cur}
            acc = cur[out] if acc is None else acc + cur[out]
        logits = acc * _view(self.out_scale, acc.ndim) / self.T
        if record:
            return logits, levels, acc.detach()
        return logits

    def _neuron(self, node: Node, current: torch.Tensor, theta: torch.Tensor, state: dict) -> torch.Tensor:
        a = node.attrs
        th = _view(theta, current.ndim)
        v = state.get(node.name)
        if v is None:
            v = torch.floor(th.detach() / 2).expand_as(current)  # v_init = theta_q // 2
        z, state[node.name] = neuron_step_ste(v, current, th, int(a["levels"]), bool(a.get("signed")),
                                              bits=int(a["membrane_bits"]), shift=int(a.get("membrane_shift", 0)))
        self.activity = self.activity + z.abs().sum() / z.shape[0]  # the surrogate carries its gradient
        return z

    def _eval(self, node: Node, args: list[torch.Tensor], wb) -> torch.Tensor:
        a, op, x = node.attrs, node.op, args[0]
        if op == "conv":
            w, b = wb
            t, l_, bo, r = a["pads"]
            return F.conv2d(F.pad(x, (l_, r, t, bo)), w, b, stride=tuple(a["strides"]),
                            dilation=tuple(a["dilations"]), groups=int(a["group"]))
        if op == "dense":
            w, b = wb
            return F.linear(x, w, b)
        if op == "affine":
            return (x * _view(self._t(node.params["scale"]), x.ndim)
                    + _view(self._t(node.params["shift"]), x.ndim))
        if op == "add":
            total = args[0]
            for other in args[1:]:
                total = total + other
            return total
        if op == "maxpool":
            t, l_, bo, r = a["pads"]
            xp = F.pad(x, (l_, r, t, bo), value=float("-inf")) if any(a["pads"]) else x
            return F.max_pool2d(xp, tuple(a["kernel"]), tuple(a["strides"]),
                                dilation=tuple(a.get("dilations", (1, 1))))
        if op == "global_maxpool":
            return torch.amax(x, dim=(2, 3), keepdim=True)
        if op == "sumpool":  # a depthwise conv with ones: an exact integer sum (avg_pool2d * k is not)
            t, l_, bo, r = a["pads"]
            c = x.shape[1]
            ones = torch.ones((c, 1) + tuple(a["kernel"]), dtype=x.dtype)
            return F.conv2d(F.pad(x, (l_, r, t, bo)), ones, stride=tuple(a["strides"]), groups=c)
        if op == "flatten":
            return x.reshape(x.shape[0], -1)
        if op == "reshape":
            return x.reshape((x.shape[0],) + tuple(a["shape"]))
        if op == "concat":
            return torch.cat(args, dim=int(a["axis"]) + 1)
        if op == "pad":
            t, l_, bo, r = a["pads"]
            return F.pad(x, (l_, r, t, bo))
        if op == "channel_shuffle":
            n, c = x.shape[:2]
            g = int(a["groups"])
            return x.reshape((n, g, c // g) + tuple(x.shape[2:])).transpose(1, 2).reshape(x.shape)
        raise SnnccError("fine-tuning cannot run this op of the integer IR", node=node.name, op=op)

    # --- export -------------------------------------------------------------------
    @torch.no_grad()
    def to_graph(self) -> Graph:
        """The integer IR with the twin's integers (and steps, thresholds' real values for the
        report); range analysis proves the new bounds again."""
        g = self.graph.copy()
        for node in g.nodes:
            if node.op in ops.WEIGHTED:
                w, b = self.int_weight(node)
                node.params["weight"] = _int(w, np.int8, node)
                node.params["bias"] = _int(b, np.int32, node)
                gm = self.step_multiplier(node.name)
                if gm is not None:
                    node.params["scale_real"] = np.asarray(node.params["scale_real"], np.float64) * gm.numpy()
        steps = {n.output: n.params["scale_real"] for n in g.nodes if n.op in ops.SYNAPTIC}
        prod = g.producers()
        for node in g.nodes:
            if node.op == "neuron":
                theta = _int(self.int_theta(node), np.int32, node)
                node.params["theta"] = theta
                node.params["v_init"] = (theta // 2).astype(np.int32)
                step = _current_step(node.inputs[0], prod, steps)
                if step is not None and step.shape == theta.shape:
                    node.params["theta_real"] = theta.astype(np.float64) * step
        range_analysis.analyze(g)
        return g


def _int(t: torch.Tensor, dtype, node: Node) -> np.ndarray:
    a = t.detach().numpy()
    info = np.iinfo(dtype)
    if not np.all(np.isfinite(a)) or a.min(initial=0) < info.min or a.max(initial=0) > info.max:
        raise SnnccError(f"fine-tuning drove a parameter outside {np.dtype(dtype).name}", node=node.name, op=node.op)
    return np.rint(a).astype(dtype)


def _current_step(value: str, prod: dict, steps: dict) -> np.ndarray | None:
    """The real step per channel of a current: its synaptic producer's, through adds and data movement."""
    seen = 0
    while value not in steps and seen < 10_000:
        node = prod.get(value)
        if node is None or not node.inputs:
            return None
        value, seen = node.inputs[0], seen + 1
    return np.asarray(steps[value], np.float64) if value in steps else None
