"""FPGA backend bench: bit-exact RTL simulation, cycles and yosys resources per model and lane count.

For every model, ``--lanes`` value and mode (``dense``; ``event`` = ``--event-driven``) it
emits the FPGA target, simulates ``--samples`` inputs (all -128, all 127, random, then real
digits) and compares every output word with the integer runtime; then it synthesizes with
yosys for each ``--families`` entry and prints LUT/FF/BRAM/DSP next to the netlist's estimate
for that family, with the latency at 100 MHz (compute cycles; the AXI I/O adds ``io_cycles``
when not overlapped).  Event-driven rows print the simulated cycles (min..max, mean) against
the exact data-dependent model, and the bound.

    .venv/bin/python bench/fpga.py                     # everything (long: about an hour on 2 shared cores)
    .venv/bin/python bench/fpga.py --quick             # digits T=1 4-bit, lanes 4 and 16, ice40, 8 samples
    .venv/bin/python bench/fpga.py --models digits_t1_w4 --lanes 4 --families ice40,ecp5,xc7 --samples 20

Timings on a shared machine are noisy; cycles and cell counts are exact.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from snncc.backends.fpga.emit import emit_fpga, tb_inputs  # noqa: E402
from snncc.backends.fpga.sim import simulate  # noqa: E402
from snncc.backends.fpga.synth import FAMILIES, synthesize  # noqa: E402
from snncc.backends.fpga.verify import choose_simulator  # noqa: E402
from snncc.calib_data import load_calib  # noqa: E402
from snncc.errors import SnnccError  # noqa: E402
from snncc.frontend.onnx_import import load_onnx  # noqa: E402
from snncc.options import CompileOptions  # noqa: E402
from snncc.pass_context import PassContext  # noqa: E402
from snncc.pass_manager import run_pipeline  # noqa: E402
from snncc.passes import DEFAULT_PIPELINE  # noqa: E402
from snncc.signals import Interrupted, handle_signals  # noqa: E402
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
QUICK = dict(models="digits_t1_w4", lanes="4,16", families="ice40", samples=8, modes="dense,event")


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


def _cycles(res, info) -> tuple[str, str]:
    """(simulated, estimated) cycle columns."""
    if not res.cycles:
        return "-", str(info["cycles"])
    if res.predicted:  # event-driven: data-dependent
        sim = f"{min(res.cycles)}..{max(res.cycles)}"
        model = "=model" if res.predicted == res.cycles else "!=model"
        return f"{sim} m{np.mean(res.cycles):.0f}", f"{model} <={info['cycles']}"
    sim = str(res.cycles[0]) if len(set(res.cycles)) == 1 else f"{min(res.cycles)}..{max(res.cycles)}"
    return sim, str(info["cycles"])


def main() -> None:
    # SIGTERM/SIGINT/SIGHUP raise Interrupted: run_child then kills yosys' or the simulator's
    # process group and the TemporaryDirectory goes, instead of an orphaned yosys.
    handle_signals()
    try:
        _main()
    except Interrupted as exc:
        print(f"interrupted by {exc.name}", file=sys.stderr)
        sys.exit(128 + exc.signum)


def _main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    ap.add_argument("--lanes", default="1,4,16")
    ap.add_argument("--modes", default="dense", help="comma list of dense, event (--event-driven)")
    ap.add_argument("--samples", type=int, default=50, help="simulated inputs per row (0: no simulation)")
    ap.add_argument("--families", default="ice40,ecp5,xc7", help="comma list, or 'none'")
    ap.add_argument("--synth-lanes", default=None, help="lanes to synthesize (default: all of --lanes)")
    ap.add_argument("--simulator", default="auto")
    ap.add_argument("--quick", action="store_true", help="a subset that finishes in minutes: " +
                    ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()))
    args = ap.parse_args()
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    lanes_list = [int(v) for v in str(args.lanes).split(",")]
    synth_lanes = [int(v) for v in (args.synth_lanes or str(args.lanes)).split(",")]
    families = [] if args.families == "none" else args.families.split(",")
    for fam in families:
        if fam not in FAMILIES:
            ap.error(f"--families: unknown {fam!r}")
    modes = args.modes.split(",")
    head = (f"{'model':<18} {'P':>3} {'mode':>5} {'exact':>7} {'cyc sim':>18} {'cyc est':>13} {'us@100M':>8} "
            f"{'family':>6} {'LUT y/est':>12} {'FF y/est':>11} {'BRAM y/est':>10} {'DSP':>5}")
    print(head)
    print("-" * len(head), flush=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="snncc_bench_fpga_") as tmpdir:
        tmp = Path(tmpdir)
        for mname in args.models.split(","):
            source, opts = MODELS[mname]
            graph, calib = build_graph(source, opts, tmp)
            theta = np.concatenate([n.params["theta"] for n in graph.nodes if n.op == "neuron"]).astype(np.int64)
            print(f"{mname:<18} thresholds: {int(((theta & (theta - 1)) != 0).sum())} of {theta.size} not a power "
                  f"of two ({theta.min()}..{theta.max()})", flush=True)
            n_real = max(0, args.samples - 2 - 16)
            real = quantize_input(graph, calib[300:300 + n_real])
            x = tb_inputs(graph, real, n_random=min(16, max(0, args.samples - 2)))[: args.samples]
            for lanes in lanes_list:
                for mode in modes:
                    out = tmp / f"{mname}_p{lanes}_{mode}"
                    out.mkdir()
                    info = emit_fpga(graph, out, name="m", lanes=lanes, event_driven=mode == "event")
                    if args.samples:
                        sim = choose_simulator(args.simulator, info["cycles"] * len(x))
                        res = simulate(graph, out, x, simulator=sim)
                        exact = f"{len(x) if res.ok else 0}/{len(x)}"
                        cyc_sim, cyc_est = _cycles(res, info)
                        lat = (np.mean(res.cycles) if res.predicted else info["cycles"]) / 100.0
                    else:
                        res, exact, (cyc_sim, cyc_est), lat = None, "-", ("-", str(info["cycles"])), \
                            info["cycles"] / 100.0
                    base = (f"{mname:<18} {lanes:>3} {mode:>5} {exact:>7} {cyc_sim:>18} {cyc_est:>13} "
                            f"{lat:>8.1f}")
                    if res is not None and not res.ok:
                        print(base + f"  MISMATCH: {res.message}", flush=True)
                    fams = families if lanes in synth_lanes else []
                    if not fams:
                        print(base, flush=True)
                    for fam in fams:
                        try:
                            rep = synthesize(out, fam)
                        except SnnccError as exc:  # one family's yosys/ABC crash must not lose the other rows
                            print(f"{base} {fam:>6}  error: {exc}", flush=True)
                            continue
                        t, e = rep["total"], rep["estimate"]
                        cells = " ".join(f"{str(t[k]) + '/' + str(e[k]):>{w}}" for k, w in
                                         (("lut", 12), ("ff", 11), ("bram", 10)))
                        print(f"{base} {fam:>6} {cells} {t['dsp']:>5}", flush=True)
                    for note in info["notes"]:
                        print(f"{'':<18} note: {note}")
    print(f"\nestimates: per family (docs/fpga.md); ice40 LUT4/SB_DFF/4 kbit EBR, ecp5 -nodsp LUT4 (+4 per "
          f"TRELLIS_DPR16X4)/DP16KD, xc7 LUT6 (+LUTRAM)/RAMB36 (RAMB18 = 0.5).  Event rows: cycles simulated "
          f"min..max and mean, '=model' when every sample equals the data-dependent model; latency from the "
          f"mean.  Wall time {time.time() - t0:.0f} s (noisy: shared machine).")


if __name__ == "__main__":
    main()
