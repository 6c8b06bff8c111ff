"""Bad arguments to the meanfield entry points are one clear ValueError/TypeError naming them."""

import math

import pytest
import torch

from dlpde import meanfield as mf


def test_sphere_moments_refuses_zero_count_and_keeps_values():
    with pytest.raises(ValueError, match="count"):
        mf.sphere_moments(3, 0)
    with pytest.raises(TypeError, match="dimension"):
        mf.sphere_moments(3.0, 4)
    # mu_2 = 1/d, mu_4 = 3/(d(d+2)) for d = 3
    mu = mf.sphere_moments(3, 5)
    assert torch.allclose(mu, torch.tensor([1.0, 0.0, 1 / 3, 0.0, 3 / 15], dtype=torch.float64))


def test_activations_refuse_bad_parameters():
    with pytest.raises(TypeError, match="knots"):
        mf.PiecewiseLinearActivation(3.0, [1.0])
    with pytest.raises(ValueError, match="knots"):
        mf.PiecewiseLinearActivation([0.0, math.nan], [0.0, 1.0])
    with pytest.raises(ValueError, match="increasing"):
        mf.PiecewiseLinearActivation([1.0, 0.0], [0.0, 1.0])
    relu = mf.PiecewiseLinearActivation(torch.tensor([0.0, 1.0]), (0.0, 1.0), right_slope=1.0)
    t = torch.linspace(-2, 2, 9, dtype=torch.float64)
    assert torch.equal(relu(t), torch.relu(t))
    with pytest.raises(ValueError, match="width"):
        mf.GaussianWellActivation(width=0.0)
    with pytest.raises(TypeError, match="offset"):
        mf.GaussianWellActivation(offset=torch.ones(3))


def test_langevin_refuses_bad_parameters():
    p = torch.zeros(4, 3, requires_grad=True)
    with pytest.raises(TypeError, match="params"):
        mf.MeanFieldLangevin(p, 0.1, 4)
    with pytest.raises(ValueError, match="params"):
        mf.MeanFieldLangevin([], 0.1, 4)
    with pytest.raises(ValueError, match="step_size"):
        mf.MeanFieldLangevin([p], -0.1, 4)
    with pytest.raises(ValueError, match="mask"):
        mf.MeanFieldLangevin([p], 0.1, 4, mask=torch.ones(5))
    with pytest.raises(ValueError, match="generator"):
        mf.MeanFieldLangevin([p], 0.1, 4, inverse_temperature=10.0)


def test_block_outputs_checks_shapes_and_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, generator=g, dtype=torch.float64)
    particles = torch.randn(3, 2 * 2 * 2, generator=g, dtype=torch.float64)
    out = mf.block_outputs(x, particles, 2, 2, "tanh")
    u, w = particles[:, :4].reshape(3, 2, 2), particles[:, 4:].reshape(3, 2, 2)
    brute = torch.stack([torch.stack([u[m] @ torch.tanh(w[m] @ x[b]) for m in range(3)]) for b in range(5)])
    assert torch.allclose(out, brute, atol=1e-14)
    with pytest.raises(ValueError, match="particles"):
        mf.block_outputs(x, particles[:, :5], 2, 2, "tanh")
    with pytest.raises(ValueError, match="elementwise"):
        mf.block_outputs(x, particles, 2, 2, lambda t: t.sum(-1))


def test_resnet_limit_checks_field_times_and_blow_up():
    x = torch.ones(4, 2, dtype=torch.float64)
    # dX/dt = X: X(1) = e x
    assert torch.allclose(mf.resnet_limit(lambda y, t: y, x), math.e * x, rtol=1e-8)
    with pytest.raises(ValueError, match="shape"):
        mf.resnet_limit(lambda y, t: y.sum(-1), x)
    with pytest.raises(ValueError, match="save_at"):
        mf.resnet_limit(lambda y, t: y, x, save_at=[0.5, 2.0])
    with pytest.raises(ValueError, match="steps"):
        mf.resnet_limit(lambda y, t: y, x, method="rk4")
    with pytest.raises(ValueError, match="non-finite"):  # dX/dt = X^2 from 10 blows up at t = 0.1
        mf.resnet_limit(lambda y, t: y * y, 10 * x, method="euler", steps=40)
    # a field constant in x: X(t) = x + t c, P(t) = P(1) = (X(1) - y) / B
    c = torch.tensor([1.0, -2.0], dtype=torch.float64)
    states, adjoints = mf.resnet_limit_adjoint(lambda y, t: c.expand_as(y), x, 0 * x, [0.0, 0.5])
    assert torch.allclose(states[1], x + 0.5 * c, atol=1e-12)
    assert torch.allclose(adjoints[0], (x + c) / 4, atol=1e-12)
    with pytest.raises(ValueError, match="target"):
        mf.resnet_limit_adjoint(lambda y, t: y, x, torch.ones(3, 2, dtype=torch.float64), [0.0])


def test_radial_limit_checks_arguments():
    problem = mf.IsotropicGaussianProblem(3, 0.5, mf.GaussianWellActivation())
    radius = mf.gaussian_initial_radius(3, 1.0)
    with pytest.raises(TypeError, match="problem"):
        mf.solve_radial_limit("bogus", radius, 1.0, 4)
    with pytest.raises(ValueError, match="steps"):
        mf.solve_radial_limit(problem, radius, 1.0, 0)
    with pytest.raises(ValueError, match="tracers"):
        mf.solve_radial_limit(problem, radius, 1.0, 4, tracers=-torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="save_at"):
        mf.solve_radial_limit(problem, radius, 1.0, 4, save_at=[0.0, 2.0])
    with pytest.raises(TypeError, match="scale"):
        mf.gaussian_initial_radius(3, "1")
