"""The NIR target's interface (backends/__init__.py): ``emit`` writes ``<name>.nir``
(backends/nir/emit.py); ``verify`` reads it back with ``nir.read`` and runs it per the
NIR definitions plus the file's snncc metadata (backends/nir/simulate.py), every
output against the integer runtime. The real consumers (Sinabs, snnTorch) are run by
the tests and bench/interop_agreement.py (backends/nir/consumers.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snncc.errors import SnnccError
from snncc.ir import Graph
from snncc.irio import name_problem  # noqa: F401  (the target interface)

LABEL = "NIR (read back, NIR semantics + snncc metadata)"
EXTRA = "pip install 'snncc[nir]'"


def named_files(name: str) -> tuple[str, ...]:
    return (f"{name}.nir",)


def check_tools(*, nir_profile: str = "multispike", options=None, **_) -> None:
    """The extra is installed, and the profile can carry the compile ``options`` (when given)."""
    from snncc.backends.nir.emit import check_options, check_profile

    check_profile(nir_profile)
    if options is not None:
        check_options(nir_profile, levels=options.levels, timesteps=options.timesteps,
                      membrane_shift=options.membrane_shift)
    try:
        import h5py  # noqa: F401
        import nir  # noqa: F401
    except ImportError:
        raise SnnccError(f"nir needs the nir and h5py packages, which are not installed: {EXTRA}",
                         option="target") from None


def emit(graph: Graph, out_dir: Path, *, name: str, spike_rates: dict[str, float] | None = None,
         nir_profile: str = "multispike", **_) -> dict:
    from snncc.backends.nir.emit import write_nir

    check_tools(nir_profile=nir_profile)
    write_nir(graph, Path(out_dir) / f"{name}.nir", profile=nir_profile)
    return {"nir_profile": nir_profile}


def verify(graph: Graph, out_dir: Path, x_q: np.ndarray, *, reference: np.ndarray, **_):
    from snncc.backends import Check
    from snncc.backends.nir.simulate import run_nir

    path = next(Path(out_dir).glob("*.nir"))
    outs, _counts = run_nir(path, x_q)
    got = next(iter(outs.values()))
    out = np.rint(got).astype(np.int64).reshape(reference.shape)
    bad = np.argwhere((out != reference) | (got.reshape(reference.shape) != out))
    if len(bad):
        s, o = bad[0]
        return Check(False, f"{len(bad)} mismatches; first at sample {s} output {o}")
    return Check(True, f"{reference.size} outputs of {len(x_q)} samples bit-exact")
