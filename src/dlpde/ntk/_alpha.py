"""The alpha-scaled model between lazy (NTK) and mean-field training, and training it side by
side with its linearisation.

Chizat, Oyallon & Bach (2019): for a model ``f(w)`` and ``alpha > 0``, train
``g(w) = alpha (f(w) - f(w_0))`` on ``R(g) / alpha^2``. As ``alpha -> infinity`` the weights move
by O(1/alpha) and ``g`` follows its linearisation (lazy training, the NTK regime); small
``alpha`` gives feature learning. For a two-layer network of width ``m`` in NTK
parameterisation, ``alpha = 1/sqrt(m)`` is the mean-field scaling (Mei et al. 2018): the width
family ``f_gamma(x) = m^{-gamma} sum_j a_j phi(w_j . x / sqrt(d))`` equals ``alpha`` times the
NTK-parameterised network with ``alpha = m^{1/2 - gamma}`` (gamma = 1/2: NTK; gamma = 1:
mean-field). Geiger et al. (2020) find the crossover at ``alpha* ~ m^{-1/2}``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch
from torch import func as tfunc
from torch import nn

from dlpde.shared import (
    check_bool,
    check_callable,
    check_choice,
    check_positive,
    check_positive_int,
    check_real,
    check_tensor,
    make_generator,
    resolve_device,
    train,
)

from ._diagnostics import (
    _flat_jacobian,
    kernel_target_alignment,
    linearization_distance,
    relative_kernel_drift,
    relative_weight_movement,
)
from ._empirical import empirical_ntk, functional_model

__all__ = ["AlphaScaled", "TwoLayerNetwork", "train_with_linearization"]


class AlphaScaled(nn.Module):
    """``g(x) = alpha (f(x; w) - f(x; w_0))`` with ``w_0`` the parameters at construction, and its
    loss ``(1 / (2 N alpha^2)) sum (g - y)^2`` (``N = y.numel()``; Chizat et al. 2019).

    The trainable parameters are those of ``model``; ``w_0`` is kept as buffers, so
    ``empirical_ntk(AlphaScaled(...))`` is ``alpha^2`` times the NTK of ``model``.
    """

    def __init__(self, model: nn.Module, alpha: float):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
        self.model = model
        self.alpha = float(alpha)
        self._names = {}
        for name, value in model.named_parameters():
            buffer = "initial_" + re.sub(r"\W", "_", name)
            self.register_buffer(buffer, value.detach().clone())
            self._names[name] = buffer

    def initial_parameters(self) -> dict:
        return {name: getattr(self, buffer) for name, buffer in self._names.items()}

    def forward(self, x):
        initial = tfunc.functional_call(self.model, self.initial_parameters(), (x,))
        return self.alpha * (self.model(x) - initial.detach())

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(1 / (2 N alpha^2)) sum (prediction - target)^2``."""
        return ((prediction - target.reshape(prediction.shape)) ** 2).sum() / (
            2 * target.numel() * self.alpha**2)


_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "erf": torch.erf}


def _check_activation(activation):
    """A user activation must map a tensor to a finite tensor of the same shape (probed once)."""
    probe = torch.linspace(-3.0, 3.0, 7, dtype=torch.float64)
    try:
        out = activation(probe)
    except Exception as error:  # noqa: BLE001 - any failure of the user's function is reported
        raise ValueError(f"activation failed on a probe tensor: {type(error).__name__}: {error}") from error
    if not isinstance(out, torch.Tensor) or out.shape != probe.shape:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"activation must map a tensor to one of the same shape, got {got} from (7,)")
    if not bool(torch.isfinite(out).all()):
        raise ValueError("activation must be finite on finite inputs, got nan/inf on linspace(-3, 3, 7)")


class TwoLayerNetwork(nn.Module):
    """``f(x) = m^{-gamma} sum_j a_j phi(<w_j, x> / sqrt(d) + b_j)`` with ``a, w, b ~ N(0, 1)``
    (biases optional); ``gamma = output_exponent`` (1/2: NTK parameterisation, 1: mean-field).

    ``symmetric=True`` duplicates the neurons with opposite output weights (``m`` must be even),
    so that ``f(w_0) = 0`` exactly (Chizat et al. 2019). ``init_scale`` multiplies all initial
    weights. Parameters are drawn from ``seed`` (in float64 on the CPU, then cast).
    """

    def __init__(self, input_dim: int, width: int, activation: str | Callable = "tanh",
                 output_exponent: float = 0.5, bias: bool = False, symmetric: bool = False,
                 init_scale: float = 1.0, seed: int | torch.Generator = 0,
                 dtype: torch.dtype = torch.float64, device="cpu"):
        super().__init__()
        input_dim = check_positive_int(input_dim, "input_dim")
        width = check_positive_int(width, "width")
        symmetric = check_bool(symmetric, "symmetric")
        bias = check_bool(bias, "bias")
        if symmetric and width % 2:
            raise ValueError(f"width must be even when symmetric=True, got {width}")
        output_exponent = check_real(output_exponent, "output_exponent")
        init_scale = check_positive(init_scale, "init_scale")
        check_choice(dtype, "dtype", (torch.float32, torch.float64))
        device = resolve_device(device)
        if isinstance(activation, str):
            check_choice(activation, "activation", tuple(_ACTIVATIONS))
        else:
            _check_activation(check_callable(activation, "activation"))
        self.activation = _ACTIVATIONS[activation] if isinstance(activation, str) else activation
        self.input_dim, self.width, self.output_exponent = input_dim, width, output_exponent
        g = make_generator(seed, "cpu")
        half = width // 2 if symmetric else width

        def draw(*shape):
            return init_scale * torch.randn(*shape, generator=g, dtype=torch.float64)

        w, a = draw(half, input_dim), draw(half)
        b = draw(half) if bias else None
        if symmetric:
            w, a = torch.cat([w, w]), torch.cat([a, -a])
            b = None if b is None else torch.cat([b, b])
        self.input_weight = nn.Parameter(w.to(device=device, dtype=dtype))
        self.output_weight = nn.Parameter(a.to(device=device, dtype=dtype))
        self.bias = None if b is None else nn.Parameter(b.to(device=device, dtype=dtype))

    def forward(self, x):
        # no finiteness check here: forward runs under torch.func transforms (vmap, jacrev)
        check_tensor(x, "x", dim=2, shape=(None, self.input_dim), dtype=self.input_weight.dtype,
                     finite=False)
        z = x @ self.input_weight.T / math.sqrt(self.input_dim)
        if self.bias is not None:
            z = z + self.bias
        return self.activation(z) @ self.output_weight / self.width**self.output_exponent


def _kernel(f, params, x1, x2=None):
    return empirical_ntk(f, x1, x2, params=params, method="jacobian").detach()


def _gradient_descent_factors(rates: torch.Tensor, steps: int):
    """For gradient descent contracting mode ``k`` by ``1 - rates[k]`` per step: the decay
    ``(1 - rate)^t`` and the sum ``sum_{s<t} (1 - rate)^s = (1 - (1 - rate)^t) / rate`` (``t`` at
    ``rate = 0``), computed through ``log1p``/``expm1`` so that small rates lose no digits."""
    t = float(steps)
    contracting = rates < 1
    log_factor = torch.log1p(-torch.where(contracting, rates, 0.0))
    decay = torch.where(contracting, torch.exp(t * log_factor), (1 - rates) ** t)
    safe = torch.where(rates == 0, 1.0, rates)
    total = torch.where(contracting, -torch.expm1(t * log_factor), 1 - decay) / safe
    return decay, torch.where(rates == 0, t, total)


def train_with_linearization(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                             steps: int, learning_rate: float, alpha: float = 1.0,
                             x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
                             record_every: int = 100, checkpoint=None, resume: bool = True,
                             progress: bool = False, desc: str = "lazy vs active") -> dict:
    """Train ``AlphaScaled(model, alpha)`` by full-batch gradient descent (``dlpde.shared.train``,
    optimizer 'sgd', no momentum) on ``(1/(2 N alpha^2)) sum (g(X) - y)^2`` (``N = y.numel()``,
    one output per point), and beside it its linearisation ``g_lin(x) = alpha J(x; w_0)
    (w - w_0)`` trained by the same gradient descent from the same ``w_0``.

    The linearised model is solved exactly rather than stepped: with ``Theta = J(X) J(X)^T``
    (the NTK of ``model`` at ``w_0``) and ``a = learning_rate / N``, its gradient descent reads
    ``g_lin(X) <- g_lin(X) - a Theta (g_lin(X) - y)`` in function space, so after ``t`` steps, with
    ``Theta = V diag(lambda) V^T`` and ``g_lin = 0`` at ``t = 0``,

        g_lin_t(X) = y - V diag((1 - a lambda)^t) V^T y,
        S_t = sum_{s<t} (g_lin_s(X) - y) = -V diag((1 - (1 - a lambda)^t) / (a lambda)) V^T y,
        g_lin_t(x) = -a Theta(x, X) S_t,      w_t - w_0 = -(a / alpha) J(X)^T S_t,

    the same numbers as stepping it, at the cost of one eigendecomposition.

    Every ``record_every`` steps (and at the end) the history records, for step ``t``: train and
    test losses of both models (``(1/2N) sum (g - y)^2``), the relative kernel drift of the
    network's NTK on the training points, the relative weight movement, the distance of the
    network's outputs to the linear model's (on test points when given, else train points),
    and the kernel-target alignment of the current NTK.

    Returns ``{"history": [...], "network": AlphaScaled, "linear_displacement": (P,) w - w_0 of
    the linear model (parameters flattened in ``named_parameters`` order), "ntk_initial": (N, N),
    "ntk_final": (N, N)}``.
    """
    if x_test is not None and y_test is None:
        raise ValueError("y_test must be given with x_test")
    scaled = AlphaScaled(model, alpha)
    f, _ = functional_model(model)
    params0 = {k: v.detach().clone() for k, v in model.named_parameters()}
    with torch.no_grad():
        initial_train = f(params0, x_train)
    if initial_train.shape != (x_train.shape[0],) or y_train.numel() != x_train.shape[0]:
        raise ValueError(f"train_with_linearization needs one output per point: model outputs "
                         f"{tuple(initial_train.shape)}, y_train {tuple(y_train.shape)}")
    target = y_train.reshape(-1)
    x_eval, y_eval = (x_train, y_train) if x_test is None else (x_test, y_test)
    kernel0 = _kernel(f, params0, x_train)
    kernel_eval = kernel0 if x_test is None else _kernel(f, params0, x_test, x_train)
    rate = learning_rate / target.numel()
    eigenvalues, vectors = torch.linalg.eigh(kernel0)
    target_modes = vectors.T @ target

    def linear_model(step):
        """Train outputs, evaluation outputs and S_t of the linearised model after ``step`` steps."""
        decay, total = _gradient_descent_factors(rate * eigenvalues, step)
        train_outputs = target - vectors @ (decay * target_modes)
        residual_sum = -(vectors @ (total * target_modes))
        eval_outputs = train_outputs if x_test is None else -rate * (kernel_eval @ residual_sum)
        return train_outputs, eval_outputs, residual_sum

    def loss_of(prediction, target):
        return float(((prediction - target.reshape(prediction.shape)) ** 2).sum() / (2 * target.numel()))

    def diagnostics(step, train_outputs):
        with torch.no_grad():
            params = {k: v.detach() for k, v in model.named_parameters()}
            kernel = _kernel(f, params, x_train)
            lin_train, lin_eval, _ = linear_model(step)
            out_eval = train_outputs if x_test is None else scaled(x_eval)
            row = {"train_loss": loss_of(train_outputs, y_train),
                   "train_loss_linear": loss_of(lin_train, y_train),
                   "kernel_drift": relative_kernel_drift(kernel, kernel0),
                   "weight_movement": relative_weight_movement(params, params0),
                   "linearization_distance": linearization_distance(out_eval, lin_eval),
                   "alignment": kernel_target_alignment(kernel, y_train)}
            if x_test is not None:
                row["test_loss"] = loss_of(out_eval, y_test)
                row["test_loss_linear"] = loss_of(lin_eval, y_test)
        return row, kernel

    def loss_fn(step):
        out = alpha * (model(x_train) - initial_train)
        metrics = diagnostics(step, out.detach())[0] if step % record_every == 0 else {}
        return scaled.loss(out, y_train), metrics

    history = train(model.parameters(), loss_fn, steps, optimizer="sgd", lr=learning_rate,
                    checkpoint=checkpoint, resume=resume, progress=progress, desc=desc,
                    log_every=record_every)
    rows = [{k: v for k, v in r.items() if k not in ("loss", "lr", "grad_norm")}
            for r in history if "kernel_drift" in r]
    with torch.no_grad():
        final, kernel = diagnostics(steps, alpha * (model(x_train) - initial_train))
    rows.append({"step": steps, **final})
    displacement = -(rate / alpha) * (_flat_jacobian(f, params0, x_train).detach().T @ linear_model(steps)[2])
    return {"history": rows, "network": scaled, "linear_displacement": displacement,
            "ntk_initial": kernel0, "ntk_final": kernel}
