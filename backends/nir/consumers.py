"""Run a ``.nir`` file that snncc wrote in the real consumers, Sinabs and snnTorch.

Each ``run_*`` loads the file with the consumer's own importer (``sinabs.from_nir``,
``snntorch.import_nir.import_from_nir``) and runs the int8 inputs for T steps, the
same input at every step (direct encoding). It returns the output summed over time and
the spike count of every IF node summed over time, keyed by NIR node name.

``honour_metadata=False`` runs the module exactly as imported. ``True`` applies what
the file's ``snncc.*`` metadata says and the importer does not read (docs/interop.md):
at most ``snncc.levels`` spikes per step, the initial membrane ``snncc.v_init``, no
lower clamp of the membrane (Sinabs), no leak (snnTorch reads IF as ``Leaky(beta=0.9)``).

Both importers need one fix to run at all, applied in both modes: snnTorch 1.0's IF
import builds ``Leaky(init_hidden=False)``, whose ``(spike, membrane)`` tuple nirtorch
2.0 passes on to the next layer; ``init_hidden=True`` (what ``import_from_nir`` asks its
node map for) makes it return the spikes.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np


def _meta(node, key, default=None):
    value = (node.metadata or {}).get(key, default)
    return value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value


def _initial_membrane(node, shape) -> np.ndarray | None:
    """The IF's initial membrane (batch, *shape) per the metadata, None when it is 0."""
    if bool(_meta(node, "snncc.v_init_folded_into_bias", 1)):
        return None
    v0 = np.asarray(_meta(node, "snncc.v_init"), np.float32)
    return np.broadcast_to(v0.reshape((-1,) + (1,) * (len(shape) - 2)), shape).copy()


def run_sinabs(path: Path, x_q: np.ndarray, timesteps: int, *, honour_metadata: bool = False):
    import nir
    import sinabs
    import torch
    from sinabs.activation import MaxSpike
    from sinabs.nir import from_nir

    graph = nir.read(str(path))
    B, T = len(x_q), int(timesteps)
    with warnings.catch_warnings():  # from_nir calls nirtorch.load, which warns that it is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        model = from_nir(graph, batch_size=B)
    counts: dict[str, np.ndarray] = {}
    x = torch.from_numpy(np.repeat(np.asarray(x_q, np.float32), T, axis=0))  # (B*T, ...), batch-major
    for name, mod in model.named_modules():
        if not isinstance(mod, sinabs.layers.IAFSqueeze):
            continue
        node = graph.nodes[name]
        if honour_metadata:
            mod.spike_fn = MaxSpike(int(_meta(node, "snncc.levels", 1)))
            mod.min_v_mem = None
            shape = (B, *np.asarray(node.v_threshold).shape)
            v0 = _initial_membrane(node, shape)
            if v0 is not None:
                mod.init_state_with_shape(shape)
                mod.v_mem.data.copy_(torch.from_numpy(v0))

        def hook(mod, inp, out, name=name):
            counts[name] = out.detach().reshape(B, T, *out.shape[1:]).sum(1).numpy()

        mod.register_forward_hook(hook)
    with torch.no_grad():
        out = model(x)
    out = out[0] if isinstance(out, tuple) else out
    return out.detach().reshape(B, T, *out.shape[1:]).sum(1).numpy(), counts


def run_snntorch(path: Path, x_q: np.ndarray, timesteps: int, *, honour_metadata: bool = False):
    """One sample at a time: snnTorch imports NIR's per-sample Flatten(start_dim=0) as
    torch's Flatten(0, -1), which would flatten the batch axis too."""
    import nir
    import snntorch
    import torch
    from snntorch.import_nir import import_from_nir

    graph = nir.read(str(path))
    with contextlib.redirect_stdout(io.StringIO()):  # import_from_nir prints a progress line
        model = import_from_nir(graph)
    leaky = {name: mod for name, mod in model.named_modules() if isinstance(mod, snntorch.Leaky)}
    steps: dict[str, list] = {name: [] for name in leaky}
    for name, mod in leaky.items():
        mod.init_hidden = True  # the fix above
        if honour_metadata:
            mod.beta = torch.tensor(1.0)

        def hook(mod, inp, out, name=name):
            steps[name].append((out[0] if isinstance(out, tuple) else out).detach().numpy())

        mod.register_forward_hook(hook)
    outs = []
    for sample in np.asarray(x_q, np.float32):
        for name, mod in leaky.items():
            node = graph.nodes[name]
            shape = (1, *np.asarray(node.v_threshold).shape)
            v0 = _initial_membrane(node, shape) if honour_metadata else None
            mod.mem = torch.from_numpy(v0) if v0 is not None else torch.zeros(shape)
        total = 0
        with torch.no_grad():
            for _ in range(int(timesteps)):
                out, _state = model(torch.from_numpy(sample[None]))
                total = total + out.numpy()
        outs.append(np.asarray(total).reshape(-1))
    T = int(timesteps)
    counts = {name: np.stack(s).reshape(len(x_q), T, *np.asarray(graph.nodes[name].v_threshold).shape).sum(1)
              for name, s in steps.items()}
    return np.stack(outs), counts
