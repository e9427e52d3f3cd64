"""Where parallel work runs: one BLAS thread per worker, and the Ray cluster (an optional extra).

``ray_session`` connects to the cluster at an address (``--ray-address``, else $RAY_ADDRESS)
or starts a local one for the command, in a private temporary folder removed with it.
Used by ``snncc sweep`` (snncc.sweep_exec) and ``snncc verify`` (snncc.verify_shard).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from snncc.errors import SnnccError

BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
RAY_EXTRA = "pip install 'snncc[ray]'"


def require_ray():
    """The ray module, or the one-line error that names the extra."""
    try:
        import ray
    except ImportError:
        raise SnnccError(f"ray needs Ray, an optional extra: {RAY_EXTRA}", option="executor") from None
    return ray


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """One BLAS thread per worker (the workers are the parallelism); they inherit the env."""
    saved = {k: os.environ.get(k) for k in BLAS_THREADS}
    os.environ.update({k: "1" for k in saved})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None, runtime_env: dict | None = None):
    """Connected to the cluster at ``address`` / $RAY_ADDRESS, or to a local one started here
    (in a private temporary folder, removed with it). An existing connection is used as is."""
    import logging
    import shutil
    import tempfile

    ray = require_ray()
    if ray.is_initialized():  # e.g. snncc called from inside a Ray job
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    tmp = None
    saved = _signal_handlers()
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": True,
             **({"runtime_env": runtime_env} if runtime_env else {})}
    try:
        with signals_through_ray():  # a signal inside Ray's C code: still snncc's Interrupted
            try:
                if address:
                    ray.init(address=address, **quiet)
                else:
                    tmp = tempfile.mkdtemp(prefix="snncc-ray-")
                    with one_blas_thread():  # the local cluster's workers inherit it
                        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _temp_dir=tmp,
                                 **quiet)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                where = f"at {address}" if address else "on this machine"
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                hint = (" (a cluster with token authentication needs RAY_AUTH_MODE=token and RAY_AUTH_TOKEN; "
                        "docs/scale-out.md)")
                raise SnnccError(f": cannot start or reach a Ray cluster {where}: {first}" + (hint if address else ""),
                                 option="ray_address" if address else "executor") from None
            _restore_signals(saved)
            yield ray
    finally:  # also after a signal during ray.init: a half-started local instance goes too
        ray.shutdown()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _signal_handlers() -> dict:
    import signal
    import threading

    from snncc.signals import SIGNALS

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in SIGNALS}


def _restore_signals(saved: dict) -> None:
    """ray.init installs a C handler that aborts the process on SIGTERM with a stack dump;
    put back the handlers snncc had (snncc.signals: clean-up, one error line)."""
    import signal

    for sig, handler in saved.items():
        if handler is not None:
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_through_ray() -> Iterator[None]:
    """A signal that arrives while Ray's C code waits raises snncc's Interrupted there, and Cython
    wraps it in a SystemError; unwrap it, so the clean-up and the one error line follow."""
    from snncc.signals import Interrupted

    try:
        yield
    except SystemError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, Interrupted):
            raise cause from None
        raise
