"""The torch twin of the T=1 level quantizer in snncc/sim/neuron.py, for training.

Quantization-aware training (and fine-tuning) must see the grid the T=1 SNN computes:
``clamp(floor(x / theta + 1/2), lo, N)``.  This module writes that rule in torch from
neuron.py's constants (``ROUND_OFFSET``, ``level_range``), so there is one rule;
tests/test_neuron_torch.py checks that both give the same levels, ties and clip edges
included.  torch is an optional extra: it is imported when a function is called.
"""

from __future__ import annotations

from snncc.sim.neuron import ROUND_OFFSET, level_range


def quantize_levels(x, theta, n: int, signed: bool):
    """Levels of the T=1 neuron for a torch tensor ``x``: neuron.quantize_levels in torch."""
    import torch

    lo, hi = level_range(n, signed)
    return torch.clamp(torch.floor(x / theta + ROUND_OFFSET), lo, hi)


def quantize_levels_ste(x, theta, n: int, signed: bool):
    """The same levels, with a straight-through gradient: d/dx = 1/theta inside lo..N, 0 outside.

    The clamp comes first and the rounding is taken out of the gradient; the value equals
    ``quantize_levels`` (a clamp to integer bounds commutes with floor(. + 1/2)).
    """
    import torch

    lo, hi = level_range(n, signed)
    xc = torch.clamp(x / theta, lo, hi)
    return xc + (torch.floor(xc + ROUND_OFFSET) - xc).detach()
