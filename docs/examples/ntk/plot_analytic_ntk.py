"""
The analytic NTK, and the empirical kernel converging to it
===========================================================

For a fully connected network in the NTK parameterisation the kernels obey a layer recursion
(Jacot, Gabriel and Hongler 2018): with ``(u, v)`` Gaussian of covariance given by ``Sigma_l``,

.. math:: \\Sigma_{l+1} = \\sigma_w^2 \\, E[\\phi(u)\\phi(v)] + \\sigma_b^2, \\qquad
          \\Theta_{l+1} = \\Sigma_{l+1} + \\sigma_w^2 \\, E[\\phi'(u)\\phi'(v)] \\, \\Theta_l.

One description of the network, ``Serial(Dense, Relu, ...)``, gives both the infinite-width
kernels (``analytic_kernels``) and finite networks (``build_network``), whose empirical NTK
``J(x) J(x')^T`` fluctuates around the limit by ``O(m^{-1/2})`` at width ``m``.
"""

import math

import matplotlib.pyplot as plt
import torch

from dlpde.ntk import Dense, Relu, Serial, analytic_kernels, build_network, empirical_ntk

angles = torch.linspace(0, math.pi, 41, dtype=torch.float64)
x = torch.stack([torch.cos(angles), torch.sin(angles)], 1)  # points on the unit circle
x0 = x[:1]


def spec(width):
    return Serial(Dense(width, b_std=0.1), Relu(), Dense(width, b_std=0.1), Relu(), Dense(1, b_std=0.1))


_, limit = analytic_kernels(spec(1), x0, x)  # the width of Dense does not enter the limit
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
axes[0].plot(angles, limit[0], "k-", lw=2, label="analytic (infinite width)")
widths, errors = [16, 64, 256, 1024], []
for width in widths:
    kernels = [empirical_ntk(build_network(spec(width), (2,), seed=s, dtype=torch.float64), x0, x)[0]
               for s in range(4)]
    if width in (16, 1024):
        axes[0].plot(angles, kernels[0], "--", label=f"empirical, width {width}")
    errors.append(float(torch.stack([(k - limit[0]).norm() / limit[0].norm() for k in kernels]).mean()))
axes[0].set(xlabel="angle between x and x'", ylabel="Theta(x, x')", title="depth-2 ReLU network")
axes[0].legend(fontsize=8)
axes[1].loglog(widths, errors, "o-", label="relative error")
axes[1].loglog(widths, [errors[0] * (widths[0] / w) ** 0.5 for w in widths], "k:", label="slope -1/2")
axes[1].set(xlabel="width m", ylabel="|Theta_m - Theta| / |Theta|")
axes[1].legend(fontsize=8)
fig.tight_layout()
