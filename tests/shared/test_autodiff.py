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


# -- forward Laplacian -----------------------------------------------------------------------------
def _hessian_trace_and_gradient(f, x):
    """The independent reference: the full Hessian of each row by torch.func.hessian (reverse over
    reverse), its trace, and the gradient."""
    def single(row):
        return f(row.unsqueeze(0))[0]

    hess = torch.stack([torch.func.hessian(single)(row) for row in x])
    dim = x[0].numel()
    lap = hess.reshape(x.shape[0], dim, dim).diagonal(dim1=1, dim2=2).sum(-1)
    grad = torch.stack([torch.func.grad(single)(row) for row in x])
    return lap, grad


_W1 = torch.randn(3, 6, generator=make_generator(11), dtype=DT) / 2
_W2 = torch.randn(6, 3, generator=make_generator(12), dtype=DT) / 2


def _mlp_with_every_rule(y):
    """Linear layers, every elementwise activation with a rule, sums, means, products, quotients,
    powers, norms, indexing, concatenation, prod, amax and slogdet: (B, 3, 3) -> (B,)."""
    w1, w2 = _W1, _W2
    h = torch.nn.functional.linear(y, w1.T, torch.linspace(-1, 1, 6, dtype=DT))
    acts = [torch.tanh(h), torch.nn.functional.silu(h), torch.nn.functional.softplus(h),
            torch.nn.functional.gelu(h), torch.sigmoid(h), torch.sin(h) * torch.cos(h)]
    h = sum(acts) / len(acts)
    m = h @ w2 + torch.eye(3, dtype=DT)  # (B, 3, 3)
    sign, logdet = torch.linalg.slogdet(m)
    diff = y[:, :, None] - y[:, None]
    r = torch.linalg.vector_norm(torch.cat([diff, torch.ones_like(diff[..., :1])], -1), dim=-1)
    pair = (1 / r).sum((1, 2)) + torch.log1p(r**2).mean((1, 2)) + torch.sqrt(r).sum((1, 2))
    stacked = torch.cat([y.flatten(1), y[:, 1:, :2].flatten(1) ** 3], -1)
    tail = torch.exp(-0.1 * (stacked**2).sum(-1)) * stacked.prod(-1) / (1 + stacked[:, 0] ** 2)
    shift = stacked.amax(-1)
    return logdet + pair + tail + shift.detach() * 0 + torch.abs(stacked[:, 2]) * torch.reciprocal(
        2 + stacked[:, 1] ** 2)


@pytest.mark.parametrize("f", [quartic, _mlp_with_every_rule], ids=["quartic", "every_rule"])
def test_forward_laplacian_matches_the_hessian_trace(f):
    x = torch.randn(5, 5, generator=make_generator(7), dtype=DT) if f is quartic else \
        torch.randn(5, 3, 3, generator=make_generator(8), dtype=DT)
    lap, grad = laplacian(f, x, method="forward", return_gradient=True)
    expected_lap, expected_grad = _hessian_trace_and_gradient(f, x)
    scale = expected_lap.abs().clamp_min(1.0)
    assert float(((lap - expected_lap).abs() / scale).max()) < 1e-10
    torch.testing.assert_close(grad, expected_grad, rtol=1e-11, atol=1e-11)


def test_forward_laplacian_matches_finite_differences():
    """Central second differences of f along each coordinate (step 1e-4, error O(h^2) ~ 1e-7)."""
    x = torch.randn(4, 3, 3, generator=make_generator(9), dtype=DT)
    lap = laplacian(_mlp_with_every_rule, x, method="forward")
    h, flat = 1e-4, x.reshape(4, -1)
    fd = torch.zeros(4, dtype=DT)
    for k in range(flat.shape[1]):
        e = torch.zeros_like(flat)
        e[:, k] = h
        fd += (_mlp_with_every_rule((flat + e).reshape(x.shape)) - 2 * _mlp_with_every_rule(x)
               + _mlp_with_every_rule((flat - e).reshape(x.shape))) / h**2
    torch.testing.assert_close(lap, fd, rtol=1e-5, atol=1e-5)


def test_forward_laplacian_refuses_unsupported_operations():
    from dlpde.shared.autodiff import ForwardLaplacianError

    x = torch.randn(3, 4, generator=make_generator(10), dtype=DT)
    with pytest.raises(ForwardLaplacianError, match="no rule for .*cumsum"):
        laplacian(lambda y: torch.cumsum(y, -1).sum(-1), x, method="forward")
    with pytest.raises(ForwardLaplacianError, match="constant exponents"):
        laplacian(lambda y: (y ** y).sum(-1), x, method="forward")
    # the exact method handles it
    assert torch.isfinite(laplacian(lambda y: torch.cumsum(y, -1).pow(2).sum(-1), x)).all()


def test_forward_laplacian_registry_and_constant_functions():
    """A registered rule is used; a function not depending on x has zero derivatives."""
    from dlpde.shared.autodiff import Jet, register_forward_rule

    x = torch.randn(3, 2, generator=make_generator(12), dtype=DT)
    calls = []

    @register_forward_rule(torch.special.expm1)
    def _expm1(func, args, kwargs):
        calls.append(1)
        return torch.exp(args[0]) - 1

    lap = laplacian(lambda y: torch.special.expm1(y).sum(-1), x, method="forward")
    torch.testing.assert_close(lap, torch.exp(x).sum(-1), rtol=1e-13, atol=1e-13)
    assert calls and isinstance(Jet, type)
    lap, grad = laplacian(lambda y: torch.ones(y.shape[0], dtype=DT), x, method="forward", return_gradient=True)  # noqa: E501
    assert float(lap.abs().max()) == 0 and float(grad.abs().max()) == 0
