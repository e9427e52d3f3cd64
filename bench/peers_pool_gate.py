"""Diagnostic for bench/peers.py: SpikingJelly's SNN with its max pools replaced by a rate gate.

Usage: ``python bench/peers_pool_gate.py fashion_cnn [--test-samples 300] [--steps 256]``

SpikingJelly's ``ann2snn`` keeps each MaxPool2d after the spiking neuron, so the pool
takes the max of binary spikes at every step and fires more often than its most active
input.  This script converts the same torch weights the same way (bench/peers.py's
recipe, modes max and 99.9%), replaces every MaxPool2d with a gate that passes the spikes
of the window's input with the highest spike count so far (Rueckauer et al. 2017), and
prints top-1 at T = 1, 2, 4, ... ``--steps``.  It is a different model from what
SpikingJelly ships, so it is a diagnostic of the stall, not a peer row.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402
import real_data  # noqa: E402


def gate_max_pools(snn) -> None:
    """Replace every MaxPool2d of ``snn`` with a gate passing the spikes of the window's most active input."""
    import torch.nn.functional as F
    from spikingjelly.activation_based import base
    from torch import nn

    class GatedMax(base.MemoryModule):
        def __init__(self, pool: nn.MaxPool2d):
            super().__init__()
            self.k, self.s = pool.kernel_size, pool.stride
            self.register_memory("count", 0.0)

        def forward(self, v):
            self.count = self.count + v
            _, idx = F.max_pool2d(self.count, self.k, self.s, return_indices=True)
            return v.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)

    for path, module in list(snn.named_modules()):
        if isinstance(module, nn.MaxPool2d):
            parent, _, leaf = path.rpartition(".")
            setattr(snn.get_submodule(parent) if parent else snn, leaf, GatedMax(module))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", choices=sorted(real_data.MODELS))
    ap.add_argument("--test-samples", type=int, default=300)
    ap.add_argument("--steps", type=int, default=256)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    _, _, calib_path, x, y = real_data.MODELS[args.model]()
    x, y = real_data.test_subset(x, y, args.test_samples)
    calib = np.load(calib_path)["x"]
    model = peers.torch_model(args.model)
    for mode in ("max", "99.9%"):
        t0 = time.perf_counter()
        hits = peers.spikingjelly_accuracy(model, calib, x, y, peers.MODES[mode], steps=args.steps,
                                           rewrite=gate_max_pools)
        print(f"[{mode}, max pools rate-gated] " + " ".join(f"T={t}:{a:.4f}" for t, a in hits.items())
              + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
