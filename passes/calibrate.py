"""calibrate: run the float IR on the calibration data and record activation statistics.

Statistics are per channel (per feature for rank-1 values) with bounded memory:
running max/min/mean/|x| max/non-zero fraction, a seeded uniform reservoir sample
and the exact largest |x| values. The schema is in docs/ir.md ("Calibration
statistics"). ``convert`` derives thresholds from them; ``prune`` may read them.
"""

from __future__ import annotations

import zlib

import numpy as np

from snncc import resources
from snncc.errors import SnnccError
from snncc.ir import Graph, freeze
from snncc.pass_context import PassContext
from snncc.passes.convert_plan import calibrated_values, plan
from snncc.sim.float_runtime import run_graph
from snncc.sim.parallel import Lagged

TAIL = 64  # exact largest |x| kept per channel: high percentiles without a huge sample
# Reservoir candidates per channel: a value with more elements per channel than
# SUBSAMPLE x reservoir over the whole data offers only every r-th position of each
# sample (a seeded offset per sample) to the reservoir; the result is still a uniform
# sample, at a fraction of the hashing and selection work.
SUBSAMPLE = 16
KEY_BLOCK = 1 << 16  # reservoir keys hashed per block (uint64 elements)
_MIX1, _MIX2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64, so distinct inputs get distinct keys."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _MIX1
        x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def _mix64_inplace(x: np.ndarray) -> np.ndarray:
    """mix64 of a uint64 array, overwriting it (the same values, without the temporaries)."""
    t = np.empty_like(x)
    with np.errstate(over="ignore"):
        for shift, mul in ((30, _MIX1), (27, _MIX2)):
            np.right_shift(x, np.uint64(shift), out=t)
            x ^= t
            x *= mul
        np.right_shift(x, np.uint64(31), out=t)
        x ^= t
    return x


class ChannelStats:
    """Streaming per-channel statistics of one value; memory O(C * (reservoir + TAIL)).

    Every element gets a random key that depends only on (seed, value, channel,
    sample index, position), and the reservoir keeps the ``reservoir`` smallest keys
    in arrival order; sums accumulate per sample in sample order.  So the statistics
    are identical for any split of the data into batches.
    """

    def __init__(self, shape: tuple[int, ...], reservoir: int, salt: int, samples: int):
        self.shape = tuple(shape)
        self.c = int(shape[0]) if shape else 1
        self.k = int(reservoir)
        self.per = int(np.prod(self.shape[1:], dtype=np.int64)) if len(self.shape) > 1 else 1
        self.stride = max(1, (int(samples) * self.per) // (SUBSAMPLE * self.k))
        self.salt = np.uint64(salt)
        self.count = 0
        self.seen = 0  # samples so far: the next sample's global index
        self.max = np.full(self.c, -np.inf)
        self.min = np.full(self.c, np.inf)
        self.sum = np.zeros(self.c)
        self.nonzero = np.zeros(self.c)
        self.sample = np.zeros((self.c, 0), np.float32)
        self.keys = np.zeros((self.c, 0), np.uint32)
        self.tail = np.zeros((self.c, 0), np.float32)

    def update(self, x: np.ndarray) -> None:
        b = int(x.shape[0])
        v = np.asarray(x, np.float32).reshape((b, self.c, -1))  # (B, C, P)
        if v.size == 0:
            return
        self.count += b * self.per
        low = v.min(axis=(0, 2))
        self.max = np.maximum(self.max, v.max(axis=(0, 2)))
        self.min = np.minimum(self.min, low)
        per_sample = v.sum(axis=2, dtype=np.float64)  # (B, C), then summed in sample order
        self.sum = np.concatenate([self.sum[None], per_sample]).cumsum(axis=0)[-1]
        self.nonzero += np.count_nonzero(v, axis=(0, 2))
        self._update_tail(v, negative=bool((low < 0).any()))
        self._update_reservoir(v)
        self.seen += b

    def _update_tail(self, v: np.ndarray, negative: bool = True) -> None:
        if self.tail.shape[1] == TAIL:  # full: only values above a channel's smallest kept |x| can enter
            self._merge_tail(v, negative)
            return
        a = np.abs(v)  # (B, C, P)
        if a.shape[2] > TAIL:
            a.partition(a.shape[2] - TAIL, axis=2)
            a = a[:, :, a.shape[2] - TAIL:]
        tail = np.concatenate([self.tail, np.moveaxis(a, 1, 0).reshape(self.c, -1)], axis=1)
        if tail.shape[1] > TAIL:
            tail = -np.partition(-tail, TAIL - 1, axis=1)[:, :TAIL]
        self.tail = -np.sort(-tail, axis=1)

    def _merge_tail(self, v: np.ndarray, negative: bool) -> None:
        """The TAIL largest |x| of the kept tail and the batch: the same values as sorting them all,
        from a compare per element (after the first batches, few values beat the kept ones).
        ``negative``: whether the batch holds negative values (a ReLU output does not)."""
        low = self.tail[:, -1][None, :, None]
        hit = v > low
        if negative:
            hit |= v < -low
        at = np.flatnonzero(hit)
        if at.size == 0:
            return
        vals = np.abs(v.reshape(-1)[at])  # C order: grouped by sample, then channel
        ch = (at // self.per) % self.c
        chans = np.concatenate([np.repeat(np.arange(self.c), TAIL), ch])
        allv = np.concatenate([self.tail.ravel(), vals])
        order = np.lexsort((-allv, chans))  # by channel, then descending
        chans = chans[order]
        rank = np.arange(len(order)) - np.searchsorted(chans, np.arange(self.c))[chans]
        self.tail = allv[order[rank < TAIL]].reshape(self.c, TAIL)

    def _update_reservoir(self, v: np.ndarray) -> None:
        b, r = v.shape[0], self.stride
        samples = np.arange(self.seen, self.seen + b, dtype=np.uint64)
        if r > 1:  # every r-th position from a seeded offset per sample
            offsets = (mix64(samples ^ self.salt) % np.uint64(r)).astype(np.int64)
            npos = (self.per - offsets + r - 1) // r
            pos = np.concatenate([o + r * np.arange(n) for o, n in zip(offsets, npos)])
            which = np.repeat(np.arange(b), npos)
        else:
            offsets = np.zeros(b, np.int64)
            pos = np.tile(np.arange(self.per), b)
            which = np.repeat(np.arange(b), self.per)
        keys = self._keys(samples[which] * np.uint64(self.per) + pos.astype(np.uint64))  # (C, M)
        if self.sample.shape[1] == self.k:
            self._merge_reservoir(v, keys, which, pos)
            return
        vals = np.concatenate([v[i, :, o::r] for i, o in enumerate(offsets)], axis=1)  # (C, M)
        sample = np.concatenate([self.sample, vals], axis=1)
        keys = np.concatenate([self.keys, keys], axis=1)
        if sample.shape[1] > self.k:
            # 32-bit keys (half the memory) may tie: order by (key, arrival), arrival being the
            # column, since the kept sample is in arrival order and the new batch comes after it
            order = (keys.astype(np.uint64) << np.uint64(32)) | np.arange(keys.shape[1], dtype=np.uint64)
            sample, keys = self._select(order, sample, keys)
        self.sample, self.keys = sample, keys

    def _keys(self, index: np.ndarray) -> np.ndarray:
        """(C, M) uint32 keys of the elements at global indices ``index`` (M,) in every channel."""
        chan = mix64(np.arange(self.c, dtype=np.uint64) + self.salt)
        keys = np.empty((self.c, index.size), np.uint32)
        with np.errstate(over="ignore"):
            index = index * _GOLDEN
            rows = max(1, KEY_BLOCK // max(index.size, 1))
            for c0 in range(0, self.c, rows):  # (rows, M) uint64 at a time: cache-sized, in place
                keys[c0:c0 + rows] = _mix64_inplace(np.add.outer(chan[c0:c0 + rows], index)) >> np.uint64(32)
        return keys

    def _select(self, order: np.ndarray, sample: np.ndarray, keys: np.ndarray):
        """The ``k`` columns of each row with the smallest ``order``, in column (arrival) order."""
        idx = np.argpartition(order, self.k - 1, axis=1)[:, :self.k]
        idx.sort(axis=1)  # keep the arrival order: deterministic and readable
        return np.take_along_axis(sample, idx, axis=1), np.take_along_axis(keys, idx, axis=1)

    def _merge_reservoir(self, v: np.ndarray, keys: np.ndarray, which: np.ndarray, pos: np.ndarray) -> None:
        """A full reservoir meets a batch: a candidate arrives after every kept entry, so it can
        only enter with a key below its row's largest kept key.  Those few are packed to the
        left of each row in arrival order (the padding sorts last), then selected as above."""
        rows, cols = np.nonzero(keys < self.keys.max(axis=1)[:, None])
        if rows.size == 0:
            return
        rank = np.arange(rows.size) - np.searchsorted(rows, np.arange(self.c))[rows]
        width = int(rank.max()) + 1
        new = np.full((self.c, width), np.iinfo(np.uint64).max, np.uint64)
        new[rows, rank] = (keys[rows, cols].astype(np.uint64) << np.uint64(32)) | (rank + self.k).astype(np.uint64)
        vals = np.zeros((self.c, width), np.float32)
        vals[rows, rank] = v[which[cols], rows, pos[cols]]
        old = (self.keys.astype(np.uint64) << np.uint64(32)) | np.arange(self.k, dtype=np.uint64)
        self.sample, self.keys = self._select(
            np.concatenate([old, new], axis=1), np.concatenate([self.sample, vals], axis=1),
            np.concatenate([self.keys, (new >> np.uint64(32)).astype(np.uint32)], axis=1))

    def result(self, kind: str) -> dict:
        """The statistics, read-only: every later graph copy shares them (``Graph.copy``)."""
        absmax = np.maximum(np.abs(self.max), np.abs(self.min))
        out = {
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
        return {k: freeze(v) if isinstance(v, np.ndarray) else v for k, v in out.items()}


def run(graph: Graph, ctx: PassContext) -> Graph:
    data = ctx.calib
    if data is None:
        raise SnnccError("option --calib is required: the calibrate pass needs input samples "
                         "(a .npy/.npz, or 'random' for structure tests only)")
    want = tuple(graph.values[graph.inputs[0]].shape)
    if tuple(data.input_shape) != want:
        raise SnnccError(f"option --calib: data has samples of shape {list(data.input_shape)}, "
                         f"but the model input is {list(want)}")
    graph = graph.copy()
    graph.stats.update(collect_stats(graph, ctx, data, calibrated_values(graph)))
    graph.meta["calibration"] = {"samples": int(data.n), "source": str(data.source)}
    return graph


def collect_stats(graph: Graph, ctx: PassContext, data, names: list[str]) -> dict:
    """Statistics of the values ``names`` of ``graph`` over ``data`` (``prune`` re-runs this
    for the values whose inputs it changed); notes go to ``ctx``."""
    options = ctx.options
    kinds = _kinds(graph)
    seed = int(options.seed)
    reservoir = resources.reservoir_size(graph, names, options)
    if reservoir < int(options.calib_reservoir):
        ctx.note(
            f"calibrate: reservoir sample of {reservoir} per channel, not {options.calib_reservoir}: "
            f"{sum(_channels(graph, v) for v in names)} channels must fit --max-memory {options.max_memory}")
    salts = {v: int(mix64(np.uint64(zlib.crc32(v.encode()) + ((seed & 0xFFFFFFFF) << 32)))) for v in names}
    acc = {v: ChannelStats(graph.values[v].shape, reservoir, salts[v], data.n) for v in names}

    batch = resources.batch_size(graph, options, itemsize=4,  # float32 activations, next to the statistics
                                 reserved=resources.STATS_BYTES * reservoir * sum(_channels(graph, v) for v in names))
    # the statistics of one value are taken in the worker thread while the forward pass goes on
    # (one value behind, in order: the same updates as in a single thread)
    with Lagged(lag=1) as stats:
        def on_value(name: str, arr: np.ndarray) -> None:
            if name in acc:
                stats.submit(acc[name].update, arr)

        for xb, _ in data.batches(batch, progress="calibrate"):
            run_graph(graph, xb, on_value=on_value)
        stats.drain()
    return {v: acc[v].result(kinds.get(v, "add")) for v in names}


def _channels(graph: Graph, value: str) -> int:
    shape = graph.values[value].shape
    return int(shape[0]) if shape else 1


def _kinds(graph: Graph) -> dict[str, str]:
    kinds = {v: "input" for v in graph.inputs}
    kinds.update({n.output: "add" for n in graph.nodes if n.op == "add"})
    kinds.update({n.output: "relu" for n in graph.nodes if n.op == "relu"})
    try:
        kinds.update({v: "signed" for v in plan(graph).signed_sites})
    except SnnccError:
        pass
    return kinds
