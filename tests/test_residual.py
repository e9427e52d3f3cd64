"""The residual pass: join detection and classification, Sparse-ResNet barriers, signed
barriers on linear joins, the activity analysis, and the acceptance checks on three
residual nets trained on digits (tests/residual_models.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import networkx as nx
import numpy as np
import pytest
import residual_models
from conftest import TRAIN_SEED

from snncc.activity import activity_report, activity_trace_nodes, format_activity, simulate_activity
from snncc.calib_data import load_calib
from snncc.errors import SnnccError
from snncc.frontend.onnx_import import load_onnx
from snncc.ir import Graph, Node, Value
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.pass_manager import run_pipeline
from snncc.passes import DEFAULT_PIPELINE, residual
from snncc.sim.float_runtime import run_graph
from snncc.sim.snn_sim import quantized_ann_levels, simulate

N = 4
KS = (1.0, 1.25, 1.5, 2.0)


@pytest.fixture(scope="session")
def res_models(tmp_path_factory) -> residual_models.ResidualModels:
    return residual_models.lazy_models(tmp_path_factory.mktemp("residual_models"), TRAIN_SEED)


class Compiled:
    """Session cache: (model, mode, k) -> (float graph after residual, float SNN, options)."""

    def __init__(self, models: residual_models.ResidualModels):
        self.m = models
        self.cache: dict = {}

    def context(self, mode="sparse", k=1.0) -> PassContext:
        # threshold_search="none": deterministic and fast; bias correction stays on (default)
        opts = CompileOptions(levels=N, timesteps=1, residual=mode, barrier_scale=k, threshold_search="none")
        return PassContext(opts.validate(), load_calib(self.m.x_calib, (1, 8, 8)))

    def __call__(self, name, mode="sparse", k=1.0):
        key = (name, mode, k)
        if key not in self.cache:
            ctx = self.context(mode, k)
            graph = load_onnx(self.m[name].onnx_path)
            cal = run_pipeline(graph, ["canonicalize", "calibrate", "residual"], ctx)
            snn = run_pipeline(cal, ["convert"], ctx)
            self.cache[key] = (cal, snn, ctx)
        return self.cache[key]


@pytest.fixture(scope="session")
def compiled(res_models) -> Compiled:
    return Compiled(res_models)


def accuracy(logits, y) -> float:
    return float((np.asarray(logits).reshape(len(y), -1).argmax(1) == y).mean())


# --- structure: detection and classification ------------------------------------------

def test_pipeline_runs_residual_between_calibrate_and_convert():
    i = DEFAULT_PIPELINE.index("residual")
    # after calibrate (its statistics) and prune (which may remove channels of a join), right before convert
    assert DEFAULT_PIPELINE[i - 2:i] == ["calibrate", "prune"] and DEFAULT_PIPELINE[i + 1] == "convert"


@pytest.mark.parametrize("name, kinds", [
    ("sew", ["spike_spike"] * 6),
    ("resnet", ["post_add_relu"] * 9),
    ("mobilenet", ["linear"] * 3),
])
def test_joins_are_found_and_classified(res_models, name, kinds):
    graph = run_pipeline(load_onnx(res_models[name].onnx_path), ["canonicalize"], PassContext())
    joins = residual.find_joins(graph)
    assert [j["kind"] for j in joins] == kinds
    vg = residual.value_graph(graph)
    for j in joins:  # the fork is an ancestor shared by every input (or one input itself)
        node = graph.node(j["node"])
        for v in node.inputs:
            assert j["fork"] == v or j["fork"] in nx.ancestors(vg, v)


@pytest.mark.parametrize("zoo_name, kinds", [
    ("sew_resnet", {"post_add_relu"}),  # the zoo's SEW block re-applies ReLU after the add
    ("preact_resnet", {"linear"}),
    ("resnet8", {"post_add_relu"}),
    ("mobilenetv2_block", {"linear"}),
])
def test_zoo_residual_nets_classify(zoo_onnx, zoo_name, kinds):
    graph = run_pipeline(load_onnx(zoo_onnx(zoo_name)), ["canonicalize"], PassContext())
    joins = residual.find_joins(graph)
    assert joins and {j["kind"] for j in joins} == kinds


def _two_input_graph() -> Graph:
    vals = {"a": Value("a", (2, 4, 4)), "b": Value("b", (2, 4, 4)), "s": Value("s", (2, 4, 4))}
    return Graph("two", ["a", "b"], ["s"], [Node("sum", "add", ["a", "b"], "s")], vals)


def test_an_add_of_independent_inputs_is_not_a_residual_join():
    assert residual.find_joins(_two_input_graph()) == []


# --- the rewrite -----------------------------------------------------------------------

def test_sparse_inserts_identity_barriers_with_join_statistics(compiled, res_models):
    cal_sew, _, _ = compiled("sew", "sew")
    cal, _, _ = compiled("sew", "sparse")
    barriers = [n for n in cal.nodes if n.op == "relu" and n.attrs.get("barrier")]
    assert len(barriers) == 6 and not any(n.attrs.get("barrier") for n in cal_sew.nodes)
    joins = cal.meta["residual_joins"]
    assert [j["barrier"] for j in joins] == [b.name for b in barriers]
    for b in barriers:
        add = cal.producer(b.inputs[0])
        assert add.op == "add" and cal.consumers(add.output) == [b]
        assert np.array_equal(cal.stats[b.output]["sample"], cal.stats[add.output]["sample"])
    # a barrier is the identity on the ANN: the float outputs do not move
    x = res_models.x_test[:64]
    out_sparse = run_graph(cal, x)[cal.outputs[0]]
    out_sew = run_graph(cal_sew, x)[cal_sew.outputs[0]]
    np.testing.assert_array_equal(out_sparse, out_sew)
    assert "inserted unsigned barrier" in joins[0]["action"]
    assert json.dumps(joins)  # JSON-friendly for report.json


def test_barrier_scale_multiplies_barrier_thresholds_only(compiled):
    _, snn1, _ = compiled("sew", "sparse", 1.0)
    _, snn2, _ = compiled("sew", "sparse", 2.0)
    for a, b in zip(snn1.nodes, snn2.nodes):
        assert a.name == b.name
        if a.op != "neuron":
            continue
        assert a.attrs["barrier"] == b.attrs["barrier"]
        factor = 2.0 if a.attrs["barrier"] else 1.0
        np.testing.assert_allclose(b.params["theta"], factor * a.params["theta"], rtol=1e-12)
    barriers = [n for n in snn1.nodes if n.op == "neuron" and n.attrs["barrier"]]
    assert len(barriers) == 6 and not any(n.attrs["signed"] for n in barriers)


def test_sparse_keeps_the_sew_threshold_sharing(compiled):
    """The barriers are the only difference: the other neurons get the sew thresholds."""
    _, sew, _ = compiled("sew", "sew")
    _, sparse, _ = compiled("sew", "sparse")
    theta_sew = {n.name: n.params["theta"] for n in sew.nodes if n.op == "neuron"}
    for n in sparse.nodes:
        if n.op == "neuron" and not n.attrs["barrier"]:
            np.testing.assert_array_equal(n.params["theta"], theta_sew[n.name])
    assert sum(n.op == "add" for n in sew.nodes) == 6  # sew: sums of levels, no neuron


def test_linear_joins_get_signed_barriers(compiled):
    cal, snn, _ = compiled("mobilenet")
    adds = {j["node"] for j in cal.meta["residual_joins"]}
    signed = [n for n in snn.nodes if n.op == "neuron" and n.attrs["signed"]]
    at_joins = [n for n in signed if snn.producer(n.inputs[0]).name in adds]
    assert len(at_joins) == 3 and all(n.attrs["barrier"] for n in at_joins)
    # a linear bottleneck that is not a join is signed but not a barrier
    others = [n for n in signed if n not in at_joins]
    assert others and not any(n.attrs["barrier"] for n in others)


def test_post_add_relu_joins_are_left_alone(compiled):
    cal, snn, _ = compiled("resnet")
    assert not any(n.attrs.get("barrier") for n in cal.nodes)
    assert all(j["action"].startswith("none") for j in cal.meta["residual_joins"])
    assert not any(n.attrs["signed"] for n in snn.nodes if n.op == "neuron")


def test_sparse_needs_calibration_statistics(res_models):
    graph = run_pipeline(load_onnx(res_models["sew"].onnx_path), ["canonicalize"], PassContext())
    with pytest.raises(SnnccError, match=r"node '/layers/layers.0/Add' \(add\).*calibrat"):
        residual.run(graph, PassContext(CompileOptions(residual="sparse")))
    out = residual.run(graph, PassContext(CompileOptions(residual="sew")))  # sew inserts nothing: no statistics needed
    assert len(out.nodes) == len(graph.nodes)
    assert residual.find_joins(out) == residual.find_joins(graph)


def test_the_pass_is_idempotent(compiled):
    cal, _, ctx = compiled("sew", "sparse")
    again = residual.run(cal, ctx)
    assert len(again.nodes) == len(cal.nodes)
    assert {j["kind"] for j in again.meta["residual_joins"]} == {"post_add_relu"}


# --- bad input -------------------------------------------------------------------------

def test_join_with_mismatched_shapes_is_refused_naming_the_node():
    vals = {"x": Value("x", (2, 4, 4)), "r": Value("r", (2, 4, 4)), "p": Value("p", (2, 2, 2)),
            "s": Value("s", (2, 4, 4))}
    nodes = [Node("act", "relu", ["x"], "r", {"max": None}),
             Node("pool", "maxpool", ["r"], "p", {"kernel": (2, 2), "strides": (2, 2), "pads": (0, 0, 0, 0)}),
             Node("bad_join", "add", ["r", "p"], "s")]
    g = Graph("bad", ["x"], ["s"], nodes, vals)
    with pytest.raises(SnnccError, match=r"node 'bad_join' \(add\).*mismatched shapes"):
        residual.run(g, PassContext())


def _export(module, path):
    import torch

    from snncc.frontend.onnx_import import load_onnx as load

    torch.onnx.export(module.eval(), (torch.zeros(1, 2, 4, 4),), str(path), dynamo=False, opset_version=13,
                      input_names=["input"], output_names=["out"])
    return load(path)


def test_broadcasting_adds_are_refused_by_the_frontend(tmp_path):
    import torch
    from torch import nn

    class ChannelBroadcast(nn.Module):  # (2,4,4) + (1,4,4): broadcasting between activations
        def __init__(self):
            super().__init__()
            self.squeeze = nn.Conv2d(2, 1, 1)

        def forward(self, x):
            y = torch.relu(x)
            return y + self.squeeze(y)

    class SpatialConst(nn.Module):  # a constant that is neither per-channel nor scalar
        def __init__(self):
            super().__init__()
            self.register_buffer("c", torch.arange(16.0).reshape(1, 1, 4, 4))

        def forward(self, x):
            return torch.relu(x) + self.c

    with pytest.raises(SnnccError, match=r"node '.*Add.*' \(Add\).*(different shapes|broadcast)"):
        _export(ChannelBroadcast(), tmp_path / "b.onnx")
    with pytest.raises(SnnccError, match=r"node '.*Add.*' \(Add\).*not per-channel or scalar"):
        _export(SpatialConst(), tmp_path / "c.onnx")


# --- acceptance on the trained nets ---------------------------------------------------------

@pytest.fixture(scope="session")
def sew_activity(compiled, res_models):
    """Activity reports of net (a) on the test split: sew, and sparse for each k."""
    out = {}
    for mode, k in [("sew", 1.0)] + [("sparse", k) for k in KS]:
        _, snn, _ = compiled("sew", mode, k)
        sim, rep = simulate_activity(snn, res_models.x_test)
        out[(mode, k)] = (accuracy(sim.logits, res_models.y_test), rep)
    return out


def test_sparse_never_raises_synaptic_events_above_sew(sew_activity):
    _, sew = sew_activity[("sew", 1.0)]
    last = None
    for k in KS:
        _, rep = sew_activity[("sparse", k)]
        assert rep["totals"]["synaptic_events"] <= sew["totals"]["synaptic_events"], k
        assert rep["totals"]["sops"] <= sew["totals"]["sops"], k
        if last is not None:  # a higher barrier threshold never adds events
            assert rep["totals"]["synaptic_events"] <= last
        last = rep["totals"]["synaptic_events"]


def test_sparse_bounds_every_join_level_by_n_and_sew_does_not(sew_activity):
    _, sew = sew_activity[("sew", 1.0)]
    assert sew["max_join_level"] > N  # the avalanche the barriers remove
    for k in KS:
        _, rep = sew_activity[("sparse", k)]
        joins = [b["join"] for b in rep["blocks"] if "join" in b]
        assert len(joins) == 6
        assert all(j["max_level"] is not None and j["max_level"] <= N for j in joins), k
        assert rep["max_join_level"] <= N


def test_activity_report_is_json_and_prints(sew_activity, compiled, res_models):
    _, rep = sew_activity[("sparse", 1.0)]
    text = json.dumps(rep)
    assert json.loads(text)["avalanche"]["metric"]
    assert [b["name"] for b in rep["blocks"]] == ["stem"] + [f"block{i}" for i in range(1, 7)] + ["head"]
    table = format_activity(rep)
    assert "block6" in table and "avalanche factor" in table
    # block totals add up to the network totals
    for key in ("spike_events", "spike_levels", "synaptic_events", "sops"):
        assert sum(b[key] for b in rep["blocks"]) == pytest.approx(rep["totals"][key], rel=1e-9)
    # without the traces, a sew report still has the neurons' figures and marks the joins unknown
    _, snn, _ = compiled("sew", "sew")
    assert activity_trace_nodes(snn)
    sim = simulate(snn, res_models.x_test[:32])
    partial = activity_report(snn, sim)
    assert partial["blocks"][1]["join"]["max_level"] is None and partial["totals"]["spike_events"] is None


@pytest.mark.parametrize("name", ["sew", "resnet", "mobilenet"])
def test_t1_oracle_holds_exactly(compiled, res_models, name):
    for mode in (("sparse", "sew") if name == "sew" else ("sparse",)):
        cal, snn, _ = compiled(name, mode)
        x = res_models.x_test[:128]
        neurons = [n.name for n in snn.nodes if n.op == "neuron"]
        sim = simulate(snn, x, timesteps=1, capture=neurons)
        ref = quantized_ann_levels(cal, snn, x)
        for n in neurons:
            assert np.array_equal(sim.captured[n], ref[n]), f"{name}/{mode} {n}"
        np.testing.assert_allclose(sim.logits, ref[snn.outputs[0]], rtol=1e-9, atol=1e-9)
        if name == "mobilenet":
            assert any(snn.node(n).attrs["signed"] for n in neurons)


@pytest.mark.parametrize("name", ["resnet", "mobilenet"])
def test_snn_accuracy_close_to_the_ann_at_n4_t1_8bit(compiled, res_models, name):
    from snncc.sim.int_runtime import quantize_input, run_int

    _, snn, ctx = compiled(name)
    assert ctx.options.weight_bits == 8
    graph = load_onnx(res_models[name].onnx_path)
    ann = accuracy(run_graph(graph, res_models.x_test)[graph.outputs[0]], res_models.y_test)
    assert ann == pytest.approx(res_models[name].ann_test_accuracy, abs=1e-9)
    intg = run_pipeline(snn, ["quantize"], replace(ctx, notes=[]))
    out = run_int(intg, quantize_input(intg, res_models.x_test))[intg.outputs[0]]
    print(f"MEASURE residual {name} ANN {ann:.4f} int drop {ann - accuracy(out, res_models.y_test):.4f} float SNN drop "
          f"{ann - accuracy(simulate(snn, res_models.x_test).logits, res_models.y_test):.4f}")
    # drops over training seeds 1-3: integer SNN -0.19..1.30 points, float SNN 0.37..1.11 points
    # (mobilenet at seed 2 came within 0.2 points of the old 1.5-point bound)
    assert accuracy(out, res_models.y_test) >= ann - 0.03
    assert accuracy(simulate(snn, res_models.x_test).logits, res_models.y_test) >= ann - 0.03


@pytest.mark.parametrize("name, mode", [("sew", "sparse"), ("sew", "sew"), ("mobilenet", "sparse")])
def test_integer_graph_keeps_barriers_and_bounds_levels(compiled, res_models, name, mode):
    from snncc.sim.int_runtime import quantize_input, run_int_levels

    _, snn, ctx = compiled(name, mode)
    intg = run_pipeline(snn, ["quantize"], replace(ctx, notes=[]))
    barriers = [n for n in intg.nodes if n.op == "neuron" and n.attrs["barrier"]]
    assert len(barriers) == sum(1 for n in snn.nodes if n.op == "neuron" and n.attrs["barrier"])
    xq = quantize_input(intg, res_models.x_test[:64])
    out1, stats = run_int_levels(intg, xq, capture=[n.output for n in barriers])
    out2, _ = run_int_levels(intg, xq)
    np.testing.assert_array_equal(out1[intg.outputs[0]], out2[intg.outputs[0]])  # deterministic
    for n in barriers:
        z = out1[n.output]
        assert np.abs(z).max() <= N and (z.min() >= 0 or n.attrs["signed"])
