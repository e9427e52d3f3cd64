"""calibrate: per-channel statistics with bounded memory, deterministic, stored in graph.stats."""

from __future__ import annotations

import numpy as np
import pytest

import snncc
from snncc.calib_data import load_calib
from snncc.errors import SnnccError
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.passes import calibrate, canonicalize
from snncc.passes.convert_thresholds import _percentile
from snncc.sim.float_runtime import run_graph


@pytest.fixture(scope="module")
def digits_graph(digits):
    g = snncc.load_onnx(digits.onnx_path)
    return canonicalize.run(g, PassContext())


def _calibrated(graph, x, **kw):
    return calibrate.run(graph, PassContext(CompileOptions(**kw), load_calib(x, graph.values[graph.inputs[0]].shape)))


def test_statistics_match_numpy(digits_graph, digits):
    x = digits.x_calib
    g = _calibrated(digits_graph, x, calib_batch=100)
    relus = [n.output for n in g.nodes if n.op == "relu"]
    assert set(relus) | set(g.inputs) <= set(g.stats)
    # the float32 kernels round differently for different batch shapes: compare like with like
    parts = [run_graph(digits_graph, x[i:i + 100], capture=relus) for i in range(0, len(x), 100)]
    acts = {v: np.concatenate([p[v] for p in parts]) for v in relus}
    for v in relus:
        a = np.moveaxis(acts[v], 1, 0).reshape(acts[v].shape[1], -1).astype(np.float64)
        st = g.stats[v]
        assert st["kind"] == "relu" and st["count"] == a.shape[1]
        np.testing.assert_allclose(st["max"], a.max(1), rtol=1e-5)
        np.testing.assert_allclose(st["min"], a.min(1), rtol=1e-5)
        np.testing.assert_allclose(st["mean"], a.mean(1), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(st["nonzero"], (a != 0).mean(1))
        # the tail is exactly the 64 largest |x| per channel, descending
        top = -np.sort(-np.abs(a), axis=1)[:, :64]
        # float32 GEMMs round differently with the batch size (BLAS blocking; seen 2.5e-6 on AVX-512)
        np.testing.assert_allclose(st["tail"], top, rtol=1e-5)
        # high percentiles come exactly from the tail
        p = 99.9
        np.testing.assert_allclose(_percentile(np.abs(st["sample"]), st["tail"], st["count"], p),
                                   np.percentile(a, p, axis=1), rtol=1e-5)
    assert g.stats[g.inputs[0]]["kind"] == "input"
    assert g.stats[g.inputs[0]]["layer_absmax"] == pytest.approx(float(np.abs(x).max()))
    assert g.meta["calibration"]["samples"] == len(x)


def test_reservoir_is_bounded_uniform_and_deterministic(digits_graph, digits):
    x = np.concatenate([digits.x_train] * 2)  # 2514 samples: many more elements than the reservoir
    a = _calibrated(digits_graph, x, calib_reservoir=512, calib_batch=300)
    b = _calibrated(digits_graph, x, calib_reservoir=512, calib_batch=300)
    v = [n.output for n in a.nodes if n.op == "relu"][0]
    assert a.stats[v]["sample"].shape == (16, 512)
    np.testing.assert_array_equal(a.stats[v]["sample"], b.stats[v]["sample"])
    # a uniform sample: its mean is close to the true per-channel mean
    np.testing.assert_allclose(a.stats[v]["sample"].mean(1), a.stats[v]["mean"],
                               atol=0.2 * float(a.stats[v]["max"].max()))
    c = _calibrated(digits_graph, x, calib_reservoir=512, calib_batch=300, seed=1)
    assert not np.array_equal(a.stats[v]["sample"], c.stats[v]["sample"])


def test_calibrate_copies_and_refuses_without_data(digits_graph, digits):
    before = dict(digits_graph.stats)
    _calibrated(digits_graph, digits.x_calib[:10])
    assert digits_graph.stats == before  # input graph untouched
    with pytest.raises(SnnccError, match="--calib"):
        calibrate.run(digits_graph, PassContext())
    ctx = PassContext(calib=load_calib(np.zeros((2, 1, 4, 4), np.float32), (1, 4, 4)))
    with pytest.raises(SnnccError, match=r"--calib.*\[1, 4, 4\].*\[1, 8, 8\]"):
        calibrate.run(digits_graph, ctx)


def test_statistics_are_read_only_and_shared_by_graph_copies(digits_graph, digits):
    """Every pass copies the graph: the statistics (a GB for a ResNet-50) are shared, not copied,
    and frozen so that no pass can change another stage's by writing in place."""
    g = _calibrated(digits_graph, digits.x_calib[:20])
    h = g.copy()
    v = g.inputs[0]
    for key, arr in g.stats[v].items():
        if isinstance(arr, np.ndarray):
            assert h.stats[v][key] is arr and not arr.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        h.stats[v]["max"][0] = 1.0
    h.stats[v] = dict(h.stats[v], kind="other")  # replacing an entry leaves the original alone
    assert g.stats[v]["kind"] == "input"
    w = next(n for n in h.nodes if "weight" in n.params)
    assert w.params["weight"] is not g.node(w.name).params["weight"]  # the parameters are still copied


def test_nan_in_data_stops_calibration(digits_graph, digits):
    x = digits.x_calib[:40].copy()
    x[17, 0, 3, 3] = np.nan
    with pytest.raises(SnnccError, match="NaN or inf.*sample 17"):
        _calibrated(digits_graph, x, calib_batch=16)
