"""Mean-field training dynamics shared by every particle model of the thread.

Conventions (Mei, Montanari & Nguyen 2018, with their xi(t) = 1). A model's output averages
over ``N = model.mean_field_scale`` particles (``n`` for a two-layer net, ``M`` channels for the
CNN, ``L M`` blocks for the ResNet), so the gradient of a risk ``R`` with respect to one particle
is O(1/N). Mean-field time ``t`` moves every particle at O(1) speed:

    d theta_i / dt = -(N grad_{theta_i} R + 2 lambda theta_i) m,

and the noisy (Langevin) version adds ``sqrt(4 / beta) m dB_i``, with ``m`` the model's
``trainable_mask`` (fixed coordinates, e.g. a fixed second layer, do not move). For the
two-layer risk ``R = E (y - f(x))^2`` (no factor 1/2) the drift is
``2 E[(y - f) grad sigma_*(x; theta_i)]``, and the empirical measure of the particles follows the
distributional dynamics

    d_t rho = 2 div(rho grad Psi_lambda) + (2 / beta) Laplacian rho,
    Psi_lambda(theta; rho) = V(theta) + int U(theta, theta') rho(d theta') + (lambda / 2) |theta|^2,

``V = -E[y sigma_*(x; theta)]``, ``U = E[sigma_*(x; theta) sigma_*(x; theta')]``: the factor 2 comes
from the risk without 1/2, the noise is normalised so that the fixed point is the Gibbs measure
``exp(-beta Psi_lambda)``. A step of SGD with step size ``s`` advances time by ``s``.

Two ways to run it:
- ``mean_field_gradient_flow``: the deterministic flow of a risk (full batch, or an exact
  population risk) as an ODE of the particles, by any integrator of ``dlpde.shared.ode``;
- ``mean_field_sgd``: Euler(-Maruyama) steps of ``MeanFieldLangevin`` through
  ``dlpde.shared.train`` (online SGD when ``loss_fn`` draws fresh samples, noisy SGD with a
  finite ``inverse_temperature``), with checkpoints and progress bars.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch

from dlpde.shared import (
    check_positive,
    check_positive_int,
    check_real,
    check_same_device,
    check_tensor,
    integrate,
    train,
)

__all__ = ["MeanFieldLangevin", "mean_field_velocity", "mean_field_gradient_flow", "mean_field_sgd"]


def _check_model(model):
    for attribute in ("particles", "trainable_mask", "mean_field_scale"):
        if not hasattr(model, attribute):
            raise TypeError(
                f"model must be a mean-field particle model with .{attribute} "
                f"(TwoLayerMeanField, MeanFieldCNN, MeanFieldResNet), got {type(model).__name__}"
            )


def _check_nonnegative(name, value):
    return check_positive(value, name, allow_zero=True)


def _check_params(params) -> tuple[list, list[torch.Tensor]]:
    """The particle tensors to optimise: a tensor list (or param-group dicts), floating, finite leaves."""
    if isinstance(params, torch.Tensor):
        raise TypeError("params must be an iterable of tensors (e.g. [model.particles]), got a tensor")
    if isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
        raise TypeError(f"params must be an iterable of tensors, got {type(params).__name__}")
    params = list(params)
    if not params:
        raise ValueError("params must hold at least one tensor, got none")
    tensors = []
    for i, item in enumerate(params):
        group = item.get("params") if isinstance(item, dict) else [item]
        group = [group] if isinstance(group, torch.Tensor) else group
        if not isinstance(group, (list, tuple)):
            raise TypeError(f"params[{i}] must be a tensor or a dict with 'params', got {type(item)}")
        for p in group:
            check_tensor(p, f"params[{i}]", nonempty=False)
            if not p.is_leaf:
                raise ValueError(f"params[{i}] must be a leaf tensor (a parameter), got a computed tensor")
            tensors.append(p)
    if not tensors:
        raise ValueError("params must hold at least one tensor, got none")
    return params, tensors


class MeanFieldLangevin(torch.optim.Optimizer):
    """Euler-Maruyama step of the mean-field (noisy) gradient flow of one particle tensor:

        theta <- theta - h (N grad R + 2 lambda theta) m + sqrt(4 h / beta) m xi,   xi ~ N(0, I).

    ``h = step_size`` (mean-field time per step), ``N = mean_field_scale``, ``lambda = penalty``,
    ``beta = inverse_temperature`` (``math.inf``: no noise), ``m = mask`` (broadcast against the
    particles). The noise is drawn from ``generator`` on the generator's device and moved to the
    particles' device, so a CPU generator gives the same numbers on every device.
    """

    def __init__(
        self,
        params,
        step_size: float,
        mean_field_scale: int,
        mask: torch.Tensor | None = None,
        penalty: float = 0.0,
        inverse_temperature: float = math.inf,
        generator: torch.Generator | None = None,
    ):
        params, tensors = _check_params(params)
        step_size = check_positive(step_size, "step_size")
        mean_field_scale = check_positive_int(mean_field_scale, "mean_field_scale")
        if mask is not None:
            check_tensor(mask, "mask")
            for p in tensors:
                check_same_device(mask=mask, params=p)
                try:
                    fits = torch.broadcast_shapes(mask.shape, p.shape) == p.shape
                except RuntimeError:
                    fits = False
                if not fits:
                    raise ValueError(
                        f"mask of shape {tuple(mask.shape)} must broadcast to the particles' shape "
                        f"{tuple(p.shape)}"
                    )
        penalty = check_positive(penalty, "penalty", allow_zero=True)
        inverse_temperature = check_real(
            inverse_temperature, "inverse_temperature (math.inf for no noise)", 0.0, strict_minimum=True,
            finite=False,
        )
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        if math.isfinite(inverse_temperature) and generator is None:
            raise ValueError("noisy SGD (finite inverse_temperature) needs an explicit generator")
        super().__init__(params, {"lr": step_size})
        self.mean_field_scale = mean_field_scale
        self.mask = mask
        self.penalty = float(penalty)
        self.inverse_temperature = float(inverse_temperature)
        self.generator = generator

    def zero_grad(self, set_to_none: bool = True) -> None:
        """``Optimizer.zero_grad`` without its profiler hooks (a tenth of a small particle step)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            h = group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if self.penalty == 0.0 and self.mask is not None:  # one pass: p -= h N grad m
                    p.addcmul_(p.grad, self.mask, value=-h * self.mean_field_scale)
                else:
                    drift = self.mean_field_scale * p.grad + 2.0 * self.penalty * p
                    if self.mask is not None:
                        drift = drift * self.mask
                    p.add_(drift, alpha=-h)
                if math.isfinite(self.inverse_temperature):
                    noise = torch.randn(
                        p.shape, generator=self.generator, dtype=p.dtype, device=self.generator.device
                    ).to(p.device)
                    if self.mask is not None:
                        noise = noise * self.mask
                    p.add_(noise, alpha=math.sqrt(4.0 * h / self.inverse_temperature))
        return loss


def mean_field_velocity(model, risk: Callable[[], torch.Tensor], penalty: float = 0.0) -> torch.Tensor:
    """``-(N grad R + 2 lambda theta) m`` at the model's current particles (shape of ``particles``).

    ``risk()`` evaluates the risk of ``model`` as it stands (a closure over the model and data).
    """
    _check_model(model)
    with torch.enable_grad():
        value = risk()
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise ValueError("risk() must return a scalar tensor")
        (grad,) = torch.autograd.grad(value.reshape(()), model.particles)
    drift = model.mean_field_scale * grad + 2.0 * penalty * model.particles.detach()
    return -drift * model.trainable_mask


def mean_field_gradient_flow(
    model,
    risk: Callable[[], torch.Tensor],
    time: float,
    steps: int | None = None,
    method: str = "rk4",
    save_at: Sequence[float] | None = None,
    penalty: float = 0.0,
    rtol: float = 1e-6,
    atol: float = 1e-9,
) -> torch.Tensor:
    """Integrate the deterministic mean-field gradient flow of ``risk`` for mean-field time ``time``.

    ``d theta / dt = -(N grad R(theta) + 2 lambda theta) m`` with ``dlpde.shared.integrate``
    (``method``, ``steps``, ``rtol``, ``atol`` as there). The model ends at the final particles.
    Returns the final particles, or with ``save_at`` the stack ``(len(save_at), *particles.shape)``.
    """
    _check_model(model)
    _check_nonnegative("penalty", penalty)
    if not (isinstance(time, (int, float)) and math.isfinite(time) and time >= 0):
        raise ValueError(f"time must be a non-negative finite number, got {time!r}")

    def velocity(t, particles):
        with torch.no_grad():
            model.particles.copy_(particles)
        return mean_field_velocity(model, risk, penalty)

    start = model.particles.detach().clone()
    path = integrate(
        velocity, start, 0.0, float(time), method=method, steps=steps, rtol=rtol, atol=atol, save_at=save_at
    )
    with torch.no_grad():
        model.particles.copy_(path[-1] if save_at is not None else path)
    return path


def mean_field_sgd(
    model,
    loss_fn: Callable[[int], torch.Tensor | tuple],
    time: float,
    step_size: float,
    *,
    penalty: float = 0.0,
    inverse_temperature: float = math.inf,
    generator: torch.Generator | None = None,
    generators: Sequence[torch.Generator] = (),
    checkpoint=None,
    resume: bool = True,
    checkpoint_every: int = 100,
    progress: bool = True,
    desc: str = "mean-field SGD",
    log_every: int = 1,
    callback=None,
) -> list[dict]:
    """``round(time / step_size)`` steps of ``MeanFieldLangevin`` on ``loss_fn(step)`` via ``train``.

    Online SGD: ``loss_fn`` draws a fresh batch each step (from a generator listed in
    ``generators`` so that checkpoints restore it); full-batch Euler: a fixed batch; noisy SGD:
    a finite ``inverse_temperature`` and the noise ``generator``. Returns ``train``'s history.
    """
    _check_model(model)
    if not (step_size > 0 and math.isfinite(step_size)):
        raise ValueError(f"step_size must be positive and finite, got {step_size}")
    if not (isinstance(time, (int, float)) and math.isfinite(time) and time >= 0):
        raise ValueError(f"time must be a non-negative finite number, got {time!r}")
    steps = int(round(time / step_size))

    def optimizer(params):
        return MeanFieldLangevin(
            params,
            step_size,
            model.mean_field_scale,
            model.trainable_mask,
            penalty,
            inverse_temperature,
            generator,
        )

    tracked = list(generators) + ([generator] if generator is not None else [])
    return train(
        [model.particles],
        loss_fn,
        steps,
        optimizer=optimizer,
        lr=step_size,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        generators=tracked,
        progress=progress,
        desc=desc,
        log_every=log_every,
        callback=callback,
    )
