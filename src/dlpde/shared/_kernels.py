"""Core kernels of ``dlpde.shared`` for the GPU check: integrators, Laplacian, walkers."""

from __future__ import annotations

import torch

from .autodiff import laplacian
from .kernels import KernelCheck
from .mcmc import MetropolisWalkers
from .ode import integrate
from .random import make_generator


def _inputs(shape, seed=0):
    return torch.randn(shape, generator=make_generator(seed), dtype=torch.float64)


def _ode(method):
    def build(device, tiny):
        batch, dim = (64, 4) if tiny else (16_384, 16)
        a = (_inputs((dim, dim), 1) / dim**0.5).to(device)
        y0 = _inputs((batch, dim), 2).to(device)

        def f(t, y):
            return torch.tanh(y @ a.T) - 0.1 * y

        if method == "dopri5":
            return lambda: integrate(f, y0, 0.0, 1.0, method="dopri5", rtol=1e-8, atol=1e-10)
        return lambda: integrate(f, y0, 1.0, 0.0, method=method, steps=50)

    return build


def _laplacian(method):
    def build(device, tiny):
        batch, dim, width = (32, 6, 16) if tiny else (2048, 24, 128)
        w1 = (_inputs((dim, width), 3) / dim**0.5).to(device)
        w2 = (_inputs((width,), 4) / width**0.5).to(device)
        x = _inputs((batch, dim), 5).to(device)

        def f(y):
            return torch.tanh(y @ w1) @ w2

        if method == "exact":
            return lambda: laplacian(f, x)

        def run():  # probes from a CPU generator: identical on both devices
            return laplacian(f, x, method="hutchinson", n_samples=4, generator=make_generator(7))

        return run

    return build


def _walkers(device, tiny):
    batch, dim, steps = (16, 3, 10) if tiny else (8192, 12, 50)
    x0 = _inputs((batch, dim), 8).to(device)

    def log_prob(x):
        return -0.5 * (x**2).sum(-1) - 0.1 * (x**4).sum(-1)

    def run():
        # Proposals from a CPU generator, identical on both devices; a rounding difference can
        # still flip a rare accept/reject decision, so compare averages with a loose tolerance.
        w = MetropolisWalkers(log_prob, x0, proposal="mala", step_size=0.5,
                              generator=make_generator(9))
        w.step(steps)
        return torch.stack([log_prob(w.x).mean(), (w.x**2).mean(),
                            torch.tensor(w.total_acceptance, dtype=torch.float64, device=device)])

    return run


KERNELS = [
    KernelCheck("shared.integrate.rk4_backward", _ode("rk4")),
    KernelCheck("shared.integrate.dopri5", _ode("dopri5"), rtol=1e-6, atol=1e-8),
    KernelCheck("shared.laplacian.exact", _laplacian("exact")),
    KernelCheck("shared.laplacian.hutchinson", _laplacian("hutchinson"), rtol=1e-6, atol=1e-8),
    KernelCheck("shared.mcmc.mala_walkers", _walkers, rtol=1e-3, atol=1e-6),
]
