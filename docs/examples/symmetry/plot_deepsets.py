"""
A DeepSets model of a permutation-invariant function
====================================================

A function of a set of ``N`` points ``x_i`` in ``R^d`` does not depend on their order. DeepSets
builds that in: ``f(X) = rho(sum_i phi(x_i))``. With ``phi`` the monomials of degree ``1..N``
(``PowerSumEmbedding``) the sum is the vector of multisymmetric power sums, which determines the
set, so only ``rho`` has to be learned. We fit the variance of ``N = 4`` points in ``d = 2``
(plus a non-polynomial part) and compare with a plain MLP on the flattened coordinates, which
has to learn the symmetry from data.
"""

import matplotlib.pyplot as plt
import torch
from torch import nn

from dlpde.symmetry import DeepSets, PowerSumEmbedding

torch.manual_seed(0)
n_points, dim = 4, 2


def target(x):  # (batch, N, d) -> (batch,): invariant under permutations of the points
    centred = x - x.mean(1, keepdim=True)
    return (centred**2).sum((1, 2)) / n_points + torch.sin(x.sum((1, 2)))


def fit(model, x, y, steps=400):
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = ((model(x).squeeze(-1) - y) ** 2).mean()
        loss.backward()
        optimiser.step()
    return model


x_test = torch.randn(1000, n_points, dim)
embedding = PowerSumEmbedding(dim, n_points)  # C(N + d, d) - 1 = 14 power sums
sizes, errors = [16, 64, 256], {"DeepSets (power sums)": [], "MLP on coordinates": []}
for n_train in sizes:
    x = torch.randn(n_train, n_points, dim)
    deepsets = DeepSets(embedding, nn.Sequential(nn.Linear(14, 64), nn.Tanh(), nn.Linear(64, 1)))
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(n_points * dim, 64), nn.Tanh(), nn.Linear(64, 1))
    for name, model in zip(errors, (deepsets, mlp)):
        fit(model, x, target(x))
        with torch.no_grad():
            errors[name].append(float(((model(x_test).squeeze(-1) - target(x_test)) ** 2).mean()))

# %%
# The DeepSets model is invariant by construction: permuting the points changes nothing.
perm = torch.randperm(n_points)
with torch.no_grad():
    change = (deepsets(x_test) - deepsets(x_test[:, perm])).abs().max()
print(f"largest change of the DeepSets output under a permutation: {float(change):.1e}")

fig, ax = plt.subplots(figsize=(5, 3.5))
for name, values in errors.items():
    ax.loglog(sizes, values, "o-", label=name)
ax.set(xlabel="training sets", ylabel="test mean squared error", title=f"N = {n_points} points in d = {dim}")
ax.legend()
fig.tight_layout()
