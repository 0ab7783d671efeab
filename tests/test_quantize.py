"""The latent's training stand-ins for rounding."""

from __future__ import annotations

import torch

from ccnn.encoder.quantize import round_ste, soft_round, soft_round_noise


def test_soft_round_goes_from_identity_to_rounding() -> None:
    x = torch.linspace(-3.0, 3.0, 601, dtype=torch.float64)
    assert torch.allclose(soft_round(x, 50.0), x, atol=1e-4)
    inner = x[(x - x.round()).abs() < 0.45]
    assert torch.allclose(soft_round(inner, 0.01), inner.round(), atol=1e-3)


def test_soft_round_is_continuous_and_keeps_half_integers() -> None:
    halves = torch.arange(-4, 4, dtype=torch.float64) + 0.5
    for temperature in (0.05, 0.3, 1.0):
        assert torch.allclose(soft_round(halves, temperature), halves)
        below, above = soft_round(halves - 1e-9, temperature), soft_round(halves + 1e-9, temperature)
        assert torch.allclose(below, above, atol=1e-6)
        x = torch.linspace(-2.0, 2.0, 4001, dtype=torch.float64)
        assert bool((soft_round(x, temperature).diff() >= 0).all())  # monotone


def test_soft_round_has_a_gradient_that_sharpens_with_falling_temperature() -> None:
    x = torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(soft_round(x, 0.1).sum(), x)
    assert grad[1] > 1.0 > grad[0] > 0.0  # steep between integers, flat near them
    assert grad[2] < grad[0]


def test_soft_round_noise_stays_within_a_unit_of_the_value() -> None:
    torch.manual_seed(0)
    x = torch.randn(10000, dtype=torch.float64) * 3
    for temperature in (0.1, 0.3):
        y = soft_round_noise(x, temperature)
        assert bool(((y - x).abs() <= 1.0 + 1e-9).all())
        assert abs(float((y - x).mean())) < 0.02  # unbiased on average
    y = soft_round_noise(x, 1e-3)
    # cold: hard rounding of a noisy value, except where the noise lands next to a half-integer
    assert float(((y - y.round()).abs() < 1e-6).double().mean()) > 0.98
    assert bool(((y - round_ste(x)).abs() <= 1.0).all())
