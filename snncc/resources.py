"""The memory budget of a compile (``--max-memory``) and the one resource estimate.

Before any large allocation, ``check`` estimates from the graph's static shapes
what one sample costs in the numpy runtimes: the activations live at once (each
value lives from its producer to its last reader) plus the temporaries of the
largest single value (kernel windows, statistics copies).  A model that cannot
run even one sample within the budget is refused with the layer whose output is
largest and the bytes it needs, before the calibration data is loaded.

Every streaming loop over calibration samples (calibrate, threshold search, bias
correction, GPTQ statistics, the report) asks ``batch_size`` how many samples fit.
The estimate depends only on the graph and the options, never on the machine's
state, and the passes give identical results for any batch size, so the output
does not depend on the budget.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from snncc import ops
from snncc.errors import SnnccError
from snncc.ir import Graph

DEFAULT_MAX_MEMORY = "4G"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
MIN_MEMORY = 64 << 20
# Fixed cost of the process (interpreter, numpy, onnx, the compiler's modules; 56 MiB
# measured on Linux x86-64 with OpenBLAS, the rest a margin for other builds) ...
PROCESS_BYTES = 200 << 20
# ... and the parameters: bytes per parameter *element*, whatever the stage's dtype, so
# that every pass sees the same fixed cost (a byte count of the graph at hand said 4 per
# element for the float ANN and 1 for the int8 SNN, and the report then sized its batches
# as if the other stages were free).  The copies alive at once at the peak (quantize, with
# the compile keeping the imported ONNX model (float32, plus the parsed protobuf), the
# float ANN, the float64 SNN and quantize's working copy of it, the int8 weights):
# 34.2 B per parameter measured on the ResNet-50 bench graph; 40 with a margin.
PARAM_BYTES = 40
# Copies of the largest value on top of the live activations and the kernel's own
# temporaries: statistics (abs, partition), quantized levels kept next to a current.
TEMP_COPIES = 3
# Calibration statistics: bytes per reservoir entry (a float32 value, a uint32 key) and
# the share of the activation budget they may take before the reservoir is made smaller.
STATS_BYTES = 8
STATS_SHARE = 1 / 3


def parse_size(text, option: str = "max_memory") -> int:
    """Bytes of a size such as ``2G``, ``512M``, ``1.5G``, ``4096K`` or ``1073741824`` (binary units)."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        value = int(text)
    else:
        m = _SIZE.match(str(text)) if isinstance(text, str) else None
        if not m:
            raise SnnccError(f"must be a size like 4G, 2G or 512M, got {text!r}", option=option)
        value = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if value < MIN_MEMORY:
        raise SnnccError(f"must be at least 64M, got {text!r}", option=option)
    return value


def format_size(n: float) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def param_count(graph: Graph) -> int:
    """Parameter elements of the graph (the same at every stage, but for pruned channels)."""
    return sum(int(v.size) for n in graph.nodes for v in n.params.values() if isinstance(v, np.ndarray))


def fixed_bytes(graph: Graph) -> int:
    """What the compile holds besides the activations: the process, the parameter copies
    (PARAM_BYTES per element), the calibration statistics."""
    return PROCESS_BYTES + PARAM_BYTES * param_count(graph) + stats_bytes(graph)


def per_sample_bytes(graph: Graph, itemsize: int = 8) -> tuple[int, int, int, str]:
    """(working-set bytes of one sample, index of the node where it peaks, the live
    activations there, the value with the most elements).

    At each node: the values live at once (graph inputs and outputs stay live), plus
    the kernel's temporaries (a conv's padded input and its windows made contiguous,
    kh x kw times its input), plus TEMP_COPIES of the largest value for the
    statistics and the quantized copies kept next to it.
    """
    sizes = {v: int(np.prod(val.shape, dtype=np.float64)) * itemsize for v, val in graph.values.items()}
    last: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            last[v] = i
    keep = set(graph.outputs) | set(graph.inputs)
    live = sum(sizes.get(v, 0) for v in graph.inputs)
    peak, at, live_at = live, 0, live
    for i, node in enumerate(graph.nodes):
        live += sizes.get(node.output, 0)
        work = live + _kernel_temp(graph, node, itemsize)
        if work > peak:
            peak, at, live_at = work, i, live
        for v in set(node.inputs):
            if last.get(v) == i and v not in keep:
                live -= sizes.get(v, 0)
    largest = max(sizes, key=lambda v: sizes[v]) if sizes else ""
    return peak + TEMP_COPIES * sizes.get(largest, 0), at, live_at, largest


def _kernel_temp(graph: Graph, node, itemsize: int) -> int:
    """Bytes of one sample's temporaries inside the node's numpy kernel."""
    out = int(np.prod(graph.shape(node.output), dtype=np.float64))
    if node.op in ops.WINDOWED and node.inputs:  # im2col-style window copies
        src = graph.shape(node.inputs[0])
        if node.op == "conv":
            kh, kw = node.params["weight"].shape[2:]
        else:
            kh, kw = node.attrs["kernel"]
        pads = node.attrs.get("pads", (0, 0, 0, 0))
        padded = src[0] * (src[1] + pads[0] + pads[2]) * (src[2] + pads[1] + pads[3]) if len(src) == 3 else 0
        positions = out // max(int(graph.shape(node.output)[0]), 1)
        return int(padded + positions * src[0] * kh * kw) * itemsize
    return out * itemsize


def stats_bytes(graph: Graph) -> int:
    """Bytes of the graph's calibration statistics (alive, shared by its copies, until the report ends)."""
    return sum(int(v.nbytes) for st in graph.stats.values() if isinstance(st, dict)
               for v in st.values() if isinstance(v, np.ndarray))


def activation_budget(graph: Graph, max_memory) -> int:
    """Bytes left for activations once the process, the parameter copies and the calibration
    statistics the graph carries are paid (``fixed_bytes``)."""
    return parse_size(max_memory) - fixed_bytes(graph)


def check(graph: Graph, max_memory) -> None:
    """Refuse a model that cannot run one sample within ``max_memory`` (see module doc)."""
    budget = activation_budget(graph, max_memory)
    need, at, live, value = per_sample_bytes(graph, 8)
    if need <= budget:
        return
    node = graph.nodes[at] if graph.nodes else None
    if node is None:
        raise SnnccError(f"the model's input needs {need} bytes per sample, more than --max-memory {max_memory}")
    total = need + fixed_bytes(graph)
    raise SnnccError(f"the model needs about {format_size(total)} ({total} bytes) to compile one sample, more "
                     f"than --max-memory {max_memory} ({parse_size(max_memory)} bytes): "
                     f"{format_size(fixed_bytes(graph))} for the process and the copies of its "
                     f"{param_count(graph)} parameters, and at this layer the live "
                     f"activations take {live} bytes per sample in float64 (the largest value, {value!r}, "
                     f"has shape {list(graph.shape(value))}); use a smaller model or raise --max-memory "
                     f"to at least {format_size(total)}", node=node.name, op=node.op)


def reservoir_size(graph: Graph, values, options) -> int:
    """calib_reservoir, or fewer entries per channel if the statistics of all ``values``
    would take more than STATS_SHARE of the activation budget (a ResNet-50 calibrates
    about 38,000 channels: 1.2 GiB at 4096 entries each)."""
    channels = sum(int(graph.values[v].shape[0]) if graph.values[v].shape else 1 for v in values)
    budget = activation_budget(graph, getattr(options, "max_memory", DEFAULT_MAX_MEMORY))
    fit = int(STATS_SHARE * budget // max(STATS_BYTES * channels, 1))
    return int(max(16, min(int(options.calib_reservoir), fit)))


def batch_size(graph: Graph, options, *, itemsize: int = 8, copies: int = 1, cap: int | None = None,
               reserved: int = 0, kept: Iterable[str] = ()) -> int:
    """Samples per batch that fit the activation budget (at least 1, at most ``cap``).

    ``copies`` counts working sets alive at once per sample (a simulation that keeps
    a float and a quantized copy, or captures every value, needs more than one);
    ``reserved`` is memory the caller keeps besides (calibration statistics); ``kept``
    names values a run captures for every sample of the batch (alive to the end; a
    name given twice counts twice).
    """
    budget = activation_budget(graph, getattr(options, "max_memory", DEFAULT_MAX_MEMORY)) - int(reserved)
    need = per_sample_bytes(graph, itemsize)[0] + itemsize * sum(
        int(np.prod(graph.shape(v), dtype=np.int64)) for v in kept)
    fit = int(budget // max(need * copies, 1))
    if cap is None:
        cap = int(getattr(options, "calib_batch", 256))
    return int(max(1, min(cap, fit)))


# The data-driven work after calibration (GPTQ and bias-correction statistics, the
# report's simulations) runs on at most WORK_ELEMENTS activation elements in all:
# every calibration sample for a small model, at least WORK_MIN_SAMPLES for a big one
# (a ResNet-50 at 224 x 224 has 31 million per sample in the float SNN: 32 samples,
# where calibrate itself streams all of them).  Time, like memory, then stays bounded by the model.
WORK_ELEMENTS = 1_000_000_000
WORK_MIN_SAMPLES = 32


def activation_elements(graph: Graph) -> int:
    """Elements of every value of one sample: what a forward pass writes."""
    return sum(int(np.prod(v.shape, dtype=np.int64)) for v in graph.values.values())


def sample_budget(graph: Graph, available: int, *, elements: int | None = None,
                  floor: int | None = None, cap: int | None = None) -> int:
    """Samples a data-driven step uses: ``elements`` (WORK_ELEMENTS) // elements per sample,
    at least ``floor`` (WORK_MIN_SAMPLES), at most ``cap``, never more than ``available``."""
    elements = WORK_ELEMENTS if elements is None else elements
    floor = WORK_MIN_SAMPLES if floor is None else floor
    count = max(int(floor), int(elements) // max(activation_elements(graph), 1))
    if cap is not None:
        count = min(count, int(cap))
    return int(min(count, int(available)))
