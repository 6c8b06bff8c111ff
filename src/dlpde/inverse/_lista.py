"""Learned ISTA: LISTA, LISTA-CP, LISTA-CPSS, ALISTA, and their layer-wise-then-joint training.

Sparse coding: recover x (n) from b = A x (+ noise) (m), A (m, n). Every network maps a batch
of measurements ``b`` (B, m) to the list of its layer outputs [x_1, ..., x_K] (each (B, n)),
so that training and evaluation can read the error at every layer.
"""

from __future__ import annotations

import torch
from torch import nn

from dlpde.shared import (
    check_bool,
    check_callable,
    check_int,
    check_positive,
    check_positive_int,
    check_probability,
    check_real,
    check_tensor,
    train,
)
from dlpde.shared.checks import check_dtype, check_path

from ._checks import check_generator, probe_sample
from ._noise import nmse_db
from ._solvers import soft_threshold

__all__ = ["LISTA", "LISTA_CP", "LISTA_CPSS", "ALISTA", "analytic_weight_matrix",
           "sparse_vectors", "train_layerwise", "support_selection_threshold", "layer_nmse_db"]


def _check_matrix(matrix):
    check_tensor(matrix, "matrix", dim=2)
    if float(torch.linalg.matrix_norm(matrix.double(), ord=2)) == 0.0:
        raise ValueError("matrix must not be zero")
    return matrix


def _lipschitz(matrix) -> float:
    return float(torch.linalg.matrix_norm(matrix.double(), ord=2)) ** 2


def support_selection_threshold(v: torch.Tensor, threshold: torch.Tensor, percent: float) -> torch.Tensor:
    """Soft thresholding with support selection (Chen et al. 2018): the ``percent`` % entries
    of largest magnitude in each row of ``v`` (B, n) pass unshrunk, the others are
    soft-thresholded by ``threshold``."""
    check_tensor(v, "v", min_dim=1, finite=False)
    percent = check_real(percent, "percent", 0.0, 100.0)
    if percent <= 0:
        return soft_threshold(v, threshold)
    keep = min(v.shape[-1], max(1, int(round(v.shape[-1] * percent / 100))))
    cutoff = torch.topk(v.detach().abs(), keep, dim=-1).values[..., -1:]
    return torch.where(v.abs() >= cutoff, v, soft_threshold(v, threshold))


class _Unrolled(nn.Module):
    """Common parts: ``layers`` K, the matrix A as a buffer, initial threshold lambda / L."""

    def __init__(self, matrix: torch.Tensor, layers: int, weight: float):
        super().__init__()
        _check_matrix(matrix)
        layers = check_positive_int(layers, "layers", maximum=1000)
        weight = check_positive(weight, "weight")
        self.register_buffer("matrix", matrix.clone())
        self.layers = layers
        self.lipschitz = _lipschitz(matrix)
        self.thresholds = nn.ParameterList(
            nn.Parameter(torch.tensor(weight / self.lipschitz, dtype=matrix.dtype)) for _ in range(layers))

    def percent(self, k: int) -> float:
        return 0.0

    def layer_parameters(self, k: int) -> list[nn.Parameter]:
        """The parameters introduced by layer k (0-based), for layer-wise training."""
        raise NotImplementedError

    def _check(self, b):
        check_tensor(b, "b", shape=(None, self.matrix.shape[0]), dtype=self.matrix.dtype)

    def forward(self, b: torch.Tensor, layers: int | None = None) -> list[torch.Tensor]:
        """The outputs of layers 1..``layers`` (default all), each (B, n); x_0 = 0."""
        self._check(b)
        layers = self.layers if layers is None else check_int(layers, "layers", 0, self.layers)
        x = b.new_zeros((b.shape[0], self.matrix.shape[1]))
        outputs = []
        for k in range(layers):
            x = self.step(k, x, b)
            outputs.append(x)
        return outputs


class LISTA(_Unrolled):
    """LISTA with untied weights (Gregor & LeCun 2010; Chen et al. 2018):
    x_{k+1} = eta_{theta_k}(W1_k b + W2_k x_k), initialised as ISTA (W1 = A^T / L,
    W2 = I - A^T A / L, theta = lambda / L)."""

    def __init__(self, matrix, layers: int = 16, weight: float = 0.1):
        super().__init__(matrix, layers, weight)
        a, lip = matrix, self.lipschitz
        n = a.shape[1]
        self.input_weights = nn.ParameterList(nn.Parameter(a.T.clone() / lip) for _ in range(layers))
        self.state_weights = nn.ParameterList(
            nn.Parameter(torch.eye(n, dtype=a.dtype, device=a.device) - a.T @ a / lip)
            for _ in range(layers))

    def step(self, k, x, b):
        return soft_threshold(b @ self.input_weights[k].T + x @ self.state_weights[k].T,
                              self.thresholds[k])

    def layer_parameters(self, k):
        return [self.input_weights[k], self.state_weights[k], self.thresholds[k]]


class LISTA_CP(_Unrolled):
    """LISTA with coupled weights (Chen et al. 2018):
    x_{k+1} = eta_{theta_k}(x_k + W_k^T (b - A x_k)), W_k (m, n) initialised to A / L."""

    def __init__(self, matrix, layers: int = 16, weight: float = 0.1):
        super().__init__(matrix, layers, weight)
        self.weights = nn.ParameterList(nn.Parameter(matrix.clone() / self.lipschitz)
                                        for _ in range(layers))

    def step(self, k, x, b):
        v = x + (b - x @ self.matrix.T) @ self.weights[k]
        return support_selection_threshold(v, self.thresholds[k], self.percent(k))

    def layer_parameters(self, k):
        return [self.weights[k], self.thresholds[k]]


class LISTA_CPSS(LISTA_CP):
    """LISTA-CP with support selection (Chen et al. 2018): at layer k (1-based) the
    p_k = min(``percent_step`` k, ``percent_max``) % largest entries bypass the threshold."""

    def __init__(self, matrix, layers: int = 16, weight: float = 0.1, percent_step: float = 1.2,
                 percent_max: float = 13.0):
        super().__init__(matrix, layers, weight)
        self.percent_step = check_positive(percent_step, "percent_step", allow_zero=True, maximum=100.0)
        self.percent_max = check_positive(percent_max, "percent_max", allow_zero=True, maximum=100.0)

    def percent(self, k):
        return min(self.percent_step * (k + 1), self.percent_max)


def analytic_weight_matrix(matrix: torch.Tensor) -> torch.Tensor:
    """ALISTA's W = argmin ||W^T A||_F subject to diag(W^T A) = 1 (Liu et al. 2019):
    w_i = G^{-1} a_i / (a_i^T G^{-1} a_i) with G = A A^T (computed in float64)."""
    a = _check_matrix(matrix).double()
    if a.shape[0] > a.shape[1] or int(torch.linalg.matrix_rank(a)) < a.shape[0]:
        raise ValueError(f"matrix {tuple(a.shape)} must have full row rank (A A^T invertible)")
    solved = torch.linalg.solve(a @ a.T, a)
    w = solved / (a * solved).sum(0, keepdim=True)
    return w.to(matrix.dtype)


class ALISTA(_Unrolled):
    """Analytic LISTA (Liu et al. 2019): x_{k+1} = eta^ss_{theta_k}(x_k - gamma_k W^T (A x_k - b))
    with the analytic W fixed and only the step sizes gamma_k and thresholds theta_k learned;
    support selection as in LISTA-CPSS."""

    def __init__(self, matrix, layers: int = 16, weight: float = 0.1, percent_step: float = 1.2,
                 percent_max: float = 13.0):
        super().__init__(matrix, layers, weight)
        self.register_buffer("analytic", analytic_weight_matrix(matrix))
        self.steps = nn.ParameterList(nn.Parameter(torch.tensor(1.0, dtype=matrix.dtype))
                                      for _ in range(layers))
        self.percent_step = check_positive(percent_step, "percent_step", allow_zero=True, maximum=100.0)
        self.percent_max = check_positive(percent_max, "percent_max", allow_zero=True, maximum=100.0)

    def percent(self, k):
        return min(self.percent_step * (k + 1), self.percent_max)

    def step(self, k, x, b):
        v = x - self.steps[k] * ((x @ self.matrix.T - b) @ self.analytic)
        return support_selection_threshold(v, self.thresholds[k], self.percent(k))

    def layer_parameters(self, k):
        return [self.steps[k], self.thresholds[k]]


def sparse_vectors(batch: int, n: int, probability: float = 0.1, generator=None,
                   dtype=torch.float32, device="cpu") -> torch.Tensor:
    """x_i = Bernoulli(p) * N(0, 1) i.i.d.: (batch, n), from ``generator`` (seed or Generator)."""
    batch = check_int(batch, "batch", minimum=0, maximum=2**24)
    n = check_positive_int(n, "n", maximum=2**24)
    probability = check_probability(probability, "probability")
    dtype = check_dtype(dtype)
    g = check_generator(0 if generator is None else generator)
    support = torch.rand(batch, n, generator=g, device=g.device) < probability
    values = torch.randn(batch, n, generator=g, device=g.device)
    return (support * values).to(device=device, dtype=dtype)


def train_layerwise(model: _Unrolled, sample, steps_per_stage: tuple[int, int, int] = (400, 200, 200),
                    lr: float = 5e-4, decays: tuple[float, float] = (0.2, 0.02), joint_steps: int = 0,
                    warm_start: bool = False, generator=None, checkpoint_dir=None, resume: bool = False,
                    progress: bool = True) -> list[dict]:
    """Layer-wise then joint training (Chen et al. 2018; Liu et al. 2019).

    For layer k = 1..K: (i) train the parameters of layer k alone to minimise the mean squared
    error of x_k, at ``lr``, for ``steps_per_stage[0]`` steps; (ii), (iii) train all layers up
    to k at ``lr * decays[0]`` and ``lr * decays[1]``. Finally ``joint_steps`` steps on all
    layers at ``lr * decays[1]``. ``sample(generator) -> (b, x)`` draws a fresh training batch
    (the generator's state is checkpointed by ``dlpde.shared.train``). Each stage checkpoints
    to ``checkpoint_dir/layer<k>-<stage>.pt`` when given. Returns the concatenated history.
    """
    if not isinstance(model, _Unrolled):
        raise TypeError(f"model must be a LISTA-family network, got {type(model).__name__}")
    check_callable(sample, "sample")
    if not isinstance(steps_per_stage, (tuple, list)) or len(steps_per_stage) != 3:
        raise TypeError(f"steps_per_stage must be three ints, got {steps_per_stage!r}")
    steps_per_stage = tuple(check_int(s, "steps_per_stage entry", minimum=0) for s in steps_per_stage)
    lr = check_positive(lr, "lr")
    if not isinstance(decays, (tuple, list)) or len(decays) != 2:
        raise TypeError(f"decays must be two numbers, got {decays!r}")
    decays = tuple(check_positive(d, "decays entry", maximum=1.0) for d in decays)
    joint_steps = check_int(joint_steps, "joint_steps", minimum=0)
    check_bool(warm_start, "warm_start")
    check_bool(resume, "resume")
    check_bool(progress, "progress")
    if checkpoint_dir is not None:
        check_path(checkpoint_dir, "checkpoint_dir")
    g = check_generator(0 if generator is None else generator)
    b, x = probe_sample(sample, g, 2)
    model._check(b)
    check_tensor(x, "sample(generator)[1]", shape=(b.shape[0], model.matrix.shape[1]))
    history = []

    def run(params, k, rate, steps, tag, frozen_prefix):
        if steps == 0:
            return

        def loss_fn(step):
            b, x = sample(g)
            if frozen_prefix:  # layers before k are fixed: no graph through them
                with torch.no_grad():
                    state = model(b, layers=k)[-1] if k > 0 else b.new_zeros(x.shape)
                out = model.step(k, state, b)
            else:
                out = model(b, layers=k + 1)[-1]
            return ((out - x) ** 2).sum(-1).mean()

        ckpt = None if checkpoint_dir is None else f"{checkpoint_dir}/layer{k + 1:02d}-{tag}.pt"
        rows = train(params, loss_fn, steps, lr=rate, generators=[g], checkpoint=ckpt,
                     checkpoint_every=max(50, steps), resume=resume, progress=progress,
                     desc=f"{type(model).__name__} layer {k + 1} {tag}", log_every=max(1, steps // 4))
        history.extend({**r, "layer": k + 1, "stage": tag} for r in rows)

    for k in range(model.layers):
        if warm_start and k > 0:
            with torch.no_grad():
                for new, trained in zip(model.layer_parameters(k), model.layer_parameters(k - 1)):
                    new.copy_(trained)
        run(model.layer_parameters(k), k, lr, steps_per_stage[0], "new", True)
        everything = [p for p in model.parameters() if p.requires_grad]
        run(everything, k, lr * decays[0], steps_per_stage[1], "decay1", False)
        run(everything, k, lr * decays[1], steps_per_stage[2], "decay2", False)
    run([p for p in model.parameters() if p.requires_grad], model.layers - 1, lr * decays[1],
        joint_steps, "joint", False)
    return history


def layer_nmse_db(model: _Unrolled, b: torch.Tensor, x: torch.Tensor) -> list[float]:
    """NMSE (dB) of every layer's output against the true ``x`` (no gradients)."""
    if not isinstance(model, _Unrolled):
        raise TypeError(f"model must be a LISTA-family network, got {type(model).__name__}")
    model._check(b)
    check_tensor(x, "x", shape=(b.shape[0], model.matrix.shape[1]))
    with torch.no_grad():
        return [nmse_db(out, x) for out in model(b)]

