"""Core kernels of ``dlpde.inverse`` for the GPU check: operators (forward and adjoint of every
blur boundary, Radon, FBP), TV by Chambolle-Pock, the LISTA family, TRD, unrolled proximal
gradient, learned primal-dual and the pixel-to-pixel baselines, all in float64."""

from __future__ import annotations

import torch

from dlpde.shared import KernelCheck, make_generator

from ._lista import ALISTA, LISTA_CPSS
from ._networks import DnCNN, LearnedPrimalDual, UNet, UnrolledProximalGradient
from ._operators import BOUNDARIES, CompressedSensing, GaussianBlur, MotionBlur, Radon
from ._solvers import filtered_back_projection, total_variation_restoration
from ._trd import TRD


def _images(shape, seed):
    return torch.rand(shape, generator=make_generator(seed), dtype=torch.float64)


def _blur(boundary):
    def build(device, tiny):
        shape = (2, 32, 32) if tiny else (4, 256, 256)
        x = _images(shape, 1).to(device)
        blur = MotionBlur(9.0, 30.0, boundary=boundary) if boundary != "circular" else GaussianBlur(2.0)
        return lambda: (blur.forward(x), blur.adjoint(x))

    return build


def _radon(device, tiny):
    size, angles, batch = (24, 8, 2) if tiny else (128, 60, 2)
    radon = Radon(angles, size)
    x = _images((batch, size, size), 2).to(device)
    return lambda: (radon.forward(x), filtered_back_projection(radon, radon.forward(x), "hann"))


def _tv(device, tiny):
    shape, iterations = ((1, 24, 24), 20) if tiny else ((2, 128, 128), 30)
    blur = GaussianBlur(1.5, boundary="reflect")
    y = blur(_images(shape, 3)).to(device)
    return lambda: total_variation_restoration(blur, y, 0.01, stopping=iterations,
                                               operator_norm=1.0).solution


def _lista(cls):
    def build(device, tiny):
        m, n, batch = (20, 40, 8) if tiny else (250, 500, 1024)
        matrix = CompressedSensing.gaussian(m, n, generator=4).matrix
        model = cls(matrix, 16, 0.1).to(device)
        b = torch.randn(batch, m, generator=make_generator(5), dtype=torch.float64).to(device)
        return lambda: model(b)[-1]

    return build


def _trd(device, tiny):
    shape = (1, 32, 32) if tiny else (2, 128, 128)
    model = TRD(5, 5, generator=make_generator(6), dtype=torch.float64).to(device)
    f = _images(shape, 7).to(device)
    return lambda: model(f)


def _unrolled(device, tiny):
    shape = (1, 32, 32) if tiny else (2, 128, 128)
    blur = GaussianBlur(1.5, boundary="reflect")
    network = UnrolledProximalGradient(blur, "tv", 5, operator_norm=1.0).double().to(device)
    y = _images(shape, 8).to(device)
    return lambda: network(y)


def _primal_dual(device, tiny):
    size, angles, batch = (16, 6, 1) if tiny else (64, 30, 2)
    radon = Radon(angles, size)
    network = LearnedPrimalDual(radon, 4, hidden=8 if tiny else 32, operator_norm=20.0,
                                generator=make_generator(9)).double().to(device)
    y = radon(_images((batch, size, size), 10)).to(device)
    return lambda: network(y)


def _pixel(cls):
    def build(device, tiny):
        shape = (1, 32, 32) if tiny else (2, 128, 128)
        kwargs = {}
        if cls is DnCNN:  # the size the denoising study trains (tiny: smaller still)
            kwargs = {"depth": 3, "width": 8} if tiny else {"depth": 8, "width": 24, "batch_norm": False}
        model = cls(generator=make_generator(11), **kwargs).double().to(device).eval()
        y = _images(shape, 12).to(device)
        return lambda: model(y)

    return build


KERNELS = [
    *[KernelCheck(f"inverse.blur.{b}", _blur(b)) for b in BOUNDARIES],
    KernelCheck("inverse.radon.forward_fbp", _radon, rtol=1e-9, atol=1e-9),
    KernelCheck("inverse.tv_chambolle_pock", _tv, rtol=1e-7, atol=1e-8),
    KernelCheck("inverse.lista_cpss", _lista(LISTA_CPSS), rtol=1e-7, atol=1e-9),
    KernelCheck("inverse.alista", _lista(ALISTA), rtol=1e-7, atol=1e-9),
    KernelCheck("inverse.trd", _trd, rtol=1e-7, atol=1e-8),
    KernelCheck("inverse.unrolled_proximal_gradient", _unrolled, rtol=1e-7, atol=1e-8),
    KernelCheck("inverse.learned_primal_dual", _primal_dual, rtol=1e-7, atol=1e-8),
    KernelCheck("inverse.dncnn", _pixel(DnCNN), rtol=1e-7, atol=1e-8),
    KernelCheck("inverse.unet", _pixel(UNet), rtol=1e-7, atol=1e-8),
]
