"""Data-aware rounding of integer weights and the calibration inputs it needs.

Nearest rounding makes each weight's error small, but the errors of one output add
up over the fan-in.  GPTQ (Frantar et al., ICLR 2023; the OBQ update of Hassibi &
Stork) rounds the weights of each output channel one input at a time and spreads
the rounding error onto the not-yet-rounded weights, in proportion to the inputs'
second moments H = E[x x^T] on calibration data, so that the *current*
W_q * s stays close to W * s.  The step S per channel is fixed beforehand (joint
current scales), so the integer range and the numeric contract do not change.

``collect`` runs the float SNN once over calibration data and gathers, for every
synaptic op, the mean of its input (for bias correction) and H (for GPTQ).
"""

from __future__ import annotations

import numpy as np

from snncc.ir import Graph, Node
from snncc.sim import kernels as K

SAMPLES = 256  # calibration samples
BATCH = 64
# Input windows per batch used for H: all of them up to a budget of ~2^27 multiply-adds
# for X^T X (seeded subsample beyond it, never below 1024).
H_BUDGET = 1 << 27
MIN_COLUMNS = 1024
DAMP = 0.01  # GPTQ damping, relative to mean(diag H)
GPTQ_BLOCK = 64  # columns per lazy-update block


# H is fan-in x fan-in float64 and GPTQ inverts it (fan-in^3 time, several copies live):
# a dense layer after a wide flatten (fan-in 50176 for 64 x 28 x 28) would need 20 GB
# per copy, whatever the model's weight count.  Wider layers keep nearest rounding.
GPTQ_MAX_FAN_IN = 4608  # 512 x 3 x 3, the widest conv of a ResNet-50: H is 170 MB


def fan_in(node: Node) -> int:
    return int(np.prod(node.params["weight"].shape[1:]))


def gptq_kind(node: Node) -> bool:
    """Ops GPTQ rounds: dense and ungrouped conv."""
    return node.op == "dense" or (node.op == "conv" and int(node.attrs["group"]) == 1)


def gptq_applies(node: Node) -> bool:
    return gptq_kind(node) and fan_in(node) <= GPTQ_MAX_FAN_IN


def collect(g: Graph, nodes: list[Node], x_quant, data, *, want_h: bool, centred: bool = True,
            seed: int = 0, batch: int = BATCH, live: dict | None = None, samples: int = SAMPLES):
    """Mean input (1, *shape) per input value, and H (fan-in x fan-in) per GPTQ node name.

    ``live``, when given, receives per input value a bool per channel (axis 0): whether
    the channel is ever non-zero on the samples (dead inputs set no weight step).

    H is the second moment of the input windows, centred if ``centred``.

    ``x_quant`` maps real inputs to what the integer network sees (x_q * s_x), so the
    input layer's statistics are those of the rounded input.  ``batch`` (at most
    BATCH) is what fits the memory budget; ``samples`` (at most SAMPLES) how many
    calibration samples are used (``resources.sample_budget``).
    """
    from snncc.sim.snn_sim import simulate

    prod = g.producers()
    values = sorted({n.inputs[0] for n in nodes})
    capture = sorted({prod[v].name for v in values if v in prod})
    T = int(g.meta.get("timesteps", 1))
    rng = np.random.default_rng(seed)
    sums: dict[str, np.ndarray] = {}
    sum_q: np.ndarray | None = None
    hs: dict[str, np.ndarray] = {}
    seen: dict[str, np.ndarray] = {}
    count = 0
    batch = max(1, min(int(batch), BATCH))

    def inputs(xb, res):
        return {v: xb if v in g.inputs else res.captured[prod[v].name] / T for v in values}

    for xb, _ in data.batches(batch, limit=min(int(samples), SAMPLES)):
        xb = np.asarray(xb, dtype=np.float64)
        env = inputs(xb, simulate(g, xb, capture=capture, batch_size=batch))
        xq = x_quant(xb)
        for v in values:
            sums[v] = sums.get(v, 0.0) + env[v].sum(axis=0)
            hit = np.abs(env[v]).reshape(len(xb), env[v].shape[1], -1).max(axis=(0, 2)) > 0
            seen[v] = hit if v not in seen else seen[v] | hit
        sum_q = xq.sum(axis=0) if sum_q is None else sum_q + xq.sum(axis=0)
        count += len(xb)
    if live is not None:
        live.update(seen)
    # H in a second run: its window sample is sized by the fan-in of the *live* input
    # channels, so that removing a channel that is always zero leaves H's sample unchanged.
    gptq_nodes = [n for n in nodes if gptq_applies(n)] if want_h else []
    for xb, _ in (data.batches(batch, limit=min(int(samples), SAMPLES)) if gptq_nodes else ()):
        xb = np.asarray(xb, dtype=np.float64)
        env = inputs(xb, simulate(g, xb, capture=capture, batch_size=batch))
        xq = x_quant(xb)
        for node in gptq_nodes:
            v = node.inputs[0]
            live_fan = int(seen[v].sum()) * (fan_in(node) // len(seen[v]))
            cols = _columns(node, xq if v in g.inputs else env[v], rng, max(live_fan, 1))
            acc = hs.setdefault(node.name, [0.0, 0.0, 0])
            acc[0] = acc[0] + cols.T @ cols
            acc[1] = acc[1] + cols.sum(axis=0)
            acc[2] += len(cols)
    means = {v: (sums[v] / max(count, 1))[None] for v in values}
    mean_xq = None if sum_q is None else (sum_q / max(count, 1))[None]
    hess = {}
    for name, (sxx, sx, n) in hs.items():
        mu = sx / max(n, 1)
        # Centred when bias correction follows: it removes the mean error exactly, so
        # rounding should spend its freedom on the varying part of the current.
        hess[name] = sxx / max(n, 1) - (np.outer(mu, mu) if centred else 0.0)
    return means, mean_xq, hess


def _columns(node: Node, x: np.ndarray, rng, live_fan_in: int) -> np.ndarray:
    """(windows, fan-in) matrix of the op's input windows, subsampled to a budget set by the
    fan-in of the live input channels."""
    if node.op == "dense":
        cols = x.reshape(len(x), -1)
    else:
        a = node.attrs
        kh, kw = node.params["weight"].shape[2:]
        win = K._windows(K.pad_nchw(x, a["pads"]), (kh, kw), a["strides"], a["dilations"])  # N,C,OH,OW,KH,KW
        cols = np.moveaxis(win, 1, 3).reshape(-1, x.shape[1] * kh * kw)  # (N*OH*OW, C*KH*KW)
    keep = max(MIN_COLUMNS, H_BUDGET // max(live_fan_in, 1) ** 2)
    if len(cols) > keep:
        cols = cols[np.sort(rng.choice(len(cols), keep, replace=False))]
    return np.ascontiguousarray(cols, dtype=np.float64)


def gptq(w: np.ndarray, S: np.ndarray, qmax: int, H: np.ndarray) -> np.ndarray:
    """Integer weights (int64, shape of ``w``) at per-channel step ``S``, GPTQ-rounded."""
    shape = w.shape
    W = np.asarray(w, dtype=np.float64).reshape(shape[0], -1).copy()
    k = W.shape[1]
    H = np.array(H, dtype=np.float64)
    dead = np.diag(H) <= 0
    if dead.any():
        # Inputs that are zero on every sample are decoupled: round them to nearest and the
        # others by GPTQ on their own, so a channel that is always zero (or pruned) changes nothing.
        Q = np.clip(np.rint(W / S[:, None]), -qmax, qmax).astype(np.int64)
        if not dead.all():
            Q[:, ~dead] = gptq(W[:, ~dead], S, qmax, H[np.ix_(~dead, ~dead)]).reshape(shape[0], -1)
        return Q.reshape(shape)
    H += np.eye(k) * DAMP * float(np.mean(np.diag(H)))
    try:
        U = np.linalg.cholesky(np.linalg.inv(H)).T  # upper: H^-1 = U^T U
    except np.linalg.LinAlgError:
        return np.clip(np.rint(W / S[:, None]), -qmax, qmax).astype(np.int64).reshape(shape)
    Q = np.zeros_like(W)
    s = S[:, None]
    # Lazy batch updates (GPTQ section 4): within a block of columns the error goes
    # column by column; the rest of the row gets the whole block's error in one matmul.
    for i0 in range(0, k, GPTQ_BLOCK):
        i1 = min(i0 + GPTQ_BLOCK, k)
        block = W[:, i0:i1]  # a view: updated in place
        errs = np.zeros_like(block)
        for j in range(i1 - i0):  # one input at a time; all output channels at once
            q = np.clip(np.rint(block[:, j:j + 1] / s), -qmax, qmax)
            Q[:, i0 + j:i0 + j + 1] = q
            err = (block[:, j:j + 1] - q * s) / U[i0 + j, i0 + j]
            block[:, j + 1:] -= err * U[i0 + j:i0 + j + 1, i0 + j + 1:i1]
            errs[:, j:j + 1] = err
        W[:, i1:] -= errs @ U[i0:i1, i1:]
    return Q.astype(np.int64).reshape(shape)
