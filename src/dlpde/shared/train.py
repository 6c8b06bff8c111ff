"""The one training loop of dlpde.

``train(parameters, loss_fn, steps, ...)`` minimises ``loss_fn(step)`` over ``parameters`` (an
``nn.Module`` or an iterable of tensors) with a named optimiser and learning-rate schedule,
stops with ``NonFiniteLossError`` naming the step when the loss or gradient is NaN/Inf,
checkpoints periodically (and on Ctrl-C) so that a crashed or interrupted run resumes where it
stopped, shows a tqdm progress bar, and returns the history as a list of dicts.

``loss_fn(step)`` returns a scalar tensor, or ``(loss, metrics)`` with ``metrics`` a dict of
floats recorded in the history. Randomness inside ``loss_fn`` should come from generators passed
as ``generators=`` so that their states are checkpointed too and a resumed run is identical to
an uninterrupted one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from .runs import atomic_torch_save

__all__ = ["train", "NonFiniteLossError", "make_optimizer", "make_schedule"]


class NonFiniteLossError(FloatingPointError):
    """Raised when the loss or the gradient becomes NaN or infinite; names the step."""


_OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "lbfgs": torch.optim.LBFGS,
    "rmsprop": torch.optim.RMSprop,
}
_SCHEDULES = ("constant", "cosine", "exponential")


def make_optimizer(params, optimizer="adam", lr=1e-3, weight_decay=0.0, **kwargs):
    """An optimiser by name (``adam``, ``adamw``, ``sgd``, ``lbfgs``, ``rmsprop``) or factory."""
    if callable(optimizer) and not isinstance(optimizer, str):
        return optimizer(params)
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)} or a callable, got {optimizer!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be positive and finite, got {lr}")
    if optimizer == "lbfgs":
        kwargs.setdefault("line_search_fn", "strong_wolfe")
        return torch.optim.LBFGS(params, lr=lr, **kwargs)
    return _OPTIMIZERS[optimizer](params, lr=lr, weight_decay=weight_decay, **kwargs)


def make_schedule(optimizer, schedule, steps, final_lr_factor=0.01):
    """``constant``, ``cosine`` (to ``final_lr_factor x lr``), ``exponential`` (likewise), or a
    factory ``optimizer -> LRScheduler``. Returns ``None`` for constant."""
    if schedule is None or schedule == "constant":
        return None
    if callable(schedule) and not isinstance(schedule, str):
        return schedule(optimizer)
    if schedule not in _SCHEDULES:
        raise ValueError(f"schedule must be one of {_SCHEDULES} or a callable, got {schedule!r}")
    if schedule == "cosine":
        base = optimizer.param_groups[0]["lr"]
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, steps), eta_min=base * final_lr_factor)
    gamma = final_lr_factor ** (1.0 / max(1, steps))
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


def _parameter_list(parameters) -> list[torch.Tensor]:
    if isinstance(parameters, torch.nn.Module):
        params = [p for p in parameters.parameters() if p.requires_grad]
    elif isinstance(parameters, torch.Tensor):
        params = [parameters]
    elif isinstance(parameters, Iterable):
        params = list(parameters)
    else:
        raise TypeError("parameters must be an nn.Module, a tensor or an iterable of tensors")
    if not params:
        raise ValueError("there are no trainable parameters")
    for p in params:
        if not isinstance(p, torch.Tensor) or not p.requires_grad:
            raise ValueError("every parameter must be a tensor with requires_grad=True")
    return params


def _unpack(out):
    if isinstance(out, tuple):
        loss, metrics = out
    else:
        loss, metrics = out, {}
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError("loss_fn must return a scalar tensor or (scalar tensor, metrics dict)")
    return loss.reshape(()), metrics


def _float(v):
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


def train(
    parameters,
    loss_fn: Callable[[int], torch.Tensor | tuple[torch.Tensor, dict]],
    steps: int,
    *,
    optimizer: str | Callable = "adam",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    schedule: str | Callable | None = None,
    final_lr_factor: float = 0.01,
    grad_clip: float | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    resume: bool = True,
    generators: Sequence[torch.Generator] = (),
    progress: bool = True,
    desc: str = "train",
    log_every: int = 1,
    callback: Callable[[int, dict], bool | None] | None = None,
    optimizer_kwargs: dict | None = None,
) -> list[dict]:
    """Minimise ``loss_fn(step)`` for ``steps`` optimiser steps; return the history.

    Args:
        parameters: an ``nn.Module`` (its trainable parameters) or an iterable of tensors.
        loss_fn: ``step -> loss`` or ``step -> (loss, metrics)``.
        steps: total number of steps (a resumed run continues up to this number).
        optimizer, lr, weight_decay, optimizer_kwargs: see ``make_optimizer``.
        schedule, final_lr_factor: see ``make_schedule``.
        grad_clip: clip the global gradient norm to this value.
        checkpoint: file path; written every ``checkpoint_every`` steps, at the end, and on
            Ctrl-C or a non-finite loss (the last good state). With ``resume=True`` an existing
            checkpoint is loaded and training continues from its step.
        generators: generators whose states are saved in and restored from the checkpoint.
        callback: ``callback(step, record)``; returning ``True`` stops training early (e.g.
            early stopping on a validation metric).

    History rows hold ``step``, ``loss``, ``lr``, ``grad_norm`` and the metrics of ``loss_fn``,
    every ``log_every`` steps and at the last step.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    if checkpoint_every < 1 or log_every < 1:
        raise ValueError("checkpoint_every and log_every must be >= 1")
    params = _parameter_list(parameters)
    opt = make_optimizer(params, optimizer, lr, weight_decay, **(optimizer_kwargs or {}))
    sched = make_schedule(opt, schedule, steps, final_lr_factor)
    history: list[dict] = []
    start = 0
    path = Path(checkpoint) if checkpoint is not None else None

    def state():
        return {
            "step": step_done,
            "params": [p.detach().cpu() for p in params],
            "optimizer": opt.state_dict(),
            "schedule": sched.state_dict() if sched is not None else None,
            "history": history,
            "generators": [g.get_state() for g in generators],
        }

    if path is not None and resume and path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=False)
        if len(saved["params"]) != len(params) or any(
                s.shape != p.shape for s, p in zip(saved["params"], params)):
            raise ValueError(f"checkpoint {path} does not match the parameters being trained")
        with torch.no_grad():
            for p, s in zip(params, saved["params"]):
                p.copy_(s.to(p.device))
        opt.load_state_dict(saved["optimizer"])
        if sched is not None and saved["schedule"] is not None:
            sched.load_state_dict(saved["schedule"])
        for g, s in zip(generators, saved["generators"]):
            g.set_state(s)
        history = saved["history"]
        start = saved["step"]

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=start, desc=desc, disable=None if progress else True,
               leave=False, dynamic_ncols=True)
    step_done = start
    try:
        for step in range(start, steps):
            metrics_holder = {}

            def closure():
                opt.zero_grad(set_to_none=True)
                loss, metrics = _unpack(loss_fn(step))
                if not bool(torch.isfinite(loss.detach())):
                    raise NonFiniteLossError(f"loss is {float(loss.detach())} at step {step}")
                loss.backward()
                metrics_holder["loss"] = loss.detach()
                metrics_holder["metrics"] = metrics
                return loss

            if isinstance(opt, torch.optim.LBFGS):
                opt.step(closure)
                grad_norm = torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in params
                                           if p.grad is not None))
            else:
                closure()
                grads = [p.grad for p in params if p.grad is not None]
                if grad_clip is not None:
                    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
                else:
                    grad_norm = torch.linalg.vector_norm(
                        torch.stack([torch.linalg.vector_norm(g) for g in grads])) if grads \
                        else torch.zeros(())
                if not bool(torch.isfinite(grad_norm)):
                    raise NonFiniteLossError(f"gradient norm is {float(grad_norm)} at step {step}")
                opt.step()
            if sched is not None:
                sched.step()
            step_done = step + 1
            loss_value = float(metrics_holder["loss"])
            record = None
            if step % log_every == 0 or step_done == steps:
                record = {"step": step, "loss": loss_value, "lr": opt.param_groups[0]["lr"],
                          "grad_norm": float(grad_norm)}
                record.update({k: _float(v) for k, v in metrics_holder["metrics"].items()})
                history.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3e}", refresh=False)
            if path is not None and step_done % checkpoint_every == 0:
                atomic_torch_save(state(), path)
            if callback is not None and callback(step, record or {"step": step, "loss": loss_value}):
                break
    except (KeyboardInterrupt, NonFiniteLossError):
        if path is not None:
            atomic_torch_save(state(), path)
        raise
    finally:
        bar.close()
    if path is not None:
        atomic_torch_save(state(), path)
    return history
