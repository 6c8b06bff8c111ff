"""Mean-field time stepping: Euler steps, Langevin normalisation, masks, reproducibility."""

import math

import pytest
import torch

from dlpde.meanfield import (
    MeanFieldLangevin,
    TwoLayerMeanField,
    mean_field_gradient_flow,
    mean_field_sgd,
    mean_field_velocity,
)
from dlpde.shared import make_generator
from dlpde.shared.testing import assert_monte_carlo_close

DOUBLE = torch.float64


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(20, 3, generator=g, dtype=DOUBLE), torch.randn(20, generator=g, dtype=DOUBLE)


def test_sgd_step_is_an_euler_step_of_the_mean_field_velocity():
    x, y = _data()
    model = TwoLayerMeanField(10, 3, "tanh", generator=1, dtype=DOUBLE)
    risk = lambda: ((y - model(x)) ** 2).mean()  # noqa: E731
    start = model.particles.detach().clone()
    velocity = mean_field_velocity(model, risk, penalty=0.3)
    mean_field_sgd(model, lambda step: risk(), 0.01, 0.01, penalty=0.3, progress=False)
    torch.testing.assert_close(model.particles.detach(), start + 0.01 * velocity)


def test_euler_gradient_flow_matches_repeated_sgd_steps():
    x, y = _data(1)
    a = TwoLayerMeanField(6, 3, "relu", generator=2, dtype=DOUBLE)
    b = TwoLayerMeanField(6, 3, "relu", generator=2, dtype=DOUBLE)
    mean_field_gradient_flow(a, lambda: ((y - a(x)) ** 2).mean(), 0.5, steps=25, method="euler")
    mean_field_sgd(b, lambda step: ((y - b(x)) ** 2).mean(), 0.5, 0.02, progress=False)
    torch.testing.assert_close(a.particles, b.particles)


def test_langevin_noise_gives_the_gibbs_variance():
    """With R = 0 and penalty lambda, theta_{k+1} = (1 - 2 lambda h) theta_k + sqrt(4h/beta) xi has the
    stationary variance 1 / (beta lambda (1 - lambda h)) -> 1/(beta lambda), the Gibbs measure
    exp(-beta lambda |theta|^2 / 2) of Psi_lambda = lambda |theta|^2 / 2."""
    model = TwoLayerMeanField(20000, 1, "linear", bias=False, output_scale=0.0, input_scale=0.0, dtype=DOUBLE)
    penalty, beta, h = 0.5, 4.0, 0.01
    generator = make_generator(3)
    mean_field_sgd(
        model,
        lambda step: 0.0 * model.particles.sum(),
        8.0,
        h,
        penalty=penalty,
        inverse_temperature=beta,
        generator=generator,
        progress=False,
    )
    values = model.particles.detach().flatten()
    variance = float(values.var())
    exact = 1.0 / (beta * penalty * (1 - penalty * h)) * (1 - (1 - 2 * penalty * h) ** (2 * 800))
    standard_error = exact * math.sqrt(2.0 / values.numel())
    assert_monte_carlo_close(variance, standard_error, exact, n_sigma=5)


def test_noise_is_reproducible_and_masked():
    x, y = _data(2)
    runs = []
    for _ in range(2):
        model = TwoLayerMeanField(8, 3, "tanh", fixed_output=True, generator=4, dtype=DOUBLE)
        mean_field_sgd(
            model,
            lambda step: ((y - model(x)) ** 2).mean(),
            0.1,
            0.01,
            inverse_temperature=10.0,
            penalty=0.1,
            generator=make_generator(5),
            progress=False,
        )
        runs.append(model.particles.detach().clone())
    assert torch.equal(runs[0], runs[1])
    assert torch.all(runs[0][:, 0] == 1.0)


def test_gradient_flow_returns_the_saved_states():
    x, y = _data(3)
    model = TwoLayerMeanField(5, 3, "tanh", generator=6, dtype=DOUBLE)
    start = model.particles.detach().clone()
    path = mean_field_gradient_flow(
        model, lambda: ((y - model(x)) ** 2).mean(), 1.0, steps=8, save_at=[0.0, 0.5, 1.0]
    )
    assert path.shape == (3, 5, 5)
    torch.testing.assert_close(path[0], start)
    torch.testing.assert_close(model.particles.detach(), path[-1])


def test_bad_arguments_raise():
    model = TwoLayerMeanField(3, 2, dtype=DOUBLE)
    with pytest.raises(ValueError, match="generator"):
        MeanFieldLangevin([model.particles], 0.1, 3, inverse_temperature=1.0)
    with pytest.raises(ValueError, match="step_size"):
        MeanFieldLangevin([model.particles], 0.0, 3)
    with pytest.raises(ValueError, match="penalty"):
        mean_field_gradient_flow(model, lambda: model.particles.sum(), 1.0, steps=2, penalty=-1.0)
    with pytest.raises(TypeError, match="mean-field particle model"):
        mean_field_velocity(torch.nn.Linear(2, 1), lambda: torch.zeros(()))
    with pytest.raises(ValueError, match="scalar"):
        mean_field_velocity(model, lambda: model.particles)
