"""The data-aware step search of the quantize pass (passes/step_search.py)."""

from dataclasses import replace

import numpy as np
import pytest

from snncc.compiler import build_snn
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.passes import quantize, step_search, weight_rounding
from snncc.sim.int_runtime import level_agreement, pooled_agreement


def _layer(seed: int, out: int, fan_in: int, samples: int = 4000):
    rng = np.random.default_rng(seed)
    x = np.abs(rng.standard_normal((samples, fan_in)))  # spike levels are >= 0
    x[:, 1:] += 0.5 * x[:, :-1]  # neighbouring pixels correlate
    xc = x - x.mean(axis=0)
    w = rng.standard_normal((out, fan_in))
    return w, xc.T @ xc / samples


def _quantize(res, data=True, **changes):
    """Quantize ``res``'s float SNN with its options changed: (integer graph, the pass's notes)."""
    ctx = PassContext(replace(res.context.options, **changes), res.context.calib if data else None)
    return quantize.run(res.snn_graph, ctx), ctx.notes


def _errors(w, S, H, qmax=127):
    q = weight_rounding.gptq(w, S, qmax, H)
    e = w - q * S[:, None]
    return ((e @ H) * e).sum(axis=1)


def test_search_coarsens_within_bounds_and_never_raises_the_error():
    w, H = _layer(0, 16, 9)
    S = np.abs(w).max(axis=1) / 127
    new, changed = step_search.search({"conv": (w, np.arange(16), 127)}, {"conv": H}, S)
    assert changed > 0
    assert np.all(new >= S) and np.all(new <= S * step_search.MAX_FACTOR * (1 + 1e-12))
    assert np.all(np.abs(np.rint(w / new[:, None])) <= 127)  # still in range
    before, after = _errors(w, S, H), _errors(w, new, H)
    assert np.all(after <= before * (1 + 1e-9))
    assert after.sum() < 0.7 * before.sum()  # fan-in 9: a coarser step often fits the grid far better


def test_joined_members_share_one_factor_and_classes_without_h_are_kept():
    w1, H1 = _layer(1, 4, 9)
    w2, H2 = _layer(2, 4, 9)
    w3, _ = _layer(3, 4, 9)
    # Classes 0..3 are joins of a and b channel by channel; class 4..7 is c alone, without H.
    S = np.concatenate([np.maximum(np.abs(w1).max(1), np.abs(w2).max(1)), np.abs(w3).max(1)]) / 127
    members = {"a": (w1, np.arange(4), 127), "b": (w2, np.arange(4), 127), "c": (w3, np.arange(4, 8), 127)}
    new, _ = step_search.search(members, {"a": H1, "b": H2}, S)
    np.testing.assert_array_equal(new[4:], S[4:])
    grid = step_search.factors(1.0)
    summed = sum(step_search.channel_errors(w, S[:4], 127, H, grid) for w, H in ((w1, H1), (w2, H2)))
    np.testing.assert_allclose(new[:4], S[:4] * grid[np.argmin(summed, axis=0)])


def test_budget_limits_the_grid():
    assert len(step_search.factors(1.0)) == step_search.MAX_CANDIDATES
    assert len(step_search.factors(1e15)) == step_search.MIN_CANDIDATES
    assert step_search.factors(1e9)[0] == 1.0 and step_search.factors(1e9)[-1] == step_search.MAX_FACTOR


def test_option_is_validated():
    from snncc.errors import SnnccError

    with pytest.raises(SnnccError, match="--step-search"):
        CompileOptions(step_search="yes").validate()


def test_digits_search_keeps_contract_and_raises_agreement(digits):
    options = CompileOptions(levels=4, timesteps=1)
    res = build_snn(digits.onnx_path, options, digits.x_calib, pipeline=["canonicalize", "calibrate", "convert"],
                    echo=lambda _m: None)
    snn = res.snn_graph
    on, on_notes = _quantize(res, weight_bits=8)
    off, off_notes = _quantize(res, weight_bits=8, step_search=False)
    assert any("step search coarsened" in n for n in on_notes)
    assert not any("step search" in n for n in off_notes)
    for a, b in zip(on.nodes, off.nodes):
        if a.op in ("conv", "dense"):
            assert np.all(a.params["scale_real"] >= b.params["scale_real"])
            assert np.abs(a.params["weight"]).max() <= 127
    agree_on = level_agreement(on, snn, digits.x_test)
    agree_off = level_agreement(off, snn, digits.x_test)
    print("isolated", pooled_agreement(agree_on), pooled_agreement(agree_off),
          "end to end", pooled_agreement(agree_on, "end_to_end"), pooled_agreement(agree_off, "end_to_end"))
    assert pooled_agreement(agree_on) > pooled_agreement(agree_off)
    assert pooled_agreement(agree_on, "end_to_end") > pooled_agreement(agree_off, "end_to_end")


def test_frozen_classes_are_not_searched():
    w, H = _layer(4, 8, 9)
    S = np.abs(w).max(axis=1) / 127
    frozen = np.zeros(8, dtype=bool)
    frozen[:4] = True
    new, changed = step_search.search({"conv": (w, np.arange(8), 127)}, {"conv": H}, S, frozen=frozen)
    np.testing.assert_array_equal(new[:4], S[:4])
    assert changed == int((new[4:] != S[4:]).sum()) and changed > 0


def test_notes_say_when_the_search_cannot_run(digits):
    options = CompileOptions(levels=4, timesteps=1)
    res = build_snn(digits.onnx_path, options, digits.x_calib, pipeline=["canonicalize", "calibrate", "convert"],
                    echo=lambda _m: None)
    _, nearest = _quantize(res, weight_rounding="nearest", membrane_shift=2)
    assert "quantize: no step search: it needs GPTQ weight rounding (--weight-rounding gptq)" in nearest
    assert any("--membrane-shift has no effect at T=1" in n for n in nearest)
    _, no_data = _quantize(res, data=False)
    assert any("no calibration data: nearest weight rounding, no step search" in n for n in no_data)
    _, off = _quantize(res, weight_rounding="nearest", step_search=False)
    assert not any("step search" in n for n in off)


def test_channel_errors_do_not_depend_on_the_tile(monkeypatch):
    """Scoring the candidates a few at a time (TILE_BYTES, for --max-memory) gives the same errors."""
    rng = np.random.default_rng(3)
    w = rng.normal(0, 1, (6, 10))
    x = rng.normal(0, 1, (40, 10))
    H = x.T @ x / len(x)
    S = np.abs(w).max(axis=1) / 7
    grid = step_search.factors(1e9)
    whole = step_search.channel_errors(w, S, 7, H, grid)
    monkeypatch.setattr(step_search, "TILE_BYTES", 1)  # one candidate at a time
    assert np.array_equal(step_search.channel_errors(w, S, 7, H, grid), whole)
    assert whole.shape == (len(grid), 6) and weight_rounding.gptq(w, S, 7, H).shape == w.shape
