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

from dlpde.shared import (
    check_bool,
    check_choice,
    check_finite_result,
    check_positive,
    check_real,
    check_tensor,
)

__all__ = ["gradient_descent_mse", "gradient_descent_mse_predictor", "nngp_posterior",
           "gradient_descent_mse_ensemble", "kernel_regression"]


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


def _spectral_functions(ntk, scaled_times, eigen=None):
    """Eigenvectors ``V`` and, per time ``a = eta t / N``, ``exp(-a lambda)`` and
    ``(1 - exp(-a lambda)) / lambda`` (``a`` as ``lambda -> 0``; ``1/lambda`` at ``a = inf``).
    ``eigen``: a cached ``torch.linalg.eigh(ntk)``."""
    eigenvalues, vectors = torch.linalg.eigh(ntk) if eigen is None else eigen
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


def _check_kernel_input(k, name):
    check_tensor(k, name, dim=2)
    _check_square(k, name)


def gradient_descent_mse_predictor(ntk_train_train: torch.Tensor, y_train: torch.Tensor,
                                   learning_rate: float = 1.0, f_train_0: torch.Tensor | None = None,
                                   ntk_test_train: torch.Tensor | None = None,
                                   f_test_0: torch.Tensor | None = None):
    """``predict(times)``: the outputs of ``gradient_descent_mse`` at any times, with the
    eigendecomposition of ``ntk_train_train`` done once here and reused by every call (the
    counterpart of neural-tangents' ``predict.gradient_descent_mse``). Arguments as
    ``gradient_descent_mse``; ``predict(times)`` returns its dict."""
    _check_kernel_input(ntk_train_train, "ntk_train_train")
    learning_rate = check_positive(learning_rate, "learning_rate")
    check_tensor(y_train, "y_train")
    y, restore = _columns(ntk_train_train, y_train)
    f0 = torch.zeros_like(y) if f_train_0 is None else _columns(ntk_train_train, f_train_0, "f_train_0")[0]
    n = y_train.numel()
    test = None
    if ntk_test_train is not None:
        check_tensor(ntk_test_train, "ntk_test_train", dim=2)
        if ntk_test_train.shape[1] != ntk_train_train.shape[0]:
            raise ValueError(f"ntk_test_train must be (M, {ntk_train_train.shape[0]}), got "
                             f"{tuple(ntk_test_train.shape)}")
        shape = (ntk_test_train.shape[0], y.shape[1])
        if f_test_0 is not None:
            check_tensor(f_test_0, "f_test_0")
            if f_test_0.numel() != shape[0] * shape[1]:
                raise ValueError(f"f_test_0 must have {shape[0] * shape[1]} entries, got {f_test_0.numel()}")
        test = (ntk_test_train, y.new_zeros(shape) if f_test_0 is None else f_test_0.reshape(shape))
    eigen = torch.linalg.eigh(ntk_train_train)
    residual0 = eigen[1].T @ (f0 - y)  # (n, k) in the eigenbasis

    def predict(times) -> dict:
        t = _as_times(times, ntk_train_train)
        vectors, decay, growth = _spectral_functions(ntk_train_train, learning_rate * t / n, eigen)
        out = {"times": t, "train": restore(y + torch.einsum("ij,tj,jk->tik", vectors, decay, residual0))}
        if test is not None:
            change = torch.einsum("mi,ij,tj,jk->tmk", test[0], vectors, growth, residual0)
            out["test"] = restore(test[1] - change)
        return out

    return predict


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
    with ``N = y_train.numel()`` in the exponent (the loss is ``(1/2N) sum (f - y)^2``). To
    evaluate at more times later without a new eigendecomposition, use
    ``gradient_descent_mse_predictor`` (this is ``gradient_descent_mse_predictor(...)(times)``).
    """
    return gradient_descent_mse_predictor(ntk_train_train, y_train, learning_rate, f_train_0,
                                          ntk_test_train, f_test_0)(times)


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


def _regularised(k: torch.Tensor, diag_reg: float) -> torch.Tensor:
    """``K + diag_reg * mean(diag K) I`` (neural-tangents' relative ``diag_reg``)."""
    if diag_reg == 0:
        return k
    scale = diag_reg * torch.diagonal(k).mean()
    return k + scale * torch.eye(k.shape[0], dtype=k.dtype, device=k.device)


def kernel_regression(spec, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                      get: str = "ntk", t=None, diag_reg: float = 0.0, learning_rate: float = 1.0,
                      compute_cov: bool = True) -> dict:
    """Test predictions of infinitely wide networks described by ``spec`` (neural-tangents'
    ``predict.gradient_descent_mse_ensemble(kernel_fn, ...)(t, x_test, get, compute_cov)``): the
    mean and covariance over random initialisations of the network trained by gradient flow on
    MSE (learning rate ``eta``, loss ``(1/2N) sum (f - y)^2``, ``N = y_train.numel()``) up to
    time ``t`` (``None``: ``t = inf``, converged).

    With ``K`` the NNGP and ``Theta`` the NTK from ``analytic_kernels``, ``R = Theta(X, X)`` (or
    ``K(X, X)`` for ``get="nngp"``) plus ``diag_reg * mean(diag R) I``, ``R = V diag(lambda) V^T``,
    ``g_a(lambda) = (1 - exp(-a lambda)) / lambda`` and ``a = eta t / N``:

    - ``get="ntk"`` (all layers trained, the NTK ensemble): ``A = Theta(x, X) V g_a V^T``,
      mean ``A y``, covariance ``K(x, x') - A K(X, x') - K(x, X) A^T + A K(X, X) A^T``;
    - ``get="nngp"`` (only the readout trained; at ``t = inf`` the exact Bayesian NNGP posterior
      with noise variance ``diag_reg * mean(diag K)``): mean ``K(x, X) V g_a V^T y``, covariance
      ``K(x, x') - K(x, X) V g_{2a} V^T K(X, x')``.

    Args:
        spec: a ``Layer`` or a list of layers; x_train ``(N, ...)``, x_test ``(M, ...)`` inputs
            of one per-sample shape; y_train ``(N,)`` or ``(N, K)`` targets.
        t: ``None``, a time or a sequence of times (``inf`` allowed).
        diag_reg: relative diagonal regularisation (>= 0), as neural-tangents'.
        compute_cov: also return the covariance and the variance (its diagonal).

    Returns ``{"mean": (M, K), "variance": (M,), "covariance": (M, M)}`` (``(M,)`` means for a
    1-D ``y_train``), each with a leading ``(T,)`` axis when ``t`` is given, plus ``"times"``.
    The covariance is the same for every output column (the kernels are output-traced).
    """
    from ._spec import _as_spec, analytic_kernels

    spec = _as_spec(spec)
    check_tensor(x_train, "x_train", dim=(2, 3, 4))
    check_tensor(x_test, "x_test", dim=x_train.dim())
    if x_test.shape[1:] != x_train.shape[1:] or x_test.dtype != x_train.dtype:
        raise ValueError(f"x_test must match x_train in per-sample shape and dtype: {tuple(x_test.shape)} "
                         f"{x_test.dtype} vs {tuple(x_train.shape)} {x_train.dtype}")
    check_tensor(y_train, "y_train", dim=(1, 2))
    if y_train.shape[0] != x_train.shape[0]:
        raise ValueError(f"y_train must have {x_train.shape[0]} rows (one per x_train row), got "
                         f"{tuple(y_train.shape)}")
    check_choice(get, "get", ("nngp", "ntk"))
    diag_reg = check_real(diag_reg, "diag_reg", minimum=0.0)
    learning_rate = check_positive(learning_rate, "learning_rate")
    compute_cov = check_bool(compute_cov, "compute_cov")
    n = x_train.shape[0]
    nngp, ntk = analytic_kernels(spec, torch.cat([x_train, x_test]))
    y = y_train.to(nngp.dtype)
    scalar_time = t is None
    times = _as_times(float("inf") if scalar_time else t, nngp)
    kernel = ntk if get == "ntk" else nngp
    train = _regularised(kernel[:n, :n], diag_reg)
    scaled = learning_rate * times / y.numel()
    eigen = torch.linalg.eigh(train)
    vectors, _, growth = _spectral_functions(train, scaled, eigen)
    a = torch.einsum("mi,ij,tj,kj->tmk", kernel[n:, :n], vectors, growth, vectors)  # (T, M, N)
    mean = torch.einsum("tmn,n...->tm...", a, y)
    out = {"times": times, "mean": mean}
    if compute_cov:
        k_test = nngp[n:, n:]
        if get == "ntk":
            cross = a @ nngp[n:, :n].T  # A K(X, x')
            covariance = k_test - cross - cross.transpose(1, 2) + a @ nngp[:n, :n] @ a.transpose(1, 2)
        else:
            _, _, growth2 = _spectral_functions(train, 2 * scaled, eigen)
            b = nngp[n:, :n] @ vectors
            covariance = k_test - torch.einsum("mi,ti,li->tml", b, growth2, b)
        out["covariance"] = covariance
        out["variance"] = torch.diagonal(covariance, dim1=1, dim2=2)
    check_finite_result(out["mean"], "kernel regression mean", hint="raise diag_reg")
    if scalar_time:
        out = {k: (v[0] if k != "times" else v) for k, v in out.items()}
        del out["times"]
    return out
