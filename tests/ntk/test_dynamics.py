"""Exact dK/dt against finite differences and its 1/width scaling; the level-3 kernel; the
perturbative dynamics against the trained network and its linearisation; alpha scaling."""

import math

import pytest
import torch

from dlpde.ntk import (
    AlphaScaled,
    TwoLayerNetwork,
    empirical_ntk,
    functional_model,
    kernel_velocity,
    perturbative_dynamics,
    relative_kernel_drift,
    third_order_kernel,
    train_with_linearization,
)
from dlpde.shared import make_generator
from dlpde.shared.testing import convergence_order


def _data(n=10, d=5, seed=0):
    g = make_generator(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, torch.sin(x[:, 0]) + 0.5 * x[:, 1]


def _finite_difference_velocity(model, x_train, y_train, x1, eps=1e-5):
    f, params = functional_model(model)
    out = model(x_train)
    residual = (out - y_train).detach()
    grads = torch.autograd.grad(out, list(model.parameters()), residual / residual.numel())
    velocity = {k: -g for k, g in zip(params, grads)}
    plus = empirical_ntk(f, x1, params={k: params[k] + eps * velocity[k] for k in params})
    minus = empirical_ntk(f, x1, params={k: params[k] - eps * velocity[k] for k in params})
    return (plus - minus) / (2 * eps)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_kernel_velocity_matches_finite_differences(activation):
    x, y = _data()
    x_test = torch.randn(4, 5, generator=make_generator(9), dtype=torch.float64)
    model = TwoLayerNetwork(5, 64, activation, bias=True, seed=1)
    exact = kernel_velocity(model, x, y, x_test)
    reference = _finite_difference_velocity(model, x, y, x_test)
    torch.testing.assert_close(exact, reference, rtol=1e-7, atol=1e-9 * float(exact.abs().max()))
    # a broken velocity (wrong sign of the residual) fails the same comparison
    with pytest.raises(AssertionError):
        torch.testing.assert_close(kernel_velocity(model, x, -y, x_test), reference, rtol=1e-7, atol=1e-9)


def test_kernel_velocity_norm_scales_like_one_over_width():
    """|dK/dt| at t = 0 for tanh, NTK parameterisation: slope -1 in the width (Dyer & Gur-Ari)."""
    x, y = _data(n=8)
    widths, norms = (64, 256, 1024), []
    for width in widths:
        values = [float(torch.linalg.norm(kernel_velocity(TwoLayerNetwork(5, width, "tanh", seed=s), x, y)))
                  for s in range(6)]
        norms.append(sum(values) / len(values))
    slope = convergence_order(widths, norms)
    assert -1.25 < slope < -0.75, slope


def test_third_order_kernel_matches_finite_differences_of_the_kernel():
    x, _ = _data(n=6)
    model = TwoLayerNetwork(5, 32, "tanh", bias=True, seed=2)
    f, params = functional_model(model)
    t = third_order_kernel(model, x, x, chunk_size=4)
    # dTheta(a, b)/dw along J(x_c) = T(a, b, c) + T(b, a, c)
    c = 3
    jac = torch.autograd.grad(model(x[c:c + 1]).sum(), list(model.parameters()))
    direction = dict(zip(params, jac))
    eps = 1e-5
    plus = empirical_ntk(f, x, params={k: params[k] + eps * direction[k] for k in params})
    minus = empirical_ntk(f, x, params={k: params[k] - eps * direction[k] for k in params})
    theta3 = t[:, :, c] + t[:, :, c].T
    torch.testing.assert_close(theta3, (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-9)


def test_perturbative_dynamics_against_the_network():
    x, y = _data(n=12)
    x_test = torch.randn(6, 5, generator=make_generator(3), dtype=torch.float64)
    y_test = torch.sin(x_test[:, 0]) + 0.5 * x_test[:, 1]
    points = torch.cat([x, x_test])
    errors_lazy, errors_corrected = [], []
    alphas = (4.0, 8.0, 16.0)
    for alpha in alphas:
        model = TwoLayerNetwork(5, 64, "tanh", seed=1)
        predicted = perturbative_dynamics(model, x, y, 150, 0.5, alpha, x_test)
        trained = train_with_linearization(model, x, y, 150, 0.5, alpha, x_test, y_test, record_every=150)
        with torch.no_grad():
            network = trained["network"](points)
        # the lazy prediction is the linearised model trained by the same gradient descent
        jac = torch.func.vmap(torch.func.jacrev(
            lambda p, r: torch.func.functional_call(model, p, (r[None],))[0]), in_dims=(None, 0))(
            trained["network"].initial_parameters(), points)
        linear = alpha * torch.cat([j.reshape(len(points), -1) for j in jac.values()], 1) \
            @ trained["linear_displacement"]
        torch.testing.assert_close(predicted["lazy"][-1], linear, rtol=1e-10, atol=1e-12)
        errors_lazy.append(float(torch.linalg.norm(network - predicted["lazy"][-1])))
        errors_corrected.append(float(torch.linalg.norm(network - predicted["corrected"][-1])))
    slope_lazy = convergence_order(alphas, errors_lazy)
    slope_corrected = convergence_order(alphas, errors_corrected)
    assert -1.3 < slope_lazy < -0.8, slope_lazy
    assert slope_corrected < -1.6, slope_corrected
    assert all(c < lz for c, lz in zip(errors_corrected, errors_lazy))


def test_alpha_scaled_model():
    x, y = _data()
    model = TwoLayerNetwork(5, 32, "relu", seed=4)
    scaled = AlphaScaled(model, 3.0)
    assert float(scaled(x).detach().abs().max()) == 0.0  # g(w_0) = 0
    torch.testing.assert_close(empirical_ntk(scaled, x), 9.0 * empirical_ntk(model, x))
    assert [n for n, _ in scaled.named_parameters()] == ["model." + n for n, _ in model.named_parameters()]
    # weights move like 1/alpha in the lazy regime; the kernel drift falls with alpha
    moves, drifts = [], []
    for alpha in (10.0, 40.0):
        run = train_with_linearization(TwoLayerNetwork(5, 32, "relu", seed=4), x, y, 100, 0.5, alpha,
                                       record_every=100)
        moves.append(run["history"][-1]["weight_movement"])
        drifts.append(relative_kernel_drift(run["ntk_final"], run["ntk_initial"]))
    assert 3.5 < moves[0] / moves[1] < 4.5
    assert drifts[1] < drifts[0]
    sym = TwoLayerNetwork(5, 8, "relu", symmetric=True, seed=0)
    assert float(sym(x).detach().abs().max()) < 1e-15  # pairs cancel up to the summation order
    with pytest.raises(ValueError, match="alpha"):
        AlphaScaled(model, -1.0)
    with pytest.raises(ValueError, match="width"):
        TwoLayerNetwork(5, 7, symmetric=True)
    assert math.isclose(float(scaled.loss(scaled(x).detach() + 1.0, scaled(x).detach())), 1 / (2 * 9.0))


def test_linearised_model_matches_stepping_it():
    """The exact discrete-time solution of the linearised model equals gradient descent on
    ``alpha J(w_0) delta`` stepped in parameter space (with a step where some modes oscillate)."""
    x, y = _data(n=12)
    x_test = torch.randn(5, 5, generator=make_generator(7), dtype=torch.float64)
    y_test = torch.cos(x_test[:, 0])
    alpha, steps, rate = 3.0, 40, 2.5
    model = TwoLayerNetwork(5, 16, "tanh", bias=True, seed=2)
    jacobian = torch.func.vmap(torch.func.jacrev(
        lambda p, r: torch.func.functional_call(model, p, (r[None],))[0]), in_dims=(None, 0))(
        dict(model.named_parameters()), torch.cat([x, x_test]))
    jacobian = torch.cat([j.reshape(17, -1) for j in jacobian.values()], 1).detach()
    delta = torch.zeros(jacobian.shape[1], dtype=torch.float64)
    for _ in range(steps):  # gradient of (1/(2 N alpha^2)) |alpha J delta - y|^2
        delta = delta - rate * jacobian[:12].T @ (alpha * jacobian[:12] @ delta - y) / (12 * alpha)
    trained = train_with_linearization(model, x, y, steps, rate, alpha, x_test, y_test, record_every=steps)
    final = trained["history"][-1]
    outputs = alpha * jacobian @ delta
    train_loss = float(((outputs[:12] - y) ** 2).sum() / 24)
    test_loss = float(((outputs[12:] - y_test) ** 2).sum() / 10)
    assert math.isclose(final["train_loss_linear"], train_loss, rel_tol=1e-10)
    assert math.isclose(final["test_loss_linear"], test_loss, rel_tol=1e-10)
    torch.testing.assert_close(trained["linear_displacement"], delta, rtol=1e-9, atol=1e-12)
    eigenvalues = torch.linalg.eigvalsh(jacobian[:12] @ jacobian[:12].T)
    assert float(rate * eigenvalues.max() / 12) > 1  # the stiffest mode overshoots
    with pytest.raises(ValueError, match="one output"):
        train_with_linearization(model, x, y[:5], 2, 0.1)
