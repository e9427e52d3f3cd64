"""FPGA backend bench: bit-exact RTL simulation, cycles and yosys resources per model and lane count.

For every model and ``--lanes`` value it emits the FPGA target, simulates ``--samples``
inputs (all -128, all 127, random, then real digits) and compares every output word
with the integer runtime; then it synthesizes with yosys for each ``--families`` entry
and prints LUT/FF/BRAM/DSP next to the netlist's estimate (an iCE40 model), with the
latency at 100 MHz (compute cycles; the AXI I/O adds ``io_cycles`` when not overlapped).

    .venv/bin/python bench/fpga.py                      # everything (long: ~1 h on 2 shared cores)
    .venv/bin/python bench/fpga.py --models digits_t1_w4 --families ice40

Timings on a shared machine are noisy; cycles and cell counts are exact.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from snncc.backends.fpga.emit import emit_fpga, tb_inputs  # noqa: E402
from snncc.backends.fpga.sim import simulate  # noqa: E402
from snncc.backends.fpga.synth import synthesize  # noqa: E402
from snncc.backends.fpga.verify import choose_simulator  # noqa: E402
from snncc.calib_data import load_calib  # noqa: E402
from snncc.frontend.onnx_import import load_onnx  # noqa: E402
from snncc.options import CompileOptions  # noqa: E402
from snncc.pass_context import PassContext  # noqa: E402
from snncc.pass_manager import run_pipeline  # noqa: E402
from snncc.passes import DEFAULT_PIPELINE  # noqa: E402
from snncc.sim.int_runtime import quantize_input  # noqa: E402

DIGITS = ROOT / "examples" / "digits"
MODELS = {
    # name: (onnx source, compile options)
    "digits_t1_w4": ("digits", dict(levels=4, timesteps=1, weight_bits=4)),
    "digits_t1_w8": ("digits", dict(levels=4, timesteps=1, weight_bits=8)),
    "digits_t4_w4": ("digits", dict(levels=4, timesteps=4, weight_bits=4)),
    "digits_t4_w8": ("digits", dict(levels=4, timesteps=4, weight_bits=8)),
    "resnet8_t2_w4": ("resnet8", dict(levels=4, timesteps=2, weight_bits=4, threshold_search="none")),
    "mobilenetv2_t2_w4": ("mobilenetv2_block", dict(levels=4, timesteps=2, weight_bits=4,
                                                    threshold_search="none")),
}


def build_graph(source: str, opts: dict, tmp: Path):
    calib = np.load(DIGITS / "digits_calib.npz")["x"].astype(np.float32)
    if source == "digits":
        path = DIGITS / "digits_cnn.onnx"
    else:
        import zoo

        path = tmp / f"{source}.onnx"
        zoo.export(zoo.build_for_digits(source), (1, 8, 8), path)  # seeded, untrained
    graph = load_onnx(path)
    ctx = PassContext(CompileOptions(**opts), load_calib(calib[:256], (1, 8, 8)))
    return run_pipeline(graph, DEFAULT_PIPELINE, ctx, echo=lambda s: None), calib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--lanes", default="1,4,16")
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--families", default="ice40,ecp5,xc7", help="comma list, or 'none'")
    ap.add_argument("--synth-lanes", default=None, help="lanes to synthesize (default: all of --lanes)")
    ap.add_argument("--simulator", default="auto")
    args = ap.parse_args()
    lanes_list = [int(v) for v in args.lanes.split(",")]
    synth_lanes = [int(v) for v in (args.synth_lanes or args.lanes).split(",")]
    families = [] if args.families == "none" else args.families.split(",")
    head = (f"{'model':<18} {'P':>3} {'exact':>9} {'cyc sim':>8} {'cyc est':>8} {'us@100M':>8} {'family':>6} "
            f"{'LUT y/est':>12} {'FF y/est':>12} {'BRAM y/est':>10} {'DSP y/est':>9}")
    print(head)
    print("-" * len(head))
    with tempfile.TemporaryDirectory(prefix="snncc_bench_fpga_") as tmpdir:
        tmp = Path(tmpdir)
        for mname in args.models.split(","):
            source, opts = MODELS[mname]
            graph, calib = build_graph(source, opts, tmp)
            n_real = max(0, args.samples - 2 - 16)
            real = quantize_input(graph, calib[300:300 + n_real])
            x = tb_inputs(graph, real, n_random=min(16, args.samples - 2))[: args.samples]
            for lanes in lanes_list:
                out = tmp / f"{mname}_p{lanes}"
                out.mkdir()
                info = emit_fpga(graph, out, name="m", lanes=lanes)
                sim = choose_simulator(args.simulator, info["cycles"] * len(x))
                res = simulate(graph, out, x, simulator=sim)
                exact = f"{len(x) if res.ok else 0}/{len(x)}"
                cyc = res.cycles[0] if res.cycles and len(set(res.cycles)) == 1 else -1
                lat = info["cycles"] / 100.0
                base = f"{mname:<18} {lanes:>3} {exact:>9} {cyc:>8} {info['cycles']:>8} {lat:>8.1f}"
                if not res.ok:
                    print(base + f"  MISMATCH: {res.message}")
                fams = families if lanes in synth_lanes else []
                if not fams:
                    print(base)
                for fam in fams:
                    rep = synthesize(out, fam)
                    t, e = rep["total"], rep["estimate"]
                    cells = " ".join(f"{str(t[k]) + '/' + str(e[k]):>{w}}" for k, w in
                                     (("lut", 12), ("ff", 12), ("bram", 10), ("dsp", 9)))
                    print(f"{base} {fam:>6} {cells}", flush=True)
    print("\nestimates model iCE40 (LUT4, SB_DFF, 4 kbit EBR); ecp5 counts DP16KD (18 kbit) and xc7 RAMB36 "
          "(RAMB18 = 0.5), so their BRAM and LUT differ from the estimate by construction.")


if __name__ == "__main__":
    main()
