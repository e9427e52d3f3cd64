"""Firmware: the digits model cross-compiled for Cortex-M4 and run under qemu.

Needs arm-none-eabi-gcc, newlib and qemu-system-arm.  Without them the test FAILS
with the install command (snncc.backends.c.verify_c.ARM_INSTALL); it never skips.
"""

from __future__ import annotations

import numpy as np
from c_graphs import sample_inputs

from snncc.backends.c.emit import c_memory, emit_c
from snncc.backends.c.verify_c import build_firmware, firmware_size, flat_outputs, run_qemu
from snncc.calib_data import load_calib
from snncc.frontend.onnx_import import load_onnx
from snncc.options import CompileOptions
from snncc.pass_context import PassContext
from snncc.pass_manager import run_pipeline
from snncc.passes import DEFAULT_PIPELINE
from snncc.sim.int_runtime import quantize_input, run_int


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
