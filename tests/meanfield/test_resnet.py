"""Mean-field ResNet / ResNeXt: forward pass, adjoint, velocities, the depth limit, reordering."""

import math

import pytest
import torch

from dlpde.meanfield import (
    GaussianBlockMeasure,
    MeanFieldResNet,
    mean_field_velocity,
    particle_velocity,
    resnet_limit,
    resnet_limit_adjoint,
)
from dlpde.shared import make_generator
from dlpde.shared.testing import assert_monte_carlo_close, assert_permutation_invariant

DOUBLE = torch.float64
D, K = 3, 2


def _measure(scale=0.8, noise=0.3):
    g = make_generator(0)
    coupling = scale * torch.randn(2, D, D, generator=g, dtype=DOUBLE)
    return GaussianBlockMeasure(D, K, "tanh", coupling, noise=noise)


def _inputs(count=7, seed=1):
    return torch.randn(count, D, generator=make_generator(seed), dtype=DOUBLE)


def test_forward_is_the_explicit_residual_recursion():
    net = MeanFieldResNet(3, 4, D, K, "tanh", generator=2, dtype=DOUBLE)
    x = _inputs()
    state = x.clone()
    for layer in range(3):
        update = torch.zeros_like(state)
        for j in range(4):
            u = net.particles[layer, j, : D * K].reshape(D, K)
            w = net.particles[layer, j, D * K :].reshape(K, D)
            update = update + torch.tanh(state @ w.T) @ u.T
        state = state + update / (3 * 4)
    torch.testing.assert_close(net(x), state)


def test_branches_of_a_layer_are_exchangeable_and_the_check_fails_for_layers():
    net = MeanFieldResNet(3, 5, D, K, "tanh", generator=3, dtype=DOUBLE)
    x = _inputs()

    def output(particles):
        original = net.particles.detach().clone()
        with torch.no_grad():
            net.particles.copy_(particles[0])
            out = net(x)
            net.particles.copy_(original)
        return out[None]

    assert_permutation_invariant(output, net.particles.detach()[None], dim=2, rtol=1e-12, atol=1e-12)
    with pytest.raises(AssertionError):  # the order of layers matters
        assert_permutation_invariant(output, net.particles.detach()[None], dim=1, rtol=1e-12, atol=1e-12)


def test_adjoint_states_follow_the_discrete_adjoint_recursion():
    net = MeanFieldResNet(4, 3, D, K, "tanh", generator=4, dtype=DOUBLE)
    x, y = _inputs(), _inputs(seed=5)
    states, adjoints = net.adjoint_states(x, y)
    p = (states[-1] - y) / x.shape[0]
    torch.testing.assert_close(adjoints[-1], p)
    for layer in reversed(range(4)):
        jac = torch.autograd.functional.jacobian(
            lambda s: net.layer_field(s[None], layer)[0] / 4, states[layer][0]
        )
        p0 = adjoints[layer + 1][0] + jac.T @ adjoints[layer + 1][0]
        torch.testing.assert_close(adjoints[layer][0], p0)


def test_particle_velocity_is_minus_l_m_times_the_gradient():
    net = MeanFieldResNet(3, 4, D, K, "tanh", generator=6, dtype=DOUBLE)
    x, y = _inputs(), _inputs(seed=7)
    velocity = mean_field_velocity(net, lambda: 0.5 * ((net(x) - y) ** 2).sum(-1).mean())
    states, adjoints = net.adjoint_states(x, y)
    for layer in range(3):
        torch.testing.assert_close(
            particle_velocity(net.particles[layer], states[layer], adjoints[layer + 1], D, K, "tanh"),
            velocity[layer],
        )


def test_block_measure_field_matches_sampled_blocks():
    measure = _measure()
    x = _inputs(4)
    particles = measure.sample(1, 50_000, generator=8, dtype=DOUBLE)
    net = MeanFieldResNet(1, 50_000, D, K, "tanh", particles=particles)
    from dlpde.meanfield import block_outputs

    blocks = block_outputs(x, particles[0], D, K, net.activation)  # (B, M, D)
    field = measure.field(x, 0.0)
    for b in range(4):
        for i in range(D):
            values = blocks[:, :, i][b]
            assert_monte_carlo_close(
                float(values.mean()),
                float(values.std()) / math.sqrt(values.numel()),
                float(field[b, i]),
                n_sigma=5,
            )


def test_erf_mean_derivative_has_its_closed_form():
    measure = GaussianBlockMeasure(D, 1, "erf", torch.zeros(1, D, D, dtype=DOUBLE))
    v = torch.tensor([0.0, 0.3, 2.0, 5.0], dtype=DOUBLE)  # 96 nodes: ~1e-8 at v = 10 (the quadrature limit)
    torch.testing.assert_close(
        measure.mean_derivative(v), math.sqrt(2 / math.pi) / torch.sqrt(1 + v), atol=1e-11, rtol=1e-11
    )


def test_discrete_networks_converge_to_the_depth_ode():
    measure = _measure()
    x = _inputs(16)
    limit = resnet_limit(measure.field, x)
    errors = {}
    for depth in (8, 64):
        with torch.no_grad():
            runs = [
                MeanFieldResNet(
                    depth, 256, D, K, "tanh", particles=measure.sample(depth, 256, generator=s, dtype=DOUBLE)
                )(x)
                for s in range(4)
            ]
        errors[depth] = float((torch.stack(runs).mean(0) - limit).norm(dim=1).mean())
    # Euler bias O(1/L): a ratio near 8; the sampling part (L M)^-1/2 / 2 is far smaller
    assert 4.0 < errors[8] / errors[64] < 12.0


def test_continuous_adjoint_is_the_gradient_of_the_loss_at_the_input():
    measure = _measure()
    x, y = _inputs(3), _inputs(3, seed=9)
    _, adjoints = resnet_limit_adjoint(measure.field, x, y, [0.0, 0.5, 1.0])

    def loss(inputs):
        return 0.5 * ((resnet_limit(measure.field, inputs) - y) ** 2).sum(-1).mean()

    step = 1e-5
    numerical = torch.zeros_like(x)
    for b in range(3):
        for i in range(D):
            shift = torch.zeros_like(x)
            shift[b, i] = step
            numerical[b, i] = (loss(x + shift) - loss(x - shift)) / (2 * step)
    torch.testing.assert_close(adjoints[0], numerical, atol=1e-8, rtol=1e-6)


def test_reordering_permutes_whole_layers():
    net = MeanFieldResNet(4, 2, D, K, "tanh", generator=10, dtype=DOUBLE)
    before = net.particles.detach().clone()
    net.reorder_blocks(torch.tensor([2, 0, 3, 1]))
    torch.testing.assert_close(net.particles.detach(), before[[2, 0, 3, 1]])
    with pytest.raises(ValueError, match="permutation"):
        net.reorder_blocks(torch.tensor([0, 0, 1, 2]))
    x, y = _inputs(), _inputs(seed=11)
    assert torch.equal(net.reorder_by_depth_gradient(x, y, 0.0), torch.arange(4))


def test_depth_gradient_is_the_derivative_of_the_first_variation():
    net = MeanFieldResNet(6, 3, D, K, "tanh", generator=12, dtype=DOUBLE)
    x, y = _inputs(), _inputs(seed=13)
    states, adjoints = net.adjoint_states(x, y)
    layer = 2
    values = [float((adjoints[m + 1] * net.layer_field(states[m], layer)).sum()) for m in (1, 3)]
    expected = (values[1] - values[0]) / (2 / 6)
    assert abs(float(net.depth_gradient(x, y)[layer]) - expected) < 1e-12


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="depth"):
        MeanFieldResNet(0, 1, D)
    net = MeanFieldResNet(2, 2, D, dtype=DOUBLE)
    with pytest.raises(ValueError, match="shape"):
        net(torch.zeros(3, D + 1, dtype=DOUBLE))
    with pytest.raises(ValueError, match="particles must have shape"):
        MeanFieldResNet(2, 2, D, particles=torch.zeros(2, 2, 3, dtype=DOUBLE))
    with pytest.raises(ValueError, match="coupling"):
        GaussianBlockMeasure(D, 1, "tanh", torch.zeros(2, D, D + 1))
