"""Two-layer mean-field models: outputs against explicit sums, symmetry, the CNN as a two-layer model."""

import pytest
import torch

from dlpde.meanfield import MeanFieldCNN, TwoLayerMeanField, mean_field_velocity
from dlpde.shared.testing import assert_permutation_invariant

DOUBLE = torch.float64


def test_two_layer_output_is_the_explicit_average():
    model = TwoLayerMeanField(7, 3, "tanh", bias=True, bias_scale=0.7, generator=1, dtype=DOUBLE)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), dtype=DOUBLE)
    a, w, b = model.output_weights, model.input_weights, model.biases
    explicit = torch.stack([sum(a[i] * torch.tanh(w[i] @ xb + b[i]) for i in range(7)) / 7 for xb in x])
    torch.testing.assert_close(model(x), explicit)


def _output_of_particles(model, x):
    return lambda particles: model(x, particles[0])[None]


def test_output_is_invariant_under_permutations_of_particles_and_the_check_fails_when_broken():
    model = TwoLayerMeanField(12, 4, "relu", generator=3, dtype=DOUBLE)
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(4), dtype=DOUBLE)
    particles = model.particles.detach()[None]
    assert_permutation_invariant(_output_of_particles(model, x), particles, dim=1, rtol=1e-12, atol=1e-12)

    def broken(p):  # weights the particles by their position: not a mean-field model
        weights = torch.linspace(0.5, 1.5, 12, dtype=DOUBLE)
        return (model.unit_outputs(x, p[0]) @ (p[0, :, 0] * weights) / 12)[None]

    with pytest.raises(AssertionError, match="not permutation invariant"):
        assert_permutation_invariant(broken, particles, dim=1, rtol=1e-12, atol=1e-12)


def test_mean_field_velocity_is_twice_the_covariance_of_residual_and_unit_gradient():
    """-n grad_i E(y - f)^2 = 2 E[(y - f) grad sigma_*(x; theta_i)], written out for tanh units."""
    model = TwoLayerMeanField(
        9, 3, "tanh", fixed_output=False, bias=True, bias_scale=0.5, generator=5, dtype=DOUBLE
    )
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(11, 3, generator=g, dtype=DOUBLE), torch.randn(11, generator=g, dtype=DOUBLE)
    velocity = mean_field_velocity(model, lambda: ((y - model(x)) ** 2).mean())
    with torch.no_grad():
        residual = y - model(x)
        a, w, b = model.output_weights, model.input_weights, model.biases
        pre = x @ w.T + b
        unit, slope = torch.tanh(pre), 1 - torch.tanh(pre) ** 2
        expected = torch.cat(
            [
                2 * (residual[:, None] * unit).mean(0)[:, None],
                2 * a[:, None] * ((residual[:, None] * slope).T @ x) / 11,
                2 * a[:, None] * (residual[:, None] * slope).mean(0)[:, None],
            ],
            1,
        )
    torch.testing.assert_close(velocity, expected)


def test_fixed_output_weights_do_not_move():
    model = TwoLayerMeanField(5, 2, "relu", fixed_output=True, output_scale=1.0, generator=0, dtype=DOUBLE)
    assert torch.all(model.output_weights == 1.0)
    x = torch.randn(4, 2, dtype=DOUBLE, generator=torch.Generator().manual_seed(0))
    velocity = mean_field_velocity(model, lambda: (model(x) ** 2).mean())
    assert torch.all(velocity[:, 0] == 0) and velocity[:, 1:].abs().sum() > 0


def test_cnn_units_are_patch_averages_computed_by_unfold():
    model = MeanFieldCNN(
        6,
        3,
        in_channels=2,
        activation="tanh",
        bias=True,
        bias_scale=0.3,
        stride=2,
        padding=1,
        generator=7,
        dtype=DOUBLE,
    )
    x = torch.randn(4, 2, 7, 7, generator=torch.Generator().manual_seed(8), dtype=DOUBLE)
    patches = torch.nn.functional.unfold(x, 3, stride=2, padding=1)  # (B, C k k, P)
    w, b = model.particles[:, 1 : 1 + 18], model.particles[:, -1]
    explicit = torch.tanh(torch.einsum("mk,bkp->bmp", w, patches) + b[None, :, None]).mean(-1)
    torch.testing.assert_close(model.unit_outputs(x), explicit)
    torch.testing.assert_close(model(x), explicit @ model.output_weights / 6)


def test_cnn_with_one_patch_is_the_two_layer_network_on_flattened_images():
    cnn = MeanFieldCNN(
        8, 4, in_channels=1, activation="relu", bias=True, bias_scale=0.5, generator=9, dtype=DOUBLE
    )
    dense = TwoLayerMeanField(8, 16, "relu", bias=True, dtype=DOUBLE)
    dense.set_particles(cnn.particles.detach())
    x = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(10), dtype=DOUBLE)
    torch.testing.assert_close(cnn(x), dense(x.flatten(1)))
    risk_cnn = lambda: (cnn(x) ** 2).mean()  # noqa: E731
    risk_dense = lambda: (dense(x.flatten(1)) ** 2).mean()  # noqa: E731
    torch.testing.assert_close(mean_field_velocity(cnn, risk_cnn), mean_field_velocity(dense, risk_dense))


def test_linear_cnn_is_the_linear_model_on_the_mean_patch():
    cnn = MeanFieldCNN(
        5, 3, in_channels=1, activation="linear", bias=True, bias_scale=1.0, generator=11, dtype=DOUBLE
    )
    x = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(12), dtype=DOUBLE)
    a, w, b = cnn.output_weights, cnn.particles[:, 1:10], cnn.particles[:, -1]
    torch.testing.assert_close(cnn(x), (cnn.mean_patch(x) @ w.T + b) @ a / 5)


def test_same_seed_same_particles_and_bad_inputs_raise():
    a = TwoLayerMeanField(4, 3, generator=3, dtype=DOUBLE)
    b = TwoLayerMeanField(4, 3, generator=3, dtype=DOUBLE)
    assert torch.equal(a.particles, b.particles)
    with pytest.raises(ValueError, match="shape"):
        a(torch.zeros(2, 4, dtype=DOUBLE))
    with pytest.raises(ValueError, match="float64"):
        a(torch.zeros(2, 3, dtype=torch.float32))
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        TwoLayerMeanField(0, 3)
    with pytest.raises(ValueError, match="input_scale"):
        TwoLayerMeanField(3, 3, input_scale=-1.0)
    cnn = MeanFieldCNN(3, 3, dtype=DOUBLE)
    with pytest.raises(ValueError, match="smaller than kernel_size"):
        cnn(torch.zeros(1, 1, 2, 2, dtype=DOUBLE))
    with pytest.raises(ValueError, match="in_channels|shape"):
        cnn(torch.zeros(1, 2, 5, 5, dtype=DOUBLE))
    with pytest.raises(ValueError, match="particles must have shape"):
        a.set_particles(torch.zeros(3, 4, dtype=DOUBLE))
