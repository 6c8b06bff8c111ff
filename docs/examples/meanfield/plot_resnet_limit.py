"""
A mean-field ResNet and its depth ODE
=====================================

A residual network with ``L`` layers of ``M`` parallel blocks (a ResNeXt of cardinality ``M``),

.. math:: x_{l+1} = x_l + \\frac{1}{L M} \\sum_{j=1}^M U_{l,j} \\, \\sigma(W_{l,j} x_l),

is an Euler scheme, in depth ``t = l/L``, for the mean-field ODE
``dX/dt = E_{rho_t}[U sigma(W X)]`` when the blocks ``(U_{l,j}, W_{l,j})`` are drawn from a law
``rho_t``. ``GaussianBlockMeasure`` is such a law with a closed-form field, so the limit is
solved to 1e-9 by an adaptive ODE solver and the error of finite networks can be measured: it
falls like ``1/L`` (the Euler bias) until sampling, ``O((L M)^{-1/2})``, takes over.
"""

import matplotlib.pyplot as plt
import torch

from dlpde.meanfield import GaussianBlockMeasure, MeanFieldResNet, resnet_limit

dim, block_width = 3, 2
coupling = 0.8 * torch.randn(2, dim, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
measure = GaussianBlockMeasure(dim, block_width, "tanh", coupling, noise=0.3)
x = torch.randn(16, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
limit = resnet_limit(measure.field, x)  # X(1), shape (16, dim)

depths, widths = [2, 4, 8, 16, 32, 64], [16, 256]
fig, ax = plt.subplots(figsize=(5, 3.5))
for width in widths:
    errors = []
    for depth in depths:
        with torch.no_grad():
            outputs = [MeanFieldResNet(depth, width, dim, block_width, "tanh",
                                       particles=measure.sample(depth, width, generator=seed,
                                                                dtype=torch.float64))(x)
                       for seed in range(4)]
        errors.append(float((torch.stack(outputs).mean(0) - limit).norm(dim=1).mean()))
    ax.loglog(depths, errors, "o-", label=f"M = {width} blocks per layer")
ax.loglog(depths, [errors[0] * depths[0] / L for L in depths], "k:", label="slope -1")
ax.set(xlabel="depth L", ylabel="|x_L - X(1)| (mean of 4 networks)", title="ResNet vs its depth ODE")
ax.legend(fontsize=8)
fig.tight_layout()
