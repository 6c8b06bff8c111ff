"""Classical solvers against optimality conditions, direct solves and each other."""

import math

import pytest
import torch

from dlpde.inverse import (
    CompressedSensing,
    GaussianBlur,
    GaussianNoise,
    Identity,
    Inpainting,
    StoppingRule,
    fista,
    ista,
    richardson_lucy,
    tikhonov,
    total_variation,
    total_variation_restoration,
    wiener_deconvolution,
)
from dlpde.inverse._operators import LinearOperator


def _lasso_problem():
    cs = CompressedSensing.gaussian(30, 60, generator=0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 60, generator=g, dtype=torch.float64) * (torch.rand(3, 60, generator=g) < 0.1)
    return cs, cs(x) + 0.01 * torch.randn(3, 30, generator=g, dtype=torch.float64)


def test_fista_solves_lasso_kkt():
    """KKT of min 1/2|Ax - y|^2 + w|x|_1: A^T(y - Ax) = w sign(x) on the support, |.| <= w off it."""
    cs, y = _lasso_problem()
    weight = 0.05
    x = fista(cs, y, weight, stopping=StoppingRule(5000, tolerance=1e-13)).solution
    correlation = cs.adjoint(y - cs(x))
    support = x.abs() > 1e-10
    assert torch.allclose(correlation[support], weight * torch.sign(x[support]), atol=1e-8)
    assert float(correlation[~support].abs().max()) <= weight + 1e-8


def test_fista_is_faster_than_ista():
    cs, y = _lasso_problem()
    reference = fista(cs, y, 0.05, stopping=5000).history[-1]
    ista_gap = ista(cs, y, 0.05, stopping=50).history[-1] - reference
    fista_gap = fista(cs, y, 0.05, stopping=50).history[-1] - reference
    assert fista_gap < 0.1 * ista_gap
    history = ista(cs, y, 0.05, stopping=50).history  # ISTA's objective never increases
    assert all(b <= a + 1e-12 for a, b in zip(history, history[1:]))


class _Hidden(LinearOperator):
    """The same operator without its closed-form proximal map (forces the dualised path)."""

    def __init__(self, inner):
        self.inner, self.input_shape = inner, inner.input_shape

    def forward(self, x):
        return self.inner.forward(x)

    def adjoint(self, y):
        return self.inner.adjoint(y)


@pytest.mark.parametrize("operator", [Identity((16, 14)), Inpainting(
    torch.rand(16, 14, generator=torch.Generator().manual_seed(2)) > 0.3)])
def test_tv_closed_form_and_dualised_paths_agree(operator):
    g = torch.Generator().manual_seed(3)
    y = operator(torch.rand(2, 16, 14, generator=g, dtype=torch.float64))
    a = total_variation_restoration(operator, y, 0.1, stopping=StoppingRule(3000, tolerance=1e-10))
    b = total_variation_restoration(_Hidden(operator), y, 0.1, stopping=StoppingRule(6000, tolerance=1e-10))
    assert a.history[-1] == pytest.approx(b.history[-1], rel=1e-7)
    assert torch.allclose(a.solution, b.solution, atol=1e-4)


def test_tv_of_a_step_edge():
    u = torch.zeros(10, 10, dtype=torch.float64)
    u[:, 5:] = 2.0
    assert float(total_variation(u)) == pytest.approx(20.0)


def test_tv_gradient_is_finite_on_flat_regions_and_matches_finite_differences():
    flat = torch.zeros(1, 6, 6, dtype=torch.float64, requires_grad=True)
    total_variation(flat).sum().backward()
    assert torch.equal(flat.grad, torch.zeros_like(flat))  # the zero subgradient, not NaN
    u = torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert torch.autograd.gradcheck(total_variation, (u.requires_grad_(),))


def test_tikhonov_matches_direct_solve():
    cs, y = _lasso_problem()
    weight = 0.3
    a = cs.matrix
    direct = torch.linalg.solve(a.T @ a + weight * torch.eye(60, dtype=torch.float64), (y @ a).T).T
    result = tikhonov(cs, y, weight, stopping=StoppingRule(200, tolerance=1e-12))
    assert result.stopped == "tolerance"
    assert torch.allclose(result.solution, direct, atol=1e-9)


def test_discrepancy_principle_stops_early():
    blur = GaussianBlur(1.5, boundary="reflect")
    g = torch.Generator().manual_seed(4)
    clean = torch.rand(2, 24, 24, generator=g, dtype=torch.float64)
    sigma = 0.02
    y = GaussianNoise(sigma)(blur(clean), g)
    rule = StoppingRule(500, noise_level=sigma, discrepancy_factor=1.05)
    result = tikhonov(blur, y, 0.0, stopping=rule)
    assert result.stopped == "discrepancy" and result.iterations < 500
    residual = torch.linalg.vector_norm((blur(result.solution) - y).flatten(1), dim=1)
    assert bool((residual <= 1.05 * sigma * math.sqrt(24 * 24)).all())


def test_richardson_lucy_decreases_poisson_likelihood():
    """RL is EM for Poisson data: the negative log-likelihood never increases."""
    blur = GaussianBlur(1.2, boundary="reflect")
    g = torch.Generator().manual_seed(5)
    y = torch.poisson(50 * blur(torch.rand(1, 20, 20, generator=g, dtype=torch.float64)), generator=g) / 50
    values = []

    def record(k, x):
        z = blur(x)
        values.append(float((z - y * torch.log(z)).sum()))

    richardson_lucy(blur, y, stopping=30, callback=record)
    assert all(b <= a + 1e-10 for a, b in zip(values, values[1:]))


def test_wiener_inverts_noiseless_circular_blur():
    blur = GaussianBlur(0.7)
    x = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    assert torch.allclose(wiener_deconvolution(blur, blur(x), 0.0), x, atol=1e-8)


def test_bad_inputs():
    cs, y = _lasso_problem()
    with pytest.raises(ValueError, match="max_iterations"):
        StoppingRule(-1)
    with pytest.raises(TypeError, match="stopping"):
        ista(cs, y, 0.1, stopping="forever")
    with pytest.raises(ValueError, match="finite"):
        fista(cs, y * float("nan"), 0.1)
    with pytest.raises(ValueError, match="weight"):
        total_variation_restoration(Identity(), torch.zeros(1, 4, 4), -1.0)
