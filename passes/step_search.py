"""Data-aware search of the per-channel current step S, before the weights are rounded.

The weight quantizer picks S from the weights alone (max|W| / qmax, or an MSE clip).
Any coarser step also keeps every integer weight within qmax, and some coarser steps
put the weights of a channel closer to the integer grid.  The gain is largest where
the fan-in is small: on the digits CNN at 8 bits the summed current error
E[(W x - W_q S x)^2] drops 2.4x in the first conv (fan-in 9), 1.15x and 1.07x in the
next convs (fan-in 144, 288) and 1.8x in the dense head (fan-in 32).  That error is
what flips a neuron's spike level, and a flipped level early in the network perturbs
every layer after it, so the first layers matter most.

For every scale class whose members are all conv/dense layers with a calibration
second moment H, this tries S * f for f on a grid in [1, MAX_FACTOR], rounds the
weights as the quantize pass will (GPTQ, per output channel independently), and
keeps per channel the f with the least summed error e^T H e over the class's
members.  Only coarsening is tried, so the weight range, the membrane fit (which
needs S large enough) and the numeric contract are unchanged.  Rows of GPTQ are
independent, so all candidates of a layer are rounded in one call on a stacked
weight matrix.
"""

from __future__ import annotations

import numpy as np

from snncc.passes import weight_rounding

MAX_FACTOR = 1.5
MAX_CANDIDATES = 128
MIN_CANDIDATES = 8
# Multiply-adds of all GPTQ calls of one search (candidates x sum of out * fan-in^2).
BUDGET = 4e9
# Candidates scored at once: as many as fit TILE_BYTES of tiled float64 rows (at least one).  The
# rows are independent under GPTQ, so the errors do not depend on the split; tiling every
# candidate of a 1024 x 1024 dense at once took 256 MiB, past a 320M --max-memory.
TILE_BYTES = 8 << 20


def factors(cost: float) -> np.ndarray:
    """The grid of step factors (1 first), as many as the budget allows."""
    n = int(np.clip(BUDGET / max(cost, 1.0), MIN_CANDIDATES, MAX_CANDIDATES))
    return np.linspace(1.0, MAX_FACTOR, n)


def channel_errors(w: np.ndarray, S: np.ndarray, qmax: int, H: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(len(grid), O) error e^T H e of each output channel at step S * f, GPTQ-rounded."""
    rows = np.asarray(w, dtype=np.float64).reshape(w.shape[0], -1)
    o = rows.shape[0]
    per = max(1, TILE_BYTES // max(rows.nbytes, 1))
    out = []
    for i in range(0, len(grid), per):
        part = grid[i:i + per]
        steps = (part[:, None] * S[None, :]).ravel()  # candidate-major, like the tiled rows
        tiled = np.tile(rows, (len(part), 1))
        q = weight_rounding.gptq(tiled, steps, qmax, H).astype(np.float64)
        err = tiled - q * steps[:, None]
        out.append(((err @ H) * err).sum(axis=1).reshape(len(part), o))
    return np.concatenate(out)


def search(members: dict[str, tuple[np.ndarray, np.ndarray, int]], hs: dict[str, np.ndarray],
           S: np.ndarray, frozen: np.ndarray | None = None,
           sizes: dict[str, tuple[int, int]] | None = None) -> tuple[np.ndarray, int]:
    """Refined class steps and the number of classes whose step changed.

    ``members`` maps a conv/dense node name to (real weights as the integer layer
    sees them, class root per output channel, qmax); ``S`` is the step per class
    root.  A class is searched only if every one of its members has an H in ``hs``
    and it is not ``frozen`` (a step derived from another class's).  ``sizes`` (node ->
    (outputs, fan-in) before pruning) sizes the candidate grid, so that removing channels
    that never fire leaves the search unchanged.
    """
    searchable = np.ones(S.size, dtype=bool) if frozen is None else ~np.asarray(frozen, dtype=bool)
    touched = np.zeros(S.size, dtype=bool)
    for name, (_w, roots, _q) in members.items():
        touched[roots] = True
        if name not in hs:
            searchable[roots] = False
    searchable &= touched
    todo = {n: m for n, m in members.items() if searchable[m[1]].any()}
    if not todo:
        return S, 0
    shape = {n: (sizes or {}).get(n) or (m[0].shape[0], int(np.prod(m[0].shape[1:]))) for n, m in todo.items()}
    cost = sum(o * float(f) ** 2 for o, f in shape.values())
    grid = factors(cost)
    total = np.zeros((len(grid), S.size))
    for name, (w, roots, q) in sorted(todo.items()):
        err = channel_errors(w, S[roots], q, hs[name], grid)
        np.add.at(total.T, roots, err.T)  # members of one class add up
    best = np.argmin(total, axis=0)  # ties keep the smaller factor (argmin takes the first)
    out = S.copy()
    out[searchable] = S[searchable] * grid[best[searchable]]
    return out, int((searchable & (best > 0)).sum())
