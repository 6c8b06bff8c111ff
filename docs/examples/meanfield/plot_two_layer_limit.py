"""
A mean-field two-layer network against its limit
================================================

A two-layer network ``f(x) = (1/n) sum_i sigma(<w_i, x>)`` is a system of ``n`` particles
``w_i``. Trained by gradient flow in mean-field time, its empirical measure follows the
distributional dynamics of Mei, Montanari and Nguyen (2018),

.. math:: \\partial_t \\rho = 2 \\, \\nabla \\cdot (\\rho \\nabla \\Psi), \\qquad
          \\Psi(w) = V(w) + \\int U(w, w') \\, \\rho(dw').

On their isotropic Gaussian problem (``y = +-1``, ``x ~ N(0, (1 +- Delta)^2 I_d)``) a radially
symmetric law stays radial, and the limit reduces to a one-dimensional law of ``r = |w|``,
solved here independently of any network. The finite networks' exact population risk approaches
the limit's as ``n`` grows.
"""

import matplotlib.pyplot as plt
import torch

from dlpde.meanfield import (
    GaussianWellActivation,
    IsotropicGaussianProblem,
    TwoLayerMeanField,
    gaussian_initial_radius,
    mean_field_gradient_flow,
    solve_radial_limit,
)

d, scale, time = 10, 0.3, 2.0
save_at = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0]
problem = IsotropicGaussianProblem(d, 0.5, GaussianWellActivation(3.0, 1.5, 1.0))
limit = solve_radial_limit(problem, gaussian_initial_radius(d, scale), time, steps=16, nodes=24,
                           hermite_terms=32, save_at=save_at)

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(save_at, limit.risk, "k-", lw=2, label="mean-field limit (radial PDE)")
for n in (20, 80, 320):
    model = TwoLayerMeanField(n, d, problem.activation, fixed_output=True, bias=False, input_scale=scale,
                              generator=n, dtype="float64")
    path = mean_field_gradient_flow(model, lambda model=model: problem.population_risk(model), time,
                                    steps=16, save_at=save_at)
    risks = []
    with torch.no_grad():
        for particles in path:
            model.set_particles(particles)
            risks.append(float(problem.population_risk(model)))
    ax.plot(save_at, risks, "o--", ms=3, label=f"n = {n} particles")
    print(f"n = {n:4d}: |risk - limit| at t = {time}: {abs(risks[-1] - float(limit.risk[-1])):.2e}")
ax.set(xlabel="mean-field time t", ylabel="population risk", title=f"isotropic Gaussian problem, d = {d}")
ax.legend(fontsize=8)
fig.tight_layout()
