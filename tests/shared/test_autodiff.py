"""Derivatives against closed forms in float64; Hutchinson within 5 sigma of its known variance."""

import math

import pytest
import torch

from dlpde.shared import divergence, gradient, hessian_vector_product, jacobian, laplacian, make_generator

DT = torch.float64


def quartic(x):
    """f(x) = sum_i x_i^4 / 4 + (sum_i x_i)^2 / 2 + prod-free cross term x_0 x_1."""
    return (x**4).sum(-1) / 4 + x.sum(-1) ** 2 / 2 + x[:, 0] * x[:, 1]


def quartic_hessian(x):
    d = x.shape[1]
    h = torch.diag_embed(3 * x**2) + torch.ones(d, d, dtype=x.dtype)
    h[:, 0, 1] += 1
    h[:, 1, 0] += 1
    return h


@pytest.fixture
def x():
    return torch.randn(6, 5, generator=make_generator(0), dtype=DT)


def test_gradient_and_hvp(x):
    g = gradient(quartic, x)
    expected = x**3 + x.sum(-1, keepdim=True)
    expected[:, 0] += x[:, 1]
    expected[:, 1] += x[:, 0]
    torch.testing.assert_close(g, expected, rtol=1e-12, atol=1e-12)
    v = torch.randn(x.shape, generator=make_generator(1), dtype=DT)
    hv = hessian_vector_product(quartic, x, v)
    torch.testing.assert_close(hv, (quartic_hessian(x) @ v[..., None])[..., 0], rtol=1e-12, atol=1e-12)


def test_exact_laplacian_and_gradient(x):
    lap, grad = laplacian(quartic, x, return_gradient=True)
    torch.testing.assert_close(lap, torch.diagonal(quartic_hessian(x), dim1=1, dim2=2).sum(-1),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, gradient(quartic, x), rtol=1e-12, atol=1e-12)


def test_laplacian_of_multi_dim_event():
    # f(x) = exp(-|x|^2/2) on (B, 3, 2): Lap f = (|x|^2 - D) f with D = 6.
    x = torch.randn(4, 3, 2, generator=make_generator(2), dtype=DT)

    def f(y):
        return torch.exp(-(y**2).sum((1, 2)) / 2)

    r2 = (x**2).sum((1, 2))
    torch.testing.assert_close(laplacian(f, x), (r2 - 6) * f(x), rtol=1e-12, atol=1e-12)


def test_hutchinson_within_five_sigma(x):
    h = quartic_hessian(x)
    exact = torch.diagonal(h, dim1=1, dim2=2).sum(-1)
    # Variance of z^T H z with Rademacher z: 2 (||H||_F^2 - sum_i H_ii^2).
    variance = 2 * ((h**2).sum((1, 2)) - (torch.diagonal(h, dim1=1, dim2=2) ** 2).sum(-1))
    n = 4000
    estimate = laplacian(quartic, x, method="hutchinson", n_samples=n, generator=make_generator(3))
    z = (estimate - exact).abs() / (variance / n).sqrt()
    assert float(z.max()) < 5.0
    # and it is an estimate, not the exact value
    assert float((estimate - exact).abs().max()) > 1e-8


def test_divergence_exact_and_hutchinson(x):
    def field(y):  # v_i = y_i^3 + y_{i+1}: div = 3 sum y_i^2
        return y**3 + torch.roll(y, -1, dims=1)

    exact = 3 * (x**2).sum(-1)
    torch.testing.assert_close(divergence(field, x), exact, rtol=1e-12, atol=1e-12)
    est = divergence(field, x, method="hutchinson", n_samples=3000, generator=make_generator(4))
    assert float(((est - exact) / exact.abs().clamp_min(1)).abs().max()) < 0.2


def test_jacobian(x):
    jac = jacobian(lambda y: torch.sin(y) * y[:, :1], x)
    expected = torch.diag_embed(torch.cos(x) * x[:, :1])
    expected[:, :, 0] += torch.sin(x)
    torch.testing.assert_close(jac, expected, rtol=1e-12, atol=1e-12)


def test_laplacian_differentiable_in_parameters():
    """d/dw of Lap_x (w . tanh(x)) matches finite differences in w."""
    x = torch.randn(3, 4, generator=make_generator(5), dtype=DT)
    w = torch.randn(4, generator=make_generator(6), dtype=DT, requires_grad=True)

    def total(weights):
        return laplacian(lambda y: torch.tanh(y) @ weights, x).sum()

    (grad_w,) = torch.autograd.grad(total(w), w)
    eps = 1e-6
    fd = torch.stack([(total(w.detach() + eps * e) - total(w.detach() - eps * e)) / (2 * eps)
                      for e in torch.eye(4, dtype=DT)])
    torch.testing.assert_close(grad_w, fd, rtol=1e-7, atol=1e-8)


def test_bad_inputs():
    with pytest.raises(ValueError, match="batch"):
        gradient(lambda y: y.sum(), torch.ones(3, dtype=DT))
    with pytest.raises(ValueError, match=r"\(batch,\)"):
        gradient(lambda y: y, torch.ones(3, 2, dtype=DT))
    with pytest.raises(TypeError, match="floating"):
        laplacian(lambda y: y.sum(-1), torch.ones(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="method"):
        laplacian(quartic, torch.ones(3, 2, dtype=DT), method="fd")
    with pytest.raises(ValueError, match="n_samples"):
        laplacian(quartic, torch.ones(3, 2, dtype=DT), method="hutchinson", n_samples=0)
    assert math.isfinite(float(laplacian(quartic, torch.ones(3, 2, dtype=DT)).sum()))
