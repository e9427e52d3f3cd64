"""Model size of the integer SNN: the "memory" section of report.json.

Sizes are in bits at the width each number needs, which is what a packed firmware
table or an FPGA memory stores:

- weights: ``bits`` per conv/dense weight (the quantized width, 2..8);
- biases, identity-shortcut weights and shifts: the two's-complement width of the
  largest magnitude in the layer;
- thresholds: the unsigned width of the largest theta_q in the layer (v_init is
  theta // 2 and need not be stored);
- membrane state: (B - k) bits per neuron (B = membrane_bits, k = membrane_shift),
  one state per neuron position.

``fp32_weight_bytes`` counts every parameter of the float ANN at 4 bytes;
``compression`` = its size in bits over the integer parameter bits (weights, biases,
thresholds, shortcut weights); ``weight_compression`` compares conv/dense weights
only.
"""

from __future__ import annotations

import numpy as np

from snncc import ops
from snncc.ir import Graph


def signed_bits(a) -> int:
    """Two's-complement width holding every value of ``a`` (1 for all zeros)."""
    a = np.asarray(a, dtype=np.int64)
    if a.size == 0:
        return 0
    lo, hi = int(a.min()), int(a.max())
    return max(1, max(hi, -lo - 1, 0).bit_length() + 1)


def unsigned_bits(a) -> int:
    a = np.asarray(a, dtype=np.int64)
    return max(1, int(a.max()).bit_length()) if a.size else 0


def memory_report(graph_int: Graph, graph_float: Graph) -> dict:
    """The "memory" dict: totals in bits, fp32 baseline, compression, per-layer list."""
    layers = []
    tot = {"weight_bits": 0, "bias_bits": 0, "threshold_bits": 0, "state_bits": 0, "shortcut_bits": 0}
    for node in graph_int.nodes:
        p, a = node.params, node.attrs
        row = {"name": node.name, "op": node.op}
        if node.op in ops.WEIGHTED:
            w, b = p["weight"], p["bias"]
            row.update(bits=int(a["bits"]), weights=int(w.size), weight_bits=int(w.size) * int(a["bits"]),
                       bias_width=signed_bits(b), bias_bits=int(b.size) * signed_bits(b))
        elif node.op == "affine":
            s, sh = p["scale"], p["shift"]
            width = signed_bits(s)
            row.update(bits=width, weights=int(s.size),
                       shortcut_bits=int(s.size) * width + (int(sh.size) * signed_bits(sh) if np.any(sh) else 0))
        elif node.op == "neuron":
            th = p["theta"]
            width = unsigned_bits(th)
            neurons = int(np.prod(graph_int.shape(node.output)))
            state_width = int(a["membrane_bits"]) - int(a.get("membrane_shift", 0))
            row.update(threshold_width=width, threshold_bits=int(th.size) * width, neurons=neurons,
                       membrane_bits=int(a["membrane_bits"]), membrane_shift=int(a.get("membrane_shift", 0)),
                       state_bits=neurons * state_width)
        else:
            continue
        for key in tot:
            tot[key] += row.get(key, 0)
        row["total_bits"] = sum(row.get(k, 0) for k in ("weight_bits", "bias_bits", "threshold_bits",
                                                        "shortcut_bits"))
        layers.append(row)
    param_bits = tot["weight_bits"] + tot["bias_bits"] + tot["threshold_bits"] + tot["shortcut_bits"]
    fp32_params = sum(int(np.asarray(v).size) for n in graph_float.nodes for v in n.params.values())
    fp32_weights = sum(int(np.asarray(n.params["weight"]).size) for n in graph_float.nodes
                       if n.op in ops.WEIGHTED and "weight" in n.params)
    return {
        **tot,
        "param_bits": param_bits,
        "param_bytes": (param_bits + 7) // 8,
        "fp32_weight_bytes": 4 * fp32_params,
        "compression": (32.0 * fp32_params / param_bits) if param_bits else 0.0,
        "weight_compression": (32.0 * fp32_weights / tot["weight_bits"]) if tot["weight_bits"] else 0.0,
        "layers": layers,
    }
