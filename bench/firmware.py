"""Instructions, flash and RAM of the emitted C as Cortex-M firmware, under qemu.

    .venv/bin/python bench/firmware.py [--models digits_cnn,...] [--bits 8,4,2] [--levels 4]
                                       [--builds m4-O2,m4-Os,m3-O2] [--samples 64] [--skip-compare]

Models (all on 1x8x8 digits images, T=1): the shipped digits CNN (examples/digits,
its snncc.toml options), a ResNet-8 and a MobileNetV2-style net (tests/zoo.py:
``resnet8`` and ``mobilenetv2_block`` with a 1-channel stem, seeded untrained weights,
calibrated on the digits training split with ``threshold_search="none"``).  Each is
compiled at every weight width in ``--bits`` and built for every target in
``--builds``: Cortex-M4 at -O2 and -Os (DSP extension), Cortex-M3 at -O2 (no DSP: the
portable kernels).

Method (docs/firmware.md): ``qemu-system-arm -M mps2-an386 -icount shift=0``: every
guest instruction advances virtual time by 1 ns, the CMSDK APB timer 0 ticks at 25 MHz,
once per 40 instructions.  The runner (backends/c/firmware/main_bench.c) times one
inference of each test sample through a volatile function pointer, minus the same loop
calling an empty function.  Counts repeat exactly from run to run.  They are
instructions, not cycles: qemu models no pipeline.  Per-layer figures come from a second
build with ``-DSNNCC_PROFILE`` (a timer read after every node; each mark adds about a
dozen instructions to its layer).  Flash is text + rodata + data of the library's three
objects in the link map (after --gc-sections); static RAM their data + bss (the arena);
stack the deepest painted word one inference overwrote.  Every firmware output is
compared with the Python integer runtime (``bit-exact`` column).

``--skip-compare`` times, instead, per block-conv layer (the quad-list kernels), the
default build, which skips zero quads of 4 input levels, against one built with
``-DSNNCC_NO_ZERO_SKIP``, counts the quads each layer's walk visits and the zero ones
among them (from the integer runtime's levels on the same samples), and fits the
break-even zero-quad fraction over the ``--levels`` values (docs/firmware.md).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "examples" / "digits"))

from snncc.backends.c.emit import c_memory, emit_c  # noqa: E402
from snncc.backends.c.verify_c import build_firmware, flat_outputs, map_sizes, run_qemu  # noqa: E402
from snncc.calib_data import load_calib  # noqa: E402
from snncc.frontend.onnx_import import load_onnx  # noqa: E402
from snncc.options import CompileOptions  # noqa: E402
from snncc.pass_context import PassContext  # noqa: E402
from snncc.pass_manager import run_pipeline  # noqa: E402
from snncc.passes import DEFAULT_PIPELINE  # noqa: E402
from snncc.sim.int_runtime import quantize_input, run_int  # noqa: E402

TICK = 40  # instructions per timer tick under -icount shift=0 (25 MHz timer, 1 ns per instruction)
BUILDS = {"m4-O2": ("cortex-m4", "-O2"), "m4-Os": ("cortex-m4", "-Os"), "m3-O2": ("cortex-m3", "-O2")}
DIGITS_OPTIONS = {"threshold": "mse", "weight_quantizer": "mse", "membrane_bits": 16}  # examples/digits/snncc.toml
ZOO_OPTIONS = {"threshold_search": "none", "bias_correction": False}


@dataclass
class Result:
    model: str
    bits: int
    levels: int
    build: str
    instructions: float
    flash: int
    ram_static: int
    stack: int
    exact: bool
    arena: int
    peak_live: int
    layers: list[tuple[str, float]] = field(default_factory=list)


def onnx_models(work: Path, names: list[str]) -> dict[str, tuple[Path, np.ndarray, dict]]:
    """name -> (onnx path, calibration x, compile options)."""
    import train

    out = {}
    x_tr, _, _, _ = train.load_digits_split()
    if "digits_cnn" in names:
        d = np.load(ROOT / "examples" / "digits" / "digits_calib.npz")
        out["digits_cnn"] = (ROOT / "examples" / "digits" / "digits_cnn.onnx", d["x"][:256], DIGITS_OPTIONS)
    for label, zname in (("resnet8_digits", "resnet8"), ("mobilenetv2_digits", "mobilenetv2_block")):
        if label in names:
            import zoo

            path = work / f"{label}.onnx"
            zoo.export(zoo.build_for_digits(zname), (1, 8, 8), path)
            out[label] = (path, x_tr[:256], ZOO_OPTIONS)
    return out


def compile_graph(path: Path, calib_x: np.ndarray, options: dict, bits: int, levels: int):
    graph = load_onnx(path)
    opts = CompileOptions(levels=levels, timesteps=1, weight_bits=bits, **options)
    ctx = PassContext(opts, calib=load_calib(calib_x, graph.values[graph.inputs[0]].shape))
    return run_pipeline(graph, DEFAULT_PIPELINE, ctx, echo=lambda s: None)


def lib_name(label: str) -> str:
    return re.sub(r"\W", "_", label)


def parse_bench(log: str) -> dict:
    m = re.search(r"snncc-bench samples (\d+) ticks (\d+) empty (\d+) stack (\d+)", log)
    if m is None:
        raise RuntimeError(f"no benchmark line in the firmware output: {log[-500:]}")
    n, ticks, empty, stack = (int(v) for v in m.groups())
    nodes = {int(a): int(b) for a, b in re.findall(r"snncc-node (\d+) (\d+)", log)}
    return {"samples": n, "instructions": (ticks - empty) * TICK / n, "stack": stack,
            "nodes": {k: v * TICK / n for k, v in nodes.items()}}


def run_config(graph, out: Path, x_q: np.ndarray, want: np.ndarray, label: str, bits: int, levels: int,
               build: str) -> Result:
    cpu, opt = BUILDS[build]
    name = lib_name(label)
    elf = build_firmware(out, opt=opt, cpu=cpu, main="main_bench.c", tag=f"_{build}")
    log: list[str] = []
    got = run_qemu(elf, x_q, icount=True, log=log, timeout=600)
    exact = bool(np.array_equal(got.astype(np.int64), want))
    total = parse_bench(log[0])
    sizes = map_sizes(elf.with_suffix(".map"), (f"/{name}_{build}.o", f"/{name}_weights_{build}.o",
                                                f"/snncc_kernels_{build}.o"))
    prof = build_firmware(out, opt=opt, cpu=cpu, main="main_bench.c", defines=("SNNCC_PROFILE",),
                          tag=f"_{build}_prof")
    log = []
    run_qemu(prof, x_q, icount=True, log=log, timeout=600)
    nodes = parse_bench(log[0])["nodes"]
    mem = c_memory(graph)
    layers = [(lname, t) for lname, t, _ in layer_times(graph, nodes)]
    return Result(label, bits, levels, build, total["instructions"], sizes["flash_bytes"], sizes["ram_bytes"],
                  total["stack"], exact, mem["arena_bytes"], mem["peak_live_bytes"], layers)


def layer_times(graph, nodes: dict) -> list[tuple[str, float, int]]:
    """(label, instructions, index of its first node) per timed layer: a fused conv is
    timed with its neuron, the next node."""
    fused = {x["ident"] for x in c_memory(graph)["layers"] if x.get("fused")}
    layers = []
    for i, node in enumerate(graph.nodes):
        if f"l{i}_{node.op}" in fused:
            continue
        op = "conv+neuron" if i and f"l{i - 1}_{graph.nodes[i - 1].op}" in fused else node.op
        first = i - 1 if op == "conv+neuron" else i
        layers.append((f"{i}:{op}", nodes.get(i, 0.0) + nodes.get(i - 1, 0.0) * (op == "conv+neuron"), first))
    return layers


def quad_groups(graph, node, x: np.ndarray) -> tuple[int, int] | None:
    """(quads visited, zero quads among them) of a block conv's quad walk over the batch
    ``x`` (S, C, H, W): per output pixel, every in-bounds tap's channel quads, or for the
    first conv on few channels (plan.py: im2col) the quads of its zero-padded window.
    None for convs the walk does not run (grouped)."""
    a = node.attrs
    if node.op != "conv" or int(a.get("group", 1)) != 1:
        return None
    kh, kw = np.asarray(node.params["weight"]).shape[2:]
    s, c, h, w = x.shape
    sh, sw = a.get("strides", (1, 1))
    pt, pl, _, _ = a.get("pads", (0, 0, 0, 0))
    dh, dw = a.get("dilations", (1, 1))
    oh, ow = graph.values[node.output].shape[1:]
    kq = -(-(kh * kw * c) // 4)
    c4 = -(-c // 4)
    xp = np.zeros((s, c4 * 4, h + 2 * kh * dh, w + 2 * kw * dw), dtype=np.int64)  # room for any tap
    oy0, ox0 = kh * dh, kw * dw
    xp[:, :c, oy0:oy0 + h, ox0:ox0 + w] = x
    ys = oy0 - pt + sh * np.arange(oh)
    xs = ox0 - pl + sw * np.arange(ow)
    taps = [xp[:, :, ys[:, None] + ky * dh, xs[None, :] + kx * dw] for ky in range(kh) for kx in range(kw)]
    if c < 4 and kq < kh * kw:  # im2col: the window's values (tap-major, channels inside) in quads
        win = np.concatenate([t[:, :c] for t in taps], axis=1)
        win = np.concatenate([win, np.zeros((s, kq * 4 - win.shape[1], oh, ow), np.int64)], axis=1)
        nz = np.any(win.reshape(s, kq, 4, oh, ow) != 0, axis=2)
        return nz.size, int(nz.size - nz.sum())
    total = zero = 0
    for (ky, kx), t in zip([(ky, kx) for ky in range(kh) for kx in range(kw)], taps):
        inside = ((ys[:, None] + ky * dh - oy0 >= 0) & (ys[:, None] + ky * dh - oy0 < h)
                  & (xs[None, :] + kx * dw - ox0 >= 0) & (xs[None, :] + kx * dw - ox0 < w))
        nz = np.any(t.reshape(s, c4, 4, oh, ow) != 0, axis=2) & inside
        total += int(inside.sum()) * s * c4
        zero += int(inside.sum()) * s * c4 - int(nz.sum())
    return total, zero


@dataclass
class SkipRow:
    model: str
    bits: int
    levels: int
    build: str
    layer: str
    groups: float  # quads visited per inference
    zeros: float  # zero quads among them per inference
    skip: float  # instructions per inference, zero quads skipped (the default)
    noskip: float  # built with -DSNNCC_NO_ZERO_SKIP
    exact: bool


def skip_compare(graph, out: Path, x_q: np.ndarray, want: np.ndarray, label: str, bits: int, levels: int,
                 build: str) -> list[SkipRow]:
    """Per block-conv layer: instructions with and without the zero-quad skip (profiled
    builds), with the quads its walk visits and how many are zero on these samples."""
    cpu, opt = BUILDS[build]
    runs = {}
    exact = True
    for tag, defines in (("skip", ("SNNCC_PROFILE",)), ("noskip", ("SNNCC_PROFILE", "SNNCC_NO_ZERO_SKIP"))):
        elf = build_firmware(out, opt=opt, cpu=cpu, main="main_bench.c", defines=defines, tag=f"_{build}_{tag}")
        log: list[str] = []
        got = run_qemu(elf, x_q, icount=True, log=log, timeout=600)
        exact &= bool(np.array_equal(got.astype(np.int64), want))
        runs[tag] = parse_bench(log[0])["nodes"]
    convs = [n for n in graph.nodes if n.op == "conv"]
    acts = run_int(graph, x_q, capture=[n.inputs[0] for n in convs if n.inputs[0] not in graph.inputs])
    s = x_q.shape[0]
    rows = []
    skip_l, noskip_l = layer_times(graph, runs["skip"]), layer_times(graph, runs["noskip"])
    for (lname, t_skip, first), (_, t_noskip, _) in zip(skip_l, noskip_l):
        node = graph.nodes[first]
        if node.op != "conv":
            continue
        x = x_q if node.inputs[0] in graph.inputs else acts[node.inputs[0]]
        g = quad_groups(graph, node, np.asarray(x).reshape(s, *graph.values[node.inputs[0]].shape))
        if g is not None:
            rows.append(SkipRow(label, bits, levels, build, lname, g[0] / s, g[1] / s, t_skip, t_noskip, exact))
    return rows


def print_skip_tables(rows: list[SkipRow]) -> None:
    """Per layer and N, then per layer a least-squares fit over the N values of
    noskip - skip = a * zero quads - b * quads: a, the instructions a zero quad costs
    without the skip (list entry and multiply-adds); b, the test the skip adds to every
    quad; the skip pays above a zero-quad fraction of b / a."""
    print("\nZero-quad skip on the quad-list (block conv) kernels: instructions per inference per layer "
          "(profiled builds), skip (default) vs -DSNNCC_NO_ZERO_SKIP\n")
    print("| model | weights | build | layer | N | quads | zero quads | zero fraction | skip | no skip | "
          "no skip - skip | bit-exact |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.model} | {r.bits}-bit | {r.build} | {r.layer} | {r.levels} | {r.groups:,.1f} | {r.zeros:,.1f} | "
              f"{r.zeros / r.groups:.4f} | {r.skip:,.0f} | {r.noskip:,.0f} | {r.noskip - r.skip:,.0f} | "
              f"{'yes' if r.exact else 'NO'} |")
    keys = dict.fromkeys((r.model, r.bits, r.build, r.layer) for r in rows)
    print("\nBreak-even (least squares over N: no skip - skip = a x zero quads - b x quads)\n")
    print("| model | weights | build | layer | N values | a: instr. per zero quad without skip | "
          "b: skip test per quad | break-even zero fraction b/a | largest residual |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in keys:
        rs = [r for r in rows if (r.model, r.bits, r.build, r.layer) == key]
        a_m = np.array([[r.zeros, -r.groups] for r in rs])
        d = np.array([r.noskip - r.skip for r in rs])
        if not d.any():  # e.g. the Cortex-M3 at 8 bits: its block kernels do not take the quad walk
            print(f"| {key[0]} | {key[1]}-bit | {key[2]} | {key[3]} | {','.join(str(r.levels) for r in rs)} | "
                  "no fit: the switch does not change this layer | | | |")
            continue
        if len(rs) < 2 or np.linalg.matrix_rank(a_m) < 2:
            print(f"| {key[0]} | {key[1]}-bit | {key[2]} | {key[3]} | {','.join(str(r.levels) for r in rs)} | "
                  "no fit: the zero fraction is the same at every N | | | |")
            continue
        (a, b), *_ = np.linalg.lstsq(a_m, d, rcond=None)
        res = float(np.max(np.abs(a_m @ np.array([a, b]) - d)))
        print(f"| {key[0]} | {key[1]}-bit | {key[2]} | {key[3]} | {','.join(str(r.levels) for r in rs)} | "
              f"{a:.2f} | {b:.3f} | {b / a:.4f} | {res:,.0f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits_cnn,resnet8_digits,mobilenetv2_digits")
    ap.add_argument("--bits", default="8,4,2")
    ap.add_argument("--levels", default="4", help="spike levels N (comma list)")
    ap.add_argument("--builds", default=",".join(BUILDS))
    ap.add_argument("--samples", type=int, default=64, help="digits test images timed and checked (<= 256)")
    ap.add_argument("--skip-compare", action="store_true",
                    help="per block-conv layer: the zero-quad skip against -DSNNCC_NO_ZERO_SKIP, and the break-even")
    args = ap.parse_args(argv)
    names = args.models.split(",")
    bits_list = [int(b) for b in args.bits.split(",")]
    levels_list = [int(n) for n in args.levels.split(",")]
    builds = args.builds.split(",")
    import train

    _, _, x_te, _ = train.load_digits_split()
    x_eval = x_te[: min(args.samples, 256)]
    results: list[Result] = []
    skip_rows: list[SkipRow] = []
    tty = sys.stderr.isatty()
    with tempfile.TemporaryDirectory(prefix="snncc-fw-bench-") as tmp:
        work = Path(tmp)
        models = onnx_models(work, names)
        total = len(names) * len(bits_list) * len(levels_list) * len(builds)
        done = 0
        for label in names:
            path, calib_x, options = models[label]
            for levels in levels_list:
                for bits in bits_list:
                    t0 = time.perf_counter()
                    graph = compile_graph(path, calib_x, options, bits, levels)
                    x_q = quantize_input(graph, x_eval)
                    want = flat_outputs(graph, run_int(graph, x_q))
                    out = work / f"{label}_b{bits}_n{levels}"
                    out.mkdir()
                    emit_c(graph, out, name=lib_name(label))
                    for build in builds:
                        if args.skip_compare:
                            skip_rows += skip_compare(graph, out, x_q, want, label, bits, levels, build)
                        else:
                            results.append(run_config(graph, out, x_q, want, label, bits, levels, build))
                        done += 1
                        if tty:
                            print(f"\r[{done}/{total}] {label} {bits}-bit N={levels} {build} "
                                  f"({time.perf_counter() - t0:.0f} s)   ", end="", file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)
    if args.skip_compare:
        print_skip_tables(skip_rows)
        return 0 if all(r.exact for r in skip_rows) else 1
    print_tables(results)
    return 0 if all(r.exact for r in results) else 1


def print_tables(results: list[Result]) -> None:
    print("\nCortex-M firmware under qemu mps2-an386, -icount shift=0: instructions per inference "
          "(not cycles), T=1\n")
    print("| model | weights | N | build | instructions / inference | flash (library) | static RAM | stack | "
          "arena / peak-live bound | bit-exact |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.model} | {r.bits}-bit | {r.levels} | {r.build} | {r.instructions:,.0f} | {r.flash:,} B | "
              f"{r.ram_static:,} B | {r.stack:,} B | {r.arena:,} / {r.peak_live:,} B | "
              f"{'yes' if r.exact else 'NO'} |")
    for model in dict.fromkeys(r.model for r in results):
        for build in dict.fromkeys(r.build for r in results):
            rows = [r for r in results if r.model == model and r.build == build]
            if not rows:
                continue
            print(f"\n{model}, {build}: instructions per inference per layer (profiled build)\n")
            print("| layer | " + " | ".join(f"{r.bits}-bit N={r.levels}" for r in rows) + " |")
            print("|---|" + "---|" * len(rows))
            for i, (lname, _) in enumerate(rows[0].layers):
                cells = [f"{r.layers[i][1]:,.0f}" if i < len(r.layers) else "" for r in rows]
                if any(c not in ("0", "") for c in cells):
                    print(f"| {lname} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
