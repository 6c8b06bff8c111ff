"""Operator norms: closed forms against the SVD of the dense matrix (brute force, float64,
rel 1e-10), power iteration from below with a warning when unconverged, primal-dual step sizes
with a safety margin, divergent steps refused."""

import numpy as np
import pytest
import torch

from dlpde.inverse import (
    Blur,
    Downsampling,
    GaussianBlur,
    LinearOperator,
    MotionBlur,
    ista,
    total_variation_restoration,
)
from dlpde.shared import NonFiniteResultError

G = torch.Generator().manual_seed(5)
RAW = torch.rand(5, 4, generator=G, dtype=torch.float64) * 3.0  # not normalised: ||A|| ~ 30


def dense_norm(operator, shape):
    """Largest singular value of the matrix of ``operator`` built column by column."""
    n = int(np.prod(shape))
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    columns = operator.forward(basis).reshape(n, -1)
    return float(np.linalg.norm(columns.numpy(), 2))


@pytest.mark.parametrize("operator", [Blur(RAW), GaussianBlur(1.2), MotionBlur(5.0, 30.0),
                                      Blur(torch.tensor([[0.5, 0.25, -0.1]], dtype=torch.float64))],
                         ids=["raw", "gaussian", "motion", "signed"])
def test_circular_blur_norm_is_the_fft_bound(operator):
    shape = (12, 10)
    assert operator.norm(shape) == pytest.approx(dense_norm(operator, shape), rel=1e-10)
    assert operator.norm(shape) == operator.fft_norm(shape)


@pytest.mark.parametrize(("factor", "kind", "shape"), [(2, "box", (12, 10)), (2, "gaussian", (12, 8)),
                                                       (3, "gaussian", (12, 15)), (2, None, (6, 4))])
def test_circular_downsampling_norm_by_aliased_symbol(factor, kind, shape):
    operator = Downsampling(factor, kind)
    assert operator.exact_norm(shape) == pytest.approx(dense_norm(operator, shape), rel=1e-10)


def test_power_iteration_converges_from_below_and_warns_when_stopped_early():
    blur = Blur(RAW)
    shape = (16, 16)
    exact = blur.fft_norm(shape)
    converged = blur.power_iteration_norm(shape, iterations=20000, tolerance=1e-15)
    assert converged <= exact * (1 + 1e-12)
    assert converged == pytest.approx(exact, rel=1e-6)
    with pytest.warns(RuntimeWarning, match="lower bound"):
        early = blur.power_iteration_norm(shape, iterations=2, tolerance=1e-12)
    assert early < exact
    reflect = Blur(RAW, "reflect")  # no closed form: norm() iterates, and stays below the SVD
    estimate = reflect.norm((9, 8), iterations=5000, tolerance=1e-14)
    assert estimate <= dense_norm(reflect, (9, 8)) * (1 + 1e-12)
    assert estimate == pytest.approx(dense_norm(reflect, (9, 8)), rel=1e-5)


class _WithoutProx(LinearOperator):
    """A circular blur hidden behind a plain operator, so that TV is solved fully dualised."""

    def __init__(self, blur):
        self.blur = blur

    def forward(self, x):
        return self.blur.forward(x)

    def adjoint(self, y):
        return self.blur.adjoint(y)


def test_primal_dual_steps_keep_a_margin_and_converge_with_an_underestimated_norm():
    blur = GaussianBlur(1.0)
    clean = torch.zeros(1, 16, 16, dtype=torch.float64)
    clean[:, 4:12, 5:11] = 1.0
    y = blur(clean) + 0.02 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1),
                                         dtype=torch.float64)
    reference = total_variation_restoration(blur, y, 0.02, stopping=3000)
    assert reference.info["tau"] * reference.info["sigma"] * 8 == pytest.approx(0.81, rel=1e-12)
    hidden = _WithoutProx(blur)
    true_norm = blur.fft_norm((16, 16))
    result = total_variation_restoration(hidden, y, 0.02, stopping=3000, operator_norm=0.95 * true_norm)
    tau, sigma = result.info["tau"], result.info["sigma"]
    assert tau * sigma * (true_norm**2 + 8) < 1  # the margin absorbs the 5 % under-estimate
    error = float((result.solution - reference.solution).norm() / reference.solution.norm())
    assert error < 1e-3  # the two forms solve the same problem (measured ~1e-5)


def test_ista_with_a_divergent_step_raises_instead_of_returning_nan():
    blur = GaussianBlur(1.0)
    y = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with pytest.raises(NonFiniteResultError, match="step"):
        ista(blur, y, 0.01, stopping=2000, step=1e6)
    good = ista(blur, y, 0.01, stopping=50)
    assert torch.isfinite(good.solution).all()
    assert all(b <= a + 1e-12 for a, b in zip(good.history, good.history[1:]))  # monotone at 1/L
