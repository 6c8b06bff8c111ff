"""Mean-field ResNet / ResNeXt: forward pass, adjoint, velocities, the depth limit, reordering."""

import math

import pytest
import torch

from dlpde.meanfield import (
    GaussianBlockMeasure,
    MeanFieldResNet,
    mean_field_sgd,
    mean_field_velocity,
    particle_velocity,
    resnet_limit,
    resnet_limit_adjoint,
)
from dlpde.meanfield._resnet import linear_block_moments, linear_resnet_training
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
    values = [float((adjoints[m + 1] * net.layer_field(states[m], layer)).sum().detach()) for m in (1, 3)]
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


# -- linear blocks: the unit-moment solver, its infinite-width use and the Richardson reference ------


def _linear_law(scale=0.6, correlation=0.0):
    """Unit second moments ``S_0`` of ``u ~ N(0, scale^2 I)``, ``w ~ N(0, I / D)``, ``E[u w^T] = c I``."""
    s0 = torch.zeros(2 * D, 2 * D, dtype=DOUBLE)
    s0[:D, :D] = scale**2 * torch.eye(D, dtype=DOUBLE)
    s0[D:, D:] = torch.eye(D, dtype=DOUBLE) / D
    s0[:D, D:] = s0[D:, :D] = correlation * torch.eye(D, dtype=DOUBLE)
    return s0


def _linear_teacher(count=12):
    x = _inputs(count, seed=20)
    a = 0.7 * torch.randn(D, D, generator=make_generator(21), dtype=DOUBLE)
    return x, x @ torch.linalg.matrix_exp(a).T


def test_linear_block_moments_give_the_layer_maps():
    net = MeanFieldResNet(3, 5, D, K, "linear", generator=22, dtype=DOUBLE)
    moments = linear_block_moments(net.particles.detach(), D, K)
    x = _inputs()
    for layer in range(3):
        torch.testing.assert_close(net.layer_field(x, layer), x @ (K * moments[layer, :D, D:]).T)
        u = net.particles[layer, :, : D * K].reshape(5, D, K).detach()
        w = net.particles[layer, :, D * K :].reshape(5, K, D).detach()
        z = torch.cat([u.transpose(1, 2), w], -1).reshape(5 * K, 2 * D)  # one row per unit (u_i, w_i)
        torch.testing.assert_close(moments[layer], z.T @ z / (5 * K))


def test_linear_moment_training_is_mean_field_sgd_on_the_network():
    net = MeanFieldResNet(5, 3, D, K, "linear", generator=23, dtype=DOUBLE)
    x, y = _linear_teacher()
    closure = linear_resnet_training(linear_block_moments(net.particles.detach(), D, K), x, y, K, 0.6, 0.05)
    recorded = []

    def loss(step):
        value = 0.5 * ((net(x) - y) ** 2).sum(-1).mean()
        recorded.append(float(value.detach()))
        return value

    mean_field_sgd(net, loss, 0.6, 0.05, progress=False)
    assert closure["losses"].shape == (12,) and closure["maps"].shape == (13, D, D)
    torch.testing.assert_close(
        closure["losses"], torch.tensor(recorded, dtype=DOUBLE), rtol=1e-12, atol=1e-14
    )
    torch.testing.assert_close(closure["moments"], linear_block_moments(net.particles.detach(), D, K))
    with torch.no_grad():
        torch.testing.assert_close(closure["maps"][-1], net(torch.eye(D, dtype=DOUBLE)).T)


def test_linear_moment_training_batches_independent_networks():
    x, y = _linear_teacher()
    nets = [MeanFieldResNet(4, 2, D, K, "linear", generator=s, dtype=DOUBLE) for s in (30, 31)]
    moments = torch.stack([linear_block_moments(n.particles.detach(), D, K) for n in nets])
    batched = linear_resnet_training(moments, x, y, K, 0.3, 0.1)
    for i in range(2):
        alone = linear_resnet_training(moments[i], x, y, K, 0.3, 0.1)
        torch.testing.assert_close(batched["maps"][i], alone["maps"])


def test_infinite_width_solver_is_the_limit_of_wide_networks():
    # Monte Carlo: the distance of trained networks to the law's solve falls as M^-1/2 (ratio 4 for
    # M x 16); 8 seeds each, the ratio of RMS distances within [2.5, 6.5] (about 4 sigma)
    x, y = _linear_teacher()
    s0 = _linear_law()
    depth = 4
    limit = linear_resnet_training(s0.expand(depth, -1, -1), x, y, K, 0.5, 0.1)["maps"]
    rms = {}
    for width in (64, 1024):
        maps = []
        for seed in range(8):
            g = make_generator(1000 * width + seed)
            u = 0.6 * torch.randn(depth, width, D, K, generator=g, dtype=DOUBLE)
            w = torch.randn(depth, width, K, D, generator=g, dtype=DOUBLE) / math.sqrt(D)
            particles = torch.cat([u.reshape(depth, width, -1), w.reshape(depth, width, -1)], -1)
            moments = linear_block_moments(particles, D, K)
            maps.append(linear_resnet_training(moments, x, y, K, 0.5, 0.1)["maps"])
        rms[width] = float(((torch.stack(maps) - limit) ** 2).sum((-2, -1)).amax(-1).mean().sqrt())
    assert 2.5 < rms[64] / rms[1024] < 6.5


def test_richardson_extrapolation_in_depth_matches_the_closed_form_at_initialisation():
    # without training (time 0) and a law with E[u w^T] = c I the depth-L map is (I + A / L)^L,
    # A = k c I + ... exactly; the limit is exp(A). Here A = k c I, so exp(A) = e^{k c} I.
    x, y = _linear_teacher()
    c = 0.3
    maps = {
        depth: linear_resnet_training(_linear_law(correlation=c).expand(depth, -1, -1), x, y, K, 0.0, 0.1)[
            "maps"
        ][0]
        for depth in (8, 16, 32)
    }
    exact = torch.linalg.matrix_exp(K * c * torch.eye(D, dtype=DOUBLE))
    first = 2 * maps[32] - maps[16]
    second = (4 * (2 * maps[32] - maps[16]) - (2 * maps[16] - maps[8])) / 3
    errors = [float((m - exact).norm()) for m in (maps[32], first, second)]
    assert errors[0] > 1e-2 and errors[1] < errors[0] / 20 and errors[2] < errors[1] / 10


def test_richardson_extrapolated_training_is_closer_to_a_much_finer_solve():
    # trained infinite-width solves at depths 8, 16, 32 against depth 1024 (whose own error is about
    # 32 / 1024 of the depth-32 one): the extrapolations are closer to it than any raw depth
    x, y = _linear_teacher()
    s0 = _linear_law()
    maps = {
        depth: linear_resnet_training(s0.expand(depth, -1, -1), x, y, K, 1.0, 0.1)["maps"]
        for depth in (8, 16, 32, 1024)
    }
    fine = maps[1024]
    first = [2 * maps[16] - maps[8], 2 * maps[32] - maps[16]]
    second = (4 * first[1] - first[0]) / 3
    raw = [float((maps[d] - fine).norm()) for d in (8, 16, 32)]
    assert raw[0] / raw[2] > 3.0  # first order in L
    assert float((first[1] - fine).norm()) < raw[2] / 4
    assert float((second - fine).norm()) < float((first[1] - fine).norm()) / 2


def test_linear_training_checks_its_arguments():
    x, y = _linear_teacher()
    s0 = _linear_law().expand(3, -1, -1)
    with pytest.raises(ValueError, match="moments"):
        linear_resnet_training(torch.zeros(3, 5, 5, dtype=DOUBLE), x, y, K, 1.0, 0.1)
    with pytest.raises(ValueError, match="step"):
        linear_resnet_training(s0, x, y, K, 1.0, 0.0)
    with pytest.raises(ValueError, match="target"):
        linear_resnet_training(s0, x, y[:, :2], K, 1.0, 0.1)
    with pytest.raises(ValueError, match="particles"):
        linear_block_moments(torch.zeros(2, 3, 5, dtype=DOUBLE), D, K)
