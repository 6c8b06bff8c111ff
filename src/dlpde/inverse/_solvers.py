"""Classical solvers: ISTA/FISTA (l1), TV by Chambolle-Pock, Tikhonov by CG, Richardson-Lucy,
Wiener deconvolution, filtered back-projection; each iterative one with a ``StoppingRule``."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from dlpde.shared import (
    NonFiniteResultError,
    check_bool,
    check_callable,
    check_choice,
    check_finite_result,
    check_int,
    check_positive,
    check_real,
    check_tensor,
)

from ._checks import check_operator
from ._operators import Blur, LinearOperator, Radon

__all__ = [
    "StoppingRule", "SolverResult", "soft_threshold", "ista", "fista", "image_gradient",
    "image_divergence", "total_variation", "total_variation_restoration", "tikhonov",
    "richardson_lucy", "wiener_deconvolution", "filtered_back_projection",
]


@dataclasses.dataclass(frozen=True)
class StoppingRule:
    """When an iterative solver stops (whichever comes first).

    - ``max_iterations``: iteration count.
    - ``tolerance``: relative change ||x_k - x_{k-1}|| <= tolerance ||x_k|| (every batch item).
    - ``noise_level`` (per-entry sigma of the data noise): the discrepancy principle (Morozov):
      stop at the first k with ||A x_k - y|| <= ``discrepancy_factor`` * sigma * sqrt(m) for
      every item, m the number of measurements. Used as iterative regularisation.
    """

    max_iterations: int = 100
    tolerance: float | None = None
    noise_level: float | None = None
    discrepancy_factor: float = 1.0

    def __post_init__(self):
        check_int(self.max_iterations, "max_iterations", minimum=0)
        if self.tolerance is not None:
            check_positive(self.tolerance, "tolerance")
        if self.noise_level is not None:
            check_positive(self.noise_level, "noise_level", allow_zero=True)
        check_positive(self.discrepancy_factor, "discrepancy_factor")

    def converged(self, x_new, x_old) -> bool:
        if self.tolerance is None:
            return False
        change = torch.linalg.vector_norm((x_new - x_old).flatten(1), dim=1)
        size = torch.linalg.vector_norm(x_new.flatten(1), dim=1).clamp_min(1e-30)
        return bool((change <= self.tolerance * size).all())

    def discrepancy_reached(self, residual) -> bool:
        if self.noise_level is None:
            return False
        flat = residual.flatten(1)
        bound = self.discrepancy_factor * self.noise_level * math.sqrt(flat.shape[1])
        return bool((torch.linalg.vector_norm(flat, dim=1) <= bound).all())


@dataclasses.dataclass
class SolverResult:
    """``solution`` (shaped like the unknowns), ``iterations`` run, why it ``stopped``
    (``"max_iterations"``, ``"tolerance"``, ``"discrepancy"``), and per-iteration ``history``
    of the objective (or residual norm) where the solver records one."""

    solution: torch.Tensor
    iterations: int
    stopped: str
    history: list[float] = dataclasses.field(default_factory=list)
    info: dict = dataclasses.field(default_factory=dict)


def _as_batch(y: torch.Tensor, operator: LinearOperator, name: str = "y") -> torch.Tensor:
    check_operator(operator)
    return check_tensor(y, name)


def _start(x0, operator, y, name="x0"):
    """Zeros shaped like A^T y, or a copy of ``x0`` (checked to have that shape)."""
    image = operator.adjoint(y)
    if x0 is None:
        return torch.zeros_like(image), image
    check_tensor(x0, name)
    if x0.shape != image.shape:
        raise ValueError(f"{name} must have the shape of A^T y, {tuple(image.shape)}, got {tuple(x0.shape)}")
    return x0.to(image).clone(), image


def _rule(stopping) -> StoppingRule:
    if stopping is None:
        return StoppingRule()
    if isinstance(stopping, int) and not isinstance(stopping, bool):
        return StoppingRule(max_iterations=stopping)
    if isinstance(stopping, bool) or not isinstance(stopping, StoppingRule):
        raise TypeError("stopping must be a StoppingRule, an int (iterations) or None")
    return stopping


def soft_threshold(x: torch.Tensor, threshold) -> torch.Tensor:
    """eta_theta(x) = sign(x) max(|x| - theta, 0), the prox of theta ||.||_1.

    ``threshold``: a number >= 0 or a non-negative tensor broadcastable against ``x``."""
    check_tensor(x, "x", finite=False, nonempty=False)
    if isinstance(threshold, torch.Tensor):
        check_tensor(threshold, "threshold")
        try:
            torch.broadcast_shapes(x.shape, threshold.shape)
        except RuntimeError:
            raise ValueError(f"threshold of shape {tuple(threshold.shape)} does not broadcast against "
                             f"x of shape {tuple(x.shape)}") from None
        if bool((threshold < 0).any()):
            raise ValueError("threshold must be non-negative")
    else:
        threshold = check_positive(threshold, "threshold", allow_zero=True)
    return torch.sign(x) * torch.relu(x.abs() - threshold)


def _lasso_objective(operator, x, y, weight):
    r = operator.forward(x) - y
    return float(0.5 * (r**2).sum() + weight * x.abs().sum())


def _proximal_gradient(operator, y, weight, stopping, step, x0, accelerated, callback):
    rule = _rule(stopping)
    y = _as_batch(y, operator)
    weight = check_positive(weight, "weight", allow_zero=True)
    if callback is not None:
        check_callable(callback, "callback")
    x, _ = _start(x0, operator, y)
    if step is None:
        norm = operator.norm(input_shape=x.shape[1:], device=y.device)
        if norm == 0:
            raise ValueError("the operator is zero (||A|| = 0): nothing to solve")
        step = 1.0 / norm**2
    step = check_positive(step, "step")
    hint = f"the step {step:g} is probably above 2 / ||A||^2 (pass step=None for 1 / ||A||^2)"
    z, t = x, 1.0
    history, stopped, k = [], "max_iterations", 0
    for k in range(1, rule.max_iterations + 1):
        x_old = x
        x = soft_threshold(z - step * operator.adjoint(operator.forward(z) - y), step * weight)
        if accelerated:
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            z = x + ((t - 1) / t_new) * (x - x_old)
            t = t_new
        else:
            z = x
        check_finite_result(x, "proximal-gradient iterate", hint)
        history.append(_lasso_objective(operator, x, y, weight))
        if not math.isfinite(history[-1]):
            raise NonFiniteResultError(f"lasso objective overflowed at iteration {k}; {hint}")
        if callback is not None:
            callback(k, x)
        if rule.discrepancy_reached(operator.forward(x) - y):
            stopped = "discrepancy"
            break
        if rule.converged(x, x_old):
            stopped = "tolerance"
            break
    return SolverResult(x, k, stopped, history)


def ista(operator: LinearOperator, y: torch.Tensor, weight: float, stopping=None, step=None,
         x0=None, callback=None) -> SolverResult:
    """ISTA (Daubechies, Defrise, De Mol 2004) for min_x 1/2 ||A x - y||^2 + weight ||x||_1:
    x <- eta_{weight/L}(x - A^T (A x - y) / L), L = ||A||^2 (power iteration) unless ``step``
    (= 1/L) is given. ``y``: ``(B, *output_shape)``. History: the objective per iteration;
    ``callback(k, x_k)`` is called after every iteration (e.g. to record the error per layer)."""
    return _proximal_gradient(operator, y, weight, stopping, step, x0, False, callback)


def fista(operator: LinearOperator, y: torch.Tensor, weight: float, stopping=None, step=None,
          x0=None, callback=None) -> SolverResult:
    """FISTA (Beck & Teboulle 2009): ISTA at the extrapolated point z_k = x_k +
    (t_{k-1} - 1)/t_k (x_k - x_{k-1}), t_k = (1 + sqrt(1 + 4 t_{k-1}^2)) / 2; O(1/k^2) objective."""
    return _proximal_gradient(operator, y, weight, stopping, step, x0, True, callback)


# ---------------------------------------------------------------------------------------------
# Total variation


def image_gradient(u: torch.Tensor) -> torch.Tensor:
    """Forward differences with Neumann boundary: (..., H, W) -> (..., 2, H, W); ||grad||^2 <= 8."""
    check_tensor(u, "u", min_dim=2, finite=False)
    dy = torch.zeros_like(u)
    dx = torch.zeros_like(u)
    dy[..., :-1, :] = u[..., 1:, :] - u[..., :-1, :]
    dx[..., :, :-1] = u[..., :, 1:] - u[..., :, :-1]
    return torch.stack([dy, dx], dim=-3)


def image_divergence(p: torch.Tensor) -> torch.Tensor:
    """div = -grad^T: (..., 2, H, W) -> (..., H, W)."""
    check_tensor(p, "p", min_dim=3, finite=False)
    if p.shape[-3] != 2:
        raise ValueError(f"p must have shape (..., 2, H, W), got {tuple(p.shape)}")
    py, px = p[..., 0, :, :], p[..., 1, :, :]
    div = torch.zeros_like(py)
    div[..., :-1, :] += py[..., :-1, :]
    div[..., 1:, :] -= py[..., :-1, :]
    div[..., :, :-1] += px[..., :, :-1]
    div[..., :, 1:] -= px[..., :, :-1]
    return div


def _pointwise_norm(p: torch.Tensor) -> torch.Tensor:
    """|p_ij| of a field of 2-vectors (..., 2, H, W) -> (..., H, W), with gradient 0 (a
    subgradient) where p_ij = 0. Written out because ``torch.linalg.vector_norm(p, dim=-3)``
    reduces over a strided axis about 50x slower on CPU."""
    squared = p[..., 0, :, :] ** 2 + p[..., 1, :, :] ** 2
    positive = squared > 0
    return torch.where(positive, torch.where(positive, squared, 1.0).sqrt(), 0.0)


def total_variation(u: torch.Tensor) -> torch.Tensor:
    """Isotropic TV(u) = sum_ij |grad u|_ij, per image: (..., H, W) -> (...)."""
    return _pointwise_norm(image_gradient(u)).sum(dim=(-2, -1))


def _project_unit_ball(p: torch.Tensor, radius) -> torch.Tensor:
    """Pointwise projection of (..., 2, H, W) onto {|p_ij| <= radius}."""
    norm = _pointwise_norm(p).unsqueeze(-3)
    return p / torch.clamp(norm / radius, min=1.0)


def total_variation_restoration(operator: LinearOperator, y: torch.Tensor, weight: float,
                                stopping=None, x0=None, nonnegative: bool = False,
                                operator_norm: float | None = None, step_safety: float = 0.9) -> SolverResult:
    """min_x 1/2 ||A x - y||^2 + weight TV(x) by the primal-dual method of Chambolle & Pock
    (2011), for any operator A on images (..., H, W).

    If A provides ``solve_shifted_normal`` ((I + tau A^T A)^{-1}: identity, inpainting,
    circular blur), the data term is handled by its proximal map and K = grad (||K||^2 <= 8);
    otherwise both terms are dualised, K = [A; grad], ||K||^2 <= ||A||^2 + 8. Steps
    tau = sigma = ``step_safety`` / ||K||, theta = 1, so tau sigma ||K||^2 = step_safety^2 < 1
    (convergence needs < 1): the margin absorbs an under-estimated ||A|| (power iteration
    converges from below; ``LinearOperator.norm`` is exact where a closed form is known).
    ``nonnegative`` adds the constraint x >= 0 (only in the dualised form). ``operator_norm``:
    ||A|| if known (else ``operator.norm``). History: the objective per iteration; ``info``:
    tau, sigma and the ||K|| used.
    """
    rule = _rule(stopping)
    y = _as_batch(y, operator)
    weight = check_positive(weight, "weight")
    check_bool(nonnegative, "nonnegative")
    step_safety = check_real(step_safety, "step_safety", 0.0, 1.0, strict_minimum=True, strict_maximum=True)
    if operator_norm is not None:
        operator_norm = check_positive(operator_norm, "operator_norm", allow_zero=True)
    closed_form = hasattr(operator, "solve_shifted_normal") and not nonnegative
    if closed_form:
        try:
            operator.solve_shifted_normal(y, 1.0)
        except NotImplementedError:
            closed_form = False
    x, image = _start(x0, operator, y)
    if image.dim() < 2:
        raise ValueError(f"total variation needs images (..., H, W); A^T y has shape {tuple(image.shape)}")
    x_bar = x
    p = torch.zeros_like(image_gradient(x))
    q = torch.zeros_like(y)
    if closed_form:
        k_norm = math.sqrt(8.0)
        a_ty = image
    else:
        if operator_norm is None:
            operator_norm = operator.norm(input_shape=x.shape[-2:], dtype=y.dtype, device=y.device)
        k_norm = math.sqrt(operator_norm**2 + 8.0)
    tau = sigma = step_safety / k_norm
    history, stopped, k = [], "max_iterations", 0
    for k in range(1, rule.max_iterations + 1):  # noqa: B007 (k is the count returned)
        x_old = x
        p = _project_unit_ball(p + sigma * image_gradient(x_bar), weight)
        if closed_form:
            x = operator.solve_shifted_normal(x + tau * image_divergence(p) + tau * a_ty, tau)
        else:
            q = (q + sigma * (operator.forward(x_bar) - y)) / (1 + sigma)
            x = x + tau * image_divergence(p) - tau * operator.adjoint(q)
            if nonnegative:
                x = x.clamp_min(0)
        x_bar = 2 * x - x_old
        residual = operator.forward(x) - y
        history.append(float(0.5 * (residual**2).sum() + weight * total_variation(x).sum()))
        if not math.isfinite(history[-1]):
            raise NonFiniteResultError(f"TV objective became non-finite at iteration {k} (||K|| = "
                                       f"{k_norm:g}); pass the exact operator_norm or a smaller step_safety")
        if rule.discrepancy_reached(residual):
            stopped = "discrepancy"
            break
        if rule.converged(x, x_old):
            stopped = "tolerance"
            break
    return SolverResult(x, k, stopped, history, {"tau": tau, "sigma": sigma, "K_norm": k_norm})


# ---------------------------------------------------------------------------------------------


def tikhonov(operator: LinearOperator, y: torch.Tensor, weight: float, stopping=None,
             x0=None) -> SolverResult:
    """min_x ||A x - y||^2 + weight ||x||^2 by conjugate gradients on
    (A^T A + weight I) x = A^T y (Hestenes & Stiefel 1952), batched (one CG per item).

    With ``weight = 0`` this is CGLS on the normal equations, an iterative regularisation whose
    natural stopping rule is the discrepancy principle. ``tolerance`` is on the relative
    normal-equation residual ||r_k|| <= tolerance ||A^T y||. History: max residual norm.
    """
    rule = _rule(stopping)
    y = _as_batch(y, operator)
    weight = check_positive(weight, "weight", allow_zero=True)

    def apply(v):
        return operator.normal(v) + weight * v

    def dot(a, b):
        return (a * b).flatten(1).sum(1).reshape(-1, *([1] * (a.dim() - 1)))

    x, rhs = _start(x0, operator, y)
    r = rhs - apply(x)
    d = r
    rr = dot(r, r)
    rhs_norm = torch.linalg.vector_norm(rhs.flatten(1), dim=1).clamp_min(1e-300)
    history, stopped, k = [], "max_iterations", 0
    for k in range(1, rule.max_iterations + 1):  # noqa: B007 (k is the count returned)
        ad = apply(d)
        alpha = rr / dot(d, ad).clamp_min(1e-300)
        x = x + alpha * d
        r = r - alpha * ad
        rr_new = dot(r, r)
        residual = torch.linalg.vector_norm(r.flatten(1), dim=1)
        history.append(float(residual.max()))
        if rule.discrepancy_reached(operator.forward(x) - y):
            stopped = "discrepancy"
            break
        if rule.tolerance is not None and bool((residual <= rule.tolerance * rhs_norm).all()):
            stopped = "tolerance"
            break
        d = r + (rr_new / rr.clamp_min(1e-300)) * d
        rr = rr_new
    check_finite_result(x, "conjugate-gradient solution", "the normal equations are too ill-conditioned "
                        "in this dtype: raise weight or use float64")
    return SolverResult(x, k, stopped, history)


def richardson_lucy(operator: LinearOperator, y: torch.Tensor, stopping=None, x0=None,
                    epsilon: float = 1e-12, callback=None) -> SolverResult:
    """Richardson-Lucy (1972, 1974): x <- x * A^T(y / A x) / A^T 1, the EM algorithm for
    Poisson data with a non-negative operator; stopped early (iteration count, tolerance, or the
    discrepancy principle) since it converges to the noisy maximum-likelihood solution.
    ``callback(k, x_k)`` is called after every iteration."""
    rule = _rule(stopping)
    y = _as_batch(y, operator)
    epsilon = check_positive(epsilon, "epsilon", maximum=1.0)
    if callback is not None:
        check_callable(callback, "callback")
    if bool((y < 0).any()):
        raise ValueError("richardson_lucy needs non-negative data y (photon counts / intensities)")
    normaliser = operator.adjoint(torch.ones_like(y)).clamp_min(epsilon)
    if x0 is None:
        x = torch.full_like(normaliser, float(y.mean()))
    else:
        x, _ = _start(x0, operator, y)
        if bool((x < 0).any()):
            raise ValueError("x0 must be non-negative")
    history, stopped, k = [], "max_iterations", 0
    for k in range(1, rule.max_iterations + 1):
        x_old = x
        x = x * operator.adjoint(y / operator.forward(x).clamp_min(epsilon)) / normaliser
        check_finite_result(x, "Richardson-Lucy iterate", "the operator must be non-negative; raise epsilon")
        if callback is not None:
            callback(k, x)
        residual = operator.forward(x) - y
        history.append(float(torch.linalg.vector_norm(residual)))
        if rule.discrepancy_reached(residual):
            stopped = "discrepancy"
            break
        if rule.converged(x, x_old):
            stopped = "tolerance"
            break
    return SolverResult(x, k, stopped, history)


def wiener_deconvolution(blur: Blur, y: torch.Tensor, noise_to_signal: float) -> torch.Tensor:
    """x = F^-1[ conj(K) Y / (|K|^2 + noise_to_signal) ] (Wiener filter with a flat spectrum
    ratio), the closed-form Tikhonov solution for a circular blur; images (..., H, W)."""
    if not isinstance(blur, Blur):
        raise TypeError("wiener_deconvolution needs a Blur operator")
    check_tensor(y, "y", min_dim=2)
    noise_to_signal = check_positive(noise_to_signal, "noise_to_signal", allow_zero=True)
    k_hat = blur.transfer_function(y.shape[-2:], y.device, y.dtype)
    spectrum = torch.fft.rfft2(y) * k_hat.conj() / (k_hat.abs() ** 2 + noise_to_signal)
    return check_finite_result(torch.fft.irfft2(spectrum, s=y.shape[-2:]), "Wiener deconvolution",
                               "the blur has zeros in its spectrum: use noise_to_signal > 0")


def filtered_back_projection(radon: Radon, sinogram: torch.Tensor, filter: str = "ramp") -> torch.Tensor:
    """Filtered back-projection f ~ (pi / n_angles) R^T (h * p) (Kak & Slaney 1988).

    h is the discrete ramp filter |omega| (spatial-domain Ram-Lak construction, sampled with
    zero padding to avoid wrap-around), optionally windowed: ``"ramp"``, ``"shepp-logan"``
    (sinc), ``"cosine"``, ``"hann"``. ``sinogram``: ``(..., angles, detectors)`` -> images
    ``(..., size, size)``. Exact for the continuous transform over angles in [0, 180).
    """
    if not isinstance(radon, Radon):
        raise TypeError("filtered_back_projection needs a Radon operator")
    check_choice(filter, "filter", ("ramp", "shepp-logan", "cosine", "hann"))
    check_tensor(sinogram, "sinogram", min_dim=2)
    if tuple(sinogram.shape[-2:]) != radon.output_shape:
        raise ValueError(f"sinogram must end with shape {radon.output_shape}, got {tuple(sinogram.shape)}")
    d = sinogram.shape[-1]
    padded = max(64, 2 ** int(math.ceil(math.log2(2 * d))))
    # Ram-Lak kernel in space: h(0) = 1/4, h(n odd) = -1/(pi n)^2, h(n even) = 0.
    n = torch.cat([torch.arange(0, padded // 2 + 1), torch.arange(-(padded // 2) + 1, 0)])
    h = torch.zeros(padded, dtype=torch.float64)
    h[0] = 0.25
    odd = n % 2 == 1
    h[odd] = -1.0 / (math.pi * n[odd].double()) ** 2
    response = torch.fft.rfft(h).real  # ~ |omega| / (2 pi)
    omega = torch.fft.rfftfreq(padded, dtype=torch.float64) * 2 * math.pi
    if filter == "shepp-logan":
        response = response * torch.special.sinc(omega / (2 * math.pi))
    elif filter == "cosine":
        response = response * torch.cos(omega / 2)
    elif filter == "hann":
        response = response * (1 + torch.cos(omega)) / 2
    response = response.to(device=sinogram.device, dtype=sinogram.dtype)
    spectrum = torch.fft.rfft(sinogram, n=padded, dim=-1) * response
    filtered = torch.fft.irfft(spectrum, n=padded, dim=-1)[..., :d]
    return radon.adjoint(filtered) * (math.pi / radon.angles.numel())


def wavelet_denoise(y: torch.Tensor, sigma: float, wavelet: str = "db8", levels: int | None = None,
                    method: str = "BayesShrink") -> torch.Tensor:
    """Wavelet shrinkage (Donoho & Johnstone 1995; BayesShrink soft thresholds) of images
    (..., H, W) with noise level ``sigma``, through scikit-image's ``denoise_wavelet`` (PyWavelets)."""
    import pywt
    from skimage.restoration import denoise_wavelet

    check_tensor(y, "y", min_dim=2)
    sigma = check_positive(sigma, "sigma", allow_zero=True)
    check_choice(wavelet, "wavelet", pywt.wavelist(kind="discrete"))
    check_choice(method, "method", ("BayesShrink", "VisuShrink"))
    if levels is not None:
        max_levels = pywt.dwtn_max_level(y.shape[-2:], wavelet)
        if max_levels < 1:
            raise ValueError(f"images {tuple(y.shape[-2:])} are too small for the {wavelet} wavelet")
        levels = check_int(levels, "levels", minimum=1, maximum=max_levels)
    flat = y.detach().reshape(-1, *y.shape[-2:]).cpu().double().numpy()
    out = [denoise_wavelet(image, sigma=sigma, wavelet=wavelet, mode="soft", wavelet_levels=levels,
                           method=method, rescale_sigma=True) for image in flat]
    return torch.tensor(np.stack(out)).to(device=y.device, dtype=y.dtype).reshape(y.shape)
