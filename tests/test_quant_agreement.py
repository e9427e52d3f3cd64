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

from snncc.compiler import build_snn
from snncc.options import CompileOptions
from snncc.sim.int_runtime import (
    dequantize_output,
    level_agreement,
    pooled_agreement,
    quantize_input,
    run_int,
)
from snncc.sim.snn_sim import simulate

TRAINED = ["resnet8", "concat_net", "mobilenetv2_block", "sew_resnet", "preact_resnet"]


@pytest.mark.parametrize("name", TRAINED)
def test_trained_zoo_level_agreement(digits_zoo, name):
    d = digits_zoo(name)
    res = build_snn(d.onnx_path, CompileOptions(), d.x_calib, echo=lambda _m: None)
    gi = res.int_graph
    assert gi.stage == "int" and all(n.attrs["membrane_bits"] == 16 for n in gi.nodes if n.op == "neuron")
    agree = level_agreement(gi, res.snn_graph, d.x_test)
    iso, e2e = pooled_agreement(agree, "isolated"), pooled_agreement(agree, "end_to_end")
    print(f"MEASURE {name}: isolated {iso:.4f} (worst layer {min(v['isolated'] for v in agree.values()):.4f}), "
          f"end to end {e2e:.4f}")
    # Training seeds 0-3 (SNNCC_TEST_SEED; on an AVX-512 AMD EPYC) measured pooled
    # 0.9968-0.9980 and worst layer 0.9786 (sew_resnet, seed 0) to 0.9975: the worst layer
    # moves with the training run, so its bound keeps a margin below the lowest seen.
    assert iso >= 0.99, agree
    assert min(v["isolated"] for v in agree.values()) >= 0.96, agree


def test_trained_preact_resnet_accuracy_at_4_bits(digits_zoo):
    """The pre-activation stream at 4-bit weights: the stem (int8 input) and the conv
    branches (levels) join one current, so this needs the integer branch rescale
    (passes/current_affine.py): with one shared step the stem kept about two integer
    weight values and the integer SNN fell to chance."""
    d = digits_zoo("preact_resnet")
    res = build_snn(d.onnx_path, CompileOptions(weight_bits=4), d.x_calib, echo=lambda _m: None)
    gi = res.int_graph
    float_acc = float((simulate(res.snn_graph, d.x_test).logits.argmax(1) == d.y_test).mean())
    logits = dequantize_output(gi, run_int(gi, quantize_input(gi, d.x_test))[gi.outputs[0]])
    int_acc = float((logits.argmax(1) == d.y_test).mean())
    print(f"MEASURE preact_resnet 4-bit: float SNN {float_acc:.4f}, integer SNN {int_acc:.4f}, "
          f"ANN {d.ann_test_accuracy:.4f}")
    assert int_acc >= float_acc - 0.05  # seeds 1-3: 0.6-2.0 points below the float SNN
    assert any(n.attrs.get("rescale") for n in gi.nodes if n.op == "affine")
