"""FPGA backend: netlist schema, bit-exact RTL simulation against run_int, yosys checks.

The simulations use Icarus Verilog on a handful of samples per model (all -128, all
127, random, real digits); bench/fpga.py runs 50 samples per model and the synthesis
tables.  A missing iverilog or yosys fails the test with the install command.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from snncc.backends.fpga.emit import emit_fpga, tb_inputs
from snncc.backends.fpga.netlist import build_netlist
from snncc.backends.fpga.sim import INSTALL, simulate
from snncc.calib_data import load_calib
from snncc.errors import SnnccError
from snncc.frontend.onnx_import import load_onnx
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.pass_manager import run_pipeline
from snncc.passes import DEFAULT_PIPELINE
from snncc.sim.int_runtime import quantize_input

FAST = {"threshold_search": "none", "bias_correction": False}


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} not found; install it: {INSTALL}")


def compile_int(onnx_path, calib_x, **opts):
    graph = load_onnx(onnx_path)
    ctx = PassContext(CompileOptions(**opts),
                      load_calib(np.asarray(calib_x, np.float32), graph.values[graph.inputs[0]].shape))
    return run_pipeline(graph, DEFAULT_PIPELINE, ctx, echo=lambda s: None)


def _non_pow2_thresholds(graph) -> bool:
    th = np.concatenate([n.params["theta"].ravel() for n in graph.nodes if n.op == "neuron"])
    return bool(np.any(th & (th - 1)))


@pytest.fixture(scope="module")
def digits_calib(digits_example):
    d = np.load(digits_example.calib_path)
    return d["x"]


def _emit(graph, tmp_path, lanes):
    out = tmp_path / f"fpga_l{lanes}"
    out.mkdir()
    emit_fpga(graph, out, name="digits", lanes=lanes)
    return out


# (T, weight bits, lanes, event-driven, random samples, real digit samples), besides all -128 and all 127.
# Lanes 1 is the scalar design (471k cycles per inference), so it gets the fewest samples; lanes 4 runs the
# banked buffers with one neuron serving the lanes, lanes 16 the parallel epilogue (P neurons) and the
# clamped dense layer; the event-driven cases check the data-dependent cycle model on every sample.
DIGITS_CASES = [(1, 4, 1, False, 0, 1), (1, 4, 4, False, 1, 1), (1, 8, 16, True, 1, 2), (4, 4, 4, True, 1, 1),
                (4, 8, 16, False, 1, 0)]


@pytest.mark.parametrize("T,bits,lanes,event,n_random,n_real", DIGITS_CASES,
                         ids=[f"T{c[0]}_w{c[1]}_P{c[2]}{'_event' if c[3] else ''}" for c in DIGITS_CASES])
def test_digits_bit_exact(digits_example, digits_calib, tmp_path, T, bits, lanes, event, n_random, n_real):
    _need("iverilog")
    graph = compile_int(digits_example.onnx_path, digits_calib[:64], levels=4, timesteps=T, weight_bits=bits)
    assert _non_pow2_thresholds(graph)
    out = tmp_path / "fpga"
    out.mkdir()
    emit_fpga(graph, out, name="digits", lanes=lanes, event_driven=event)
    x = tb_inputs(graph, quantize_input(graph, digits_calib[100:100 + n_real]), n_random=n_random)
    res = simulate(graph, out, x, simulator="iverilog")
    assert res.ok, res.summary()
    if event:  # data-dependent: every sample's cycles equal the model, which is below the bound
        assert res.cycles == res.predicted and max(res.cycles) <= res.estimate, res.summary()
        assert min(res.cycles) < res.estimate
    else:
        assert res.cycles == [res.estimate] * len(x)  # the netlist's cycle model is exact


@pytest.mark.parametrize("name,event", [("resnet8", False), ("mobilenetv2_block", True)])
def test_zoo_residual_depthwise_signed_bit_exact(tmp_path, name, event):
    """Residual joins (identity affine + add), depthwise conv, signed neurons, linear bottleneck."""
    _need("iverilog")
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    import zoo

    path = tmp_path / f"{name}.onnx"
    zoo.export(zoo.build_for_digits(name), (1, 8, 8), path)
    calib = np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32)
    graph = compile_int(path, calib, levels=4, timesteps=2, weight_bits=4, **FAST)
    ops = {n.op for n in graph.nodes}
    assert "add" in ops
    if name == "mobilenetv2_block":
        assert any(n.op == "neuron" and n.attrs.get("signed") for n in graph.nodes)
        assert any(n.op == "conv" and n.attrs["group"] > 1 for n in graph.nodes)
    assert _non_pow2_thresholds(graph)
    out = tmp_path / "fpga"
    out.mkdir()
    emit_fpga(graph, out, name="m", lanes=8, event_driven=event)
    netlist = json.loads((out / "netlist.json").read_text())
    assert any(b["banks"] > 1 for b in netlist["buffers"])
    res = simulate(graph, out, tb_inputs(graph, n_random=1), simulator="iverilog")
    assert res.ok, res.summary()
    assert res.cycles == (res.predicted if event else [res.estimate] * 3)


def test_move_cores_concat_shuffle_pad_bit_exact(tmp_path):
    """concat, channel_shuffle and a zero pad that no conv absorbs (a max pool follows) become move cores."""
    _need("iverilog")
    import torch
    from torch import nn

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    import zoo

    class MoveNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1), nn.ReLU())
            self.a = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU())
            self.b = nn.Sequential(nn.Conv2d(8, 4, 3, 1, 1), nn.ReLU())
            self.pad = nn.ZeroPad2d((1, 0, 1, 0))
            self.pool = nn.MaxPool2d(3, 3)
            self.fc = nn.Linear(8 * 3 * 3, 10)

        def forward(self, x):
            x = self.stem(x)
            x = torch.cat([self.a(x), self.b(x)], dim=1)
            n, c, h, w = x.size()
            x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
            return self.fc(torch.flatten(self.pool(self.pad(x)), 1))

    zoo.export(zoo._seeded_init(MoveNet(), 0), (1, 8, 8), tmp_path / "move.onnx")
    calib = np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32)
    graph = compile_int(tmp_path / "move.onnx", calib, levels=4, timesteps=2, weight_bits=4, **FAST)
    assert {"concat", "channel_shuffle", "pad"} <= {n.op for n in graph.nodes}
    out = tmp_path / "fpga"
    out.mkdir()
    emit_fpga(graph, out, name="m", lanes=4)
    assert {"concat", "channel_shuffle", "pad"} <= {c["op"] for c in json.loads((out / "netlist.json").read_text())[
        "cores"] if c["kind"] == "move"}
    res = simulate(graph, out, tb_inputs(graph, n_random=2), simulator="iverilog")
    assert res.ok, res.summary()
    assert res.cycles == [res.estimate] * 4


def test_netlist_schema_and_widths(digits_example, digits_calib):
    import jsonschema

    from snncc.backends.fpga.emit import SCHEMA_PATH

    graph = compile_int(digits_example.onnx_path, digits_calib[:64], levels=4, timesteps=4, weight_bits=4)
    netlist, roms = build_netlist(graph, lanes=4, name="digits")
    jsonschema.validate(netlist, json.loads(SCHEMA_PATH.read_text()))
    schema = json.loads(SCHEMA_PATH.read_text())
    est = netlist["estimate"]
    assert est["families"]["ice40"] == est["resources"]
    for bad in (dict(netlist, schema_version=1),
                dict(netlist, estimate={k: v for k, v in est.items() if k != "families"}),
                dict(netlist, estimate=dict(est, families={k: v for k, v in est["families"].items() if k != "xc7"})),
                dict(netlist, estimate=dict(est, families=dict(est["families"], xc7=dict(
                    est["families"]["xc7"], bram=0.25))))):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    conv = next(c for c in netlist["cores"] if c["op"] == "conv")
    node = graph.node(conv["node"])
    assert conv["widths"]["weight"] == 4 == node.attrs["bits"]
    # the first conv's ROM holds its weights packed at exactly 4 bits per lane
    rom = next(m for m in conv["memories"] if m["name"].endswith("_w"))
    assert rom["width"] == 4 * conv["lanes"]
    w = node.params["weight"].reshape(node.params["weight"].shape[0], -1)
    first = roms[rom["name"]][0]
    lanes = [((first >> (4 * i)) & 0xF) - (16 if (first >> (4 * i)) & 0x8 else 0) for i in range(conv["lanes"])]
    assert lanes == [int(v) for v in w[: conv["lanes"], 0]]
    # a stored membrane is as wide as its proven state range needs, not the 16-bit B
    ep = conv["epilogue"]
    lo, hi = graph.node(ep["node"]).attrs["v_state_range"]
    assert -(1 << (ep["state_bits"] - 1)) <= lo and hi < (1 << (ep["state_bits"] - 1))
    assert not (-(1 << (ep["state_bits"] - 2)) <= lo and hi < (1 << (ep["state_bits"] - 2)))


def test_testbench_fails_on_wrong_output(digits_example, digits_calib, tmp_path):
    _need("iverilog")
    graph = compile_int(digits_example.onnx_path, digits_calib[:64], levels=4, timesteps=1, weight_bits=8)
    out = _emit(graph, tmp_path, 16)
    wrong = graph.copy()
    wrong.nodes[-1].params["bias"] = wrong.nodes[-1].params["bias"] + 1  # expected outputs off by one
    res = simulate(wrong, out, tb_inputs(graph, n_random=1), simulator="iverilog")
    assert not res.ok
    assert "first mismatch: sample 0 word 0" in res.message
    # the emitted Makefile's `make sim` passes on the emitted samples (exit code 0)
    proc = subprocess.run(["make", "-s", "sim"], cwd=out, capture_output=True, text=True)
    assert proc.returncode == 0 and "PASS" in proc.stdout, proc.stdout + proc.stderr


def test_cli_compile_verify_and_bad_input(digits_example, tmp_path):
    _need("iverilog")
    out = tmp_path / "out"
    cli = [sys.executable, "-m", "snncc"]
    model = str(digits_example.onnx_path)
    proc = subprocess.run(cli + ["compile", model, "--target", "fpga", "--lanes", "0", "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: option --lanes")
    assert "Traceback" not in proc.stderr and not out.exists()
    d = np.load(digits_example.calib_path)
    data = tmp_path / "few.npz"
    np.savez(data, x=d["x"][:3], y=d["y"][:3])
    proc = subprocess.run(cli + ["verify", model, "--target", "fpga", "--lanes", "16", "--event-driven",
                                 "--data", str(data), "--threshold-search", "none"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[ok] integer runtime == Verilog: bit-exact: 3 samples, 30 output words" in proc.stdout
    assert "event-driven: equal the data-dependent model" in proc.stdout
    proc = subprocess.run(cli + ["compile", model, "--target", "fpga", "--lanes", "3", "-o", str(out),
                                 "--report", "none", "--threshold-search", "none"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    netlist = json.loads((out / "netlist.json").read_text())
    assert any("clamped to 2" in n for n in netlist["notes"])  # the dense layer's 10 outputs
    assert (out / "rtl" / "digits_cnn_top.v").is_file() and list((out / "mem").glob("*.mem"))


def test_missing_tools_name_the_install_command(digits_example, digits_calib, tmp_path, monkeypatch):
    from snncc.backends.fpga.synth import synthesize

    graph = compile_int(digits_example.onnx_path, digits_calib[:32], levels=4, timesteps=1, **FAST)
    out = _emit(graph, tmp_path, 16)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SnnccError, match="apt-get install"):
        simulate(graph, out, tb_inputs(graph, n_random=1))
    with pytest.raises(SnnccError, match="apt-get install"):
        synthesize(out, "ice40")


def test_accumulator_over_32_bits_is_refused(digits_example, digits_calib):
    graph = compile_int(digits_example.onnx_path, digits_calib[:32], levels=4, timesteps=1, **FAST)
    graph.nodes[-1].attrs["acc_range"] = [-(1 << 33), 1 << 33]
    with pytest.raises(SnnccError, match="more than 32"):
        build_netlist(graph, lanes=1)


def test_synth_ice40_digits_fits_up5k_under_1ms(digits_example, digits_calib, tmp_path):
    """One yosys run: the 4-bit digits CNN at lanes 4 has no latch, no multi-driven net, fits an UP5K
    (5,280 LUT4, 30 EBR) and needs under 100,000 cycles (1 ms at 100 MHz) per inference."""
    _need("yosys")
    from snncc.backends.fpga.synth import synthesize

    graph = compile_int(digits_example.onnx_path, digits_calib[:64], levels=4, timesteps=1, weight_bits=4)
    out = _emit(graph, tmp_path, 4)
    netlist = json.loads((out / "netlist.json").read_text())
    assert netlist["estimate"]["cycles"] + netlist["estimate"]["io_cycles"] < 100_000
    rep = synthesize(out, "ice40")
    assert rep["latches"] == 0 and rep["multi_driven"] == 0
    assert 0 < rep["total"]["lut"] <= 5280 and rep["total"]["bram"] <= 30, rep["total"]
    saved = json.loads((out / "synth_report.json").read_text())
    assert saved["families"]["ice40"]["total"] == rep["total"]
    assert set(rep["cores"]) == {c["name"] for c in json.loads((out / "netlist.json").read_text())["cores"]}


def test_cell_table_classifies_each_family():
    from snncc.backends.fpga.synth import classify

    assert classify("SB_LUT4", "ice40") == ("lut", 1) and classify("SB_DFFESR", "ice40") == ("ff", 1)
    assert classify("SB_CARRY", "ice40") is None and classify("CCU2C", "ecp5") is None
    assert classify("TRELLIS_DPR16X4", "ecp5") == ("lut", 4) and classify("DP16KD", "ecp5") == ("bram", 1)
    assert classify("LUT6", "xc7") == ("lut", 1) and classify("RAMB18E1", "xc7") == ("bram", 0.5)
    assert classify("FDCE_1", "xc7") == ("ff", 1) and classify("MUXF7", "xc7") is None


def test_synth_refuses_latches(tmp_path):
    _need("yosys")
    from snncc.backends.fpga.synth import synthesize

    (tmp_path / "rtl").mkdir()
    (tmp_path / "netlist.json").write_text(json.dumps({"name": "bad", "cores": [],
                                                       "estimate": {"resources": {}}}))
    (tmp_path / "rtl" / "bad_top.v").write_text(
        "module bad_top(input wire en, input wire d, output reg q);\n"
        "always @* if (en) q = d;\nendmodule\n")
    with pytest.raises(SnnccError, match="latch"):
        synthesize(tmp_path, "ice40")
