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


def round_ste(x):
    """round-half-even (numpy's ``np.rint``, as the quantize pass rounds) with an identity gradient."""
    import torch

    return x + (torch.round(x) - x).detach()


def neuron_step_ste(v, current, theta, n: int, signed: bool, *, bits: int, shift: int = 0):
    """One integer IF step of neuron.neuron_step in torch on float64 tensors holding integers.

    The values are exactly the integer runtime's: ``v = sat_B(v + I)``, ``z = clamp(floor(v /
    theta), lo, N)``, ``v = floor_to_grid(v - z * theta, shift)``.  The gradient is
    straight-through: z takes the gradient of ``clamp(v / theta - ROUND_OFFSET, lo, N)`` (at T=1,
    where v = theta/2 + I, that is the STE of the round-to-nearest clipped activation, and it
    reaches theta as in LSQ); saturation and the 2^shift grid pass the gradient unchanged.
    Returns (z, new v).
    """
    import torch

    lo, hi = level_range(n, signed)
    top = float((1 << (bits - 1)) - 1)
    v = v + current
    v = v + (torch.clamp(v, -top - 1, top) - v).detach()
    exact = torch.clamp(torch.div(v.detach(), theta.detach(), rounding_mode="floor"), lo, hi)
    soft = torch.clamp(v / theta - ROUND_OFFSET, lo, hi)
    z = soft + (exact - soft).detach()
    v = v - z * theta
    if shift:
        grid = float(1 << shift)
        v = v + (torch.floor(v.detach() / grid) * grid - v.detach()).detach()
    return z, v
