"""The prune pass: dependency groups on residual, concat, depthwise and shuffle nets, exact
removal of dead channels, ratio 0 as the identity, bit-exact C after pruning, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from c_graphs import sample_inputs
from click.testing import CliRunner

from snncc.backends.c.emit import emit_c
from snncc.backends.c.verify_c import build_host, compare_c
from snncc.calib_data import load_calib
from snncc.cli import cli
from snncc.frontend.onnx_import import load_onnx
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.pass_manager import run_pipeline
from snncc.passes import DEFAULT_PIPELINE, prune
from snncc.sim.float_runtime import run_graph
from snncc.sim.int_runtime import quantize_input, run_int

# no threshold search, no bias correction, nearest weight rounding: fast compiles (GPTQ and step search
# run where a test asks for them)
FAST = {"threshold_search": "none", "bias_correction": False, "weight_rounding": "nearest"}
# residual (add joins), concat offsets, depthwise + linear bottleneck, channel shuffle + grouped conv
STRUCTURES = ["resnet20", "concat_net", "mobilenetv2_block", "ops_net"]


def _calibrated(zoo_onnx, name, n=8, kill=True, **opts):
    """The calibrated float IR of a zoo model; with ``kill``, channel 0 of every second conv
    gets a large negative bias, so that its ReLU is dead on every sample (a non-vacuous test)."""
    graph = load_onnx(zoo_onnx(name))
    shape = graph.values[graph.inputs[0]].shape
    x = np.random.default_rng(0).standard_normal((n,) + shape).astype(np.float32)
    ctx = PassContext(CompileOptions(**{**FAST, **opts}), calib=load_calib(x, shape))
    graph = run_pipeline(graph, ["canonicalize"], ctx, echo=lambda s: None)
    if kill:
        convs = [nd for nd in graph.nodes if nd.op == "conv" and int(nd.attrs["group"]) == 1]
        for nd in convs[::2]:
            nd.params["bias"] = np.asarray(nd.params["bias"]).copy()
            nd.params["bias"][0] = -1e4
    return run_pipeline(graph, ["calibrate"], ctx, echo=lambda s: None), ctx


@pytest.mark.parametrize("name", STRUCTURES)
def test_dead_removal_is_exact_on_every_structure(zoo_onnx, name):
    graph, ctx = _calibrated(zoo_onnx, name)
    options = ctx.options
    options.prune_criterion = "dead"
    pruned = prune.run(graph, ctx)
    pruned.verify()
    rec = pruned.meta["prune"]
    assert rec["groups"]["removed"] > 0 and rec["exact"], rec["groups"]
    assert rec["params"]["after"] < rec["params"]["before"]
    x = ctx.calib.take(ctx.calib.n)
    ref = run_graph(graph, x, dtype=np.float64)[graph.outputs[0]]
    got = run_graph(pruned, x, dtype=np.float64)[pruned.outputs[0]]
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)  # folded constants: float32 biases


GPTQ = {"weight_rounding": "gptq"}  # with step search: both must ignore the removed (always zero) inputs
DEAD_CASES = [("lenet", GPTQ), ("vgg_small", {"levels": 2, "timesteps": 4, "weight_bits": 4}), ("resnet20", {}),
              ("concat_net", {"levels": 1, "timesteps": 4, "weight_bits": 2, **GPTQ}), ("mobilenetv2_block", {}),
              ("ops_net", {}), ("sew_resnet", {"levels": 2, "timesteps": 4, "residual": "sew"}),
              ("preact_resnet", {"levels": 2, "timesteps": 3, "weight_bits": 4}), ("resnet8", {})]


@pytest.mark.parametrize("name,opts", DEAD_CASES, ids=[c[0] for c in DEAD_CASES])
def test_dead_pruning_gives_bit_identical_integer_outputs(zoo_onnx, name, opts):
    """The whole compile (thresholds, bias correction, GPTQ, step search) with --prune-criterion
    dead gives the integer SNN of the unpruned compile, bit for bit, on the calibration data."""
    graph, ctx = _calibrated(zoo_onnx, name, n=8, **opts)
    options = ctx.options
    rest = DEFAULT_PIPELINE[DEFAULT_PIPELINE.index("prune"):]
    # the (slow) threshold search on the smallest model only; bias correction, GPTQ and step search
    # where DEAD_CASES ask for GPTQ
    full = options.weight_rounding == "gptq"
    options.threshold_search, options.bias_correction = ("output" if name == "lenet" else "none"), full
    ref = run_pipeline(graph, rest, ctx, echo=lambda s: None)
    options.prune_criterion = "dead"
    got = run_pipeline(graph, rest, ctx, echo=lambda s: None)
    assert got.meta["prune"]["groups"]["removed"] > 0
    x = ctx.calib.take(ctx.calib.n)
    np.testing.assert_array_equal(run_int(got, quantize_input(got, x))[got.outputs[0]],
                                  run_int(ref, quantize_input(ref, x))[ref.outputs[0]])


def test_ratio_zero_is_the_identity(zoo_onnx):
    graph, ctx = _calibrated(zoo_onnx, "resnet20", kill=False)
    options = ctx.options
    options.prune = 0.0
    assert prune.run(graph, ctx) is graph
    assert "prune" not in graph.meta


def test_add_join_ties_every_branch_and_the_shortcut(zoo_onnx):
    graph, ctx = _calibrated(zoo_onnx, "resnet20", kill=False)
    options = ctx.options
    options.prune = 0.5
    pruned = prune.run(graph, ctx)
    pruned.verify()  # shapes agree at every join
    for node in pruned.nodes:
        if node.op == "add":
            assert len({pruned.shape(v) for v in node.inputs}) == 1
    layers = {row["name"]: row for row in pruned.meta["prune"]["layers"]}
    assert any(r["out_channels_after"] < r["out_channels_before"] for r in layers.values())
    assert all(r["out_channels_after"] >= 1 for r in layers.values())
    last = [nd for nd in graph.nodes if nd.op in ("conv", "dense")][-1]
    assert layers[last.name]["out_channels_after"] == layers[last.name]["out_channels_before"]


# every zoo model that compiles (pool_net's uncounted-padding avgpool is refused by convert), so
# every structure the groups know: add joins (sparse and SEW), concat, depthwise + linear bottleneck, shuffle + grouped
# conv, flatten -> dense blocks (lenet); 2-, 4- and 8-bit weights (packed and int8 block kernels,
# test_pruned_digits_cnn...); the global budgets are test_budget_... and test_flash_budget_...
C_CASES = [("resnet20", "l1", {"prune": 0.3}), ("concat_net", "svs", {"prune": 0.3}),
           ("mobilenetv2_block", "mp", {"prune": 0.3}), ("ops_net", "l1", {"prune": 0.3}),
           ("lenet", "l1", {"prune": 0.5, "weight_bits": 2}), ("vgg_small", "svs", {"prune": 0.3}),
           ("resnet8", "mp", {"prune": 0.3}), ("resnet8+k4", "l1", {"prune": 0.3, "prune_multiple": 4}),
           ("sew_resnet", "l1", {"prune": 0.3, "residual": "sew"}), ("preact_resnet", "svs", {"prune": 0.3})]


@pytest.mark.parametrize("name,crit,opts", C_CASES, ids=[c[0] for c in C_CASES])
def test_pruned_c_is_bit_exact(zoo_onnx, tmp_path, name, crit, opts):
    """The emitted C of a pruned network (gcc -std=c99 -Wall -Wextra -Werror -pedantic, ASan +
    UBSan) equals the integer runtime on random int8 inputs, all -128, all 127 and the
    calibration samples."""
    graph, ctx = _calibrated(zoo_onnx, name.split("+")[0], n=16, kill=False,
                             **{"levels": 2, "timesteps": 2, "weight_bits": 4, **opts})
    ctx.options.prune_criterion = crit
    names = DEFAULT_PIPELINE[DEFAULT_PIPELINE.index("prune"):]
    int_graph = run_pipeline(graph, names, ctx, echo=lambda s: None)
    assert int_graph.meta["prune"]["groups"]["removed"] > 0
    k = int(opts.get("prune_multiple", 1))
    assert all(r["out_channels_after"] % k == 0 for r in int_graph.meta["prune"]["layers"]
               if r["out_channels_after"] < r["out_channels_before"])
    _assert_c_bit_exact(int_graph, tmp_path, ctx.calib.take(ctx.calib.n))


def _assert_c_bit_exact(int_graph, tmp_path, real):
    out = tmp_path / "c"
    out.mkdir()
    emit_c(int_graph, out)
    x = np.concatenate([sample_inputs(int_graph.values[int_graph.inputs[0]].shape, n=16),
                        quantize_input(int_graph, real)])
    res = compare_c(int_graph, out, x, exe=build_host(out, sanitize=True))
    assert res.ok, res.summary()


def test_pruned_digits_cnn_c_is_bit_exact_on_real_data(tmp_path):
    """The committed digits CNN, half its channels removed with 4-bit weights (first and last
    layers 8 bits), the flash compression setting of bench/prune_tradeoff.py: C == runtime on
    the real digits images, random and extreme inputs."""
    x = np.load("examples/digits/digits_calib.npz")["x"]
    ctx = PassContext(CompileOptions(**FAST, prune=0.5, prune_criterion="mp", weight_bits=4,
                                     layer_bits={"first": 8, "last": 8}), calib=load_calib(x[:64], (1, 8, 8)))
    int_graph = run_pipeline(load_onnx("examples/digits/digits_cnn.onnx"), DEFAULT_PIPELINE, ctx,
                             echo=lambda s: None)
    assert int_graph.meta["prune"]["groups"]["removed"] > 0
    _assert_c_bit_exact(int_graph, tmp_path, x)


def _compile(tmp_path, *args):
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["compile", "examples/digits/digits_cnn.onnx", "--calib",
                                   "examples/digits/digits_calib.npz", "-o", str(out), *args])
    return res, out


@pytest.mark.parametrize("args,fragment", [
    (["--prune", "1.0"], "option --prune must be a fraction in [0, 1), got 1.0"),
    (["--prune", "-0.1"], "option --prune must be a fraction in [0, 1)"),
    (["--prune-layer", "/3/Conv=1.5"], "option --prune-layer /3/Conv: must be a fraction in [0, 1)"),
    (["--prune-layer", "nosuch=0.3"], "option --prune-layer: unknown layer 'nosuch'"),
    (["--prune-layer", "/12/Gemm=0.3"], "cannot be pruned"),
    (["--prune-target-params", "10"], "below the smallest reachable size, 50 parameters"),
    (["--prune-target-flash", "10"], "below the smallest reachable size"),
    (["--prune-target-flash", "500", "--threshold-search", "none", "--no-bias-correction", "--weight-rounding",
      "nearest"], "500 bytes is below the smallest emitted size this target reaches, "),
    (["--prune-multiple", "0"], "option --prune-multiple must be in 1..1024, got 0"),
    (["--prune-multiple", "x"], "option --prune-multiple: 'x' is not a valid integer"),
    (["--prune-criterion", "random"], "option --prune-criterion"),
    (["--prune", "0.3", "--prune-criterion", "svs", "--calib", "random"], "needs calibration data"),
    (["--prune-criterion", "dead", "--calib", "random"], "needs calibration data"),
])
def test_bad_prune_input(tmp_path, args, fragment):
    res, out = _compile(tmp_path, *args)
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], res.output
    assert "Traceback" not in res.output
    assert not out.exists()


def test_flash_budget_is_met_on_the_emitted_c(tmp_path):
    """--prune-target-flash counts the C backend's const tables (padded block layouts), not the
    pass's estimate: the estimate alone would leave the emitted library over the budget."""
    from snncc.compiler import compile_model

    x = np.load("examples/digits/digits_calib.npz")["x"][:64]
    res = compile_model("examples/digits/digits_cnn.onnx", options=CompileOptions(**FAST, prune_target_flash=9000),
                        calib=x, target="c", output=tmp_path / "out", echo=lambda s: None)
    rec = res.report["prune"]
    assert rec["flash_budget_tries"][0]["emitted"] > 9000  # what the estimate's budget gave
    assert res.report["c_memory"]["weight_bytes"] == rec["flash_bytes_emitted"] <= 9000
    assert rec["target_flash_bytes"] == 9000


def test_toml_prune_section(tmp_path):
    from snncc.config import load_config
    from snncc.errors import SnnccError

    path = tmp_path / "snncc.toml"
    path.write_text('[prune]\nprune = 0.2\nprune_criterion = "mp"\n[prune.prune_layers]\n"/3/Conv" = 0.5\n')
    over = load_config(path)
    assert over == {"prune": 0.2, "prune_criterion": "mp", "prune_layers": {"/3/Conv": 0.5}}
    path.write_text('[prune.prune_layers]\n"/3/Conv" = 1.5\n')
    with pytest.raises(SnnccError, match=r"prune\.prune_layers\./3/Conv.*fraction in \[0, 1\)"):
        load_config(path)


def test_reports_show_the_pruning():
    from snncc.html_report import render_html
    from snncc.text_report import format_summary

    report = {"model": "m", "prune": {
        "criterion": "l1", "exact": False, "groups": {"prunable": 10, "removed": 3},
        "params": {"before": 100, "after": 70}, "flash_bytes_estimate": {"before": 500, "after": 350},
        "sops_estimate": {"before": 10.0, "after": 7.0}, "sops_measured": 6.5,
        "layers": [{"name": "conv1", "op": "conv", "out_channels_before": 8, "out_channels_after": 5}],
        "histograms": [{"layer": "conv1", "criterion": "l1", "edges": [0.0, 0.5, 1.0], "counts": [4, 4],
                        "removed_counts": [3, 0]}]}}
    text = format_summary(report)
    assert "removed 3 of 10 channel groups" in text and "8 -> 5" in text and "params 100 -> 70" in text
    page = render_html(report)
    assert "Pruning" in page and page.count("data:image/png") >= 1


@pytest.mark.parametrize("key", ["prune_target_params", "prune_target_flash"])
def test_budget_is_met_by_removing_the_least_important_groups(key):
    graph = load_onnx("examples/digits/digits_cnn.onnx")
    ctx = PassContext(CompileOptions(**FAST), calib=load_calib(np.load("examples/digits/digits_calib.npz")["x"][:64],
                                                                (1, 8, 8)))
    options = ctx.options
    graph = run_pipeline(graph, ["canonicalize", "calibrate"], ctx, echo=lambda s: None)
    size = "params" if key == "prune_target_params" else "flash_bytes_estimate"
    before = prune.run(graph, PassContext(CompileOptions(**FAST, prune=0.01), calib=ctx.calib)).meta.get("prune")
    full = before[size]["before"] if before else None
    setattr(options, key, int(0.8 * full))
    rec = prune.run(graph, ctx).meta["prune"]
    assert rec[size]["before"] == full and rec[size]["after"] <= int(0.8 * full)
    assert rec[size]["after"] > int(0.6 * full)  # the least important groups first, and no more than needed


def _digits_calibrated(edit, **opts):
    """The committed digits CNN, canonicalized, edited by ``edit(graph)``, calibrated on 64 images."""
    x = np.load("examples/digits/digits_calib.npz")["x"][:64]
    ctx = PassContext(CompileOptions(**FAST, **opts), calib=load_calib(x, (1, 8, 8)))
    graph = run_pipeline(load_onnx("examples/digits/digits_cnn.onnx"), ["canonicalize"], ctx, echo=lambda s: None)
    edit(graph)
    return run_pipeline(graph, ["calibrate"], ctx, echo=lambda s: None), ctx, x


def test_a_removed_channel_that_the_kept_ones_explain_is_compensated_exactly():
    """/3/Conv channel 5 made 0.01 x channel 3 (so l1 removes it first) and read with 100x weights by
    /7/Conv: zeroing it would move the logits; the least-squares compensation moves its columns
    onto channel 3 and leaves the outputs as they were (up to the ridge)."""
    def edit(g):
        conv, reader = g.node("/3/Conv"), g.node("/7/Conv")
        w, b = np.array(conv.params["weight"]), np.array(conv.params["bias"])
        w[5], b[5] = 0.01 * w[3], 0.01 * b[3]
        conv.params["weight"], conv.params["bias"] = w, b
        wr = np.array(reader.params["weight"])
        wr[:, 5] *= 100
        reader.params["weight"] = wr

    graph, ctx, x = _digits_calibrated(edit, prune_layers={"/3/Conv": 0.04}, prune_criterion="l1")
    pruned = prune.run(graph, ctx)
    assert [r["out_channels_after"] for r in pruned.meta["prune"]["layers"]][1] == 31
    ref = run_graph(graph, x, dtype=np.float64)[graph.outputs[0]]
    got = run_graph(pruned, x, dtype=np.float64)[pruned.outputs[0]]
    zeroed = graph.copy()
    zeroed.node("/7/Conv").params["weight"] = np.array(zeroed.node("/7/Conv").params["weight"])
    zeroed.node("/7/Conv").params["weight"][:, 5] = 0
    assert np.abs(run_graph(zeroed, x, dtype=np.float64)[graph.outputs[0]] - ref).max() > 0.1
    np.testing.assert_allclose(got, ref, atol=2e-3 * np.abs(ref).max())


def test_a_constant_channel_under_a_padded_conv_keeps_the_mean_current():
    """/0/Conv channel 7 constant 0.5 (zero weights, bias 0.5), read by the zero-padded 3x3 /3/Conv:
    its fold cannot be exact at every position, but the bias keeps each output channel's mean
    over positions, the border positions (reading fewer taps) included."""
    def edit(g):
        conv = g.node("/0/Conv")
        w, b = np.array(conv.params["weight"]), np.array(conv.params["bias"])
        w[7], b[7] = 0.0, 0.5
        conv.params["weight"], conv.params["bias"] = w, b

    graph, ctx, x = _digits_calibrated(edit, prune_layers={"/0/Conv": 0.07}, prune_criterion="l1")
    pruned = prune.run(graph, ctx)
    assert [r["out_channels_after"] for r in pruned.meta["prune"]["layers"]][0] == 15
    ref = run_graph(graph, x, capture=["/3/Conv_output_0"], dtype=np.float64)["/3/Conv_output_0"]
    got = run_graph(pruned, x, capture=["/3/Conv_output_0"], dtype=np.float64)["/3/Conv_output_0"]
    assert np.abs(got - ref).max() > 1e-3  # not exact position by position (the border)
    np.testing.assert_allclose(got.mean(axis=(2, 3)), ref.mean(axis=(2, 3)), atol=1e-5)


@pytest.mark.parametrize("opts", [{"prune": 0.3}, {"prune_layers": {"/layers/layers.3/body/body.0/Conv": 0.6}},
                                  {"prune_target_params": 0}], ids=["ratio", "layer", "budget"])
def test_pruned_layers_keep_a_multiple_of_k_channels(zoo_onnx, opts):
    """--prune-multiple 4 on ResNet-20 (add joins tie whole stages): every layer that loses channels
    keeps a multiple of 4 (at least 4), the classifier keeps all; without it the same request leaves
    counts that are not (so the rounding did something)."""
    graph, ctx = _calibrated(zoo_onnx, "resnet20", kill=False)
    if "prune_target_params" in opts:  # 70 % of the parameters
        full = prune.run(graph, PassContext(CompileOptions(**FAST, prune=0.01), calib=ctx.calib))
        opts = {"prune_target_params": int(0.7 * full.meta["prune"]["params"]["before"])}
    counts = {}
    for k in (1, 4):
        run_ctx = PassContext(CompileOptions(**FAST, **opts, prune_multiple=k), calib=ctx.calib)
        pruned = prune.run(graph, run_ctx)
        pruned.verify()
        rec = pruned.meta["prune"]
        assert rec["multiple"] == k
        counts[k] = {r["name"]: (r["out_channels_before"], r["out_channels_after"]) for r in rec["layers"]}
        if "prune_target_params" in opts:
            assert rec["params"]["after"] <= opts["prune_target_params"]
    last = [nd.name for nd in graph.nodes if nd.op in ("conv", "dense")][-1]
    assert counts[4][last][0] == counts[4][last][1]
    cut = {n: a for n, (b, a) in counts[4].items() if a < b}
    assert cut and all(a % 4 == 0 and a >= 4 for a in cut.values()), counts[4]
    assert any(a % 4 for b, a in counts[1].values() if a < b), counts[1]


def test_prune_multiple_in_toml_and_bad_values(tmp_path):
    from snncc.config import load_config

    path = tmp_path / "snncc.toml"
    path.write_text("[prune]\nprune = 0.2\nprune_multiple = 4\n")
    assert load_config(path) == {"prune": 0.2, "prune_multiple": 4}
    for bad in ("0", "2000", "2.5", '"4"'):
        path.write_text(f"[prune]\nprune_multiple = {bad}\n")
        res, out = _compile(tmp_path, "--config", str(path))
        errors = [line for line in res.output.splitlines() if line.startswith("error:")]
        assert res.exit_code == 2 and len(errors) == 1 and "prune_multiple" in errors[0], res.output
        assert not out.exists()
