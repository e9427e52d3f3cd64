"""calibrate: run the float IR on the calibration data and record activation statistics.

Statistics are per channel (per feature for rank-1 values) with bounded memory:
running max/min/mean/|x| max/non-zero fraction, a seeded uniform reservoir sample
and the exact largest |x| values. The schema is in docs/ir.md ("Calibration
statistics"). ``convert`` derives thresholds from them; ``prune`` may read them.
"""

from __future__ import annotations

import numpy as np

from snncc.errors import SnnccError
from snncc.ir import Graph
from snncc.options import CompileOptions
from snncc.passes.convert_plan import calibrated_values, plan
from snncc.sim.float_runtime import run_graph

TAIL = 64  # exact largest |x| kept per channel: high percentiles without a huge sample


class ChannelStats:
    """Streaming per-channel statistics of one value; memory O(C * (reservoir + TAIL))."""

    def __init__(self, shape: tuple[int, ...], reservoir: int, rng: np.random.Generator):
        self.shape = tuple(shape)
        self.c = int(shape[0]) if shape else 1
        self.k = int(reservoir)
        self.rng = rng
        self.count = 0
        self.max = np.full(self.c, -np.inf)
        self.min = np.full(self.c, np.inf)
        self.sum = np.zeros(self.c)
        self.nonzero = np.zeros(self.c)
        self.sample = np.zeros((self.c, 0), np.float32)
        self.keys = np.zeros((self.c, 0), np.float32)
        self.tail = np.zeros((self.c, 0), np.float32)

    def update(self, x: np.ndarray) -> None:
        # (B, C, ...) -> (C, B*...): one row per channel
        v = np.moveaxis(np.asarray(x, np.float32).reshape((x.shape[0], self.c, -1)), 1, 0).reshape(self.c, -1)
        m = v.shape[1]
        if m == 0:
            return
        self.count += m
        self.max = np.maximum(self.max, v.max(axis=1))
        self.min = np.minimum(self.min, v.min(axis=1))
        self.sum += v.sum(axis=1, dtype=np.float64)
        self.nonzero += np.count_nonzero(v, axis=1)
        # exact top-|x| tail
        a = np.abs(v)
        if m > TAIL:
            a = -np.partition(-a, TAIL - 1, axis=1)[:, :TAIL]
        tail = np.concatenate([self.tail, a], axis=1)
        if tail.shape[1] > TAIL:
            tail = -np.partition(-tail, TAIL - 1, axis=1)[:, :TAIL]
        self.tail = -np.sort(-tail, axis=1)
        # reservoir: keep the k elements with the smallest seeded random keys (uniform sample)
        keys = self.rng.random(v.shape, dtype=np.float32)
        sample = np.concatenate([self.sample, v], axis=1)
        keys = np.concatenate([self.keys, keys], axis=1)
        if sample.shape[1] > self.k:
            idx = np.argpartition(keys, self.k - 1, axis=1)[:, :self.k]
            idx.sort(axis=1)  # keep the arrival order: deterministic and readable
            sample = np.take_along_axis(sample, idx, axis=1)
            keys = np.take_along_axis(keys, idx, axis=1)
        self.sample, self.keys = sample, keys

    def result(self, kind: str) -> dict:
        absmax = np.maximum(np.abs(self.max), np.abs(self.min))
        return {
            "kind": kind,
            "shape": list(self.shape),
            "count": int(self.count),
            "max": self.max.astype(np.float64),
            "min": self.min.astype(np.float64),
            "mean": self.sum / max(self.count, 1),
            "absmax": absmax.astype(np.float64),
            "nonzero": self.nonzero / max(self.count, 1),
            "layer_max": float(self.max.max()),
            "layer_absmax": float(absmax.max()),
            "sample": self.sample.copy(),
            "tail": self.tail.copy(),
        }


def run(graph: Graph, options: CompileOptions) -> Graph:
    data = getattr(options, "calib_data", None)
    if data is None:
        raise SnnccError("option --calib is required: the calibrate pass needs input samples "
                         "(a .npy/.npz, or 'random' for structure tests only)")
    want = tuple(graph.values[graph.inputs[0]].shape)
    if tuple(data.input_shape) != want:
        raise SnnccError(f"option --calib: data has samples of shape {list(data.input_shape)}, "
                         f"but the model input is {list(want)}")
    graph = graph.copy()
    names = calibrated_values(graph)
    kinds = _kinds(graph)
    rng = np.random.default_rng(int(options.seed))
    acc = {v: ChannelStats(graph.values[v].shape, int(options.calib_reservoir), rng) for v in names}

    def on_value(name: str, arr: np.ndarray) -> None:
        if name in acc:
            acc[name].update(arr)

    for xb, _ in data.batches(int(options.calib_batch), progress="calibrate"):
        run_graph(graph, xb, on_value=on_value)
    graph.stats.update({v: acc[v].result(kinds.get(v, "add")) for v in names})
    graph.meta["calibration"] = {"samples": int(data.n), "source": str(data.source)}
    return graph


def _kinds(graph: Graph) -> dict[str, str]:
    kinds = {v: "input" for v in graph.inputs}
    kinds.update({n.output: "add" for n in graph.nodes if n.op == "add"})
    kinds.update({n.output: "relu" for n in graph.nodes if n.op == "relu"})
    try:
        kinds.update({v: "signed" for v in plan(graph).signed_sites})
    except SnnccError:
        pass
    return kinds
