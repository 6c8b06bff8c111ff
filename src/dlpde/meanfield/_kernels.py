"""Core kernels of ``dlpde.meanfield`` for ``benchmarks/gpu_check.py``: the particle step of every model.

Inputs are made on the CPU in float64 from fixed seeds and moved to the device; random numbers
(mini-batches, Langevin noise) come from CPU generators, so both devices see the same numbers.
"""

from __future__ import annotations

import torch

from dlpde.shared import KernelCheck, make_generator

from ._activations import GaussianWellActivation
from ._dynamics import mean_field_gradient_flow, mean_field_sgd
from ._isotropic import IsotropicGaussianProblem, gaussian_initial_radius, solve_radial_limit
from ._linear_closure import LinearMomentClosure
from ._resnet import GaussianBlockMeasure, MeanFieldResNet, resnet_limit_adjoint
from ._two_layer import MeanFieldCNN, TwoLayerMeanField

DOUBLE = torch.float64


def _two_layer_sgd(noisy):
    def build(device, tiny):
        n, d, batch = (64, 5, 16) if tiny else (20_000, 10, 32)
        model = TwoLayerMeanField(n, d, "tanh", generator=1, dtype=DOUBLE, device=device)
        start = model.particles.detach().clone()

        def run():
            model.set_particles(start)
            data = make_generator(2)

            def loss(step):
                x = torch.randn(batch, d, generator=data, dtype=DOUBLE).to(device)
                return ((torch.sin(x[:, 0]) - model(x)) ** 2).mean()

            noise = (
                {"penalty": 0.1, "inverse_temperature": 50.0, "generator": make_generator(3)} if noisy else {}
            )
            mean_field_sgd(model, loss, 0.05, 0.01, progress=False, **noise)
            return model.particles.detach()

        return run

    return build


def _fused_squared_loss(device, tiny):
    """The particle-blocked fused loss and gradient (``_fused.py``) through ``squared_loss``, with an
    explicit block on both devices (a GPU defaults to one block), so the blocked path runs on both."""
    n, d, batch, block = (96, 5, 8, 32) if tiny else (200_000, 10, 32, 1024)
    model = TwoLayerMeanField(n, d, "tanh", bias=True, generator=11, dtype=DOUBLE, device=device)
    g = make_generator(12)
    x = torch.randn(batch, d, generator=g, dtype=DOUBLE).to(device)
    y = torch.sin(x[:, 0]).to(device)

    def run():
        model.particles.grad = None
        loss = model.squared_loss(x, y, block=block)
        loss.backward()
        return loss.detach(), model.particles.grad.detach().clone()

    return run


def _exact_risk_flow(device, tiny):
    n, d = (32, 4) if tiny else (512, 10)
    activation = GaussianWellActivation(3.0, 1.5, 1.0)
    problem = IsotropicGaussianProblem(d, 0.5, activation)
    model = TwoLayerMeanField(
        n,
        d,
        activation,
        fixed_output=True,
        bias=False,
        input_scale=0.3,
        generator=4,
        dtype=DOUBLE,
        device=device,
    )
    start = model.particles.detach().clone()

    def run():
        model.set_particles(start)
        return mean_field_gradient_flow(model, lambda: problem.population_risk(model), 0.5, steps=2)

    return run


def _radial_limit(device, tiny):
    problem = IsotropicGaussianProblem(10, 0.5, GaussianWellActivation(3.0, 1.5, 1.0))
    tracers = torch.linspace(0.05, 0.8, 16 if tiny else 1_000, dtype=DOUBLE).to(device)

    def run():
        solution = solve_radial_limit(
            problem,
            gaussian_initial_radius(10, 0.3),
            1.0,
            4 if tiny else 4,
            nodes=12 if tiny else 32,
            tracers=tracers,
            hermite_terms=48,
        )
        return solution.tracer_radii, solution.risk

    return run


def _cnn_flow(device, tiny):
    channels, batch = (8, 4) if tiny else (512, 32)
    model = MeanFieldCNN(channels, 3, 1, "tanh", generator=5, dtype=DOUBLE, device=device)
    g = make_generator(6)
    x = torch.randn(batch, 1, 6, 6, generator=g, dtype=DOUBLE).to(device)
    y = torch.randn(batch, generator=g, dtype=DOUBLE).to(device)
    start = model.particles.detach().clone()

    def run():
        model.set_particles(start)
        return mean_field_gradient_flow(model, lambda: ((y - model(x)) ** 2).mean(), 0.2, steps=2)

    return run


def _linear_closure(device, tiny):
    g = make_generator(7)
    x = torch.randn(64, 6, generator=g, dtype=DOUBLE).to(device)
    y = torch.tanh(x.sum(1))
    closure = LinearMomentClosure.from_data(x, y, penalty=0.1, inverse_temperature=20.0)
    start = torch.eye(8, dtype=DOUBLE, device=device)

    return lambda: closure.solve(start, 1.0, steps=20 if tiny else 200)


def _resnet_sgd(device, tiny):
    depth, width, batch = (3, 4, 8) if tiny else (16, 32, 64)
    net = MeanFieldResNet(depth, width, 4, 2, "tanh", generator=8, dtype=DOUBLE, device=device)
    g = make_generator(9)
    x = torch.randn(batch, 4, generator=g, dtype=DOUBLE).to(device)
    y = torch.tanh(x.flip(1))
    start = net.particles.detach().clone()

    def run():
        with torch.no_grad():
            net.particles.copy_(start)
        mean_field_sgd(net, lambda step: 0.5 * ((net(x) - y) ** 2).sum(-1).mean(), 0.1, 0.02, progress=False)
        net.reorder_by_depth_gradient(x, y, 1.0)
        return net.particles.detach()

    return run


def _resnet_limit(device, tiny):
    g = make_generator(10)
    coupling = (0.8 * torch.randn(2, 4, 4, generator=g, dtype=DOUBLE)).to(device)
    measure = GaussianBlockMeasure(4, 2, "tanh", coupling, noise=0.3)
    x = torch.randn(8 if tiny else 256, 4, generator=g, dtype=DOUBLE).to(device)
    y = torch.tanh(x)
    return lambda: resnet_limit_adjoint(
        measure.field, x, y, [0.0, 0.5, 1.0], method="rk4", steps=8 if tiny else 16
    )


KERNELS = [
    KernelCheck("meanfield.two_layer.online_sgd_steps", _two_layer_sgd(False)),
    KernelCheck("meanfield.two_layer.langevin_steps", _two_layer_sgd(True), rtol=1e-9, atol=1e-11),
    KernelCheck("meanfield.two_layer.fused_loss_blocked", _fused_squared_loss, rtol=1e-9, atol=1e-12),
    KernelCheck("meanfield.isotropic.exact_risk_gradient_flow", _exact_risk_flow, rtol=1e-9, atol=1e-11),
    KernelCheck("meanfield.isotropic.radial_limit", _radial_limit, rtol=1e-9, atol=1e-11),
    KernelCheck("meanfield.cnn.gradient_flow", _cnn_flow, rtol=1e-9, atol=1e-11),
    KernelCheck("meanfield.linear_closure.solve", _linear_closure, rtol=1e-9, atol=1e-11),
    KernelCheck("meanfield.resnet.sgd_steps_and_reordering", _resnet_sgd, rtol=1e-9, atol=1e-11),
    KernelCheck("meanfield.resnet.limit_adjoint", _resnet_limit, rtol=1e-9, atol=1e-11),
]
