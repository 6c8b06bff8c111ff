"""Unrolled networks: initialisations equal the classical iterations they unroll, analytic
weights satisfy their defining conditions, TRD's diffusion is the gradient of its energy, and
the training loops reduce the error."""

import math

import pytest
import torch

from dlpde.inverse import (
    ALISTA,
    LISTA,
    LISTA_CP,
    LISTA_CPSS,
    TRD,
    CompressedSensing,
    DnCNN,
    GaussianBlur,
    LearnedPrimalDual,
    RadialBasisInfluence,
    Radon,
    UNet,
    UnrolledProximalGradient,
    analytic_weight_matrix,
    dct_filter_basis,
    haar_transform,
    inverse_haar_transform,
    ista,
    layer_nmse_db,
    sparse_vectors,
    support_selection_threshold,
    train_greedy_then_joint,
    train_layerwise,
)
from dlpde.inverse._operators import convolve

MATRIX = CompressedSensing.gaussian(15, 30, generator=0).matrix


def _ista_iterates(b, weight, layers):
    out = []
    ista(CompressedSensing(MATRIX), b, weight, stopping=layers,
         step=1 / float(torch.linalg.matrix_norm(MATRIX, ord=2)) ** 2,
         callback=lambda k, x: out.append(x))
    return out


@pytest.mark.parametrize("cls", [LISTA, LISTA_CP])
def test_lista_initialisation_is_ista(cls):
    b = torch.randn(4, 15, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = cls(MATRIX, 6, weight=0.1)
    for ours, reference in zip(model(b), _ista_iterates(b, 0.1, 6)):
        assert torch.allclose(ours, reference, atol=1e-12)


def test_analytic_weights():
    """diag(W^T A) = 1 and W minimises ||W^T A||_F on that set: perturbing along the constraint
    (columns u_i with u_i^T a_i = 0) never decreases the objective."""
    w = analytic_weight_matrix(MATRIX)
    assert torch.allclose(torch.diagonal(w.T @ MATRIX), torch.ones(30, dtype=torch.float64), atol=1e-12)
    g = torch.Generator().manual_seed(2)
    base = float((w.T @ MATRIX).norm() ** 2)
    for _ in range(5):
        u = torch.randn(w.shape, generator=g, dtype=torch.float64)
        u = u - MATRIX * (u * MATRIX).sum(0) / (MATRIX * MATRIX).sum(0)  # u_i . a_i = 0
        assert float(((w + 1e-3 * u).T @ MATRIX).norm() ** 2) > base


def test_support_selection_passes_largest_entries():
    v = torch.tensor([[5.0, -4.0, 0.5, 0.2, -3.0, 0.1, 0.05, 2.0, 0.3, -0.4]])
    out = support_selection_threshold(v, torch.tensor(1.0), percent=20.0)  # top 2 pass
    assert out[0, 0] == 5.0 and out[0, 1] == -4.0 and out[0, 4] == -2.0 and out[0, 7] == 1.0
    assert float(out[0, 2:4].abs().sum()) == 0.0


def test_layerwise_training_improves_alista_and_cpss():
    g = torch.Generator().manual_seed(3)
    a = MATRIX.float()
    x_test = sparse_vectors(256, 30, 0.1, g)
    b_test = x_test @ a.T

    def sample(generator):
        x = sparse_vectors(32, 30, 0.1, generator)
        return x @ a.T, x

    for cls in (ALISTA, LISTA_CPSS):
        model = cls(a, 4, 0.1)
        before = layer_nmse_db(model, b_test, x_test)[-1]
        train_layerwise(model, sample, (15, 5, 5), lr=5e-3, generator=4, progress=False)
        after = layer_nmse_db(model, b_test, x_test)[-1]
        assert after < before - 1.5, (cls.__name__, before, after)  # measured: ALISTA, CPSS gain > 2 dB


def test_upg_without_learning_is_ista_from_adjoint():
    """UnrolledProximalGradient with the l1 prior and nothing learned = ISTA started at A^T y."""
    operator = CompressedSensing(MATRIX)
    y = torch.randn(3, 15, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    network = UnrolledProximalGradient(operator, "l1", 5, learn=(), threshold=0.1).double()
    out = network(y, return_all=True)
    reference = []
    ista(operator, y, 0.1, stopping=5, step=1 / operator.norm() ** 2, x0=operator.adjoint(y),
         callback=lambda k, x: reference.append(x))
    for ours, theirs in zip(out, reference):
        assert torch.allclose(ours, theirs, atol=1e-9)
    assert not any(p.requires_grad for p in network.parameters())


def test_haar_is_orthonormal():
    x = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    c = haar_transform(x, 3)
    assert float(c.norm()) == pytest.approx(float(x.norm()), rel=1e-12)
    assert torch.allclose(inverse_haar_transform(c, 3), x, atol=1e-12)


def test_dct_basis_is_orthonormal_and_zero_mean():
    basis = dct_filter_basis(5).reshape(24, 25)
    assert torch.allclose(basis @ basis.T, torch.eye(24, dtype=torch.float64), atol=1e-12)
    assert float(basis.sum(1).abs().max()) < 1e-12


def test_rbf_interpolation_matches_exact_sum():
    influence = RadialBasisInfluence(3, dtype=torch.float64)
    with torch.no_grad():
        influence.weights.copy_(torch.randn(influence.weights.shape,
                                            generator=torch.Generator().manual_seed(7)))
    z = torch.linspace(-1.5, 1.5, 2001, dtype=torch.float64).expand(1, 3, 1, -1)
    peak = float(influence.weights.detach().abs().max())
    assert float((influence(z) - influence.exact(z)).abs().max()) < 0.02 * peak


def test_trd_diffusion_is_energy_gradient():
    """sum_i K_i^T phi_i(K_i u) = grad_u sum_i sum_px rho_i(K_i u), rho_i' = phi_i (exact RBF sum:
    rho = sum_j w_j s sqrt(pi/2) erf((z - c_j) / (s sqrt 2))); checks the reflect-boundary adjoint
    inside TRD and the interpolated influence."""
    model = TRD(1, 5, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    influence = model.influences[0]
    kernels = model.filters_of(0)
    u = torch.rand(1, 1, 20, 18, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    u.requires_grad_(True)
    s, c = influence.width, influence.centres

    def energy(image):
        z = convolve(image, kernels, "reflect")[..., None]
        rho = influence.weights[None, :, None, None, :] * s * math.sqrt(math.pi / 2) * torch.erf(
            (z - c) / (s * math.sqrt(2)))
        return rho.sum()

    (gradient,) = torch.autograd.grad(energy(u), u)
    with torch.no_grad():
        f = u.detach()
        diffusion = -(model.step(0, f, f) - f)  # reaction vanishes at u = f
    assert float((diffusion - gradient).abs().max()) < 1e-3 * float(gradient.abs().max())


def test_trd_greedy_training_reduces_error():
    g = torch.Generator().manual_seed(10)
    clean = torch.rand(16, 24, 24, generator=g).cumsum(-1) / 24  # smooth-ish ramps

    def sample(generator):
        index = torch.randint(16, (4,), generator=generator)
        x = clean[index]
        return x + 0.1 * torch.randn(x.shape, generator=generator), x

    model = TRD(2, 3, generator=torch.Generator().manual_seed(11))
    noisy, target = sample(torch.Generator().manual_seed(12))
    before = float(((model(noisy) - target) ** 2).mean())
    stages = []
    train_greedy_then_joint(model, sample, 30, 10, lr=1e-2, progress=False,
                            callback=lambda t, m: stages.append(t))
    after = float(((model(noisy) - target) ** 2).mean())
    assert stages == [1, 2] and after < 0.7 * before
    diffusion = TRD(3, 3, fidelity=False, stopping_time=0.5, learn_stopping_time=True)
    assert len(diffusion(noisy, steps=7, return_all=True)) == 7
    with pytest.raises(ValueError, match="steps"):
        model(noisy, steps=5)


def test_learned_primal_dual_starts_from_the_initial_image():
    """With the last layer of every update zeroed, each residual update is zero, so the network
    returns its initial image exactly (zero without one); the initial image is checked for shape."""
    g = torch.Generator().manual_seed(5)
    radon = Radon(6, 16)
    network = LearnedPrimalDual(radon, 3, hidden=4, generator=g, operator_norm=10.0).double()
    for block in [*network.dual, *network.primal]:
        torch.nn.init.zeros_(block[-1].weight)
        torch.nn.init.zeros_(block[-1].bias)
    y = radon(torch.rand(2, 16, 16, generator=g, dtype=torch.float64))
    start = torch.rand(2, 16, 16, generator=g, dtype=torch.float64)
    assert torch.equal(network(y, start), start)
    assert torch.equal(network(y), torch.zeros_like(start))
    with pytest.raises(ValueError, match="initial"):
        network(y, start[:1])


def test_networks_shapes_and_gradients():
    g = torch.Generator().manual_seed(13)
    y = torch.rand(2, 21, 19, generator=g)
    for network in (DnCNN(4, 8, generator=g), UNet(2, 4, generator=g)):
        out = network(y)
        assert out.shape == y.shape
        out.sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all()
                   for p in network.parameters() if p.requires_grad)
    radon = Radon(6, 16)
    network = LearnedPrimalDual(radon, 2, hidden=4, generator=g, operator_norm=10.0)
    assert network(radon(torch.rand(2, 16, 16, generator=g))).shape == (2, 16, 16)
    blur = GaussianBlur(1.0, boundary="reflect")
    upg = UnrolledProximalGradient(blur, "tv", 2, operator_norm=1.0, inner=3)
    assert upg(y).shape == y.shape
    with pytest.raises(ValueError, match="prior"):
        UnrolledProximalGradient(blur, "sparsity", 2, operator_norm=1.0)
    with pytest.raises(ValueError, match="shape"):
        DnCNN(3, 4)(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="b must have shape"):
        ALISTA(MATRIX, 2)(torch.zeros(3, 7, dtype=torch.float64))
