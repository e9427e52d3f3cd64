"""The twin test: the fine-tuning module (snncc/finetune/twin.py) computes the integer SNN exactly.

At every neuron and every timestep its levels, and its output accumulators, equal the
integer runtime's bit for bit: on the zoo (residual joins, barriers, SEW level adds,
signed neurons, affines on currents, concat, T up to 4, a membrane shift, 2-bit weights),
on the digits example with real data, on random int8 inputs and the extremes.  And
after the parameters move (a few training steps, or random moves of every latent,
ReScaW's gamma included), the exported IR (``Twin.to_graph``) still computes what the
twin computes: export is the twin's forward, not an approximation of it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from c_graphs import sample_inputs
from test_c_zoo import FAST, compile_int

from snncc.finetune.train import Schedule, fit
from snncc.finetune.twin import Twin
from snncc.sim.int_runtime import quantize_input, run_int

CASES = [
    ("lenet", {"levels": 4, "timesteps": 1}),
    ("sew_resnet", {"levels": 2, "timesteps": 2, "weight_bits": 4, "residual": "sew"}),
    ("sew_resnet", {"levels": 1, "timesteps": 3, "membrane_shift": 2, "membrane_bits": 12}),
    ("mobilenetv2_block", {"levels": 3, "timesteps": 2}),
    ("concat_net", {"levels": 1, "timesteps": 4, "weight_bits": 2}),
    ("preact_resnet", {"levels": 2, "timesteps": 2, "weight_bits": 4}),
]
QUICK = {**FAST, "weight_rounding": "nearest", "step_search": False}  # exactness needs no data-aware rounding


@pytest.fixture(autouse=True)
def one_thread():
    """The twin's ops are small: on the shared 2-core machine, more torch threads mostly wait."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_twin_exact(twin: Twin, graph, x_q: np.ndarray) -> None:
    """Levels of every neuron at every timestep and the output accumulator, bit for bit."""
    with torch.no_grad():
        _, levels, acc = twin(torch.as_tensor(x_q), record=True)
    neurons = [n for n in graph.nodes if n.op == "neuron"]
    T = int(graph.meta["timesteps"])
    for t in range(T):
        ref = run_int(graph, x_q, capture=[n.output for n in neurons], timesteps=t + 1)
        for n in neurons:
            got = levels[n.name][t].numpy()
            bad = int((got != ref[n.output]).sum())
            assert bad == 0, f"{n.name} at t={t + 1}: {bad} of {got.size} levels differ"
    out = run_int(graph, x_q)[graph.outputs[0]]
    np.testing.assert_array_equal(acc.numpy(), out)


def _move_every_latent(twin: Twin, seed: int) -> None:
    """Random moves of every trained parameter (0.3 x its unit: many integer steps), gamma included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, p in twin.delta.items():
            scale = 0.2 if key.endswith("log_gamma") else 0.3
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


@pytest.mark.parametrize("name,opts", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_twin_equals_integer_runtime_on_the_zoo(zoo_onnx, name, opts):
    shape = zoo_onnx.input_shape(name)
    calib = np.random.default_rng(0).standard_normal((16,) + shape).astype(np.float32)
    graph = compile_int(zoo_onnx(name), calib, **QUICK, **opts)
    x = sample_inputs(shape, n=6)
    twin = Twin(graph, learn_gamma=True)
    assert_twin_exact(twin, graph, x)
    _move_every_latent(twin, seed=len(name))
    tuned = twin.to_graph()
    assert any((a.params["weight"] != b.params["weight"]).any() for a, b in zip(graph.nodes, tuned.nodes)
               if "weight" in a.params), "the moves changed no integer weight"
    assert_twin_exact(twin, tuned, x)


@pytest.mark.parametrize("opts", [{"levels": 2, "timesteps": 1}, {"levels": 1, "timesteps": 3, "weight_bits": 2,
                                                                   "weight_quantizer": "rescaw"}])
def test_twin_after_training_steps_exports_what_it_computes(digits_example, opts):
    """The committed digits CNN on real data: exact before, and after two epochs on 64 samples."""
    data = np.load(digits_example.calib_path)
    x, y = data["x"][:64], data["y"][:64]
    graph = compile_int(digits_example.onnx_path, x[:32], **QUICK, **opts)
    x_q = quantize_input(graph, x)
    twin = Twin(graph, learn_gamma=opts.get("weight_quantizer") == "rescaw")
    assert_twin_exact(twin, graph, np.concatenate([x_q, sample_inputs(x_q.shape[1:], n=4)]))
    fit(twin, x_q, y, Schedule(epochs=2, lr=2e-2, batch=16), echo=lambda s: None)
    tuned = twin.to_graph()
    assert any((a.params["theta"] != b.params["theta"]).any() for a, b in zip(graph.nodes, tuned.nodes)
               if a.op == "neuron"), "training moved no threshold"
    assert_twin_exact(twin, tuned, x_q)
