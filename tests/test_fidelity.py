"""Fidelity report: accuracy, activity, energy and per-layer figures, checked against the simulator."""

from __future__ import annotations

import json

import numpy as np
import pytest

import snncc
from snncc.calib_data import load_calib
from snncc.fidelity import E_AC_PJ, E_MAC_PJ, E_MUL8_PJ, fidelity_report
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.pass_manager import run_pipeline
from snncc.sim.snn_sim import simulate


@pytest.fixture(scope="module")
def digits_T2(digits):
    g = snncc.load_onnx(digits.onnx_path)
    ctx = PassContext(CompileOptions(levels=4, timesteps=2, threshold_search="none"),
                      load_calib(digits.x_calib, (1, 8, 8)))
    return g, run_pipeline(g, ["canonicalize", "calibrate", "convert"], ctx), ctx.options


def test_report_with_labels_matches_the_simulator(digits_T2, digits, tmp_path):
    g, snn, opts = digits_T2
    x, y = digits.x_test[:200], digits.y_test[:200]
    np.savez(tmp_path / "t.npz", x=x, y=y)
    rep = fidelity_report(g, snn, load_calib(tmp_path / "t.npz", (1, 8, 8)), opts)
    json.dumps(rep)  # plain JSON types only
    sim = simulate(snn, x)
    ann = snncc.run(g, x).argmax(1)
    acc = rep["accuracy"]
    assert acc["ann"] == pytest.approx((ann == y).mean())
    assert acc["snn"] == pytest.approx((sim.logits.argmax(1) == y).mean())
    assert acc["top1_agreement"] == pytest.approx((sim.logits.argmax(1) == ann).mean())
    assert all(0 <= v <= 1 for v in acc.values())
    act = rep["activity"]
    assert act["spike_events"] == pytest.approx(sum(sim.spike_counts.values()))
    assert act["sops"] == pytest.approx(sum(sim.sops.values()))
    assert act["spike_levels"] >= act["spike_events"] > 0
    layers = rep["layers"]
    assert [lay["name"] for lay in layers] == [n.name for n in snn.nodes if n.op in ("conv", "dense", "neuron")]
    neurons = [lay for lay in layers if lay["op"] == "neuron"]
    assert sum(lay["spike_events"] for lay in neurons) == pytest.approx(act["spike_events"])
    print("MEASURE fidelity min cosine", min(lay["cosine"] for lay in neurons))
    for lay in neurons:
        assert 0 < lay["spike_rate"] <= 1 and 1 <= lay["mean_level"] <= 4
        assert 0.8 < lay["cosine"] <= 1
    syn = [lay for lay in layers if lay["op"] != "neuron"]
    assert sum(lay["sops"] for lay in syn) == pytest.approx(act["sops"])
    assert syn[0]["snn_macs"] == syn[0]["ann_macs"] > 0 and syn[0]["sops"] == 0  # direct encoding
    en = rep["energy"]
    assert en["ann_pj"] == pytest.approx(E_MAC_PJ * sum(lay["ann_macs"] for lay in syn))
    assert en["snn_pj"] == pytest.approx(E_MAC_PJ * syn[0]["snn_macs"] + E_AC_PJ * act["sops"]
                                         + E_MUL8_PJ * act["sops_multilevel"])
    assert "4.6 pJ" in en["model"] and "0.9 pJ" in en["model"] and "fan-out" in en["model"]
    assert rep["evaluation"] == {"samples": 200, "timesteps": 2, "levels": 4, "labels": True}


def test_report_without_labels_has_agreement_only(digits_T2, digits):
    g, snn, opts = digits_T2
    rep = fidelity_report(g, snn, load_calib(digits.x_test[:50], (1, 8, 8)), opts, max_samples=30)
    assert set(rep["accuracy"]) == {"top1_agreement"}
    assert rep["evaluation"]["samples"] == 30 and not rep["evaluation"]["labels"]


def test_more_levels_means_higher_cosine(digits):
    g = snncc.load_onnx(digits.onnx_path)
    data = load_calib(digits.x_test[:100], (1, 8, 8))
    cos = {}
    for n in (1, 8):
        ctx = PassContext(CompileOptions(levels=n, threshold_search="none", bias_correction=False),
                          load_calib(digits.x_calib, (1, 8, 8)))
        snn = run_pipeline(g, ["canonicalize", "calibrate", "convert"], ctx)
        rep = fidelity_report(g, snn, data, ctx.options)
        cos[n] = [lay["cosine"] for lay in rep["layers"] if lay["op"] == "neuron"]
    assert all(a < b for a, b in zip(cos[1], cos[8]))
