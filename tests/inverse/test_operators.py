"""Operators: adjointness (float64, 1e-10), hand-written adjoint = autograd adjoint, forward
against scipy / closed forms, norms against closed forms, and bad inputs."""

import math

import numpy as np
import pytest
import torch

from dlpde.inverse import (
    Blur,
    CompressedSensing,
    Downsampling,
    GaussianBlur,
    Identity,
    Inpainting,
    MotionBlur,
    Radon,
    filtered_back_projection,
)
from dlpde.inverse._operators import BOUNDARIES, _pad
from dlpde.shared.testing import assert_adjoint

G = torch.Generator().manual_seed(0)
KERNEL = torch.rand(5, 4, generator=G, dtype=torch.float64)  # even width: off-centre case
MASK = torch.rand(13, 11, generator=G) > 0.4


def operators():
    cases = [(f"blur-{b}", Blur(KERNEL, b), (13, 11)) for b in BOUNDARIES]
    cases += [(f"gaussian-{b}", GaussianBlur(1.3, boundary=b), (16, 15)) for b in BOUNDARIES]
    cases += [(f"motion-{b}", MotionBlur(6.0, 30.0, boundary=b), (16, 15)) for b in BOUNDARIES]
    cases += [(f"downsampling-{f}-{b}", Downsampling(2, f, boundary=b), (12, 10))
              for f in ("box", "gaussian") for b in BOUNDARIES]
    cases += [("identity", Identity(), (7, 5)), ("inpainting", Inpainting(MASK), (13, 11)),
              ("radon", Radon(torch.tensor([0.0, 17.0, 45.0, 90.0, 133.0, 179.5]), 15, detectors=21),
               (15, 15)),
              ("radon-uniform", Radon(12, 16), (16, 16)),
              ("compressed-sensing", CompressedSensing.gaussian(9, 20, generator=3), (20,))]
    return cases


CASES = operators()
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("name,operator,shape", CASES, ids=IDS)
def test_adjointness_float64(name, operator, shape):
    assert operator.adjointness_error(shape) < 1e-10
    x = torch.zeros(3, *shape, dtype=torch.float64)
    assert_adjoint(operator.forward, operator.adjoint, x, operator.forward(x), tol=1e-10)


@pytest.mark.parametrize("name,operator,shape", CASES, ids=IDS)
def test_hand_written_adjoint_matches_autograd(name, operator, shape):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, *shape, generator=g, dtype=torch.float64, requires_grad=True)
    y = operator.forward(x)
    v = torch.randn(y.shape, generator=g, dtype=torch.float64)
    (autograd,) = torch.autograd.grad(y, x, v)
    assert torch.allclose(operator.adjoint(v), autograd, rtol=1e-12, atol=1e-12)


def test_broken_adjoint_is_caught():
    """Flipping the kernel and reusing the padding is not the adjoint for reflect / replicate:
    the adjointness check must fail on it (REFERENCES: 72 % and 16 % errors)."""
    import torch.nn.functional as F

    for boundary in ("reflect", "replicate"):
        blur = Blur(KERNEL, boundary)

        def wrong_adjoint(y, blur=blur):
            flipped = Blur(torch.flip(KERNEL, (0, 1)), boundary)
            return flipped.forward(y)

        x = torch.zeros(2, 13, 11, dtype=torch.float64)
        with pytest.raises(AssertionError):
            assert_adjoint(blur.forward, wrong_adjoint, x, x, tol=1e-3)
    assert F is not None


@pytest.mark.parametrize("boundary,mode", [("circular", "wrap"), ("reflect", "mirror"),
                                           ("replicate", "nearest"), ("zero", "constant")])
def test_blur_matches_scipy(boundary, mode):
    from scipy.ndimage import convolve

    x = torch.randn(3, 17, 19, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ours = Blur(KERNEL, boundary)(x).numpy()
    reference = np.stack([convolve(image.numpy(), KERNEL.numpy(), mode=mode) for image in x])
    np.testing.assert_allclose(ours, reference, atol=1e-13)


def test_padding_matches_numpy():
    x = torch.randn(1, 1, 6, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for boundary, mode in (("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")):
        padded = _pad(x, (2, 3, 1, 4), boundary)[0, 0].numpy()
        np.testing.assert_array_equal(padded, np.pad(x[0, 0].numpy(), ((2, 3), (1, 4)), mode=mode))


def test_norms_against_closed_forms():
    blur = GaussianBlur(1.5)
    assert blur.norm((32, 32)) == pytest.approx(blur.fft_norm((32, 32)), rel=1e-6)
    odd = Blur(torch.tensor([[0.5, 0.25, -0.1]], dtype=torch.float64))  # FFT bound below sum |k|
    power = odd.norm((8, 16), iterations=5000, tolerance=1e-15)
    assert power == pytest.approx(odd.fft_norm((8, 16)), rel=1e-6)
    assert odd.fft_norm((8, 16)) < 0.85 - 1e-3  # strictly below the l1 bound sum |k|
    cs = CompressedSensing.gaussian(30, 60, generator=4)
    assert cs.norm() == pytest.approx(cs.exact_norm(), rel=1e-6)
    assert Inpainting(MASK).norm() == pytest.approx(1.0, rel=1e-9)
    assert Identity().norm((4, 4)) == pytest.approx(1.0, rel=1e-12)


def test_lista_matrix_has_unit_columns():
    a = CompressedSensing.gaussian(250, 500, generator=0).matrix
    assert torch.allclose(a.norm(dim=0), torch.ones(500, dtype=torch.float64), atol=1e-12)


def _gaussian_bump(n, width, shift):
    c = (n - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64),
                            indexing="ij")
    return torch.exp(-((xx - c - shift) ** 2 + (yy - c) ** 2) / (2 * width**2))


def test_radon_of_gaussian_matches_closed_form():
    """R[exp(-|x - x0|^2 / 2w^2)](theta, s) = sqrt(2 pi) w exp(-(s - x0 . e_theta)^2 / 2w^2)."""
    n, width, shift = 64, 6.0, 5.0
    radon = Radon(36, n)
    sinogram = radon(_gaussian_bump(n, width, shift))
    theta = torch.deg2rad(radon.angles)[:, None]
    s = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2)[None]
    exact = math.sqrt(2 * math.pi) * width * torch.exp(-(s - shift * torch.cos(theta)) ** 2 / (2 * width**2))
    assert float((sinogram - exact).norm() / exact.norm()) < 2e-3


def test_filtered_back_projection_reconstructs():
    n = 64
    radon = Radon(90, n)
    image = _gaussian_bump(n, 6.0, 5.0)
    for window in ("ramp", "shepp-logan", "cosine", "hann"):
        estimate = filtered_back_projection(radon, radon(image), window)
        error = float((estimate - image).norm() / image.norm())
        assert error < (0.05 if window in ("ramp", "shepp-logan") else 0.1), (window, error)


def test_radon_agrees_with_scikit_image():
    from skimage.transform import radon as sk_radon

    n = 49  # odd: both rotate about the same centre pixel
    image = _gaussian_bump(n, 5.0, 4.0)
    angles = np.linspace(0, 180, 20, endpoint=False)
    ours = Radon(torch.tensor(angles), n)(image).numpy()
    theirs = sk_radon(image.numpy(), theta=angles, circle=True).T
    assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) < 1e-3  # measured 2e-5


def test_bad_inputs():
    with pytest.raises(ValueError, match="boundary"):
        Blur(KERNEL, "periodic")
    with pytest.raises(TypeError, match="kernel"):
        Blur([[1.0]])
    with pytest.raises(ValueError, match="input_shape"):
        Blur(KERNEL).norm()
    with pytest.raises(ValueError, match="x must end with shape"):
        Radon(4, 8)(torch.zeros(2, 9, 9))
    with pytest.raises(ValueError, match="mask"):
        Inpainting(torch.full((3, 3), 0.5))
    with pytest.raises(TypeError, match="floating"):
        CompressedSensing.gaussian(3, 4)(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="factor"):
        Downsampling(0)


def test_adjointness_error_detects_a_wrong_adjoint():
    class Scaled(Blur):  # adjoint off by 1 %: must show up far above 1e-10
        def adjoint(self, y):
            return 1.01 * super().adjoint(y)

    assert Scaled(KERNEL, "reflect").adjointness_error((13, 11)) > 1e-5  # measured 3.5e-4
