"""The linear moment closure against particle systems (float64)."""

import math

import numpy as np
import pytest
import torch

from dlpde.meanfield import LinearMomentClosure, TwoLayerMeanField, mean_field_gradient_flow, mean_field_sgd
from dlpde.shared import make_generator
from dlpde.shared.testing import convergence_order

DOUBLE = torch.float64
D = 3


def _population():
    """x ~ N(0, S) with a fixed S, y = <b, x> + 0.3: moments of z = (x, 1)."""
    g = torch.Generator().manual_seed(0)
    root = torch.randn(D, D, generator=g, dtype=DOUBLE) / math.sqrt(D) + torch.eye(D, dtype=DOUBLE)
    covariance = root @ root.T
    b = torch.tensor([1.0, -0.5, 0.8], dtype=DOUBLE)
    moment = torch.zeros(D + 1, D + 1, dtype=DOUBLE)
    moment[:D, :D], moment[D, D] = covariance, 1.0
    cross = torch.cat([covariance @ b, torch.tensor([0.3], dtype=DOUBLE)])
    return moment, cross, float(b @ covariance @ b + 0.09)


def _population_risk(model, moment, cross, output):
    """E (y - f)^2 = E y^2 - 2 <beta, c> + beta^T C beta with beta = (1/n) sum a_i (w_i, b_i)."""
    p = model.particles
    beta = (p[:, :1] * p[:, 1:]).mean(0)
    return output - 2 * beta @ cross + beta @ moment @ beta


def _initial_second_moment(output_scale=1.0, input_scale=1.0, bias_scale=0.5):
    return torch.diag(
        torch.tensor([output_scale**2] + [input_scale**2 / D] * D + [bias_scale**2], dtype=DOUBLE)
    )


@pytest.mark.parametrize("fixed_output", [False, True])
def test_particles_follow_the_closure_started_from_their_own_moments(fixed_output):
    moment, cross, output = _population()
    closure = LinearMomentClosure(moment, cross, output, fixed_output=fixed_output, penalty=0.05)
    model = TwoLayerMeanField(
        50, D, "linear", fixed_output=fixed_output, bias=True, bias_scale=0.5, generator=1, dtype=DOUBLE
    )
    start = closure.second_moment(model.particles.detach())
    path = mean_field_gradient_flow(
        model,
        lambda: _population_risk(model, moment, cross, output),
        2.0,
        method="dopri5",
        rtol=1e-11,
        atol=1e-13,
        save_at=[0.0, 1.0, 2.0],
        penalty=0.05,
    )
    moments = closure.solve(start, 2.0, method="dopri5", rtol=1e-11, atol=1e-13, save_at=[0.0, 1.0, 2.0])
    particle_moments = torch.stack([closure.second_moment(p) for p in path])
    torch.testing.assert_close(particle_moments, moments, atol=1e-9, rtol=1e-9)
    # the comparison fails for a wrong closure (the penalty left out)
    wrong = LinearMomentClosure(moment, cross, output, fixed_output=fixed_output).solve(
        start, 2.0, method="dopri5", rtol=1e-11, atol=1e-13, save_at=[0.0, 1.0, 2.0]
    )
    with pytest.raises(AssertionError):
        torch.testing.assert_close(particle_moments, wrong, atol=1e-9, rtol=1e-9)
    risks = [float(_population_risk(_frozen(model, p), moment, cross, output).detach()) for p in path]
    np.testing.assert_allclose(risks, closure.risk(moments).numpy(), atol=1e-9)
    assert risks[-1] < risks[0]


def _frozen(model, particles):
    model.set_particles(particles)
    return model


def test_full_batch_closure_from_data_matches_particles():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(40, D, generator=g, dtype=DOUBLE)
    y = torch.tanh(x @ torch.tensor([1.0, 2.0, -1.0], dtype=DOUBLE))
    closure = LinearMomentClosure.from_data(x, y, bias=True)
    model = TwoLayerMeanField(30, D, "linear", bias=True, bias_scale=0.5, generator=2, dtype=DOUBLE)
    start = closure.second_moment(model.particles.detach())
    path = mean_field_gradient_flow(
        model, lambda: ((y - model(x)) ** 2).mean(), 1.0, method="dopri5", rtol=1e-11, atol=1e-13
    )
    end = closure.solve(start, 1.0, method="dopri5", rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(closure.second_moment(path), end, atol=1e-9, rtol=1e-9)


def test_particles_differ_from_the_population_closure_by_the_sampling_error():
    """From the population M(0), n particles deviate by O(n^-1/2): the deviation at t = 1 is within a
    small multiple of the sampling error of M(0), and its log-log slope in n is about -1/2."""
    moment, cross, output = _population()
    closure = LinearMomentClosure(moment, cross, output)
    population = _initial_second_moment()
    exact = closure.solve(population, 1.0, steps=40)
    sizes, errors = [100, 400, 1600, 6400], []
    for n in sizes:
        ratios, deviations = [], []
        for seed in range(4):
            model = TwoLayerMeanField(
                n, D, "linear", bias=True, bias_scale=0.5, generator=100 * n + seed, dtype=DOUBLE
            )
            initial_error = float((closure.second_moment(model.particles.detach()) - population).norm())
            end = mean_field_gradient_flow(
                model, lambda: _population_risk(model, moment, cross, output), 1.0, steps=40
            )
            deviation = float((closure.second_moment(end) - exact).norm())
            deviations.append(deviation)
            ratios.append(deviation / initial_error)
        assert max(ratios) < 3.0  # measured: at most 0.93
        errors.append(float(np.sqrt(np.mean(np.square(deviations)))))
    assert -0.7 < convergence_order(sizes, errors) < -0.3


def test_noisy_particles_follow_the_closure_with_diffusion():
    """Langevin particles against dM/dt = A M + M A^T + (4/beta) diag(m). Euler-Maruyama steps of the
    particles close exactly on M_{k+1} = (I + h A) M_k (I + h A)^T + (4 h / beta) diag(m) as n -> infinity;
    that recursion is compared within 5 sigma of sampling noise, and it is itself within O(h) of the ODE."""
    moment, cross, output = _population()
    beta, penalty, h, n, steps = 4.0, 0.2, 2e-3, 20000, 250
    closure = LinearMomentClosure(moment, cross, output, penalty=penalty, inverse_temperature=beta)
    model = TwoLayerMeanField(n, D, "linear", bias=True, bias_scale=0.5, generator=7, dtype=DOUBLE)
    start = closure.second_moment(model.particles.detach())
    mean_field_sgd(
        model,
        lambda step: _population_risk(model, moment, cross, output),
        h * steps,
        h,
        penalty=penalty,
        inverse_temperature=beta,
        generator=make_generator(8),
        progress=False,
    )
    recursion = start
    for _ in range(steps):
        step = torch.eye(D + 2, dtype=DOUBLE) + h * closure.velocity_matrix(recursion)
        recursion = step @ recursion @ step.T + (4 * h / beta) * torch.diag(closure.mask)
    particles = model.particles.detach()
    products = particles[:, :, None] * particles[:, None, :]
    standard_error = products.std(0) / math.sqrt(n)
    deviation = (products.mean(0) - recursion).abs()
    assert torch.all(deviation <= 5 * standard_error), (deviation / standard_error).max()
    ode = closure.solve(start, h * steps, steps=steps)
    assert float((ode - recursion).abs().max()) < 20 * h
    # the diffusion term matters: without it the diagonal is far off
    noiseless = LinearMomentClosure(moment, cross, output, penalty=penalty).solve(
        start, h * steps, steps=steps
    )
    assert torch.all((products.mean(0) - noiseless).diagonal().abs() > 20 * standard_error.diagonal())


def test_bad_shapes_raise():
    moment, cross, output = _population()
    with pytest.raises(ValueError, match="square"):
        LinearMomentClosure(moment[:, :2], cross)
    with pytest.raises(ValueError, match="cross_moment"):
        LinearMomentClosure(moment, cross[:2])
    with pytest.raises(ValueError, match="second moment must have shape"):
        LinearMomentClosure(moment, cross).solve(torch.eye(3, dtype=DOUBLE), 1.0, steps=2)
    with pytest.raises(ValueError, match="penalty"):
        LinearMomentClosure(moment, cross, penalty=-1.0)
