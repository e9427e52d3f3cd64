"""Sweep scale-out: the 27-point digits sweep locally (1 and 2 processes) and on Ray (2 local workers).

    .venv/bin/python bench/sweep_scale.py [--quick] [--workers 2]

The grid is N in {1, 2, 4} x weight bits in {2, 4, 8} x T in {1, 2, 4} on the shipped
digits example (examples/digits, its 540 calibration samples, every compile default;
``--quick``: no threshold search and nearest rounding), one BLAS thread everywhere.  Prints the wall time and points
per minute of each executor (the Ray run includes starting its local cluster), checks
that every executor wrote the same CSV, and prints the object-store traffic of the Ray
runs: the bytes put once (the ONNX model and the calibration arrays) and, per task, the
pickled arguments besides the object references and the returned row.  A 3-point Ray
sweep beside the 27-point one shows the per-task figures do not grow with the number
of points.  Ray: pip install 'snncc[ray]'.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# One BLAS thread in every run, the in-process one too (as the pool's and Ray's workers), so the
# CSVs can be compared byte for byte: float32 sums change with the thread count (docs/testing.md).
for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_k] = "1"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snncc.sweep import run_sweep  # noqa: E402

DIGITS = ROOT / "examples" / "digits"
GRID = {"levels": [1, 2, 4], "weight_bits": [2, 4, 8], "timesteps": [1, 2, 4]}
SMALL = {"levels": [1, 2, 4], "weight_bits": [8], "timesteps": [1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="threshold_search none, nearest rounding")
    ap.add_argument("--workers", type=int, default=2, help="processes of the parallel local run and Ray CPUs")
    args = ap.parse_args()
    base = {"threshold_search": "none", "weight_rounding": "nearest"} if args.quick else {}
    model, calib = DIGITS / "digits_cnn.onnx", DIGITS / "digits_calib.npz"
    runs = [("local, 1 process", "local", 1, GRID), (f"local, {args.workers} processes", "local", args.workers, GRID),
            (f"ray, {args.workers} local workers", "ray", args.workers, GRID),
            (f"ray, {args.workers} local workers", "ray", args.workers, SMALL)]
    table, csvs, traffic = [], {}, []
    with tempfile.TemporaryDirectory(prefix="snncc-sweep-scale-") as tmp:
        for k, (label, executor, jobs, grid) in enumerate(runs):
            out = Path(tmp) / f"run{k}"
            stats: dict = {}
            t0 = time.perf_counter()
            rows = run_sweep(model, calib, grid, jobs, out, base_options=base, echo=lambda _m: None,
                             executor=executor, stats=stats)
            wall = time.perf_counter() - t0
            failed = sum(1 for r in rows if r.get("error"))
            table.append((label, len(rows), wall, 60.0 * len(rows) / wall, failed))
            if grid is GRID:
                csvs[label] = (out / "sweep.csv").read_text(encoding="utf-8")
            if executor == "ray":
                traffic.append((len(rows), stats["put_once_bytes"], min(stats["task_arg_bytes"]),
                                max(stats["task_arg_bytes"]), max(stats["task_result_bytes"])))
            print(f"  done: {label}, {len(rows)} points, {wall:.1f} s", file=sys.stderr)
    print(f"digits sweep, {'--quick options' if args.quick else 'every compile default'}, "
          f"540 calibration samples")
    print(f"{'executor':<26s} {'points':>6s} {'wall s':>8s} {'points/min':>10s} {'failed':>6s}")
    for label, n, wall, rate, failed in table:
        print(f"{label:<26s} {n:>6d} {wall:>8.1f} {rate:>10.2f} {failed:>6d}")
    same = len(set(csvs.values())) == 1
    first = next(iter(csvs))
    differ = [label for label, text in csvs.items() if text != csvs[first]]
    print(f"sweep.csv identical across the 27-point runs: {'yes' if same else 'NO: ' + ', '.join(differ)}"
          + ("" if same else f" differ from {first}"))
    print("Ray object store: put once per sweep; per task: pickled arguments besides the 3 object refs, "
          "and the returned row")
    print(f"{'points':>6s} {'put once B':>11s} {'args/task B':>12s} {'result/task B':>14s}")
    for n, once, lo, hi, res in sorted(traffic):
        args_b = f"{lo}" if lo == hi else f"{lo}-{hi}"
        print(f"{n:>6d} {once:>11d} {args_b:>12s} {res:>14d}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
