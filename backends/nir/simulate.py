"""A reference reader of snncc's NIR files: ``nir.read`` them back and run them per the
NIR 1.0 definitions (IF: ``v += r*I``, fire on ``v > v_threshold``, subtract it;
Threshold: ``I > threshold``; a node sums its incoming edges), in float64.

An IF fires up to ``snncc.levels`` spikes per step (the multi-spike reading, what
Sinabs does, capped at N as snncc is) and starts from ``snncc.v_init`` unless that is
folded into the bias: the metadata this reader honours is what a consumer must honour to
reproduce snncc exactly (docs/interop.md).

``reading="sinabs"`` reads the IF nodes the way ``sinabs.from_nir`` builds them instead
(``IAFSqueeze``: ``floor(v / thr)`` spikes for v > 0 with no cap, membrane clamped below at
``-thr``, starting from 0; float32, as torch computes it), which tells in advance, bit
for bit, what Sinabs gives and so where and why it departs from snncc.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snncc.sim import kernels as K


def _order(graph) -> list[str]:
    preds: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        preds[dst].append(src)
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for p in preds[name]:
            visit(p)
        done.append(name)

    for name in sorted(graph.nodes):
        visit(name)
    return done


def _pair(x) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(x)).astype(int)
    return (int(a[0]), int(a[-1]))


def _meta(node, key, default=None):
    value = (node.metadata or {}).get(key, default)
    return value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value


READINGS = ("snncc", "sinabs")


def run_nir(path: Path, x_q: np.ndarray, timesteps: int | None = None, *, reading: str = "snncc",
            record: bool = False) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run ``path`` on int8 inputs (N, *shape) for T steps (default the file's).

    Returns each Output's sum over time, and with ``record`` the spike count of each
    neuron population summed over time (an IF node, or the N Threshold nodes of one level
    expansion, keyed by the first).
    """
    import nir

    graph = nir.read(str(path))
    T = int(timesteps or _meta(graph, "snncc.timesteps", 1))
    preds: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        preds[dst].append(src)
    order = _order(graph)
    if reading not in READINGS:
        raise ValueError(f"reading must be one of {READINGS}, got {reading!r}")
    x = np.asarray(x_q, np.float64)
    state: dict[str, np.ndarray] = {}
    outs: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    population: dict[tuple, str] = {}
    for _ in range(T):
        env: dict[str, np.ndarray] = {}
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                env[name] = x
                continue
            inp = sum(env[p] for p in preds[name])
            env[name] = y = _eval(name, node, inp, state, reading)
            if isinstance(node, nir.Output):
                outs[name] = outs.get(name, 0) + y
            elif record and isinstance(node, (nir.IF, nir.Threshold)):
                key = population.setdefault(tuple(preds[name]), name)  # a level's Thresholds share inputs
                counts[key] = counts.get(key, 0) + y
    return outs, counts


def _eval(name: str, node, x: np.ndarray, state: dict, reading: str) -> np.ndarray:
    import nir

    if isinstance(node, nir.Output):
        return x
    if isinstance(node, nir.Affine):
        return K.dense(x, np.asarray(node.weight, np.float64), np.asarray(node.bias, np.float64))
    if isinstance(node, nir.Conv2d):
        ph, pw = _pair(node.padding)
        return K.conv2d(x, np.asarray(node.weight, np.float64), np.asarray(node.bias, np.float64),
                        _pair(node.stride), (ph, pw, ph, pw), _pair(node.dilation), int(node.groups))
    if isinstance(node, nir.SumPool2d):
        ph, pw = _pair(node.padding)
        return K.sumpool(x, _pair(node.kernel_size), _pair(node.stride), (ph, pw, ph, pw))
    if isinstance(node, nir.Flatten):
        return x.reshape(len(x), -1)
    if isinstance(node, nir.Threshold):
        return (x > np.asarray(node.threshold, np.float64)).astype(np.float64)
    if isinstance(node, nir.IF) and reading == "sinabs":
        return _sinabs_if(name, node, x, state)
    if isinstance(node, nir.IF):
        thr = np.asarray(node.v_threshold, np.float64)
        v = state.get(name)
        if v is None:
            v0 = np.asarray(_meta(node, "snncc.v_init", 0), np.float64)
            folded = bool(_meta(node, "snncc.v_init_folded_into_bias", 1))
            v = np.zeros_like(x) if folded else np.zeros_like(x) + v0.reshape((-1,) + (1,) * (x.ndim - 2))
        v = v + np.asarray(node.r, np.float64) * x
        n = int(_meta(node, "snncc.levels", 1))
        # fire while v > thr, at most n times: z = clamp(ceil(v/thr) - 1, 0, n)
        z = np.clip(np.ceil(v / thr) - 1, 0, n)
        state[name] = v - z * thr
        return z
    raise ValueError(f"NIR node {name} ({type(node).__name__}) is not one snncc writes")


def _sinabs_if(name: str, node, x: np.ndarray, state: dict) -> np.ndarray:
    """Sinabs's IAFSqueeze as from_nir builds it, in float32 like torch (the currents are
    integers, exact in float32, so only the neuron's own float32 steps matter)."""
    thr = np.asarray(node.v_threshold, np.float32)
    v = state.get(name, np.zeros(x.shape, np.float32)) + x.astype(np.float32)
    z = np.where(v > 0, np.trunc(v / thr), np.float32(0)).astype(np.float32)
    v = v - z * thr
    state[name] = np.maximum(v, -thr)
    return z.astype(np.float64)
