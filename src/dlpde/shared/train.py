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

from .checks import (
    NonFiniteResultError,
    check_bool,
    check_callable,
    check_choice,
    check_int,
    check_positive,
    check_positive_int,
    check_real,
)
from .runs import atomic_torch_save, load_torch_file

__all__ = ["train", "NonFiniteLossError", "TrainingDivergedError", "make_optimizer", "make_schedule"]


class TrainingDivergedError(NonFiniteResultError):
    """Training diverged: the loss blew up (or became NaN/Inf). The message names the stage
    (``desc``) and the step, and the checkpoint holds the last good state."""


class NonFiniteLossError(TrainingDivergedError):
    """Raised when the loss or the gradient becomes NaN or infinite; names the stage and step."""


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
    check_choice(optimizer, "optimizer", sorted(_OPTIMIZERS))
    check_positive(lr, "lr")
    check_positive(weight_decay, "weight_decay", allow_zero=True)
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
    check_choice(schedule, "schedule", _SCHEDULES)
    check_real(final_lr_factor, "final_lr_factor", 0.0, 1.0, strict_minimum=True)
    check_int(steps, "steps", minimum=0)
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
        raise ValueError("parameters: there are no trainable parameters")
    for p in params:
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"parameters must be tensors, got {type(p).__name__}")
        if not p.is_floating_point() or not p.requires_grad:
            raise ValueError("parameters: every parameter must be a floating-point tensor with "
                             "requires_grad=True")
        if not bool(torch.isfinite(p.detach()).all()):
            raise ValueError("parameters: the initial parameters hold NaN/Inf")
    return params


def _unpack(out):
    if isinstance(out, tuple) and len(out) == 2:
        loss, metrics = out
    else:
        loss, metrics = out, {}
    if not isinstance(loss, torch.Tensor) or not loss.is_floating_point():
        raise TypeError("loss_fn must return a scalar floating-point tensor or (scalar tensor, metrics dict)")
    if loss.numel() != 1:
        raise ValueError(f"loss_fn must return a scalar tensor, got shape {tuple(loss.shape)}")
    if not isinstance(metrics, dict):
        raise TypeError(f"loss_fn's metrics must be a dict, got {type(metrics).__name__}")
    return loss.reshape(()), metrics


class _DeferredInterrupt:
    """Hold Ctrl-C (SIGINT) until the current optimiser step has finished.

    A second Ctrl-C interrupts at once. Outside the main thread (where signal handlers cannot be
    installed) nothing is deferred; the loop then saves the state of the last finished step.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._handle)
            except (ValueError, OSError):  # pragma: no cover
                self._previous = None
        return self

    def _handle(self, signum, frame):
        import signal

        if self.requested:  # second Ctrl-C: stop now
            signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


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
    divergence_factor: float | None = 1e4,
) -> list[dict]:
    """Minimise ``loss_fn(step)`` for ``steps`` optimiser steps; return the history.

    Args:
        parameters: an ``nn.Module`` (its trainable parameters) or an iterable of tensors.
        loss_fn: ``step -> loss`` or ``step -> (loss, metrics)``. A loss that requires grad is
            differentiated by ``loss.backward()``. A loss function that computes its gradient in
            closed form may instead set ``.grad`` of every parameter itself and return a loss that
            does not require grad (no autograd graph, no backward pass); a parameter left without
            a gradient is then an error, so a forgotten ``requires_grad`` still fails loudly.
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
        divergence_factor: raise ``TrainingDivergedError`` (naming ``desc`` and the step) when a
            positive loss exceeds this many times the first step's loss; ``None`` disables it.

    Ctrl-C is held until the step in progress has finished (a second Ctrl-C stops at once), so
    the checkpoint written on interrupt is that of a finished step and ``resume`` continues
    exactly as an uninterrupted run would (same generator states, same optimiser state).

    History rows hold ``step``, ``loss``, ``lr``, ``grad_norm`` and the metrics of ``loss_fn``,
    every ``log_every`` steps and at the last step.
    """
    steps = check_int(steps, "steps", minimum=0)
    check_callable(loss_fn, "loss_fn")
    checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
    log_every = check_positive_int(log_every, "log_every")
    check_positive(lr, "lr")
    if grad_clip is not None:
        grad_clip = check_positive(grad_clip, "grad_clip")
    if divergence_factor is not None:
        divergence_factor = check_real(divergence_factor, "divergence_factor", minimum=1.0,
                                       strict_minimum=True)
    check_bool(resume, "resume")
    check_bool(progress, "progress")
    if not isinstance(desc, str):
        raise TypeError(f"desc must be a str, got {type(desc).__name__}")
    if callback is not None:
        check_callable(callback, "callback")
    if optimizer_kwargs is not None and not isinstance(optimizer_kwargs, dict):
        raise TypeError(f"optimizer_kwargs must be a dict or None, got {type(optimizer_kwargs).__name__}")
    if isinstance(generators, torch.Generator):
        generators = (generators,)
    if not isinstance(generators, Iterable) or not all(isinstance(g, torch.Generator) for g in generators):
        raise TypeError("generators must be a sequence of torch.Generator")
    generators = list(generators)
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError("checkpoint must be a path (str or os.PathLike) or None, got "
                        f"{type(checkpoint).__name__}")
    params = _parameter_list(parameters)
    opt = make_optimizer(params, optimizer, lr, weight_decay, **(optimizer_kwargs or {}))
    sched = make_schedule(opt, schedule, steps, final_lr_factor)
    history: list[dict] = []
    start = 0
    reference = None  # the first step's loss, for the divergence test
    path = Path(checkpoint) if checkpoint is not None else None
    step_done = 0
    # generator states at the start of the step in progress: a checkpoint written on Ctrl-C or on
    # a non-finite loss must not hold states advanced by the unfinished step
    boundary_states = [g.get_state() for g in generators]

    def state():
        return {
            "step": step_done,
            "params": [p.detach().cpu() for p in params],
            "optimizer": opt.state_dict(),
            "schedule": sched.state_dict() if sched is not None else None,
            "history": history,
            "generators": boundary_states,
            "reference_loss": reference,
        }

    if path is not None and resume and path.exists():
        saved = load_torch_file(path, "training checkpoint")
        if not isinstance(saved, dict) or not {"step", "params", "optimizer", "history"} <= set(saved):
            raise ValueError(f"checkpoint {path} is not a dlpde training checkpoint")
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
        reference = saved.get("reference_loss")
        boundary_states = [g.get_state() for g in generators]

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=start, desc=desc, disable=None if progress else True,
               leave=False, dynamic_ncols=True)
    step_done = start
    interrupt = _DeferredInterrupt()
    try:
        interrupt.__enter__()
        for step in range(start, steps):
            if interrupt.requested:
                raise KeyboardInterrupt
            metrics_holder = {}

            def closure():
                opt.zero_grad(set_to_none=True)
                loss, metrics = _unpack(loss_fn(step))
                value = float(loss.detach())  # one host sync per step, also the logged loss
                if not math.isfinite(value):
                    raise NonFiniteLossError(f"{desc}: loss is {value} at step {step}; "
                                             "training diverged (try a smaller lr)")
                if loss.requires_grad:
                    loss.backward()
                elif any(p.grad is None for p in params):
                    raise ValueError(f"{desc}: loss_fn returned a loss that does not depend on the "
                                     f"parameters (no grad) at step {step} and did not set the gradient "
                                     "of every parameter itself")
                metrics_holder["loss"] = value
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
                    grad_norm = (torch.linalg.vector_norm(grads[0]) if len(grads) == 1 else
                                 torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                                       for g in grads]))
                                 if grads else torch.zeros(()))
                grad_norm = float(grad_norm)
                if not math.isfinite(grad_norm):
                    raise NonFiniteLossError(f"{desc}: gradient norm is {float(grad_norm)} at step {step}; "
                                             "training diverged (try a smaller lr)")
                opt.step()
            if sched is not None:
                sched.step()
            step_done = step + 1
            boundary_states = [g.get_state() for g in generators]
            loss_value = float(metrics_holder["loss"])
            if reference is None:
                reference = loss_value
            elif (divergence_factor is not None and reference > 0
                  and loss_value > divergence_factor * reference):
                step_done = step  # the state after this step is not a good one to keep
                raise TrainingDivergedError(
                    f"{desc}: loss {loss_value:.3g} at step {step} is more than {divergence_factor:g} times "
                    f"the first step's {reference:.3g}; training diverged (try a smaller lr)")
            record = None
            if step % log_every == 0 or step_done == steps:
                record = {"step": step, "loss": loss_value, "lr": opt.param_groups[0]["lr"],
                          "grad_norm": float(grad_norm)}
                record.update({k: _float(v) for k, v in metrics_holder["metrics"].items()})
                history.append(record)
            bar.update(1)
            if not bar.disable:
                bar.set_postfix(loss=f"{loss_value:.3e}", refresh=False)
            if path is not None and step_done % checkpoint_every == 0:
                atomic_torch_save(state(), path)
            if callback is not None and callback(step, record or {"step": step, "loss": loss_value}):
                break
    except KeyboardInterrupt:
        if path is not None:
            atomic_torch_save(state(), path)
        raise
    except NonFiniteLossError:
        if path is not None:
            atomic_torch_save(state(), path)
        raise
    finally:
        interrupt.__exit__(None, None, None)
        bar.close()
    if path is not None:
        atomic_torch_save(state(), path)
    return history
