"""The isotropic Gaussian problem: exact population risk, radial kernel and the 1-D solver."""

import math

import numpy as np
import pytest
import torch

from dlpde.meanfield import (
    GaussianWellActivation,
    IsotropicGaussianProblem,
    PiecewiseLinearActivation,
    TwoLayerMeanField,
    gaussian_initial_radius,
    mean_field_gradient_flow,
    solve_radial_limit,
    sphere_moments,
)
from dlpde.shared import make_generator
from dlpde.shared.testing import assert_gradcheck, assert_monte_carlo_close, convergence_order

DOUBLE = torch.float64
WELL = GaussianWellActivation(3.0, 1.5, 1.0)


def test_sphere_moments_match_monte_carlo():
    g = make_generator(0)
    for d in (3, 10):
        u = torch.nn.functional.normalize(torch.randn(200_000, d, generator=g, dtype=DOUBLE), dim=1)
        v = torch.nn.functional.normalize(torch.randn(200_000, d, generator=g, dtype=DOUBLE), dim=1)
        c = (u * v).sum(1)
        mu = sphere_moments(d, 7)
        for k in range(1, 7):
            sample = c**k
            assert_monte_carlo_close(
                float(sample.mean()), float(sample.std()) / math.sqrt(c.numel()), float(mu[k])
            )
        assert abs(float(mu[2]) - 1.0 / d) < 1e-15
    assert torch.equal(sphere_moments(None, 4), torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=DOUBLE))


@pytest.mark.parametrize("fixed_output", [True, False])
def test_exact_population_risk_matches_monte_carlo(fixed_output):
    problem = IsotropicGaussianProblem(6, 0.4, WELL)
    model = TwoLayerMeanField(
        40, 6, WELL, fixed_output=fixed_output, bias=False, input_scale=1.2, generator=1, dtype=DOUBLE
    )
    with torch.no_grad():
        exact = float(problem.population_risk(model))
    estimate, error = problem.monte_carlo_risk(model, 200_000, generator=2)
    assert_monte_carlo_close(estimate, error, exact, n_sigma=5)


def test_exact_population_risk_gradient_passes_gradcheck():
    problem = IsotropicGaussianProblem(4, 0.5, WELL)
    model = TwoLayerMeanField(6, 4, WELL, bias=False, generator=3, dtype=DOUBLE)

    class Frozen:
        bias, d = False, 4

        def __init__(self, particles):
            self.particles = particles

    particles = model.particles.detach().clone().requires_grad_(True)
    assert_gradcheck(lambda p: problem.population_risk(Frozen(p), block=4), particles)


@pytest.mark.parametrize("activation", [WELL, PiecewiseLinearActivation.ramp(0.5, 1.5, -2.5, 7.5)])
def test_radial_kernel_is_the_direction_average_of_the_network_risk(activation):
    """For w_i = r_i u_i with independent uniform u_i the expected risk of the network is the radial
    risk of the empirical law plus the self-interaction terms (1/n^2) sum_i [U(w_i, w_i) - U~(r_i, r_i)]."""
    d, n = 5, 4
    problem = IsotropicGaussianProblem(d, 0.5, activation)
    radii = torch.tensor([0.3, 0.8, 1.4, 2.0], dtype=DOUBLE)
    weights = torch.full((n,), 1.0 / n, dtype=DOUBLE)
    radial = float(problem.radial_risk(radii, weights, count=120))
    # self terms: U(w, w) = E sigma(s r Z)^2 = sum_k c_k^2 (correlation 1), U~(r, r) = sum_k mu_k c_k^2
    mu = sphere_moments(d, 120)
    correction = 0.0
    for _, c, _ in problem.radial_terms(radii, 120):
        correction += 0.5 * float(((c**2).sum(1) - (c**2 * mu).sum(1)).sum()) / n**2
    # Monte Carlo over directions and data: risk of networks with random directions
    g = make_generator(4)
    losses = []
    for _ in range(200):
        u = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=DOUBLE), dim=1)
        model = TwoLayerMeanField(n, d, activation, fixed_output=True, bias=False, dtype=DOUBLE)
        model.set_particles(torch.cat([torch.ones(n, 1, dtype=DOUBLE), radii[:, None] * u], 1))
        x, y = problem.sample(2000, g, dtype=DOUBLE)
        with torch.no_grad():
            losses.append(((y - model(x)) ** 2).mean())
    losses = torch.stack(losses)
    assert_monte_carlo_close(
        float(losses.mean()), float(losses.std()) / math.sqrt(losses.numel()), radial + correction, n_sigma=5
    )


def test_finite_dimension_kernel_tends_to_the_large_dimension_kernel():
    """U~ keeps mu_k(d) = O(d^-k/2) terms; as d grows it tends to MMN's k = 0 kernel (dimension=None)."""
    radii = torch.tensor([0.5, 1.0, 2.0], dtype=DOUBLE)
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=DOUBLE)
    gaps = []
    for d in (10, 100, 1000):
        problem = IsotropicGaussianProblem(d, 0.5, WELL)
        gaps.append(
            abs(
                float(problem.radial_risk(radii, weights, 64) - problem.radial_risk(radii, weights, 64, None))
            )
        )
    assert gaps[0] > 9 * gaps[1] > 81 * gaps[2] > 0  # the first correction is mu_2 = 1/d


def test_radial_velocity_is_minus_the_weighted_radius_gradient_of_the_radial_risk():
    """dR/dr_j = 2 omega_j Psi'(r_j), so the velocity -2 Psi'(r_j) = -(dR/dr_j) / omega_j."""
    problem = IsotropicGaussianProblem(7, 0.5, PiecewiseLinearActivation.ramp(0.5, 1.5, -2.5, 7.5))
    radii = torch.tensor([0.4, 0.9, 1.3, 2.2, 3.0], dtype=DOUBLE, requires_grad=True)
    weights = torch.tensor([0.1, 0.3, 0.2, 0.25, 0.15], dtype=DOUBLE)
    (grad,) = torch.autograd.grad(problem.radial_risk(radii, weights, count=40), radii)
    velocity = problem.radial_velocity(radii.detach(), weights, count=40)
    torch.testing.assert_close(velocity, -grad / weights)


def test_initial_radius_quantiles_match_the_norm_of_gaussian_vectors():
    d, scale = 10, 0.7
    radius = gaussian_initial_radius(d, scale)
    samples = (
        scale / math.sqrt(d) * torch.randn(100_000, d, generator=make_generator(5), dtype=DOUBLE)
    ).norm(dim=1)
    for z in (-2.0, -1.0, 0.0, 1.0, 2.0):
        p = float(torch.special.ndtr(torch.tensor(z)))
        fraction = float((samples <= radius(torch.tensor([z], dtype=DOUBLE))[0]).double().mean())
        assert_monte_carlo_close(fraction, math.sqrt(p * (1 - p) / samples.numel()), p)
    extreme = radius(torch.tensor([-12.0, 12.0], dtype=DOUBLE))
    assert bool(torch.isfinite(extreme).all()) and 0 < extreme[0] < extreme[1]


def _solve(steps, nodes=24, tracers=None, time=2.0):
    problem = IsotropicGaussianProblem(10, 0.5, WELL)
    return solve_radial_limit(
        problem, gaussian_initial_radius(10, 0.3), time, steps, nodes=nodes, tracers=tracers, hermite_terms=48
    )


def test_radial_solver_converges_at_fourth_order_in_time_and_spectrally_in_nodes():
    probes = torch.tensor([0.15, 0.3, 0.45], dtype=DOUBLE)
    reference = _solve(512, tracers=probes).tracer_radii[-1]
    steps = [64, 128, 256]
    errors = [float((_solve(s, tracers=probes).tracer_radii[-1] - reference).abs().max()) for s in steps]
    assert 3.5 < -convergence_order(steps, errors) < 4.5
    fine = _solve(64, nodes=40, tracers=probes)
    node_errors = [
        float((_solve(64, nodes=k, tracers=probes).tracer_radii[-1] - fine.tracer_radii[-1]).abs().max())
        for k in (2, 4, 8)
    ]
    assert node_errors[0] > 100 * node_errors[1] > 0 and node_errors[2] < 1e-9


def test_tracers_at_the_nodes_move_with_the_nodes():
    base = _solve(16)
    again = _solve(16, tracers=base.node_radii[0])
    torch.testing.assert_close(again.tracer_radii, base.node_radii)
    torch.testing.assert_close(again.risk, base.risk)


def test_particles_approach_the_radial_limit():
    """Exact population gradient flow of n particles (float64) against the 1-D solution with the same
    RK4 steps: the mean distance over seeds falls with n."""
    problem = IsotropicGaussianProblem(6, 0.5, WELL)
    distances = {}
    for n in (50, 800):
        values = []
        for seed in range(3):
            model = TwoLayerMeanField(
                n,
                6,
                WELL,
                fixed_output=True,
                bias=False,
                input_scale=0.5,
                generator=10 * n + seed,
                dtype=DOUBLE,
            )
            start = model.input_weights.detach().norm(dim=1)
            end = mean_field_gradient_flow(model, lambda: problem.population_risk(model), 1.0, steps=4)
            limit = solve_radial_limit(
                problem, gaussian_initial_radius(6, 0.5), 1.0, 4, nodes=24, tracers=start, hermite_terms=48
            )
            values.append(float((end[:, 1:].norm(dim=1) - limit.tracer_radii[-1]).abs().mean()))
        distances[n] = float(np.mean(values))
    # n^-1/2 predicts a ratio of 4; allow 2 to 8
    assert 2.0 < distances[50] / distances[800] < 8.0


def test_bad_problem_arguments_raise():
    with pytest.raises(ValueError, match="delta"):
        IsotropicGaussianProblem(5, 1.5, WELL)
    with pytest.raises(TypeError, match="closed-form"):
        IsotropicGaussianProblem(5, 0.5, torch.tanh)
    problem = IsotropicGaussianProblem(5, 0.5, WELL)
    with pytest.raises(ValueError, match="bias=False"):
        problem.population_risk(TwoLayerMeanField(3, 5, WELL, bias=True))
    with pytest.raises(TypeError, match="GaussianWellActivation"):
        IsotropicGaussianProblem(5, 0.5, PiecewiseLinearActivation.relu()).population_risk(
            TwoLayerMeanField(3, 5, "relu", bias=False)
        )
    with pytest.raises(ValueError, match="nodes"):
        solve_radial_limit(problem, gaussian_initial_radius(5, 1.0), 1.0, 2, nodes=1)
    with pytest.raises(ValueError, match="batch_size"):
        problem.sample(0, 1)
