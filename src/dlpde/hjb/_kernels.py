"""Core kernels of ``dlpde.hjb`` for the GPU check: characteristic integrators, the Hopf-Lax
minimisation, the characteristic-regularised loss and the Pontryagin solver. Inputs are made on
the CPU in float64 from fixed seeds, then moved to the device; every random draw inside a kernel
comes from a CPU generator, so both devices see the same numbers."""

from __future__ import annotations

import torch

from dlpde.shared.kernels import KernelCheck
from dlpde.shared.random import make_generator

from ._bvp import solve_pontryagin_bvp
from ._characteristics import backward_characteristics, characteristics
from ._hamiltonians import Hamiltonian, LQRHamiltonian
from ._hopf_lax import hopf_lax_value
from ._networks import DGMNetwork
from ._problems import lqr_problem, min_of_quadratics_problem
from ._solvers import CharacteristicSolver


def _normal(shape, seed):
    return torch.randn(shape, generator=make_generator(seed), dtype=torch.float64)


def _lqr_matrices(d, seed=0):
    a = _normal((d, d), seed) / d**0.5
    b = _normal((d, 2), seed + 1)
    return a, b, torch.eye(d, dtype=torch.float64), torch.eye(2, dtype=torch.float64)


def _backward_lqr(device, tiny):
    batch, d = (64, 4) if tiny else (10_000, 10)
    a, b, q, r = _lqr_matrices(d)
    hamiltonian = LQRHamiltonian(a.to(device), b.to(device), q.to(device), r.to(device))
    x, p = _normal((batch, d), 2).to(device), _normal((batch, d), 3).to(device)
    t = torch.rand(batch, generator=make_generator(4), dtype=torch.float64).to(device)

    def run():
        path = backward_characteristics(
            hamiltonian, x, t, p, lambda y: 0.5 * (y**2).sum(-1), nodes=5, steps=20
        )
        return path.x, path.p, path.z

    return run


def _forward_dopri5(device, tiny):
    batch, d = (64, 4) if tiny else (5_000, 10)
    hamiltonian = Hamiltonian.from_function(lambda x, p: 0.5 * (p**2).sum(-1) - torch.cos(x).sum(-1))
    x, p = _normal((batch, d), 5).to(device), _normal((batch, d), 6).to(device)

    def run():
        end = characteristics(hamiltonian, x, p, t1=1.0, method="dopri5", rtol=1e-8, atol=1e-10)
        return end.x, end.p, end.z

    return run


def _hopf_lax(device, tiny):
    d, n = (2, 32) if tiny else (10, 2000)
    problem = min_of_quadratics_problem(d)
    x, t = problem.sample(n, make_generator(7))

    def run():
        value, minimiser = hopf_lax_value(
            problem.hamiltonian, problem.initial, x.to(device), t.to(device), generator=8
        )
        return value, minimiser

    return run


def _characteristic_loss(device, tiny):
    d, batch = (2, 16) if tiny else (10, 1024)
    problem = min_of_quadratics_problem(d)

    def run():
        solver = CharacteristicSolver(
            problem,
            DGMNetwork(d, 16 if tiny else 50, 3, seed=9, dtype=torch.float64, device=device),
            batch_size=batch,
            initial_batch_size=batch,
            hopf_lax_weight=1.0,
            seed=10,
            dtype=torch.float64,
            device=device,
        )
        loss, _ = solver.loss(0)
        grads = torch.autograd.grad(loss, list(solver.network.parameters()))
        return loss.detach(), torch.cat([g.reshape(-1) for g in grads])

    return run


def _pontryagin(device, tiny):
    batch, d = (4, 3) if tiny else (256, 6)
    a, b, q, r = _lqr_matrices(d, seed=11)
    problem = lqr_problem(a, b, q, r, 0.5 * torch.eye(d, dtype=torch.float64), horizon=2.0)
    x = _normal((batch, d), 12).to(device)

    def run():
        solution = solve_pontryagin_bvp(
            problem, x, 2.0, segments=4, steps_per_segment=8, time_marching=(0.5, 1.0)
        )
        return solution.value, solution.gradient, solution.states

    return run


KERNELS = [
    KernelCheck("hjb.backward_characteristics.lqr_rk4", _backward_lqr),
    KernelCheck("hjb.characteristics.dopri5", _forward_dopri5, rtol=1e-6, atol=1e-8),
    KernelCheck("hjb.hopf_lax_value", _hopf_lax, rtol=1e-6, atol=1e-8),
    KernelCheck("hjb.characteristic_solver.loss_and_gradient", _characteristic_loss, rtol=1e-6, atol=1e-9),
    KernelCheck("hjb.solve_pontryagin_bvp.lqr", _pontryagin, rtol=1e-6, atol=1e-8),
]
