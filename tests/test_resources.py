"""Issue 12, memory and time: the resource estimate and --max-memory, batch-invariant
calibration and threshold search, the horizon search of deep graphs, the range pre-check."""

from __future__ import annotations

import re

import numpy as np
import pytest
from chain_model import chain_onnx
from channel_stats_helper import stats_over_batches
from click.testing import CliRunner

import snncc
from snncc.calib_data import load_calib
from snncc.cli import cli
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.passes import calibrate, canonicalize, convert
from snncc.passes.calibrate import ChannelStats
from snncc.passes.convert_plan import plan
from snncc.resources import parse_size, per_sample_bytes
from snncc.sim.snn_sim import run_quantized
from snncc.sim.walk import last_uses


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


# --- the size guard -------------------------------------------------------------------

@pytest.mark.parametrize("size, pad", [(100000, 1), (8, 100000)], ids=["input-100000x100000", "pads-100000"])
def test_terabyte_model_is_refused_before_any_allocation(tmp_path, size, pad):
    model = chain_onnx(tmp_path / "huge.onnx", 1, size=size, pad=pad)
    out = tmp_path / "out"
    result = _run("compile", model, "--calib", "random", "-o", out)
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert line.startswith("error: ") and "\n" not in line and "Traceback" not in line
    # the layer where the live activations peak: the first conv's output, next to its input
    assert ("node 'conv0'" in line or "node 'relu0'" in line) and "--max-memory" in line
    need = int(re.search(r"needs about [0-9.]+ TiB \((\d+) bytes\)", line).group(1))
    assert need > 1 << 40  # terabytes, as the shapes say
    assert re.search(r"raise --max-memory to at least [0-9.]+ TiB$", line), line
    assert not out.exists()


def test_estimate_counts_live_activations(tmp_path):
    g = snncc.load_onnx(chain_onnx(tmp_path / "c.onnx", 3, size=10, channels=4))
    need, at, live, value = per_sample_bytes(g, itemsize=8)
    value_bytes = 4 * 10 * 10 * 8  # a conv output is the largest value
    assert g.values[value].shape == (4, 10, 10)
    # a node's input and output are live at once (the graph input stays live too), and a 3x3 conv
    # makes its windows contiguous: 9 x its input
    assert live >= 2 * value_bytes and g.nodes[at].op == "conv"
    assert need >= live + 9 * value_bytes + 3 * value_bytes


@pytest.mark.parametrize("text, want", [("2G", 2 << 30), ("512M", 512 << 20), ("1.5G", 3 << 29),
                                        ("65536K", 64 << 20), ("3gib", 3 << 30), (str(1 << 30), 1 << 30)])
def test_max_memory_sizes(text, want):
    assert parse_size(text) == want


@pytest.mark.parametrize("bad", ["2X", "G", "-1G", "", "1M"])
def test_bad_max_memory_is_refused_at_parse_time(digits_example, tmp_path, bad):
    out = tmp_path / "out"
    result = _run("compile", digits_example.onnx_path, "--max-memory", bad, "-o", out)
    assert result.exit_code == 2
    assert "--max-memory" in result.output and result.output.count("\n") == 1
    assert not out.exists()


def test_max_memory_in_config_file_is_checked(digits_example, tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('max_memory = "lots"\n')
    result = _run("compile", digits_example.onnx_path, "--config", cfg, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "max_memory" in result.output


# --- batch-invariant statistics -------------------------------------------------------

def test_channel_stats_do_not_depend_on_the_batches():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 3, 9, 7)).astype(np.float32) * np.array([1, 5, 0.1], np.float32)[:, None, None]
    x[x < -1] = 0
    results = [stats_over_batches(x, splits, reservoir=200, salt=12345)
               for splits in ([37], [1] * 37, [5, 11, 2, 19], [36, 1])]
    for other in results[1:]:
        for key, value in results[0].items():
            assert np.array_equal(np.asarray(value), np.asarray(other[key])), key


def test_channel_stats_subsample_positions_of_big_values():
    x = np.random.default_rng(4).standard_normal((64, 2, 32, 32)).astype(np.float32)
    st = ChannelStats((2, 32, 32), reservoir=64, salt=7, samples=64)
    assert st.stride > 1  # 65536 positions per channel for a 64-element reservoir
    st.update(x[:40])
    st.update(x[40:])
    r = st.result("add")
    assert r["sample"].shape == (2, 64) and r["count"] == 64 * 1024
    # exact statistics are not subsampled
    assert np.array_equal(r["max"], x.max(axis=(0, 2, 3)).astype(np.float64))
    assert np.array_equal(r["tail"], -np.sort(-np.abs(np.moveaxis(x, 1, 0).reshape(2, -1)), axis=1)[:, :64])
    # the sample is a subset of the data, spread over the samples
    assert np.isin(r["sample"][0], x[:, 0]).all()


def test_calibration_is_identical_for_any_batch_size(tmp_path):
    g = canonicalize.run(snncc.load_onnx(chain_onnx(tmp_path / "c.onnx", 3, size=7, weights="integer")), PassContext())
    x = np.random.default_rng(5).integers(-3, 4, (23, 2, 7, 7)).astype(np.float32)
    stats = []
    for batch in (1, 4, 23):
        ctx = PassContext(CompileOptions(calib_batch=batch, calib_reservoir=64), load_calib(x, (2, 7, 7)))
        stats.append(calibrate.run(g, ctx).stats)
    for other in stats[1:]:
        for value, st in stats[0].items():
            for key, arr in st.items():
                assert np.array_equal(np.asarray(arr), np.asarray(other[value][key])), (value, key)


def _tuner_inputs(tmp_path, pairs: int):
    g = snncc.load_onnx(chain_onnx(tmp_path / "c.onnx", pairs))
    ctx = PassContext(calib=load_calib(np.random.default_rng(6).standard_normal((20, 2, 6, 6)).astype(np.float32),
                                       (2, 6, 6)))
    opts = ctx.options
    g = calibrate.run(canonicalize.run(g, ctx), ctx)
    p = plan(g)
    thetas, caps = convert.initial_thresholds(g, p, opts)
    groups = convert.populations(g, p)
    alt = convert.initial_thresholds(g, p, convert._with_method(opts, "max"))[0]
    x = ctx.calib.take(20).astype(np.float64)
    return g, p, thetas, caps, groups, alt, x


@pytest.mark.parametrize("horizon", [None, 5])
def test_threshold_search_is_identical_for_any_batch_size(tmp_path, horizon):
    g, p, thetas, caps, groups, alt, x = _tuner_inputs(tmp_path, 4)
    found = []
    for batch in (20, 3, 1):
        tuner = convert._Tuner(g, p, 4, 1, x, batch, horizon)
        found.append(tuner.search(dict(thetas), caps, groups, alt))
    for other in found[1:]:
        assert other.keys() == found[0].keys()
        for v in found[0]:
            assert np.array_equal(found[0][v], other[v])
    assert any(not np.array_equal(found[0][v], thetas[v]) for v in thetas)  # the search did move something


def test_stacked_candidates_score_like_one_at_a_time(tmp_path):
    g, p, thetas, caps, groups, alt, x = _tuner_inputs(tmp_path, 6)
    tuner = convert._Tuner(g, p, 4, 1, x, 7, horizon=4)
    specs = tuner.specs(thetas)
    members = groups[1]
    start = tuner.pos[members[0]]
    envs = tuner.advance(specs, None, 0, start)
    trials = list(convert._candidates(thetas, caps, members, alt))
    for stop in (start + 4, len(g.nodes)):  # a probe inside the graph, and the logits
        ann = tuner.advance({}, None, 0, stop)
        stacked = tuner.stacked_losses(specs, envs, start, stop, ann, members[0], trials)
        for trial, got in zip([{members[0]: thetas[members[0]]}] + trials, stacked):
            one = dict(specs)
            one[members[0]] = (trial[members[0]],) + specs[members[0]][1:]
            want = (tuner.probe_loss(one, envs, start, stop, ann) if stop < len(g.nodes)
                    else tuner.logits_loss(one, {}, envs, start))
            assert got == pytest.approx(want, rel=1e-9)


def test_deep_chain_plans_a_horizon_and_compiles(tmp_path, monkeypatch):
    g, p, thetas, caps, groups, alt, x = _tuner_inputs(tmp_path, 2)
    assert convert.plan_search(g, groups, 32, 1)[1] is None  # small: the exact search
    deep = snncc.load_onnx(chain_onnx(tmp_path / "deep.onnx", 3000))
    samples, horizon, note = convert.plan_search(deep, convert.populations(deep, plan(deep)), 32, 1)
    assert horizon is not None and convert.HORIZON_MIN <= horizon <= convert.HORIZON_WANT
    assert samples >= convert.SEARCH_MIN_SAMPLES and "downstream" in note
    # the horizon search end to end, forced on a short chain
    small = chain_onnx(tmp_path / "mid.onnx", 8)
    monkeypatch.setattr(convert, "SEARCH_BUDGET", 1.0)
    monkeypatch.setattr(convert, "SEARCH_PASSES", 8)
    result = snncc.compile_model(small, options=CompileOptions(), calib=np.random.default_rng(7).standard_normal(
        (40, 2, 6, 6)).astype(np.float32), echo=lambda s: None)
    notes = result.int_graph.meta["notes"]
    assert any("nodes downstream" in n for n in notes), notes
    assert any(n.startswith("threshold search: logits MSE") for n in notes)


# --- the range pre-check --------------------------------------------------------------

def test_impossible_configuration_fails_range_analysis_before_the_search(digits_example, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(convert._Tuner, "__init__", lambda *a, **k: calls.append(1) or None)
    out = tmp_path / "out"
    result = _run("compile", digits_example.onnx_path, "-N", "127", "-T", "1024", "--membrane-bits", "32",
                  "-o", out)
    assert result.exit_code == 2, result.output
    assert "range analysis" in result.output and "before the threshold search" in result.output
    assert result.output.count("\n") == 1 and not calls and not out.exists()


def test_range_precheck_passes_a_possible_configuration(tmp_path):
    g, p, thetas, caps, groups, alt, x = _tuner_inputs(tmp_path, 2)
    convert.range_precheck(g, p, thetas, 4, 1, CompileOptions())  # returns quietly
    convert.range_precheck(g, p, thetas, 4, 4, CompileOptions(timesteps=4))


def test_run_quantized_resumes_with_precomputed_last_uses(tmp_path):
    g, p, thetas, caps, groups, alt, x = _tuner_inputs(tmp_path, 3)
    specs = {v: (t, 4, False) for v, t in thetas.items()}
    whole = run_quantized(g, specs, x)[g.outputs[0]]
    last = last_uses(g)
    env = run_quantized(g, specs, x, stop=4, last=last)
    resumed = run_quantized(g, specs, None, env=env, start=4, last=last)[g.outputs[0]]
    assert np.array_equal(whole, resumed)


@pytest.mark.parametrize("pairs, channels, size, samples, hidden, budget, extra", [
    (2, 4, 256, 64, 0, "320M", ["--target", "python"]),  # activations: two convs on 4 x 256 x 256
    (2, 4, 128, 16, 1024, "320M", ["--target", "python"]),  # parameters: a dense head of 2.1 million weights
    (1, 2, 6, 16, 2048, "400M", ["--weight-rounding", "nearest"]),  # 8.4 million weights written as C
], ids=["activations", "parameters", "emit-c"])
def test_compile_stays_under_max_memory(tmp_path, pairs, channels, size, samples, hidden, budget, extra):
    """A compile under --max-memory never exceeds it (the report included), measured as the child's peak RSS.

    Activations: the threshold search keeps every batch's quantized prefix alive and the search samples
    in memory, so before its samples were fitted to the budget this peaked at 369 MiB under 320M.
    Parameters: every stage keeps its copy of the weights (float32 ANN, float64 SNN, int8), which the
    budget counts per parameter element; the step search tiled every candidate of the 1024 x 1024
    dense at once (436 MiB). Emit: the C initializers took a Python int and str per weight at once
    (570 MiB under 400M)."""
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    chain_onnx(tmp_path / "m.onnx", pairs, size=size, channels=channels, hidden=hidden)
    np.save(tmp_path / "calib.npy", rng.random((samples, channels, size, size)).astype(np.float32))
    # a fresh interpreter whose only child is the compile, so RUSAGE_CHILDREN is that compile's peak
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stderr.write(r.stdout + r.stderr); r.check_returncode(); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)")
    cmd = [sys.executable, "-m", "snncc", "compile", str(tmp_path / "m.onnx"), "--calib",
           str(tmp_path / "calib.npy"), *extra, "-o", str(tmp_path / "out"), "--max-memory", budget]
    # BLAS keeps a buffer per thread: pin the count so the figure does not depend on the core count
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2", MKL_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak = int(proc.stdout.split()[-1])
    print(f"peak RSS {peak / 2**20:.1f} MiB under --max-memory {budget}")
    assert f"--max-memory {budget}" in proc.stderr, proc.stderr  # the budget binds: a note says what it cut
    assert peak <= parse_size(budget), f"peak RSS {peak / 2**20:.1f} MiB exceeds --max-memory {budget}"


def test_sample_budget_bounds_the_statistics_and_the_report(tmp_path, monkeypatch):
    """The work after calibration runs on WORK_ELEMENTS activation elements (at least WORK_MIN_SAMPLES
    samples): calibrate still sees every sample, the report says how many it used, a note says why."""
    from snncc import resources
    from snncc.compiler import build_snn, make_report

    chain_onnx(tmp_path / "m.onnx", 2, size=6, channels=2)
    x = np.random.default_rng(0).random((40, 2, 6, 6)).astype(np.float32)
    opts = CompileOptions(threshold_search="none")

    def compile_report():
        result = build_snn(tmp_path / "m.onnx", opts, x, echo=lambda s: None)
        return result, make_report(result, opts, model="m.onnx", target="python")

    result, report = compile_report()  # a small model: every sample
    assert report["evaluation"]["samples"] == 40 and not any("report:" in n for n in report["notes"])
    per_sample = resources.activation_elements(result.snn_graph)
    monkeypatch.setattr(resources, "WORK_ELEMENTS", 20 * per_sample)
    monkeypatch.setattr(resources, "WORK_MIN_SAMPLES", 8)
    result, report = compile_report()
    assert result.int_graph.meta["calibration"]["samples"] == 40  # calibration streams them all
    assert report["evaluation"]["samples"] == 20
    assert any("report: simulated figures on 20 of 40 calibration samples" in n for n in report["notes"])
    assert any("quantize: weight-rounding statistics on" in n for n in report["notes"])
    monkeypatch.setattr(resources, "WORK_ELEMENTS", 1)  # never below the floor
    assert compile_report()[1]["evaluation"]["samples"] == 8


def test_gptq_hessians_beyond_the_budget_are_refused(tmp_path):
    """GPTQ keeps a fan-in^2 Hessian per layer: when those leave no room under --max-memory,
    quantize refuses before allocating them, naming the option, the bytes and the way out
    (the same model with nearest rounding fits: test_compile_stays_under_max_memory[emit-c])."""
    model = chain_onnx(tmp_path / "m.onnx", 1, size=6, channels=2, hidden=2048)
    out = tmp_path / "out"
    result = _run("compile", model, "--calib", "random", "--weight-rounding", "gptq", "--max-memory", "400M",
                  "-o", out)
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: option --max-memory: GPTQ weight rounding keeps"), line
    assert "--weight-rounding nearest" in line and "Traceback" not in result.output
    assert not out.exists()
