"""Where sweep points run: inline, in local worker processes, or as tasks on a Ray cluster.

Every executor yields ``(index, row)`` as points finish, and a point that fails never
stops the others: a user-level error is in its row already (compile_point), any other
exception becomes ``internal error: ...``, and a worker process that dies (killed,
out of memory, ``os._exit``) becomes ``worker died: ...`` (which --resume runs again).

The local executor keeps ``jobs`` spawned worker processes and replaces one that dies.
The Ray executor puts the ONNX bytes and the calibration arrays into the object store
once and passes every task the same references, so what travels per task is the small
option dicts and the returned row.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import time
from collections.abc import Callable, Iterator, Sequence

from snncc.cluster import one_blas_thread, ray_session, require_ray, signals_through_ray  # noqa: F401  (require_ray: run_sweep)
from snncc.sweep_grid import DIED


def run_guarded(fn: Callable, *args) -> dict:
    """``fn(*args)``; an exception other than a signal becomes the row's error."""
    t0 = time.perf_counter()
    try:
        return fn(*args)
    except Exception as exc:  # a bug at this point: recorded, the sweep goes on
        detail = " ".join(str(exc).split())[:300]
        return {"error": f"internal error: {type(exc).__name__}: {detail}", "_seconds": time.perf_counter() - t0}


def died(detail: str, seconds: float) -> dict:
    return {"error": f"{DIED}: {detail}", "_seconds": seconds}


def execute(tasks: Sequence[tuple[int, dict]], *, model: str, calib: str, base: dict, input_shape: tuple,
            executor: str, jobs: int, ray_address: str | None, reports: bool, point_fn: Callable,
            progress, stats: dict | None = None, ray_runtime_env: dict | None = None) -> Iterator[tuple[int, dict]]:
    """Run ``point_fn(model, calib, base, point, reports)`` for each (index, point); yield (index, row)."""
    if not tasks:
        return
    if executor == "ray":
        yield from _run_ray(tasks, point_fn, model, calib, base, input_shape, reports, ray_address, jobs,
                            progress, stats if stats is not None else {}, ray_runtime_env)
    elif jobs == 1 or len(tasks) == 1:
        for i, point in tasks:
            progress.started()
            yield i, run_guarded(point_fn, model, calib, base, point, reports)
    else:
        yield from _run_local(tasks, point_fn, (model, calib, base), reports, jobs, progress)


# --- local worker processes -------------------------------------------------------------

def _worker_main(conn) -> None:
    """A worker: run tasks from the pipe until told to stop (None) or the parent goes."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which ends the workers
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        fn, args = task
        conn.send(run_guarded(fn, *args))


class _Worker:
    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        self.proc.start()
        child.close()

    def stop(self, *, force: bool) -> None:
        if not force and self.proc.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.conn.close()


def _run_local(tasks, fn, shared: tuple, reports: bool, jobs: int, progress) -> Iterator[tuple[int, dict]]:
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("spawn")  # no fork of a possibly threaded parent
    pending = list(tasks)
    idle: list[_Worker] = []
    busy: dict[_Worker, tuple[int, float]] = {}
    clean = False
    try:
        with one_blas_thread():
            while pending or busy:
                while pending and len(busy) < jobs:
                    worker = idle.pop() if idle else _Worker(ctx)
                    i, point = pending.pop(0)
                    worker.conn.send((fn, (*shared, point, reports)))
                    busy[worker] = (i, time.perf_counter())
                    progress.started()
                ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
                for worker in [w for w in busy if w.conn in ready or w.proc.sentinel in ready]:
                    i, t0 = busy[worker]
                    try:
                        if not worker.conn.poll():
                            if worker.proc.is_alive():
                                continue
                            raise EOFError
                        row = worker.conn.recv()
                    except (EOFError, OSError):  # the process died in this point
                        worker.proc.join()
                        row = died(_exit_detail(worker.proc.exitcode), time.perf_counter() - t0)
                        worker.stop(force=True)
                    else:
                        idle.append(worker)
                    del busy[worker]
                    yield i, row
        clean = True
    finally:  # done, or a signal / an error in the caller: no worker outlives the sweep
        for worker in [*idle, *busy]:
            worker.stop(force=not clean)


def _exit_detail(code: int | None) -> str:
    if code is not None and code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# --- Ray ------------------------------------------------------------------------------------

def model_payload(model: str) -> tuple[str, bytes]:
    """(file name, serialized ONNX) with any external data folded in, to put once."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    from snncc.frontend.reader import read_model

    proto, _ = read_model(model)
    tensors = [*proto.graph.initializer, *(a.t for n in proto.graph.node for a in n.attribute if a.HasField("t"))]
    if any(uses_external_data(t) for t in tensors):
        proto = onnx.load(model, load_external_data=True)
    return os.path.basename(model), proto.SerializeToString()


def calib_payload(calib: str, input_shape: tuple) -> tuple:
    """(x, y, CalibData arguments) for the object store; "random" stays a word (made per task)."""
    if calib == "random":
        return None, None, None
    from snncc.calib_data import load_calib

    data = load_calib(calib, input_shape)
    x, y = data.arrays()
    return x, y, (data.input_shape, data.source, data.option)


def _ray_point(fn, model, x, y, calib_meta, base, point, reports):
    """One Ray task: the references arrive resolved (numpy arrays without a copy, read-only)."""
    from snncc.calib_data import CalibData

    calib = "random" if calib_meta is None else CalibData(x, y, *calib_meta)
    return run_guarded(fn, model, calib, base, point, reports)


def _run_ray(tasks, fn, model, calib, base, input_shape, reports, address, jobs, progress, stats, runtime_env):
    with ray_session(address, jobs, runtime_env) as ray:
        from ray.exceptions import RayError

        payload = model_payload(model)
        x, y, meta = calib_payload(calib, input_shape)
        model_ref = ray.put(payload)
        x_ref = ray.put(x) if x is not None else None
        y_ref = ray.put(y) if y is not None else None
        stats["put_once_bytes"] = len(payload[1]) + sum(a.nbytes for a in (x, y) if a is not None)
        stats.setdefault("task_arg_bytes", [])
        stats.setdefault("task_result_bytes", [])
        remote = ray.remote(_ray_point).options(num_cpus=1, max_retries=0)
        window = max(1, int(ray.cluster_resources().get("CPU", jobs)))  # keep every CPU busy, no more
        pending = list(tasks)
        inflight: dict = {}
        # No ray.cancel of what is in flight on the way out: the cluster ends a driver's tasks when it
        # disconnects, and cancelling races Ray's task manager (a check failure aborted the driver).
        while pending or inflight:
            while pending and len(inflight) < window:
                i, point = pending.pop(0)
                small = (fn, meta, base, point, reports)
                stats["task_arg_bytes"].append(len(pickle.dumps(small)))
                ref = remote.remote(fn, model_ref, x_ref, y_ref, meta, base, point, reports)
                inflight[ref] = (i, time.perf_counter())
                progress.started()
            with signals_through_ray():
                done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                i, t0 = inflight.pop(ref)
                try:
                    row = ray.get(ref)
                except RayError as exc:  # the worker process or its node died
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    row = died(f"{type(exc).__name__}: {first}"[:300], time.perf_counter() - t0)
                stats["task_result_bytes"].append(len(pickle.dumps(row)))
                yield i, row
