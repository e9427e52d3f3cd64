"""Memory report of the integer SNN (snncc/memory_report.py)."""

import numpy as np
import pytest
from quant_graphs import tiny_snn

from snncc.memory_report import memory_report, signed_bits, unsigned_bits
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.passes import quantize


@pytest.mark.parametrize("values,bits", [([0], 1), ([-1, 0], 1), ([1], 2), ([127, -127], 8), ([-128], 8),
                                         ([128], 9), ([-129], 9)])
def test_signed_bits(values, bits):
    assert signed_bits(np.array(values)) == bits


def test_unsigned_bits():
    assert unsigned_bits(np.array([1, 255])) == 8 and unsigned_bits(np.array([256])) == 9


def test_report_counts():
    g = tiny_snn()
    opts = CompileOptions(weight_bits=4, layer_bits={"first": 8}, membrane_bits=12, membrane_shift=2)
    gi = quantize.run(g, PassContext(opts))
    m = memory_report(gi, g)
    layers = {row["name"]: row for row in m["layers"]}
    assert layers["conv1"]["weight_bits"] == 36 * 8 and layers["conv1"]["bits"] == 8
    assert layers["conv2"]["weight_bits"] == 144 * 4 and layers["fc"]["weight_bits"] == 192 * 4
    assert m["weight_bits"] == 36 * 8 + 144 * 4 + 192 * 4
    assert layers["n1"]["state_bits"] == 256 * 10 and m["state_bits"] == 2 * 256 * 10
    th = gi.node("n2").params["theta"]
    assert layers["n2"]["threshold_bits"] == 4 * int(th.max()).bit_length()
    b = gi.node("fc").params["bias"]
    assert layers["fc"]["bias_bits"] == 3 * signed_bits(b)
    n_float = sum(v.size for n in g.nodes for v in n.params.values())
    assert m["fp32_weight_bytes"] == 4 * n_float
    assert m["param_bits"] == m["weight_bits"] + m["bias_bits"] + m["threshold_bits"] + m["shortcut_bits"]
    assert m["compression"] == pytest.approx(32 * n_float / m["param_bits"])
    assert m["weight_compression"] == pytest.approx(32 * (36 + 144 + 192) / m["weight_bits"])
    m8 = memory_report(quantize.run(g, PassContext(CompileOptions(weight_bits=8))), g)
    assert m8["compression"] < m["compression"]
