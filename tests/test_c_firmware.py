"""Firmware: the digits model cross-compiled for Cortex-M4 and run under qemu.

Needs arm-none-eabi-gcc, newlib and qemu-system-arm.  Without them the test FAILS
with the install command (snncc.backends.c.verify_c.ARM_INSTALL); it never skips.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from c_graphs import IntGraphBuilder, dw_group_geometry_net, sample_inputs

from snncc.backends.c.emit import c_memory, emit_c
from snncc.backends.c.verify_c import build_firmware, firmware_size, flat_outputs, run_qemu
from snncc.calib_data import load_calib
from snncc.frontend.onnx_import import load_onnx
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.pass_manager import run_pipeline
from snncc.passes import DEFAULT_PIPELINE
from snncc.sim.int_runtime import quantize_input, run_int


def _firmware_net(levels: int, T: int):
    """The bench models' layer kinds on a digits-sized image: the signed image into an
    8-bit and a 4-bit block conv (channel padding), 4- and 2-bit packed block convs, fused
    and not (one feeds a residual add), at the extremes of their widths, depthwise,
    stride 2, dense at 4 and 8 bits."""
    b = IntGraphBuilder((1, 8, 8), timesteps=T, seed=levels)
    s = b.neuron(b.add(b.conv("x", 8, extreme=True), b.conv("x", 8, bits=4, extreme=True)), levels=levels)
    h = b.neuron(b.conv(s, 12, bits=4, extreme=True), levels=levels)
    j = b.neuron(b.add(b.conv(h, 8, bits=2, extreme=True), b.affine(s)), levels=levels, signed=True)
    d = b.neuron(b.conv(j, 8, group=8), levels=levels)
    g = b.neuron(b.conv(d, 20, stride=2, extreme=True), levels=levels)
    f = b.neuron(b.dense(b.flatten(g), 24, bits=4), levels=levels)
    return b.build(b.dense(f, 10))


@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m3"])
@pytest.mark.parametrize("levels", [1, 2, 4, 15])
def test_firmware_kernels_bit_exact(cpu, levels, tmp_path):
    """Every Cortex-M kernel path (M4: Arm DSP; M3: portable) at 8-, 4- and 2-bit
    weights and N in {1, 2, 4, 15} (T = 2 at N = 15: stored membranes), under qemu."""
    graph = _firmware_net(levels, 2 if levels == 15 else 1)
    out = tmp_path / "c"
    out.mkdir()
    emit_c(graph, out, name="fw")
    code = (out / "fw.c").read_text()
    assert "snncc_conv_block_w4(" in code and "snncc_conv_block_w2(" in code and "snncc_dwconv_i8(" in code
    x = sample_inputs((1, 8, 8), n=20)
    log: list[str] = []
    got = run_qemu(build_firmware(out, cpu=cpu), x, timeout=300, log=log)
    want = flat_outputs(graph, run_int(graph, x))
    bad = np.argwhere(got != want)
    assert len(bad) == 0, f"first mismatch at sample/output {bad[0].tolist()}"
    assert f"kernels {'arm-dsp' if cpu == 'cortex-m4' else 'c'}" in log[0]
    caps = run_int(graph, x, capture=[n.output for n in graph.nodes if n.op == "neuron"])
    assert all(np.any(v != 0) for v in caps.values())  # spikes reach every layer


@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m3"])
def test_firmware_no_zero_skip_bit_exact(cpu, tmp_path):
    """-DSNNCC_NO_ZERO_SKIP (the dense quad walk that bench/firmware.py --skip-compare
    measures the zero-quad skip against) lists zero quads too and gives the same sums:
    the Arm DSP (M4) and portable packed (M3) block kernels at N = 1, where many quads
    of levels are zero."""
    graph = _firmware_net(1, 1)
    out = tmp_path / "c"
    out.mkdir()
    emit_c(graph, out, name="fw")
    x = sample_inputs((1, 8, 8), n=12)
    got = run_qemu(build_firmware(out, cpu=cpu, defines=("SNNCC_NO_ZERO_SKIP",)), x, timeout=300)
    want = flat_outputs(graph, run_int(graph, x))
    bad = np.argwhere(got != want)
    assert len(bad) == 0, f"first mismatch at sample/output {bad[0].tolist()}"
    caps = run_int(graph, x, capture=[n.output for n in graph.nodes if n.op == "neuron"])
    assert any(np.any(v == 0) for v in caps.values())  # zero levels reach the block convs


def test_digits_firmware_under_qemu(digits_example, tmp_path):
    graph = load_onnx(digits_example.onnx_path)
    calib = np.load(digits_example.calib_path)
    ctx = PassContext(CompileOptions(levels=4, timesteps=1, threshold_search="none", bias_correction=False),
                      load_calib(calib["x"][:128], graph.values[graph.inputs[0]].shape))
    graph = run_pipeline(graph, DEFAULT_PIPELINE, ctx, echo=lambda s: None)
    out = tmp_path / "c"
    out.mkdir()
    emit_c(graph, out, name="digits")
    elf = build_firmware(out)
    x = np.concatenate([quantize_input(graph, calib["x"]), sample_inputs((1, 8, 8), n=100)])
    got = run_qemu(elf, x, timeout=300)
    want = flat_outputs(graph, run_int(graph, x))
    assert got.shape == want.shape
    bad = np.argwhere(got != want)
    assert len(bad) == 0, f"first mismatch at sample/output {bad[0].tolist()}"
    # real digits are classified well by the firmware (same logits as the runtime)
    assert float(np.mean(got[: len(calib["y"])].argmax(1) == calib["y"])) > 0.9

    sizes = firmware_size(out, elf)
    mem = c_memory(graph)
    lib = sizes["library"]
    print(f"\nfirmware (arm-none-eabi-size): elf {sizes['elf']}, library {lib}, c_memory {mem['arena_bytes']} "
          f"arena / {mem['weight_bytes']} weight bytes")
    assert lib["bss"] == mem["arena_bytes"]  # the static arena is the library's only RAM
    assert lib["data"] == 0
    assert mem["weight_bytes"] < lib["text"] < mem["weight_bytes"] + 32 * 1024  # weights + code in flash


def test_firmware_packed_bound(tmp_path):
    """The Arm DSP packed kernels hold an output's sum times up to 2^(16 - bits): a 4-bit
    conv on the image whose fan-in sum |w| times 128 times 2^12 stays just below 2^31 runs
    the packed block kernel and is exact at the extremes (all -128, all 127); one just
    above takes the scatter kernel (plan.packed_fits)."""
    b = IntGraphBuilder((64, 4, 4), seed=3)
    outs = []
    for wmin in (-7, -8):  # sum |w| of output 0: 576 * 7 = 4032 (< 4096) and 576 * 8
        outs.append(b.conv("x", 5, bits=4, extreme=True))
        b.g.nodes[-1].params["weight"][0] = wmin
    graph = b.build(*outs)
    out = tmp_path / "c"
    out.mkdir()
    emit_c(graph, out, name="fw")
    code = (out / "fw.c").read_text()
    calls = re.findall(r"(snncc_conv_\w+)\(&(l\d)_conv_p", code)  # both schedules
    assert set(calls) == {("snncc_conv_block_w4", "l0"), ("snncc_conv_i8", "l1")}
    x = sample_inputs((64, 4, 4), n=6)
    got = run_qemu(build_firmware(out, cpu="cortex-m4"), x, timeout=300)
    want = flat_outputs(graph, run_int(graph, x))
    bad = np.argwhere(got != want)
    assert len(bad) == 0, f"first mismatch at sample/output {bad[0].tolist()}"
    assert np.abs(want).max() > 2**31 // 4096 // 2  # the sums come near the bound


@pytest.mark.parametrize("seed", [0, 1])
def test_firmware_depthwise_geometry(seed, tmp_path):
    """Depthwise convs of random geometry (channel counts not a multiple of 4, 8/4/2-bit
    weights, stride, padding, dilation; grouped and packed convs beside them) on the
    Cortex-M4 DSP depthwise kernel, under qemu."""
    graph = dw_group_geometry_net(seed, branches=12)
    out = tmp_path / "c"
    out.mkdir()
    emit_c(graph, out, name="fw")
    assert "snncc_dwconv_i8(" in (out / "fw.c").read_text()
    x = sample_inputs(graph.values["x"].shape, n=8)
    got = run_qemu(build_firmware(out, cpu="cortex-m4"), x, timeout=300)
    want = flat_outputs(graph, run_int(graph, x))
    bad = np.argwhere(got != want)
    assert len(bad) == 0, f"first mismatch at sample/output {bad[0].tolist()}"
