"""
Kernel regression with the NTK: training an infinitely wide network
===================================================================

An infinitely wide network trained by gradient flow on the loss ``(1/2N) sum (f - y)^2``
stays linear in its parameters, and its outputs evolve in closed form,

.. math:: f_t(X) = y + e^{-\\eta t \\Theta / N} (f_0(X) - y),

with ``Theta`` the NTK; at ``t = infinity`` it is kernel regression with ``Theta``. We fit a
one-dimensional function from 12 points, show the predictor at several training times, and
compare a finite network of width 2048 trained by plain gradient descent with the kernel
prediction at the end.
"""

import matplotlib.pyplot as plt
import torch

from dlpde.ntk import Dense, Erf, Serial, analytic_kernels, build_network, gradient_descent_mse

torch.manual_seed(0)


def embed(s):  # inputs on the unit circle, so the kernel sees a periodic function of s
    return torch.stack([torch.cos(s), torch.sin(s)], 1)


s_train = torch.linspace(-2.5, 2.5, 12, dtype=torch.float64)
y_train = torch.sin(2 * s_train) + 0.3 * s_train
s_test = torch.linspace(-3, 3, 200, dtype=torch.float64)
spec = Serial(Dense(2048, b_std=0.2), Erf(), Dense(1, b_std=0.2))
_, k_train = analytic_kernels(spec, embed(s_train))
_, k_test = analytic_kernels(spec, embed(s_test), embed(s_train))
times = [1.0, 10.0, 100.0, float("inf")]
prediction = gradient_descent_mse(k_train, y_train, times, ntk_test_train=k_test)

# %%
# A finite network of the same description, centred (``f - f_0``) so that ``f_0 = 0`` as above,
# trained by full-batch gradient descent for ``eta t = 100``.
network = build_network(spec, (2,), seed=0, dtype=torch.float64)
with torch.no_grad():
    f0_train, f0_test = network(embed(s_train))[:, 0], network(embed(s_test))[:, 0]
optimiser = torch.optim.SGD(network.parameters(), lr=1.0)
for _ in range(100):
    optimiser.zero_grad()
    loss = 0.5 * ((network(embed(s_train))[:, 0] - f0_train - y_train) ** 2).mean()
    loss.backward()
    optimiser.step()
with torch.no_grad():
    finite = network(embed(s_test))[:, 0] - f0_test
gap = (finite - prediction["test"][2].reshape(-1)).abs().max()
print(f"finite network (width 2048) vs infinite-width prediction at eta t = 100: max gap {float(gap):.3f}")

fig, ax = plt.subplots(figsize=(6, 3.5))
for i, t in enumerate(times):
    ax.plot(s_test, prediction["test"][i].reshape(-1), label=f"NTK, eta t = {t:g}")
ax.plot(s_test, finite, "k--", lw=1, label="width 2048, eta t = 100")
ax.plot(s_train, y_train, "ko", ms=4, label="training data")
ax.set(xlabel="s", ylabel="f(s)", title="gradient flow of an infinitely wide network")
ax.legend(fontsize=7)
fig.tight_layout()
