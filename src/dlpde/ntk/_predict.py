"""Infinite-width predictions: gradient-descent MSE dynamics, the NNGP posterior, and the mean and
covariance of the ensemble of trained networks over initialisations.

Convention (neural-tangents'): gradient descent with learning rate ``eta`` on the loss
``L = (1/2N) sum (f(X) - y)^2`` with ``N = y.numel()`` (all training outputs). In the linearised
(infinite-width) regime, with ``Theta = Theta(X, X)`` (Lee et al. 2019, eqs. 9-11):

    f_t(X) = y + expm(-eta t Theta / N) (f_0(X) - y),
    f_t(x) = f_0(x) + Theta(x, X) Theta^{-1} (I - expm(-eta t Theta / N)) (y - f_0(X)).

Kernels are either output-traced ``(N, N)`` (applied to each column of ``y (N, K)``) or full
``(N K, N K)`` (applied to ``y.reshape(-1)``).
"""

from __future__ import annotations

import math

import torch

__all__ = ["gradient_descent_mse", "nngp_posterior", "gradient_descent_mse_ensemble"]


def _as_times(times, like):
    t = torch.as_tensor(times, dtype=like.dtype, device=like.device).reshape(-1)
    if bool((t < 0).any()) or bool(torch.isnan(t).any()):
        raise ValueError("times must be non-negative (inf allowed)")
    return t


def _check_square(k, name):
    if not isinstance(k, torch.Tensor) or k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got "
                         f"{tuple(k.shape) if isinstance(k, torch.Tensor) else type(k).__name__}")
    if not bool(torch.isfinite(k).all()):
        raise ValueError(f"{name} contains non-finite values")


def _columns(kernel, y, name="y_train"):
    """``y`` as the matrix whose columns the kernel acts on, and ``restore`` mapping results
    ``(..., rows, columns)`` back to ``(..., n, K)`` (``(..., n)`` for a 1-D ``y``)."""
    if not isinstance(y, torch.Tensor) or y.dim() not in (1, 2):
        raise ValueError(f"{name} must be a tensor of shape (N,) or (N, K)")
    y2 = y.unsqueeze(-1) if y.dim() == 1 else y
    if kernel.shape[0] == y2.shape[0]:
        full, columns = False, y2
    elif kernel.shape[0] == y2.numel():
        full, columns = True, y2.reshape(-1, 1)
    else:
        raise ValueError(f"{name} with shape {tuple(y.shape)} does not match a kernel of size "
                         f"{kernel.shape[0]}")

    def restore(z):
        if full:
            z = z.reshape(*z.shape[:-2], -1, y2.shape[1])
        return z.squeeze(-1) if y.dim() == 1 else z

    return columns, restore


def _spectral_functions(ntk, scaled_times):
    """Eigenvectors ``V`` and, per time ``a = eta t / N``, ``exp(-a lambda)`` and
    ``(1 - exp(-a lambda)) / lambda`` (``a`` as ``lambda -> 0``; ``1/lambda`` at ``a = inf``)."""
    eigenvalues, vectors = torch.linalg.eigh(ntk)
    tiny = eigenvalues.abs().max() * ntk.shape[0] * torch.finfo(ntk.dtype).eps
    lam = eigenvalues.unsqueeze(0)
    a = scaled_times.unsqueeze(-1)
    small = lam.abs() <= tiny
    finite = torch.isfinite(a)
    decay = torch.where(finite, torch.exp(-torch.where(finite, a, 0) * lam), torch.where(small, 1.0, 0.0))
    safe = torch.where(small, torch.ones_like(lam), lam)
    growth = torch.where(finite, -torch.expm1(-torch.where(finite, a, 0) * lam) / safe, 1.0 / safe)
    growth = torch.where(small, torch.where(finite, a, 0.0).expand_as(growth), growth)
    return vectors, decay, growth


def gradient_descent_mse(ntk_train_train: torch.Tensor, y_train: torch.Tensor, times,
                         learning_rate: float = 1.0, f_train_0: torch.Tensor | None = None,
                         ntk_test_train: torch.Tensor | None = None,
                         f_test_0: torch.Tensor | None = None) -> dict:
    """Outputs of the linearised network trained by gradient descent (gradient flow) on MSE.

    Args:
        ntk_train_train: ``(N, N)`` or ``(N K, N K)``; y_train ``(N,)`` or ``(N, K)``.
        times: a time or a sequence of times ``t`` (``inf`` allowed); ``eta t`` is the number of
            gradient-flow steps times the learning rate.
        f_train_0, f_test_0: outputs at initialisation (default zero, as for a centred network).
        ntk_test_train: ``(M, N)`` (or ``(M K, N K)``) to predict test points too.

    Returns ``{"times": (T,), "train": (T, N, K), "test": (T, M, K)}`` (test only if asked),
    with ``N = y_train.numel()`` in the exponent (the loss is ``(1/2N) sum (f - y)^2``).
    """
    _check_square(ntk_train_train, "ntk_train_train")
    y, restore = _columns(ntk_train_train, y_train)
    f0 = torch.zeros_like(y) if f_train_0 is None else _columns(ntk_train_train, f_train_0, "f_train_0")[0]
    t = _as_times(times, ntk_train_train)
    n = y_train.numel()
    vectors, decay, growth = _spectral_functions(ntk_train_train, learning_rate * t / n)
    residual0 = vectors.T @ (f0 - y)  # (n, k) in the eigenbasis
    out = {"times": t, "train": restore(y + torch.einsum("ij,tj,jk->tik", vectors, decay, residual0))}
    if ntk_test_train is not None:
        if ntk_test_train.dim() != 2 or ntk_test_train.shape[1] != ntk_train_train.shape[0]:
            raise ValueError(f"ntk_test_train must be (M, {ntk_train_train.shape[0]}), got "
                             f"{tuple(ntk_test_train.shape)}")
        shape = (ntk_test_train.shape[0], y.shape[1])
        if f_test_0 is not None and f_test_0.numel() != shape[0] * shape[1]:
            raise ValueError(f"f_test_0 must have {shape[0] * shape[1]} entries, got {f_test_0.numel()}")
        g0 = y.new_zeros(shape) if f_test_0 is None else f_test_0.reshape(shape)
        change = torch.einsum("mi,ij,tj,jk->tmk", ntk_test_train, vectors, growth, residual0)
        out["test"] = restore(g0 - change)
    return out


def nngp_posterior(nngp_train_train: torch.Tensor, nngp_test_train: torch.Tensor,
                   nngp_test_test: torch.Tensor | None, y_train: torch.Tensor,
                   noise_variance: float = 0.0) -> dict:
    """Gaussian-process (exact Bayesian) posterior of the NNGP prior (Lee et al. 2018):

        mean = K(x, X) (K(X, X) + s^2 I)^{-1} y,
        cov  = K(x, x) - K(x, X) (K(X, X) + s^2 I)^{-1} K(X, x).

    Returns ``{"mean": (M, K), "covariance": (M, M)}`` (covariance only if ``nngp_test_test``).
    """
    _check_square(nngp_train_train, "nngp_train_train")
    if not (noise_variance >= 0 and math.isfinite(noise_variance)):
        raise ValueError(f"noise_variance must be non-negative, got {noise_variance}")
    y, restore = _columns(nngp_train_train, y_train)
    eye = torch.eye(nngp_train_train.shape[0], dtype=y.dtype, device=y.device)
    chol = torch.linalg.cholesky(nngp_train_train + noise_variance * eye)
    mean = nngp_test_train @ torch.cholesky_solve(y, chol)
    out = {"mean": restore(mean)}
    if nngp_test_test is not None:
        out["covariance"] = nngp_test_test - nngp_test_train @ torch.cholesky_solve(nngp_test_train.T, chol)
    return out


def gradient_descent_mse_ensemble(nngp_train_train, nngp_test_train, nngp_test_test,
                                  ntk_train_train, ntk_test_train, y_train, times,
                                  learning_rate: float = 1.0) -> dict:
    """Mean and covariance over random initialisations of infinitely wide networks trained by
    gradient flow on MSE (Lee et al. 2019, eqs. 14-16). With ``A_t = Theta(x, X) Theta^{-1}
    (I - expm(-eta t Theta / N))`` and ``f_0 ~ GP(0, K)`` (the NNGP):

        mean_t(x) = A_t y,
        cov_t(x, x') = K(x, x') - A_t K(X, x') - K(x, X) A_t^T + A_t K(X, X) A_t^T.

    Output-traced kernels: ``y_train (N,)`` or ``(N, K)``. Returns ``{"times", "mean": (T, M, K),
    "covariance": (T, M, M)}`` (the covariance of each output).
    """
    for name, k in (("nngp_train_train", nngp_train_train), ("ntk_train_train", ntk_train_train),
                    ("nngp_test_test", nngp_test_test)):
        _check_square(k, name)
    y, _ = _columns(ntk_train_train, y_train)
    if ntk_train_train.shape[0] != y.shape[0] or y_train.numel() % ntk_train_train.shape[0]:
        raise ValueError("gradient_descent_mse_ensemble takes output-traced (N, N) kernels")
    t = _as_times(times, ntk_train_train)
    n = y_train.numel()
    vectors, _, growth = _spectral_functions(ntk_train_train, learning_rate * t / n)
    a = torch.einsum("mi,ij,tj,kj->tmk", ntk_test_train, vectors, growth, vectors)  # (T, M, N)
    mean = torch.einsum("tmn,nk->tmk", a, y)
    cross = a @ nngp_test_train.T  # (T, M, M): A K(X, x')
    covariance = (nngp_test_test - cross - cross.transpose(1, 2)
                  + a @ nngp_train_train @ a.transpose(1, 2))
    return {"times": t, "mean": mean, "covariance": covariance}
