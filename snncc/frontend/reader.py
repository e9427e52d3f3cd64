"""Reading and validating an ONNX model before import.

Everything here turns a malformed or hostile model into a one-line SnnccError:
a file that is not ONNX, a truncated protobuf, external data that points outside
the model's folder, an initializer whose data does not match its dims, a cycle,
an opset outside 9..21 (older ones are upgraded), a failing checker.
"""

from __future__ import annotations

import os
from pathlib import Path

import networkx as nx
import numpy as np
import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper

from snncc.errors import SnnccError, sanitize_name

MIN_OPSET, MAX_OPSET = 9, 21


def read_model(path) -> tuple[onnx.ModelProto, Path]:
    """Parse an ONNX file without touching external data; return it and its folder."""
    path = Path(path)
    if not path.exists():
        raise SnnccError(f"model file {str(path)!r} does not exist")
    if not path.is_file():
        raise SnnccError(f"model path {str(path)!r} is not a file")
    data = path.read_bytes()
    return parse_model(data, str(path)), path.resolve().parent


def parse_model(data: bytes, where: str = "model") -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise SnnccError(f"{where!r} is not a valid ONNX protobuf (truncated or corrupt: {exc})") from None
    # Protobuf parsing is lenient: random bytes may decode into unknown fields.
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node:
        raise SnnccError(f"{where!r} is not an ONNX model (no IR version or no graph nodes)")
    return model


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise SnnccError("the model imports no version of the default ONNX opset")


def prepare(model: onnx.ModelProto, base_dir=None) -> tuple[onnx.ModelProto, list[onnx.NodeProto], int]:
    """Validate a model; return it (upgraded to opset 9 if older, external data
    loaded), its nodes in topological order, and its opset.  The caller's model
    is never modified."""
    _check_text(model)
    opset = default_opset(model)
    if opset > MAX_OPSET:
        raise SnnccError(f"opset {opset} is not supported (snncc accepts opsets {MIN_OPSET}..{MAX_OPSET})")
    if any(t.data_location == TensorProto.EXTERNAL for _, _, t in _all_tensors(model)):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)  # cheap: the bulk of the data is still on disk
        model = copy
        _check_external_data(model, base_dir)
    _check_tensor_sizes(model)
    nodes = _sorted_nodes(model.graph)
    _check_known_ops(model, nodes)
    skeleton = _skeleton(model, nodes)
    try:
        onnx.checker.check_model(skeleton)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise SnnccError(f"the model fails the ONNX checker: {_first_line(exc)}") from None
    if opset < MIN_OPSET:
        model = _upgrade(model, opset)
        nodes, opset = list(model.graph.node), MIN_OPSET
        skeleton = _skeleton(model, nodes)
    try:
        onnx.shape_inference.infer_shapes(skeleton, check_type=True, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError) as exc:
        raise SnnccError(f"ONNX shape inference failed: {_first_line(exc)}") from None
    return model, nodes, opset


# Initializers above this many elements are left out of the copy that the checker
# and shape inference see: their data is never needed to infer shapes, and copying
# a VGG's 500 MB of weights twice costs seconds.
_SKELETON_LIMIT = 4096


def _skeleton(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
    """The model with sorted nodes and large initializers turned into typed inputs."""
    out = onnx.ModelProto()
    out.ir_version = model.ir_version
    out.opset_import.extend(model.opset_import)
    out.functions.extend(model.functions)
    g, src = out.graph, model.graph
    g.name = src.name
    g.node.extend(nodes)
    g.output.extend(src.output)
    g.value_info.extend(src.value_info)
    g.sparse_initializer.extend(src.sparse_initializer)
    listed = {v.name for v in src.input}
    g.input.extend(src.input)
    for t in src.initializer:
        if int(np.prod(t.dims, dtype=np.int64)) <= _SKELETON_LIMIT:
            g.initializer.append(t)
        elif t.name not in listed:
            g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return out


def _check_text(message) -> None:
    """ONNX is proto2: parsing does not validate UTF-8, and a corrupt string field
    comes back as bytes.  Refuse those before anything uses a name."""
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            values = value if field.is_repeated else [value]
            if any(not isinstance(v, str) for v in values):
                raise SnnccError(f"the model is corrupt: field {field.name!r} holds text that is not valid UTF-8")
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in (value if field.is_repeated else [value]):
                _check_text(item)


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _upgrade(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    from onnx import version_converter

    try:
        return version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:  # the converter raises plain RuntimeErrors
        raise SnnccError(f"opset {opset} is older than {MIN_OPSET} and could not be upgraded: "
                         f"{_first_line(exc)}") from None


# --- tensors -------------------------------------------------------------------

def _all_tensors(model: onnx.ModelProto):
    """(owner, op, tensor) for initializers and Constant-node tensors, subgraphs included."""
    def walk(graph):
        for t in graph.initializer:
            yield t.name, "initializer", t
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield node.name or node.output[0], node.op_type, attr.t
                elif attr.type == onnx.AttributeProto.GRAPH:
                    yield from walk(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for g in attr.graphs:
                        yield from walk(g)
    yield from walk(model.graph)


def _check_external_data(model: onnx.ModelProto, base_dir) -> None:
    """Refuse external data outside the model's folder, then load it."""
    external = [(owner, op, t) for owner, op, t in _all_tensors(model)
                if t.data_location == TensorProto.EXTERNAL]
    if not external:
        return
    if base_dir is None:
        owner, op, _ = external[0]
        raise SnnccError("the model has external data but no folder was given to load it from",
                         node=owner, op=op)
    root = Path(base_dir).resolve()
    for owner, op, t in external:
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        norm = os.path.normpath(location.replace("\\", "/"))
        if (not location or os.path.isabs(location) or location.startswith(("/", "\\"))
                or (len(location) > 1 and location[1] == ":") or norm.split(os.sep)[0] == ".."):
            raise SnnccError(f"external data location {location!r} points outside the model's folder",
                             node=owner, op=op)
        target = (root / norm).resolve()
        if root != target and root not in target.parents:
            raise SnnccError(f"external data location {location!r} resolves outside the model's folder",
                             node=owner, op=op)
        if not target.is_file():
            raise SnnccError(f"external data file {location!r} does not exist", node=owner, op=op)
        size = target.stat().st_size
        offset, length = int(info.get("offset", 0) or 0), info.get("length")
        if offset > size or (length is not None and offset + int(length) > size):
            raise SnnccError(f"external data {location!r} is shorter than offset+length", node=owner, op=op)
    from onnx.external_data_helper import load_external_data_for_model

    try:
        load_external_data_for_model(model, str(root))
    except (OSError, ValueError) as exc:
        raise SnnccError(f"cannot load external data: {_first_line(exc)}") from None


_TYPED_FIELDS = {
    TensorProto.FLOAT: "float_data", TensorProto.DOUBLE: "double_data",
    TensorProto.INT64: "int64_data", TensorProto.UINT64: "uint64_data", TensorProto.UINT32: "uint64_data",
    TensorProto.STRING: "string_data",
}


# Stored two values per element (complex) or two elements per byte (4-bit).
_PACKED_OR_PAIRED = frozenset({TensorProto.COMPLEX64, TensorProto.COMPLEX128, TensorProto.INT4, TensorProto.UINT4}
                              | ({TensorProto.FLOAT4E2M1} if hasattr(TensorProto, "FLOAT4E2M1") else set()))


def _check_tensor_sizes(model: onnx.ModelProto) -> None:
    """Every stored tensor must hold exactly prod(dims) elements."""
    for owner, op, t in _all_tensors(model):
        if t.data_location == TensorProto.EXTERNAL:
            continue
        if any(d < 0 for d in t.dims):
            raise SnnccError(f"tensor {t.name!r} has negative dims {list(t.dims)}", node=owner, op=op)
        want = int(np.prod(t.dims, dtype=np.int64)) if len(t.dims) else 1
        if t.HasField("raw_data"):
            try:
                itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
            except (KeyError, TypeError, ValueError):
                raise SnnccError(f"tensor {t.name!r} has unknown data type {t.data_type}",
                                 node=owner, op=op) from None
            if t.data_type in _PACKED_OR_PAIRED:
                continue
            have_bytes = len(t.raw_data)
            if have_bytes != want * itemsize:
                raise SnnccError(f"tensor {t.name!r} has {have_bytes} bytes of raw_data but dims "
                                 f"{list(t.dims)} need {want * itemsize}", node=owner, op=op)
            continue
        field = _TYPED_FIELDS.get(t.data_type, "int32_data")
        if t.data_type in _PACKED_OR_PAIRED:
            continue
        have = len(getattr(t, field))
        if have != want and not (have == 0 and want == 0):
            raise SnnccError(f"tensor {t.name!r} holds {have} values but dims {list(t.dims)} need {want}",
                             node=owner, op=op)


# --- structure -----------------------------------------------------------------

def _sorted_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes in topological order; refuse cycles and dangling inputs."""
    nodes = list(graph.node)
    names = node_labels(nodes)
    producer: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for out in node.output:
            if not out:
                continue
            if out in producer:
                raise SnnccError(f"value {out!r} is produced by more than one node",
                                 node=names[i], op=node.op_type)
            producer[out] = i
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    g = nx.DiGraph()
    g.add_nodes_from(range(len(nodes)))
    for i, node in enumerate(nodes):
        for name in node.input:
            if not name:
                continue
            if name in producer:
                g.add_edge(producer[name], i)
            elif name not in defined:
                raise SnnccError(f"input {name!r} is never produced", node=names[i], op=node.op_type)
    try:
        order = list(nx.lexicographical_topological_sort(g))
    except nx.NetworkXUnfeasible:
        cycle = [a for a, _ in nx.find_cycle(g)]
        path = " -> ".join(sanitize_name(names[i]) for i in cycle + cycle[:1])
        first = nodes[cycle[0]]
        raise SnnccError(f"the graph has a cycle: {path}", node=names[cycle[0]], op=first.op_type) from None
    return [nodes[i] for i in order]


def _check_known_ops(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> None:
    """Ops unknown to ONNX itself fail the checker; report them as unsupported first."""
    opsets = {imp.domain or "": imp.version for imp in model.opset_import}
    names = node_labels(nodes)
    bad = []
    for name, node in zip(names, nodes):
        domain = node.domain or ""
        if domain in ("", "ai.onnx"):
            if not onnx.defs.has(node.op_type, domain=""):
                bad.append((name, node.op_type, "not an ONNX op"))
        elif domain not in opsets:
            bad.append((name, f"{domain}.{node.op_type}", "its domain is not in the model's opset imports"))
    if bad:
        raise unsupported_error(bad)


def unsupported_error(bad: list[tuple[str, str, str]]) -> SnnccError:
    """One error for the (node, op, reason) list of ops with no importer."""
    text = ", ".join(f"node {sanitize_name(n)} ({op})" for n, op, _ in bad)
    err = SnnccError(f"unsupported ops: {text}")
    err.node, err.op = bad[0][:2]
    return err


def node_labels(nodes: list[onnx.NodeProto]) -> list[str]:
    """A unique IR name per node: the ONNX name when unique, else ``n<i>_<op>``."""
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node.name] = counts.get(node.name, 0) + 1
    taken = {n.name for n in nodes if n.name and counts[n.name] == 1}
    out = []
    for i, node in enumerate(nodes):
        if node.name and counts[node.name] == 1:
            out.append(node.name)
            continue
        base = f"n{i}_{node.op_type.lower()}"
        name, k = base, 1
        while name in taken:
            name = f"{base}_{k}"
            k += 1
        taken.add(name)
        out.append(name)
    return out
