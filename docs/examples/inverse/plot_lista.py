"""
LISTA: learning to unroll ISTA
==============================

Sparse coding recovers a sparse ``x`` from ``b = A x`` by the lasso; ISTA iterates

.. math:: x_{k+1} = \\eta_{\\lambda/L}\\Big(x_k + \\tfrac{1}{L} A^\\top (b - A x_k)\\Big),

with ``eta`` the soft threshold. Its convergence is slow (linear at best). LISTA-CP (Chen et al.
2018) keeps the structure of one ISTA iteration per layer, ``x_{k+1} = eta_{theta_k}(x_k +
W_k^T (b - A x_k))``, and learns ``W_k`` and ``theta_k`` from examples, layer by layer
(``train_layerwise``). With 8 layers and a short training it is already ahead of 8 iterations
of ISTA and FISTA; the ``inverse.lista`` study trains longer and adds support selection
(LISTA-CPSS) and ALISTA.
"""

import matplotlib.pyplot as plt
import torch

from dlpde.inverse import (
    LISTA_CP,
    CompressedSensing,
    fista,
    ista,
    layer_nmse_db,
    nmse_db,
    sparse_vectors,
    train_layerwise,
)

m, n, layers = 64, 128, 8
generator = torch.Generator().manual_seed(0)
matrix = torch.randn(m, n, generator=generator) / m**0.5
matrix = matrix / matrix.norm(dim=0)  # unit columns
operator = CompressedSensing(matrix)
x_test = sparse_vectors(500, n, 0.1, generator=1)
b_test = operator(x_test)

curves = {}
for name, solver in (("ISTA", ista), ("FISTA", fista)):
    errors = []  # NMSE of every iterate, recorded by the solver's callback
    solver(operator, b_test, 0.1,
           callback=lambda k, x, errors=errors: errors.append(float(nmse_db(x, x_test))))
    curves[name] = errors[:layers]

model = LISTA_CP(matrix, layers=layers, weight=0.1)


def sample(generator):  # a fresh training batch (b, x)
    x = sparse_vectors(64, n, 0.1, generator=generator)
    return operator(x), x


train_layerwise(model, sample, steps_per_stage=(60, 30, 30), lr=1e-3, warm_start=True,
                generator=torch.Generator().manual_seed(2), progress=False)
curves["LISTA-CP"] = layer_nmse_db(model, b_test, x_test)

fig, ax = plt.subplots(figsize=(5, 3.5))
for name, values in curves.items():
    ax.plot(range(1, len(values) + 1), values, "o-", label=name)
    print(f"{name}: NMSE after {len(values)} layers/iterations {values[-1]:.1f} dB")
ax.set(xlabel="layer / iteration", ylabel="NMSE (dB)", title=f"sparse coding, A {m} x {n}")
ax.legend()
fig.tight_layout()
