"""
Trace characteristics and watch them cross
==========================================

Along a characteristic of ``u_t + H(x, grad u) = 0`` the state, the momentum ``p = grad u`` and
the value ``z = u`` obey

.. math:: \\dot x = H_p, \\qquad \\dot p = -H_x, \\qquad \\dot z = p \\cdot H_p - H.

For ``H = |p|^2/2`` and ``g(x) = -|x|`` they are straight lines ``x(t) = x_0 + t g'(x_0)``
leaving ``x = 0`` in both directions... backwards: the lines from ``x_0 < 0`` and ``x_0 > 0`` move
towards each other and cross at once, so the value is multi-valued unless one keeps the
minimum, which is what the viscosity solution ``u = -|x| - t/2`` does.
"""

import matplotlib.pyplot as plt
import torch

from dlpde.hjb import characteristics, kink_problem

problem = kink_problem("negative_norm", dim=1)  # H = |p|^2/2, g = -|x|
x0 = torch.linspace(-1, 1, 21, dtype=torch.float64)[:, None]
p0 = -torch.sign(x0)  # p = g'(x0)
times = torch.linspace(0, 1, 11).tolist()
path = characteristics(problem.hamiltonian, x0, p0, problem.initial(x0), t1=1.0, steps=20,
                       save_at=times)  # x: (11, 21, 1), z: (11, 21)

fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
for b in range(x0.shape[0]):
    axes[0].plot(path.x[:, b, 0], times, color="C0" if x0[b] < 0 else "C1", lw=1)
axes[0].set(xlabel="x", ylabel="t", title="characteristics of g = -|x|")

# %%
# At ``t = 1`` each characteristic carries a value ``z``; where two arrive at the same ``x`` the
# viscosity solution keeps the smaller one.
x1, z1 = path.x[-1, :, 0], path.z[-1]
axes[1].plot(x1, z1, "o", ms=3, label="z carried by the characteristics")
grid = torch.linspace(-1.5, 1.5, 101, dtype=torch.float64)[:, None]
axes[1].plot(grid[:, 0], problem.exact_value(grid, torch.ones(101, dtype=torch.float64)), "k-",
             label="viscosity solution -|x| - 1/2")
axes[1].set(xlabel="x", ylabel="u(x, 1)")
axes[1].legend(fontsize=8)
fig.tight_layout()
gap = (z1 - problem.exact_value(path.x[-1], torch.ones(21, dtype=torch.float64))).max()
print(f"largest z above the viscosity solution at t = 1: {float(gap):.3f}")
