"""--target qonnx: the QONNX file, run by qonnx's own executor (execute_onnx), equals the
integer runtime on every output (as integers after the output scale) for the digits CNN,
a ResNet and a MobileNetV2 at T=1, N in {1, 2, 4, 15}, 2/4/8-bit weights; bad input is
one error line."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner
from interop_models import CLI_FAST, Staged, probe_inputs, small_calib

from snncc.backends import target
from snncc.backends.qonnx.emit import build_model, check_graph, run_qonnx, thresholds, to_out_q, write_qonnx
from snncc.cli import cli
from snncc.errors import SnnccError
from snncc.sim.int_runtime import quantize_input, run_int

GRID = [(n, bits) for n in (1, 2, 4, 15) for bits in (2, 4, 8)]
# the zoo nets take every N and every bit width, not every pair (bench/interop_agreement.py runs all 12)
COVER = [(1, 8), (2, 2), (4, 4), (15, 8)]


@pytest.fixture(scope="module")
def calib64(digits_example, tmp_path_factory):
    return small_calib(digits_example.calib_path, tmp_path_factory.mktemp("calib"))


def _check_grid(staged: Staged, x_q: np.ndarray, tmp_path, grid=GRID) -> None:
    for n, bits in grid:
        graph = staged.finish(levels=n, timesteps=1, weight_bits=bits)
        path = write_qonnx(graph, tmp_path / f"n{n}_b{bits}.onnx")
        logits = run_qonnx(path, x_q)
        ref = run_int(graph, x_q)
        assert len(logits) == len(graph.outputs)
        for got, name in zip(logits, graph.outputs):
            out_q = to_out_q(got, graph.meta["output_scales"][name])
            bad = np.argwhere(out_q != ref[name])
            assert not len(bad), f"N={n} bits={bits}: {len(bad)} of {out_q.size} outputs differ, first {bad[0]}"


def test_digits_cnn_bit_exact(digits, tmp_path):
    staged = Staged(digits.onnx_path, digits.x_calib[:64])
    graph = staged.finish()
    x_q = probe_inputs(staged.shape, quantize_input(graph, digits.x_test[:6]))
    _check_grid(staged, x_q, tmp_path)


@pytest.mark.parametrize("name", ["resnet8", "mobilenetv2_block"])
def test_zoo_bit_exact(zoo_onnx, tmp_path, name):
    shape = zoo_onnx.input_shape(name)
    calib = np.random.default_rng(0).standard_normal((8, *shape)).astype(np.float32)
    _check_grid(Staged(zoo_onnx(name), calib), probe_inputs(shape), tmp_path, COVER)


def test_file_is_qonnx_dialect(zoo_onnx):
    """Weights behind Quant nodes with their bit width; one MultiThreshold per neuron with
    thresholds k*theta - v_init; a signed neuron counts from -N; the output scale a Mul."""
    from qonnx.core.datatype import DataType

    shape = zoo_onnx.input_shape("mobilenetv2_block")
    calib = np.random.default_rng(0).standard_normal((8, *shape)).astype(np.float32)
    graph = Staged(zoo_onnx("mobilenetv2_block"), calib).finish(levels=4, weight_bits=4)
    model = build_model(graph)
    ops = [n.op_type for n in model.graph.node]
    neurons = [n for n in graph.nodes if n.op == "neuron"]
    weighted = [n for n in graph.nodes if "weight" in n.params]
    assert ops.count("MultiThreshold") == len(neurons) and ops.count("Quant") == len(weighted)
    assert model.get_tensor_datatype("x_q") == DataType["INT8"]
    for q in (n for n in model.graph.node if n.op_type == "Quant"):
        w = model.get_initializer(q.input[0])
        bits = int(model.get_initializer(q.input[3]))
        assert bits == 4 and np.array_equal(w, np.rint(w)) and np.abs(w).max() <= 7
    signed = next(n for n in neurons if n.attrs.get("signed"))
    thr, bias = thresholds(signed)
    theta, v0 = signed.params["theta"].astype(np.int64), signed.params["v_init"].astype(np.int64)
    assert bias == -4 and thr.shape == (len(theta), 8)
    assert np.array_equal(thr[:, 0], -3 * theta - v0) and np.array_equal(thr[:, -1], 4 * theta - v0)
    assert model.graph.node[-1].op_type == "Mul"


def test_refuses_saturation_that_changes_a_level(digits):
    graph = Staged(digits.onnx_path, digits.x_calib[:64]).finish(levels=4)
    neuron = next(n for n in graph.nodes if n.op == "neuron")
    neuron.attrs["membrane_bits"] = 8  # 4*theta no longer fits, and v reaches past 127
    with pytest.raises(SnnccError, match="saturates") as err:
        check_graph(graph)
    assert neuron.name in str(err.value)


def test_cli_refuses_timesteps_over_one(digits_example, calib64, tmp_path):
    out = tmp_path / "q"
    res = CliRunner().invoke(cli, ["compile", str(digits_example.onnx_path), "--calib", str(calib64), *CLI_FAST,
                                   "--target", "qonnx", "-T", "2", "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines()[-1] == (
        "error: option --timesteps is 2; --target qonnx needs 1 (a MultiThreshold is the neuron at T=1)")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cli_compile_and_verify(digits_example, calib64, tmp_path):
    out = tmp_path / "q"
    args = [str(digits_example.onnx_path), "--calib", str(calib64), *CLI_FAST, "--target", "qonnx"]
    res = CliRunner().invoke(cli, ["compile", *args, "-o", str(out), "--name", "model", "--report", "none"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "report.json"]
    res = CliRunner().invoke(cli, ["verify", *args])
    assert res.exit_code == 0, res.output
    assert "[ok] integer runtime == QONNX" in res.output


def test_missing_extra_is_one_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "qonnx.core.onnx_exec", None)  # import fails as if not installed
    with pytest.raises(SnnccError) as err:
        target("qonnx").check_tools()
    assert str(err.value) == ("option --target qonnx needs the qonnx package, which is not installed: "
                              "pip install 'snncc[qonnx]'")
