"""The integer IR at T=1 as an ONNX graph in the QONNX dialect (FINN, hls4ml, qonnx).

What goes out (docs/interop.md):

- the graph input is the int8 tensor ``x_q`` (quantize outside, like the C library),
  annotated ``INT8``;
- every weight is an integer initializer behind a ``Quant`` node (scale 1, zero point 0,
  ``bits`` bits, signed, narrow): the b-bit code is the weight itself;
- every neuron population is a ``MultiThreshold`` on its integer current: at T=1 the
  neuron fires level ``z >= k`` exactly when ``v_init + I >= k*theta``, so the
  thresholds are ``k*theta - v_init`` (``x >= t_k`` is what MultiThreshold counts);
  a signed neuron counts from ``-N`` (``out_bias``);
- sum pooling is a depthwise ``Conv`` with ones (ONNX has no sum pool), and the output
  scale is a ``Mul``.

Values are float32 tensors holding integers, so the graph is exact when every current
stays within 2**24; range analysis bounds them and the emitter refuses otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snncc.errors import SnnccError
from snncc.ir import Graph, Node

DOMAIN = "qonnx.custom_op.general"
OPSET = 13
FLOAT_EXACT = 1 << 24  # float32 holds every integer of magnitude up to 2**24


def check_timesteps(timesteps: int) -> None:
    if timesteps != 1:
        raise SnnccError(f"is {timesteps}; --target qonnx needs 1 (a MultiThreshold is the neuron at T=1)",
                         option="timesteps")


def check_graph(graph: Graph) -> None:
    """SnnccError unless this integer IR has an exact QONNX form (T=1, no saturation that
    changes a level, currents that float32 holds exactly, ops with an ONNX form)."""
    check_timesteps(int(graph.meta.get("timesteps", 1)))
    for node in graph.nodes:
        if node.op not in _EMIT and node.op not in _VARIADIC:
            raise SnnccError("has no QONNX form", node=node.name, op=node.op)
        bound = max((abs(int(b)) for key in ("range", "acc_range", "v_range") for b in node.attrs.get(key) or ()),
                    default=0)
        if bound > FLOAT_EXACT:
            raise SnnccError(f"its values reach {bound}, beyond the 2**24 that float32 tensors hold exactly",
                             node=node.name, op=node.op)
        if node.op == "neuron":
            _check_saturation(node)


def _check_saturation(node: Node) -> None:
    """The B-bit membrane clamp cannot change a level when every threshold k*theta lies
    inside (lo, hi]; it cannot happen at all when v_range fits."""
    a = node.attrs
    bits = int(a["membrane_bits"])
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    v_lo, v_hi = (int(b) for b in a.get("v_range", (lo - 1, hi + 1)))
    if lo <= v_lo and v_hi <= hi:
        return
    n = int(a["levels"])
    ks = np.arange(-n + 1 if a.get("signed") else 1, n + 1)
    steps = np.outer(node.params["theta"].astype(np.int64), ks)
    if steps.min() <= lo or steps.max() > hi:
        raise SnnccError(f"the {bits}-bit membrane saturates (v reaches [{v_lo}, {v_hi}]) and that changes levels; "
                         "MultiThreshold has no saturation (raise --membrane-bits)", node=node.name, op=node.op)


def thresholds(node: Node) -> tuple[np.ndarray, float]:
    """MultiThreshold's (C, K) integer thresholds for a T=1 neuron, and its out_bias.

    Level ``z >= k`` iff ``v_init + I >= k*theta``: t_k = k*theta - v_init, for k = 1..N
    (unsigned) or k = -N+1..N (signed, counted from -N).
    """
    n, signed = int(node.attrs["levels"]), bool(node.attrs.get("signed"))
    ks = np.arange(-n + 1 if signed else 1, n + 1, dtype=np.int64)
    theta = node.params["theta"].astype(np.int64)
    v0 = node.params["v_init"].astype(np.int64)
    return (np.outer(theta, ks) - v0[:, None]), float(-n if signed else 0)


def level_dtype(node: Node) -> str:
    n = int(node.attrs["levels"])
    if node.attrs.get("signed"):
        return f"INT{n.bit_length() + 1}"
    return "BINARY" if n == 1 else f"UINT{n.bit_length()}"


class _Builder:
    """Collects ONNX nodes, initializers and value infos with generated names."""

    def __init__(self, graph: Graph, batch: int):
        self.graph, self.batch = graph, batch
        self.nodes, self.inits, self.infos, self.dtypes = [], [], [], {}
        self.names: dict[str, str] = {}
        self.count = 0

    def fresh(self, base: str) -> str:
        self.count += 1
        return f"{base}{self.count}"

    def init(self, base: str, arr: np.ndarray, dtype=np.float32) -> str:
        from onnx import numpy_helper

        name = self.fresh(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], out: str | None = None, domain: str = "", **attrs) -> str:
        from onnx import helper

        out = out or self.fresh("t")
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.fresh(f"n_{op}_"), domain=domain, **attrs))
        return out

    def value(self, ir_value: str) -> str:
        return self.names[ir_value]

    def info(self, name: str, shape) -> None:
        from onnx import TensorProto, helper

        self.infos.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [self.batch, *shape]))

    def channel(self, vec: np.ndarray, rank: int) -> np.ndarray:
        """A per-channel vector shaped to broadcast over (N, C, ...) of a per-sample rank."""
        return np.asarray(vec).reshape((-1,) + (1,) * (rank - 1))

    def quant_weight(self, w: np.ndarray, bits: int) -> str:
        """The integer weights behind a Quant node that names their bit width."""
        w_name = self.init("w", w)
        return self.node("Quant", [w_name, self.init("s", np.float32(1)), self.init("z", np.float32(0)),
                                   self.init("b", np.float32(bits))], domain=DOMAIN,
                         signed=1, narrow=1, rounding_mode="ROUND")


def _conv(b: _Builder, n: Node, x: str) -> str:
    a = n.attrs
    t, l_, bot, r = a["pads"]
    w = b.quant_weight(n.params["weight"], int(a["bits"]))
    return b.node("Conv", [x, w, b.init("bias", n.params["bias"])], kernel_shape=list(n.params["weight"].shape[2:]),
                  strides=list(a["strides"]), pads=[t, l_, bot, r], dilations=list(a["dilations"]),
                  group=int(a["group"]))


def _dense(b: _Builder, n: Node, x: str) -> str:
    w = b.quant_weight(n.params["weight"], int(n.attrs["bits"]))
    return b.node("Gemm", [x, w, b.init("bias", n.params["bias"])], transB=1)


def _affine(b: _Builder, n: Node, x: str) -> str:
    rank = len(b.graph.shape(n.output))
    y = b.node("Mul", [x, b.init("scale", b.channel(n.params["scale"], rank))])
    return b.node("Add", [y, b.init("shift", b.channel(n.params["shift"], rank))])


def _pool_attrs(a: dict) -> dict:
    t, l_, bot, r = a["pads"]
    return {"kernel_shape": list(a["kernel"]), "strides": list(a["strides"]), "pads": [t, l_, bot, r]}


def _maxpool(b: _Builder, n: Node, x: str) -> str:
    return b.node("MaxPool", [x], dilations=list(n.attrs.get("dilations", (1, 1))), **_pool_attrs(n.attrs))


def _sumpool(b: _Builder, n: Node, x: str) -> str:
    """A depthwise Conv with ones: an exact integer window sum (AveragePool would divide)."""
    c = b.graph.shape(n.output)[0]
    kh, kw = n.attrs["kernel"]
    ones = b.init("ones", np.ones((c, 1, kh, kw)))
    return b.node("Conv", [x, ones], group=c, dilations=[1, 1], **_pool_attrs(n.attrs))


def _reshape(b: _Builder, n: Node, x: str) -> str:
    shape = b.init("shape", np.array([-1, *b.graph.shape(n.output)]), dtype=np.int64)
    return b.node("Reshape", [x, shape])


def _pad(b: _Builder, n: Node, x: str) -> str:
    t, l_, bot, r = n.attrs["pads"]
    return b.node("Pad", [x, b.init("pads", np.array([0, 0, t, l_, 0, 0, bot, r]), dtype=np.int64)], mode="constant")


def _shuffle(b: _Builder, n: Node, x: str) -> str:
    c, *rest = b.graph.shape(n.output)
    g = int(n.attrs["groups"])
    y = b.node("Reshape", [x, b.init("shape", np.array([-1, g, c // g, *rest]), dtype=np.int64)])
    y = b.node("Transpose", [y], perm=[0, 2, 1, *range(3, 3 + len(rest))])
    return b.node("Reshape", [y, b.init("shape", np.array([-1, c, *rest]), dtype=np.int64)])


def _neuron(b: _Builder, n: Node, x: str) -> str:
    thr, bias = thresholds(n)
    out = b.node("MultiThreshold", [x, b.init("thr", thr)], domain=DOMAIN, out_dtype=level_dtype(n),
                 out_scale=1.0, out_bias=bias, data_layout="NCHW" if len(b.graph.shape(n.output)) == 3 else "NC")
    b.dtypes[out] = level_dtype(n)
    return out


_EMIT = {
    "conv": _conv, "dense": _dense, "affine": _affine, "maxpool": _maxpool, "sumpool": _sumpool,
    "global_maxpool": lambda b, n, x: b.node("GlobalMaxPool", [x]),
    "flatten": lambda b, n, x: b.node("Flatten", [x], axis=1),
    "reshape": _reshape, "pad": _pad, "channel_shuffle": _shuffle, "neuron": _neuron,
}


_VARIADIC = {"add": "Sum", "concat": "Concat"}


def build_model(graph: Graph, batch: int = 1):
    """The QONNX ModelWrapper of the integer IR (one sample per batch row)."""
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper

    check_graph(graph)
    b = _Builder(graph, batch)
    b.names[graph.inputs[0]] = "x_q"
    for node in graph.nodes:
        ins = [b.value(v) for v in node.inputs]
        if node.op in _VARIADIC:
            axis = {"axis": int(node.attrs["axis"]) + 1} if "axis" in node.attrs else {}
            out = b.node(_VARIADIC[node.op], ins, **axis)
        else:
            out = _EMIT[node.op](b, node, ins[0])
        b.names[node.output] = out
        b.info(out, graph.shape(node.output))
    outputs = []
    for k, name in enumerate(graph.outputs):
        scale = np.asarray(graph.meta["output_scales"][name], dtype=np.float32)
        rank = len(graph.shape(name))
        out = b.node("Mul", [b.value(name), b.init("oscale", b.channel(scale, rank))], out=f"logits{k}")
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, *graph.shape(name)]))
    x_info = helper.make_tensor_value_info("x_q", TensorProto.FLOAT, [batch, *graph.shape(graph.inputs[0])])
    g = helper.make_graph(b.nodes, "snncc", [x_info], outputs, initializer=b.inits,
                          value_info=[i for i in b.infos if i.name not in {o.name for o in outputs}])
    model = helper.make_model(g, producer_name="snncc", opset_imports=[helper.make_opsetid("", OPSET),
                                                                        helper.make_opsetid(DOMAIN, 1)])
    wrapper = ModelWrapper(model)
    from qonnx.core.datatype import DataType

    wrapper.set_tensor_datatype("x_q", DataType["INT8"])
    for name, dt in b.dtypes.items():
        wrapper.set_tensor_datatype(name, DataType[dt])
    meta = {"snncc.input_scale": repr(float(graph.meta["input_scale"])), "snncc.timesteps": "1",
            "snncc.output_scales": "logits = out_q * scale; divide by it to get snncc's int32 out_q"}
    helper.set_model_props(wrapper.model, meta)
    from qonnx.transformation.infer_shapes import InferShapes

    return wrapper.transform(InferShapes())


def rebatch(wrapper, batch: int):
    """The same model with batch size ``batch`` (every tensor's first dim)."""
    import copy

    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    model = copy.deepcopy(wrapper.model)
    del model.graph.value_info[:]
    for info in [*model.graph.input, *model.graph.output]:
        info.type.tensor_type.shape.dim[0].dim_value = batch
    return ModelWrapper(model).transform(InferShapes())


def write_qonnx(graph: Graph, path: Path) -> Path:
    wrapper = build_model(graph)
    Path(path).write_bytes(wrapper.model.SerializeToString())
    return Path(path)


def run_qonnx(path: Path, x_q: np.ndarray) -> list[np.ndarray]:
    """Execute the file with qonnx's executor on int8 inputs; the logits of every output."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    wrapper = rebatch(ModelWrapper(str(path)), len(x_q))
    res = execute_onnx(wrapper, {"x_q": np.asarray(x_q, np.float32)})
    return [res[o.name] for o in wrapper.graph.output]


def to_out_q(logits: np.ndarray, scale) -> np.ndarray:
    """snncc's integer output back from the logits: out_q = logits / S, an integer."""
    s = np.asarray(scale, np.float32).reshape((1, -1) + (1,) * (logits.ndim - 2))
    return np.rint(logits.astype(np.float64) / s.astype(np.float64)).astype(np.int64)
