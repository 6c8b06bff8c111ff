"""Core kernels of ``dlpde.ntk`` for ``benchmarks/gpu_check.py``: analytic kernels (fully
connected and convolutional specs), empirical NTK (Jacobian contraction and NTK-vector
products), the exact kernel velocity, the infinite-width gradient-descent predictor, the
benchmark's depth-3 ReLU network at its size (4096 inputs), Monte Carlo kernels from finite
networks (weights drawn on the CPU, so both devices average the same networks) and kernel
regression."""

from __future__ import annotations

import torch

from dlpde.shared import KernelCheck, make_generator

from ._alpha import TwoLayerNetwork
from ._diagnostics import kernel_velocity
from ._empirical import empirical_ntk, monte_carlo_kernel
from ._predict import gradient_descent_mse, kernel_regression
from ._spec import Conv, Dense, Elementwise, Erf, GlobalAvgPool, Relu, Serial, analytic_kernels, build_network


def _inputs(shape, seed):
    return torch.randn(shape, generator=make_generator(seed), dtype=torch.float64)


def _analytic_fc(device, tiny):
    n = 64 if tiny else 2048
    spec = Serial(Dense(512, 1.4, 0.1), Relu(), Dense(512, 1.4, 0.1), Erf(), Dense(512, 1.4, 0.1), Relu(),
                  Dense(1))
    x = _inputs((n, 32), 0).to(device)
    return lambda: analytic_kernels(spec, x, batch_size=None if tiny else 1024)


def _analytic_quadrature(device, tiny):
    n = 16 if tiny else 256
    spec = Serial(Dense(512, 1.4, 0.1), Elementwise("tanh", 16), Dense(1))
    x = _inputs((n, 32), 8).to(device)
    return lambda: analytic_kernels(spec, x)


def _analytic_cnn(device, tiny):
    n, side = (6, 4) if tiny else (24, 8)
    conv = Conv(64, (3, 3), (1, 1), "SAME", 1.4, 0.1)
    circular = Conv(64, (3, 3), (1, 1), "CIRCULAR", 1.4, 0.1)
    spec = Serial(conv, Relu(), circular, Relu(), GlobalAvgPool(), Dense(1))
    x = _inputs((n, 3, side, side), 1).to(device)
    return lambda: analytic_kernels(spec, x, batch_size=None if tiny else 12)


def _empirical(method):
    def build(device, tiny):
        n, width = (16, 64) if tiny else (64, 256)
        spec = Serial(Dense(width, 1.4, 0.1), Relu(), Dense(width, 1.4, 0.1), Erf(), Dense(4))
        net = build_network(spec, (16,), 2, torch.float64, device)
        x = _inputs((n, 16), 3).to(device)
        batch = None if tiny else 32
        return lambda: empirical_ntk(net, x, method=method, trace_outputs=False, batch_size=batch)

    return build


def _velocity(device, tiny):
    n, width = (8, 64) if tiny else (64, 2048)
    net = TwoLayerNetwork(10, width, "tanh", seed=4, device=device)
    x = _inputs((n, 10), 5).to(device)
    y = torch.sin(x[:, 0])
    return lambda: kernel_velocity(net, x, y)


def _predictor(device, tiny):
    n = 32 if tiny else 1024
    x = _inputs((n + 64, 8), 6)
    _, ntk = analytic_kernels(Serial(Dense(8), Relu(), Dense(1)), x)
    ntk = ntk.to(device)
    y = _inputs((n, 2), 7).to(device)
    return lambda: gradient_descent_mse(ntk[:n, :n], y, [0.5, 5.0, 50.0], 1.0, ntk_test_train=ntk[n:, :n])


def _benchmark_fc(device, tiny):
    n = 64 if tiny else 4096
    spec = Serial(Dense(512, 1.4, 0.1), Relu(), Dense(512, 1.4, 0.1), Relu(), Dense(512, 1.4, 0.1), Relu(),
                  Dense(1, 1.0, 0.1))
    x = _inputs((n, 32), 0).to(device)
    return lambda: analytic_kernels(spec, x, get="ntk")


def _monte_carlo(device, tiny):
    n, width, samples = (6, 32, 4) if tiny else (128, 1024, 32)
    spec = Serial(Dense(width, 1.4, 0.1), Relu(), Dense(width, 1.4, 0.1), Relu(), Dense(1, 1.0, 0.1))
    x = _inputs((n, 16), 9).to(device)
    return lambda: monte_carlo_kernel(spec, x, n_samples=samples, seed=1)


def _kernel_regression(device, tiny):
    n, m = (16, 8) if tiny else (1024, 256)
    spec = Serial(Dense(512, 1.4, 0.1), Relu(), Dense(512, 1.4, 0.1), Relu(), Dense(1, 1.0, 0.1))
    x = _inputs((n + m, 8), 10).to(device)
    y = torch.sin(x[:n, :2])
    return lambda: kernel_regression(spec, x[:n], y, x[n:], t=[1.0, 10.0], diag_reg=1e-3)


KERNELS = [
    KernelCheck("ntk.analytic_kernels.fc", _analytic_fc),
    KernelCheck("ntk.analytic_kernels.quadrature", _analytic_quadrature),
    KernelCheck("ntk.analytic_kernels.cnn", _analytic_cnn),
    KernelCheck("ntk.empirical_ntk.jacobian", _empirical("jacobian")),
    KernelCheck("ntk.empirical_ntk.ntk_vp", _empirical("ntk_vp")),
    KernelCheck("ntk.empirical_ntk.structured", _empirical("structured")),
    KernelCheck("ntk.kernel_velocity", _velocity, rtol=1e-6, atol=1e-10),
    KernelCheck("ntk.gradient_descent_mse", _predictor, rtol=1e-6, atol=1e-9),
    KernelCheck("ntk.analytic_kernels.benchmark_fc", _benchmark_fc),
    KernelCheck("ntk.monte_carlo_kernel", _monte_carlo, rtol=1e-8, atol=1e-10),
    KernelCheck("ntk.kernel_regression", _kernel_regression, rtol=1e-6, atol=1e-9),
]
