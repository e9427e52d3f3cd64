"""The torch twin of the T=1 level quantizer (snncc/sim/neuron_torch.py) equals the
numpy one (snncc/sim/neuron.py) exactly: random inputs, ties at .5, clip edges."""

import numpy as np
import pytest
import torch

from snncc.sim import neuron, neuron_torch


def _inputs(theta: float, n: int, dtype) -> np.ndarray:
    rng = np.random.default_rng(7)
    k = np.arange(-n - 3, n + 4)
    edges = np.concatenate([
        rng.uniform(-3 * n, 3 * n, 4000) * theta,  # random, most in range, some clipped
        (k + 0.5) * theta,  # ties: x/theta = k + 1/2 exactly when theta is a power of two
        k * theta,  # on a level
        np.nextafter((k + 0.5) * theta, np.inf), np.nextafter((k + 0.5) * theta, -np.inf),  # beside a tie
        [n * theta, (n + 0.5) * theta, -n * theta, -(n + 0.5) * theta, 0.0, -0.0, 1e30, -1e30, np.inf, -np.inf],
    ])
    return edges.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("theta", [0.25, 1.0, 0.1, 0.0371])
@pytest.mark.parametrize("n,signed", [(1, False), (4, False), (4, True), (15, True)])
def test_torch_twin_equals_numpy_quantizer(dtype, theta, n, signed):
    x = _inputs(theta, n, dtype)
    th = dtype(theta)
    want = neuron.quantize_levels(x, th, n, signed)
    assert want.dtype == dtype
    got = neuron_torch.quantize_levels(torch.from_numpy(x), float(th), n, signed).numpy()
    ste = neuron_torch.quantize_levels_ste(torch.from_numpy(x), float(th), n, signed).numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ste, want)
    lo, hi = neuron.level_range(n, signed)
    assert want.min() == lo and want.max() == hi  # the clip edges were reached


def test_ties_round_half_up_and_per_channel_theta():
    x = np.array([[0.5, 1.5, 2.5, -0.5, -1.5, 4.5]]) * np.array([[0.25], [2.0]])  # (2 channels, 6)
    theta = np.array([[0.25], [2.0]])
    want = neuron.quantize_levels(x, theta, 4, True)
    np.testing.assert_array_equal(want, [[1, 2, 3, 0, -1, 4]] * 2)
    got = neuron_torch.quantize_levels(torch.from_numpy(x), torch.from_numpy(theta), 4, True)
    np.testing.assert_array_equal(got.numpy(), want)


def test_straight_through_gradient():
    theta, n = 0.5, 4
    x = torch.tensor([-1.0, 0.1, 0.74, 1.0, 1.9, 2.1, 5.0], dtype=torch.float64, requires_grad=True)
    neuron_torch.quantize_levels_ste(x, theta, n, False).sum().backward()
    inside = (x.detach() >= 0) & (x.detach() <= n * theta)
    np.testing.assert_array_equal(x.grad.numpy(), np.where(inside.numpy(), 1 / theta, 0.0))
