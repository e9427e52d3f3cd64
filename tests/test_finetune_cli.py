"""`snncc finetune` end to end on the digits CNN, and its bad-input paths.

The round trip: fine-tune (1 epoch, few samples) -> tuned.onnx; `snncc compile
tuned.onnx` with the same options gives exactly the fine-tuned integers (and not the
post-training ones); `snncc verify --target c` on it is bit-exact.  Nothing here
depends on what training learns, only on the integers travelling intact.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from test_cli import DIGITS, DIGITS_CALIB, assert_one_line_error, invoke

from snncc.compiler import compile_model
from snncc.finetune import pinned
from snncc.options import CompileOptions

# fast compile options: bit-exactness does not depend on the data-aware conversion aids
OPTS = ["-N", "2", "-T", "2", "--weight-bits", "4", "--threshold-search", "none", "--no-bias-correction",
        "--weight-rounding", "nearest"]
API_OPTS = {"levels": 2, "timesteps": 2, "weight_bits": 4, "threshold_search": "none", "bias_correction": False,
            "weight_rounding": "nearest"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ft")
    d = np.load(DIGITS_CALIB)
    x, y = d["x"][:96], d["y"][:96]
    np.savez(folder / "train.npz", x=x, y=y)
    np.savez(folder / "nolabels.npz", x=x)
    np.savez(folder / "wrongshape.npz", x=np.zeros((8, 1, 7, 7), np.float32), y=np.zeros(8, np.int64))
    return folder


@pytest.fixture(scope="module")
def tuned(data):
    out = data / "tuned.onnx"
    res = invoke("finetune", DIGITS, "--data", data / "train.npz", "--calib", data / "train.npz", "--epochs", 1,
                 "--lr", "0.02", "--batch-size", 32, *OPTS, "-o", out)
    assert res.exit_code == 0, res.output
    assert "finetune epoch 1/1: loss" in res.output  # not a terminal: one log line per epoch
    return out


def _int_params(graph) -> dict:
    return {(n.name, k): np.asarray(v) for n in graph.nodes for k, v in n.params.items()
            if k not in ("scale_real", "theta_real")}


def test_compile_of_the_tuned_model_gives_the_fine_tuned_integers(tuned, data):
    rec = pinned.parse(next(p.value for p in onnx.load(str(tuned)).metadata_props if p.key == pinned.KEY))
    want = {(name, k): pinned.decode(v, name) for name, node in rec["nodes"].items()
            for k, v in node["params"].items() if k not in ("scale_real", "theta_real")}
    opts = CompileOptions(**API_OPTS)
    got = _int_params(compile_model(tuned, options=opts, calib=str(data / "train.npz")).int_graph)
    plain = _int_params(compile_model(DIGITS, options=CompileOptions(**API_OPTS),
                                      calib=str(data / "train.npz")).int_graph)
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=str(key))
        assert got[key].dtype == plain[key].dtype
    assert any(not np.array_equal(got[k], plain[k]) for k in plain), "the fine-tune changed no integer"


def test_tuned_model_verifies_bit_exact_against_c(tuned, data):
    res = invoke("verify", tuned, "--target", "c", "--calib", data / "train.npz", *OPTS)
    assert res.exit_code == 0, res.output
    assert "bit-exact" in res.output and "verify: PASSED" in res.output


def test_compile_of_the_tuned_model_with_other_options_is_refused(tuned, data, tmp_path):
    opts = [o if o != "2" or i != 1 else "3" for i, o in enumerate(OPTS)]  # -N 3
    res = invoke("compile", tuned, "--calib", data / "train.npz", *opts, "-o", tmp_path / "out")
    assert_one_line_error(res, "fine-tuned with levels=2", "levels")
    assert not (tmp_path / "out").exists()


def test_compile_finetune_epochs_writes_the_tuned_network(data, tmp_path):
    out = tmp_path / "c"
    res = invoke("compile", DIGITS, "--calib", data / "train.npz", "--finetune-epochs", 1, "--finetune-data",
                 data / "train.npz", *OPTS, "--target", "python", "-o", out, "--report", "none")
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert any(n.startswith("finetune: 1 epoch(s) on 96") for n in report["notes"])


def _no_output(folder: Path, name: str) -> None:
    assert not (folder / name).exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(f".{name}")], "a temporary file was left"


@pytest.mark.parametrize("case", ["no_labels", "wrong_shape", "epochs_zero", "epochs_negative", "not_onnx"])
def test_finetune_bad_input_is_one_line_and_writes_nothing(data, tmp_path, case):
    args = {"data": data / "train.npz", "epochs": 1, "out": tmp_path / "t.onnx"}
    want = {"no_labels": ("--data", "no labels"), "wrong_shape": ("--data", "shape"),
            "epochs_zero": ("--epochs", ">= 1"), "epochs_negative": ("--epochs", ">= 1"),
            "not_onnx": ("--output", ".onnx")}[case]
    if case == "no_labels":
        args["data"] = data / "nolabels.npz"
    elif case == "wrong_shape":
        args["data"] = data / "wrongshape.npz"
    elif case.startswith("epochs"):
        args["epochs"] = 0 if case == "epochs_zero" else -3
    else:
        args["out"] = tmp_path / "t.txt"
    res = invoke("finetune", DIGITS, "--data", args["data"], "--calib", data / "train.npz", "--epochs",
                 args["epochs"], *OPTS, "-o", args["out"])
    assert_one_line_error(res, *want)
    _no_output(tmp_path, args["out"].name)


def test_finetune_without_torch_names_the_extra(data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    res = invoke("finetune", DIGITS, "--data", data / "train.npz", "--epochs", 1, *OPTS, "-o", tmp_path / "t.onnx")
    assert_one_line_error(res, "pip install -c .ci/constraints.txt -e '.[train]'")
    _no_output(tmp_path, "t.onnx")
    res = invoke("compile", DIGITS, "--finetune-epochs", 1, "--finetune-data", data / "train.npz", *OPTS,
                 "-o", tmp_path / "c")
    assert_one_line_error(res, "pip install -c .ci/constraints.txt -e '.[train]'")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("extra,frag", [(["--finetune-epochs", "2"], "--finetune-data is required"),
                                        (["--finetune-epochs", "0", "--finetune-data", "D"], "--finetune-epochs"),
                                        (["--finetune-epochs", "1", "--finetune-data", "N"], "no labels")])
def test_compile_finetune_bad_input(data, tmp_path, extra, frag):
    extra = [{"D": str(data / "train.npz"), "N": str(data / "nolabels.npz")}.get(e, e) for e in extra]
    res = invoke("compile", DIGITS, "--calib", data / "train.npz", *OPTS, *extra, "-o", tmp_path / "c")
    assert_one_line_error(res, frag)
    assert not (tmp_path / "c").exists()


def test_distill_teacher_runs_in_budgeted_batches(data):
    """--distill's ANN logits stream in --max-memory batches, and equal one whole-set run."""
    from snncc import resources
    from snncc.finetune.run import _teacher_logits
    from snncc.sim.float_runtime import run_graph

    opts = CompileOptions(**API_OPTS)
    result = compile_model(DIGITS, options=opts, calib=str(data / "train.npz"), target="python",
                           echo=lambda _m: None)
    ann = result.float_graph
    x = np.load(data / "train.npz")["x"]
    opts.max_memory = "70M"  # a few samples per batch: the budget binds
    assert resources.batch_size(ann, opts) < len(x)
    whole = np.asarray(run_graph(ann, x)[ann.outputs[0]], np.float64)
    np.testing.assert_allclose(_teacher_logits(ann, x, opts), whole, rtol=1e-5, atol=1e-5)  # BLAS: batch-size ulps


def test_finetune_distill_end_to_end(data, tmp_path):
    out = tmp_path / "distilled.onnx"
    res = invoke("finetune", DIGITS, "--data", data / "train.npz", "--calib", data / "train.npz", "--epochs", 1,
                 "--distill", "--batch-size", 32, *OPTS, "-o", out)
    assert res.exit_code == 0, res.output
    assert out.is_file() and "finetune epoch 1/1: loss" in res.output
