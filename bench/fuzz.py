"""Differential fuzzing for a given time: random small CNNs, compiled and checked end to end.

    .venv/bin/python bench/fuzz.py --seconds 3600 [--seed 0] [--out fuzz-failures] [--sanitize]

Each graph comes from ``tests/fuzz_graphs.py`` with seed ``--seed + i``: an ONNX model
(conv with groups, stride, dilation and padding, depthwise, BatchNorm, pools, residual
adds, concat, channel shuffle, Pad, flatten, dense) and random compile options (N, T,
weight bits, membrane width and shift, threshold and weight methods).  Each must either
be rejected with a clean one-line SnnccError, or compile to C that is bit-exact against
the integer runtime (random inputs, all -128 and all 127), with the float IR matching
onnxruntime.  The C builds alternate between the host's best x86 kernels and the portable
C (``-DSNNCC_NO_SIMD``); ``--sanitize`` adds ASan/UBSan to every build.

Prints the graphs tried and the outcomes by category; each failure is saved with a
reproducer (model.onnx, options.json, calib.npy, failure.txt) under ``--out/seed-N``.
Replay one seed with ``--seed N --count 1``.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from c_graphs import simd_builds  # noqa: E402
from fuzz_graphs import NumpyChooser, random_case, run_case_in_tmp, save_reproducer  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="time budget (default 60)")
    ap.add_argument("--count", type=int, default=0, help="stop after this many graphs (default: no limit)")
    ap.add_argument("--seed", type=int, default=0, help="first seed (graph i uses seed + i)")
    ap.add_argument("--out", type=Path, default=Path("fuzz-failures"), help="folder for reproducers")
    ap.add_argument("--sanitize", action="store_true", help="build the C with ASan/UBSan")
    args = ap.parse_args(argv)

    builds = [opt for opt, _ in simd_builds(sse2=False)]
    tty = sys.stderr.isatty() and not os.environ.get("CI")
    counts: collections.Counter = collections.Counter()
    rejections: collections.Counter = collections.Counter()
    failures: list[tuple[int, str, str]] = []
    start = time.monotonic()
    i = 0
    stop = []  # SIGTERM / SIGINT: finish the current graph, then print the figures
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    while not stop and time.monotonic() - start < args.seconds and (not args.count or i < args.count):
        seed = args.seed + i
        ch = NumpyChooser(seed)
        case = random_case(ch)
        opt = ch.choice(builds)
        outcome = run_case_in_tmp(case, opt=opt, sanitize=args.sanitize)
        if stop:  # the signal may have hit the C compiler too: this graph does not count
            break
        counts[outcome.category] += 1
        if outcome.category == "rejected":
            rejections[_kind(outcome.detail)] += 1
        elif outcome.category == "failure":
            folder = save_reproducer(case, outcome, args.out / f"seed-{seed}", seed=seed)
            first = outcome.detail.strip().splitlines()[-1][:200]
            failures.append((seed, outcome.stage, first))
            print(f"FAIL seed {seed} [{outcome.stage}] {first}\n    {case.describe()}\n    reproducer: {folder}",
                  flush=True)
        i += 1
        if not tty and i % 100 == 0:
            print(f"[{time.monotonic() - start:.0f} s] {i} graphs: " +
                  ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), flush=True)
        if tty:
            print(f"\r{i} graphs, {time.monotonic() - start:.0f} s, " +
                  ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), end="", file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)
    elapsed = time.monotonic() - start
    print(f"fuzz: {i} graphs in {elapsed:.1f} s (seeds {args.seed}..{args.seed + i - 1})"
          + (" (stopped by a signal)" if stop else ""))
    for cat in ("exact", "rejected", "failure"):
        print(f"  {cat:9s} {counts[cat]}")
    if rejections:
        print("rejections by message:")
        for msg, n in rejections.most_common():
            print(f"  {n:5d}  {msg}")
    if failures:
        print("failures:")
        for seed, stage, first in failures:
            print(f"  seed {seed} [{stage}] {first}")
    return 1 if failures else 0


def _kind(message: str) -> str:
    """A rejection message with its numbers and names blanked, to count kinds."""
    import re

    return re.sub(r"'[^']*'|\"[^\"]*\"|-?\d+(\.\d+)?(e-?\d+)?", "#", message)[:150]


if __name__ == "__main__":
    sys.exit(main())
