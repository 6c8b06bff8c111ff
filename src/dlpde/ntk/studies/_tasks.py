"""Pieces shared by the ntk studies: teacher-student data and one alpha-scaled training run."""

from __future__ import annotations

import math

import torch

from dlpde.shared import make_generator

from .._alpha import TwoLayerNetwork, train_with_linearization


def teacher_student_data(n_train: int, n_test: int, input_dim: int, teacher_width: int, seed: int,
                         activation: str = "tanh"):
    """Gaussian inputs ``x ~ N(0, I_d)`` and targets of a random two-layer teacher of width
    ``teacher_width`` (NTK parameterisation, same activation as the students), standardised to
    zero mean and unit variance on the training set. Float64, CPU."""
    g = make_generator(seed, "cpu")
    x = torch.randn(n_train + n_test, input_dim, generator=g, dtype=torch.float64)
    teacher = TwoLayerNetwork(input_dim, teacher_width, activation, seed=g)
    with torch.no_grad():
        y = teacher(x)
    y = (y - y[:n_train].mean()) / y[:n_train].std()
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def alpha_scaled_run(input_dim: int, width: int, activation: str, alpha: float, data, init_seed: int,
                     time: float, learning_rate: float, device: str = "cpu",
                     record_every: int | None = None) -> dict:
    """Train ``alpha (f(w) - f(w_0))`` for a two-layer NTK-parameterised network of ``width`` by
    gradient descent up to gradient-flow time ``time``. The step is ``learning_rate * min(1,
    alpha sqrt(width))``: below the mean-field scale the loss Hessian grows like
    ``1/(alpha sqrt(m))``, so the step shrinks to keep discretisation error fixed; the number
    of steps is ``ceil(time / step)``. Returns the final diagnostics (and the history)."""
    x_train, y_train, x_test, y_test = (t.to(device) for t in data)
    step = learning_rate * min(1.0, alpha * math.sqrt(width))
    steps = max(1, math.ceil(time / step))
    model = TwoLayerNetwork(input_dim, width, activation, seed=init_seed, device=device)
    result = train_with_linearization(model, x_train, y_train, steps, step, alpha, x_test, y_test,
                                      record_every=record_every or steps, progress=False)
    final = dict(result["history"][-1])
    final.update(steps=steps, step_size=step)
    return {"final": final, "history": result["history"]}
