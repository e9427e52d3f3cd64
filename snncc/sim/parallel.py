"""Two-way parallelism for the compile's numpy work (numpy and BLAS release the GIL in their loops).

Only splits whose results do not depend on the split are made: copies (a conv's im2col),
row-wise work whose rows are independent, and work handed to the worker thread in order.
So every result is bit-identical to the serial run.  A GEMM is never split: its rounding
may change with the number of columns it is given (OpenBLAS blocking; BLAS threads itself).
It is off by default; ``SNNCC_THREADS=2`` turns it on (see ``workers``).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

# below this many elements (or multiply-adds) a split costs more than it saves
MIN_ELEMENTS = 1 << 18

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_local = threading.local()


def workers() -> int:
    """1 unless ``SNNCC_THREADS`` asks for more (at most 2 and the CPUs this process may use).

    Off by default: on a ResNet-50 at 224 x 224 the second thread raised the largest stage's
    peak RSS by about 300 MB (3867 -> 4175 MB) and, on a shared 2-core machine, did not
    shorten the wall time measurably; the single-thread speed-ups stay on."""
    env = os.environ.get("SNNCC_THREADS", "").strip()
    if not env.isdigit() or int(env) <= 1:
        return 1
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(2, n, int(env)))


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _one_malloc_arena()
            _pool = ThreadPoolExecutor(1, thread_name_prefix="snncc-sim", initializer=_mark_worker)
        return _pool


def _one_malloc_arena() -> None:
    """glibc gives a second thread its own malloc arena, and keeps what is freed there: a
    ResNet-50 compile at 224 x 224 then held about 0.7-1 GB more between passes.  One arena
    keeps the single-threaded memory profile (the worker's allocations are few and large)."""
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX = 1
    except (OSError, AttributeError):  # not glibc
        pass


def _mark_worker() -> None:
    _local.busy = True


def _trim_heap() -> None:
    """Give the heap the worker thread's calls freed back to the system (glibc's malloc_trim):
    after calibrate, a ResNet-50 at 224 x 224 otherwise kept about 120-160 MB into later passes."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def enabled(size: int) -> bool:
    """Whether work of ``size`` elements should be split here (not nested, not in the worker)."""
    return size >= MIN_ELEMENTS and workers() > 1 and not getattr(_local, "busy", False)


def halves(n: int, fn, size: int) -> None:
    """Run ``fn(lo, hi)`` over [0, n) as two halves at once (the first in the worker thread), or
    as one call when ``size`` (elements of work) is small or threads are off.  ``fn`` must write
    its results into place: the halves must not depend on each other."""
    if n < 2 or not enabled(size):
        fn(0, n)
        return
    h = n // 2
    _local.busy = True
    try:
        fut = _executor().submit(fn, 0, h)
        try:
            fn(h, n)
        finally:
            fut.result()
    finally:
        _local.busy = False


class Lagged:
    """A context in which ``submit`` runs calls in the worker thread, in order, at most ``lag``
    behind the caller (so that at most ``lag`` arguments are kept alive past their use);
    ``drain`` waits for all.  Serial (each call runs at once) when threads are off.  Meanwhile
    the caller's own work is not split in halves: the worker is busy with the calls."""

    def __init__(self, lag: int = 1):
        self.lag = lag
        self.pending: deque[Future] = deque()
        self.serial = workers() < 2 or getattr(_local, "busy", False)
        self._was_busy = getattr(_local, "busy", False)

    def __enter__(self) -> Lagged:
        _local.busy = True
        return self

    def __exit__(self, *exc) -> None:
        for f in self.pending:
            f.cancel()
        try:
            for f in self.pending:  # a running call cannot be cancelled: let it end
                if not f.cancelled():
                    f.exception()
        finally:
            self.pending.clear()
            _local.busy = self._was_busy
            _trim_heap()

    def submit(self, fn, *args) -> None:
        if self.serial:
            fn(*args)
            return
        self.pending.append(_executor().submit(fn, *args))
        while len(self.pending) > self.lag:
            self.pending.popleft().result()

    def drain(self) -> None:
        while self.pending:
            self.pending.popleft().result()
