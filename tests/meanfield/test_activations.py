"""Closed-form Gaussian (Hermite) moments of the activations against quadrature and differences."""

import math

import numpy as np
import pytest
import torch
from numpy.polynomial.hermite_e import hermeval

from dlpde.meanfield import GaussianWellActivation, PiecewiseLinearActivation, resolve_activation

SCALES = torch.tensor([0.0, 1e-3, 0.3, 1.0, 2.5, 7.0], dtype=torch.float64)


# A trapezoid rule on [-12, 12]: spectrally accurate for smooth integrands, O(h^2) ~ 1e-8 at kinks.
GRID = np.linspace(-12.0, 12.0, 200_001)
WEIGHTS = np.exp(-0.5 * GRID**2) / math.sqrt(2 * math.pi) * (GRID[1] - GRID[0])
HERMITE = np.stack([hermeval(GRID, np.eye(10)[k]) / math.sqrt(math.factorial(k)) for k in range(10)])


def _reference(activation, scale, count):
    values = activation(torch.as_tensor(scale * GRID)).numpy()
    return HERMITE[:count] @ (WEIGHTS * values)


def test_gaussian_well_coefficients_match_quadrature():
    activation = GaussianWellActivation(3.0, 1.5, 0.8)
    coefficients, _ = activation.hermite_coefficients(SCALES, 10)
    for i, scale in enumerate(SCALES.tolist()):
        np.testing.assert_allclose(coefficients[i].numpy(), _reference(activation, scale, 10), atol=1e-11)


def test_piecewise_linear_coefficients_match_quadrature():
    for activation in (
        PiecewiseLinearActivation.ramp(0.5, 1.5, -2.5, 7.5),
        PiecewiseLinearActivation.relu(),
        PiecewiseLinearActivation((-1.0, 0.0, 2.0), (0.0, 1.0, -1.0), 0.5, 0.25),
    ):
        coefficients, _ = activation.hermite_coefficients(SCALES, 8)
        for i, scale in enumerate(SCALES.tolist()):
            np.testing.assert_allclose(coefficients[i].numpy(), _reference(activation, scale, 8), atol=1e-7)


@pytest.mark.parametrize(
    "activation", [GaussianWellActivation(2.0, 1.0, 1.3), PiecewiseLinearActivation.ramp(0.5, 1.5, -2.5, 7.5)]
)
def test_coefficient_derivatives_match_central_differences(activation):
    scale = torch.tensor([0.2, 0.9, 1.7, 4.0], dtype=torch.float64)
    _, derivative = activation.hermite_coefficients(scale, 12)
    step = 1e-6
    plus, _ = activation.hermite_coefficients(scale + step, 12)
    minus, _ = activation.hermite_coefficients(scale - step, 12)
    torch.testing.assert_close(derivative, (plus - minus) / (2 * step), atol=1e-7, rtol=1e-6)


def test_relu_known_moments():
    # E relu(aZ) = a / sqrt(2 pi), E[relu(aZ) Z] = a / 2, E[relu(aZ) He_2] / sqrt 2 = a phi(0) / sqrt 2
    c, _ = PiecewiseLinearActivation.relu().hermite_coefficients(torch.tensor([2.0], dtype=torch.float64), 4)
    expected = [2 / math.sqrt(2 * math.pi), 1.0, 2 / math.sqrt(2 * math.pi) / math.sqrt(2), 0.0]
    np.testing.assert_allclose(c[0].numpy(), expected, atol=1e-14)


def test_piecewise_linear_evaluates_the_interpolant():
    ramp = PiecewiseLinearActivation.ramp(0.5, 1.5, -2.5, 7.5)
    t = torch.tensor([-3.0, 0.5, 1.0, 1.5, 9.0])
    torch.testing.assert_close(ramp(t), torch.tensor([-2.5, -2.5, 2.5, 7.5, 7.5]))
    relu = PiecewiseLinearActivation.relu()
    t = torch.linspace(-3, 3, 13)
    torch.testing.assert_close(relu(t), torch.relu(t))


def test_bad_activation_arguments_raise():
    with pytest.raises(ValueError, match="strictly increasing"):
        PiecewiseLinearActivation((1.0, 0.0), (0.0, 1.0))
    with pytest.raises(ValueError, match="equal length"):
        PiecewiseLinearActivation((0.0, 1.0), (0.0,))
    with pytest.raises(ValueError, match="width"):
        GaussianWellActivation(1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="activation must be one of"):
        resolve_activation("swish")
    with pytest.raises(TypeError):
        resolve_activation(3)
    with pytest.raises(ValueError, match="count"):
        GaussianWellActivation().hermite_coefficients(torch.ones(2), 0)
