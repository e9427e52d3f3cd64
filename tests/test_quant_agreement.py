"""Integer SNN against float SNN on real data: the zoo architectures trained on digits.

Acceptance of the quantize pass at 8-bit weights and 16-bit membrane (compile
defaults, T=1, N=4): every integer neuron layer, fed the float SNN's levels from the
layer before, gives the same spike level in >= 99% of positions, pooled over the
network.  The end-to-end figure (both networks on their own) is printed, not
asserted: a flipped level perturbs every later layer, and bench/level_agreement.py
shows that even the float SNN with only its weights on an 8-bit grid agrees end to
end on 86-98% of positions on these models.
"""

import pytest

from snncc.backends.python.int_runtime import level_agreement, pooled_agreement
from snncc.compiler import build_snn
from snncc.options import CompileOptions

TRAINED = ["resnet8", "concat_net", "mobilenetv2_block", "sew_resnet"]


@pytest.mark.parametrize("name", TRAINED)
def test_trained_zoo_level_agreement(digits_zoo, name):
    d = digits_zoo(name)
    res = build_snn(d.onnx_path, CompileOptions(), d.x_calib, echo=lambda _m: None)
    gi = res.int_graph
    assert gi.stage == "int" and all(n.attrs["membrane_bits"] == 16 for n in gi.nodes if n.op == "neuron")
    agree = level_agreement(gi, res.snn_graph, d.x_test)
    iso, e2e = pooled_agreement(agree, "isolated"), pooled_agreement(agree, "end_to_end")
    print(f"{name}: isolated {iso:.4f} (worst layer {min(v['isolated'] for v in agree.values()):.4f}), "
          f"end to end {e2e:.4f}")
    assert iso >= 0.99, agree
    assert min(v["isolated"] for v in agree.values()) >= 0.985, agree
