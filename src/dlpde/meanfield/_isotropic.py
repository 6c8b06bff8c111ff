"""Mei-Montanari-Nguyen's isotropic Gaussian problem and its radially symmetric mean-field limit.

Data: ``y = +1`` or ``-1`` with probability 1/2 and ``x | y ~ N(0, s_y^2 I_d)``, ``s_{+1} = 1 + Delta``,
``s_{-1} = 1 - Delta``. Network: ``f(x) = (1/n) sum_i a_i sigma(<w_i, x>)`` with the second layer
fixed (``a_i = 1``). Risk ``R = E (y - f(x))^2 = 1 + 2 int V d rho + int int U d rho d rho``.

For a rotation-invariant law ``rho`` of ``w`` the potential ``Psi(w; rho) = V + int U d rho`` depends
on ``r = |w|`` only, so every ``w`` moves radially and the law of ``r`` solves the 1-D nonlocal
conservation law (``_dynamics.py`` time convention)

    d_t rho(r) = 2 d_r (rho d_r Psi(r; rho)),      Psi(r; rho) = V(r) + int U~(r, r') rho(dr'),

with, from Mehler's formula and the moments ``mu_k(d) = E[<u, u'>^k]`` of two independent
uniform unit vectors (``mu_{2m} = prod_{j<m} (2j+1)/(d+2j)``, odd ones zero),

    V(r) = -(c_0(s_+ r) - c_0(s_- r)) / 2,
    U~(r, r') = (1/2) sum_{+-} sum_k mu_k(d) c_k(s_+- r) c_k(s_+- r'),

``c_k(a) = E[sigma(a Z) He_k(Z)] / sqrt(k!)`` (closed forms in ``_activations.py``). This holds for
every finite ``d``; ``dimension=None`` keeps only ``k = 0``, the large-``d`` kernel
``U~ = (1/2) sum_{+-} m_+-(r) m_+-(r')`` of Mei, Montanari & Nguyen. The kernel is separable,
so ``Psi`` needs only the moments ``int c_k(s r) rho(dr)``.

The 1-D solver (``solve_radial_limit``) is a Lagrangian (1-D particle) scheme on the quantiles
of ``rho``: the radii at the Gauss-Hermite nodes ``z_j`` of a latent standard normal variable,
``r_j(0) = r_0(z_j)``, carry the Gauss-Hermite weights and move with ``dr/dt = -2 d_r Psi(r; rho)``,
the moments being Gauss-Hermite sums (spectrally accurate for a smooth quantile map); any
number of weightless tracer radii move in the same field (e.g. a fine quantile grid, or the
initial radii of a particle system for a synchronous coupling). The population risk of the
radial law is the same Gaussian quadrature, ``R = 1 + 2 sum_j omega_j V(r_j) + (1/2) sum_{+-}
sum_k mu_k (sum_j omega_j c_k(s r_j))^2``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch

from dlpde.shared import (
    check_callable,
    check_choice,
    check_finite_result,
    check_int,
    check_positive,
    check_positive_int,
    check_real,
    check_tensor,
    integrate,
    make_generator,
    resolve_device,
    resolve_dtype,
)

from ._activations import GaussianWellActivation
from ._validate import check_integration, check_times

__all__ = [
    "IsotropicGaussianProblem",
    "RadialSolution",
    "solve_radial_limit",
    "gaussian_initial_radius",
    "sphere_moments",
]


def _dtype_and_device(dtype, device) -> tuple[torch.dtype, torch.device]:
    """A float32/float64 dtype and a device (``None``: the CPU)."""
    dtype = check_choice(resolve_dtype(dtype, torch.float64), "dtype", (torch.float32, torch.float64))
    return dtype, resolve_device("cpu" if device is None else device)


def sphere_moments(dimension: int | None, count: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """``mu_k = E[<u, u'>^k]``, ``k < count``, for independent uniform unit vectors of R^dimension.

    ``mu_{2m} = prod_{j<m} (2j+1)/(d+2j)``, odd moments vanish; ``dimension=None`` is the
    ``d -> infinity`` limit ``(1, 0, 0, ...)``.
    """
    if dimension is not None:
        dimension = check_int(dimension, "dimension (or None for d -> infinity)", minimum=2)
    count = check_positive_int(count, "count")
    dtype, device = _dtype_and_device(dtype, device)
    values = [1.0] + [0.0] * (count - 1)
    if dimension is not None:
        value = 1.0
        for k in range(2, count, 2):
            value *= (k - 1) / (dimension + k - 2)
            values[k] = value
    return torch.tensor(values, dtype=dtype, device=device)


class _WeightedPairKernelSum(torch.autograd.Function):
    """``S = sum_{i,j} a_i a_j (A_i A_j - s^4 <w_i, w_j>^2)^{-1/2}``, ``A_i = tau^2 + s^2 |w_i|^2``,
    computed in row blocks (memory O(block n)). The gradient is accumulated in the same pass
    (a gradient flow always needs both) when ``with_gradient`` (grad mode on and an input requiring it):
    ``dS/dw_k = -2 s^2 a_k w_k sum_j a_j K_kj^3 A_j + 2 s^4 a_k sum_j a_j K_kj^3 <w_k, w_j> w_j``,
    ``dS/da_k = 2 sum_j K_kj a_j``."""

    @staticmethod
    def forward(ctx, w, a, s2, tau2, block, with_gradient):
        squared = tau2 + s2 * (w * w).sum(1)
        total = w.new_zeros(())
        grad_w = torch.zeros_like(w) if with_gradient else None
        grad_a = torch.zeros_like(a) if with_gradient else None
        for start in range(0, w.shape[0], block):
            rows = slice(start, min(start + block, w.shape[0]))
            gram = w[rows] @ w.T
            kernel = torch.rsqrt(squared[rows, None] * squared[None, :] - (s2 * s2) * gram * gram)
            kernel_a = kernel @ a
            total = total + a[rows] @ kernel_a
            if with_gradient:
                grad_a[rows] = 2.0 * kernel_a
                cubed = kernel * kernel * kernel * a[None, :]
                grad_w[rows] = a[rows, None] * (
                    -2.0 * s2 * w[rows] * (cubed @ squared)[:, None] + 2.0 * s2 * s2 * (cubed * gram) @ w
                )
        if with_gradient:
            ctx.save_for_backward(grad_w, grad_a)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_w, grad_a = ctx.saved_tensors
        return grad_output * grad_w, grad_output * grad_a, None, None, None, None


class IsotropicGaussianProblem:
    """The isotropic Gaussian classification problem of Mei, Montanari & Nguyen (2018).

    ``y = +-1`` with probability 1/2, ``x | y ~ N(0, (1 + y Delta)^2 I_d)``; the model is a
    ``TwoLayerMeanField`` without biases (``f = (1/n) sum a_i sigma(<w_i, x>)``, second layer fixed
    in the paper's setting). See the module docstring for the radial reduction.
    """

    def __init__(self, dimension: int, delta: float, activation):
        dimension = check_int(dimension, "dimension", minimum=2)
        delta = check_real(delta, "delta", 0.0, 1.0, strict_minimum=True, strict_maximum=True)
        if not hasattr(activation, "hermite_coefficients"):
            raise TypeError(
                "activation must provide closed-form Gaussian moments: a PiecewiseLinearActivation "
                f"or a GaussianWellActivation, got {activation!r}"
            )
        self.dimension, self.delta, self.activation = dimension, float(delta), activation
        self.scales = (1.0 + self.delta, 1.0 - self.delta)  # y = +1, y = -1

    def __repr__(self):
        return (
            f"IsotropicGaussianProblem(dimension={self.dimension}, delta={self.delta}, "
            f"activation={self.activation!r})"
        )

    def sample(self, batch_size: int, generator, dtype=torch.float32, device=None):
        """``(x, y)``: ``x`` of shape ``(batch_size, d)``, ``y`` of shape ``(batch_size,)``; drawn on the
        generator's device (a CPU generator gives the same samples on every device)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        generator = make_generator(generator)
        on = generator.device
        y = torch.where(
            torch.rand(batch_size, generator=generator, device=on, dtype=torch.float64) < 0.5, 1.0, -1.0
        )
        x = torch.randn(batch_size, self.dimension, generator=generator, device=on, dtype=torch.float64)
        x = x * (1.0 + self.delta * y)[:, None]
        device = on if device is None else device
        return x.to(dtype=dtype, device=device), y.to(dtype=dtype, device=device)

    def _check_model(self, model):
        if getattr(model, "bias", True) or getattr(model, "d", None) != self.dimension:
            raise ValueError(f"the model must be a TwoLayerMeanField with d={self.dimension} and bias=False")

    def population_risk(self, model, block: int | None = None) -> torch.Tensor:
        """Exact ``E (y - f(x))^2`` of the finite network ``model`` (differentiable in its particles).

        Closed form for ``GaussianWellActivation`` ``sigma = o - m exp(-t^2 / (2 tau^2))`` (offset
        ``o``, amplitude ``m``, width ``tau``): with ``A_i = tau^2 + s^2 |w_i|^2``, ``g_i = tau / sqrt(A_i)``,
        per class ``E_s f = o abar - m mean(a g)`` and ``E_s f^2 = o^2 abar^2 - 2 m o abar mean(a g) +
        m^2 tau^2 n^-2 sum_{ij} a_i a_j (A_i A_j - s^4 <w_i, w_j>^2)^{-1/2}``; the pair sum
        costs O(n^2 d), vectorised over row blocks of ``block`` particles (default 128 on the CPU,
        where blocks fit in cache, and 4096 on a GPU).
        """
        if not isinstance(self.activation, GaussianWellActivation):
            raise TypeError(
                "the exact population risk needs a GaussianWellActivation; estimate other "
                "activations with monte_carlo_risk"
            )
        self._check_model(model)
        act = self.activation
        a = model.particles[:, 0]
        w = model.particles[:, 1 : 1 + self.dimension]
        n = a.shape[0]
        tau2 = act.width**2
        with_gradient = torch.is_grad_enabled() and model.particles.requires_grad
        mean_f, mean_f2 = [], []
        for s in self.scales:
            g = act.width * torch.rsqrt(tau2 + s * s * (w * w).sum(1))
            a_mean, ag_mean = a.mean(), (a * g).mean()
            rows = block or (4096 if w.device.type == "cuda" else 128)
            pairs = _WeightedPairKernelSum.apply(w, a, s * s, tau2, rows, with_gradient)
            mean_f.append(act.offset * a_mean - act.amplitude * ag_mean)
            mean_f2.append(
                (act.offset * a_mean) ** 2
                - 2 * act.amplitude * act.offset * a_mean * ag_mean
                + act.amplitude**2 * tau2 * pairs / n**2
            )
        return 1.0 - (mean_f[0] - mean_f[1]) + 0.5 * (mean_f2[0] + mean_f2[1])

    def monte_carlo_risk(self, model, samples: int, generator, batch: int = 4096) -> tuple[float, float]:
        """``(estimate, standard error)`` of ``E (y - f(x))^2`` from ``samples`` fresh samples."""
        self._check_model(model)
        generator = make_generator(generator)
        losses = []
        with torch.no_grad():
            for start in range(0, samples, batch):
                x, y = self.sample(
                    min(batch, samples - start), generator, model.particles.dtype, model.particles.device
                )
                losses.append(((y - model(x)) ** 2).double().cpu())
        losses = torch.cat(losses)
        return float(losses.mean()), float(losses.std() / math.sqrt(losses.numel()))

    # -- radial reduction --------------------------------------------------------------------
    def radial_terms(self, radii: torch.Tensor, count: int):
        """Per class ``(s, c, dc)``: Hermite coefficients of ``sigma(s r .)`` and their ``r``-derivatives."""
        scales = torch.tensor(self.scales, dtype=radii.dtype, device=radii.device)
        c, dc = self.activation.hermite_coefficients(scales[:, None] * radii[None], count)  # both classes
        return [(s, c[i], s * dc[i]) for i, s in enumerate(self.scales)]

    def radial_risk(
        self,
        radii: torch.Tensor,
        weights: torch.Tensor,
        count: int = 64,
        dimension: int | None | str = "problem",
    ) -> torch.Tensor:
        """Risk of the rotation-invariant law ``sum_j weights_j (law of r_j u)``, ``u`` uniform."""
        mu = sphere_moments(
            self.dimension if dimension == "problem" else dimension, count, radii.dtype, radii.device
        )
        (_, c_plus, _), (_, c_minus, _) = self.radial_terms(radii, count)
        m_plus, m_minus = weights @ c_plus, weights @ c_minus
        return 1.0 - (m_plus[0] - m_minus[0]) + 0.5 * (mu * (m_plus**2 + m_minus**2)).sum()

    def radial_velocity(
        self,
        radii: torch.Tensor,
        node_weights: torch.Tensor,
        count: int = 64,
        dimension: int | None | str = "problem",
    ) -> torch.Tensor:
        """``dr/dt = -2 d_r Psi(r; rho)`` at every entry of ``radii``, where the law ``rho`` is carried by
        the first ``K = len(node_weights)`` entries: ``rho = sum_j node_weights_j delta_{radii_j}``."""
        mu = sphere_moments(
            self.dimension if dimension == "problem" else dimension, count, radii.dtype, radii.device
        )
        k = node_weights.shape[0]
        psi_derivative = torch.zeros_like(radii)
        for sign, (_, c, dc) in zip((1.0, -1.0), self.radial_terms(radii, count)):
            moments = node_weights @ c[:k]
            psi_derivative = psi_derivative - 0.5 * sign * dc[:, 0] + 0.5 * dc @ (mu * moments)
        return -2.0 * psi_derivative


def gaussian_initial_radius(dimension: int, scale: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The quantile map ``z -> r`` of ``|w|`` for ``w ~ N(0, scale^2 / d I_d)``: ``r = scale sqrt(X / d)``,
    ``X ~ chi^2_d`` at the quantile ``Phi(z)`` (computed from the tail on each side, so that the
    extreme Gauss-Hermite nodes stay accurate)."""
    dimension = check_positive_int(dimension, "dimension")
    scale = check_positive(scale, "scale")

    def radius(z: torch.Tensor) -> torch.Tensor:
        import numpy as np
        from scipy import stats

        values = z.detach().cpu().double().numpy()
        lower = stats.chi2.ppf(stats.norm.cdf(np.minimum(values, 0.0)), dimension)
        upper = stats.chi2.isf(stats.norm.sf(np.maximum(values, 0.0)), dimension)
        chi2 = np.where(values < 0, lower, upper)
        return torch.as_tensor(scale * np.sqrt(chi2 / dimension), dtype=z.dtype, device=z.device)

    return radius


@dataclasses.dataclass
class RadialSolution:
    """Output of ``solve_radial_limit``: ``times (T,)``, ``node_radii (T, K)`` with ``node_weights (K,)``
    (the Gauss-Hermite representation of the radial law), ``tracer_radii (T, n_tracers)`` or
    ``None``, ``risk (T,)`` the population risk of the radial law."""

    times: torch.Tensor
    node_radii: torch.Tensor
    node_weights: torch.Tensor
    tracer_radii: torch.Tensor | None
    risk: torch.Tensor


def solve_radial_limit(
    problem: IsotropicGaussianProblem,
    initial_radius: Callable[[torch.Tensor], torch.Tensor],
    time: float,
    steps: int,
    nodes: int = 64,
    tracers: torch.Tensor | None = None,
    save_at: Sequence[float] | None = None,
    method: str = "rk4",
    hermite_terms: int = 64,
    dimension: int | None | str = "problem",
    dtype=torch.float64,
    device=None,
) -> RadialSolution:
    """Solve the radial mean-field PDE of ``problem`` (module docstring) by the Lagrangian scheme.

    Args:
        initial_radius: the monotone map ``z -> r`` pushing a standard normal to the initial law
            of ``|w|`` (e.g. ``gaussian_initial_radius(d, scale)``).
        time, steps, method: integration of the node ODE by ``dlpde.shared.integrate``.
        nodes: Gauss-Hermite nodes carrying the law; tracers: extra radii ``(n,)`` moved passively.
        save_at: times to save (default ``[0, time]``). hermite_terms: Mehler terms kept.
        dimension: the ``d`` of the kernel (default the problem's; ``None`` for ``d -> infinity``).
        dtype, device: of the computation (default float64 on the tracers' device, else the CPU).
    """
    import numpy as np
    from numpy.polynomial.hermite_e import hermegauss

    if not isinstance(problem, IsotropicGaussianProblem):
        raise TypeError(f"problem must be an IsotropicGaussianProblem, got {type(problem).__name__}")
    check_callable(initial_radius, "initial_radius")
    time = check_positive(time, "time", allow_zero=True)
    method, steps, _, _ = check_integration(method, steps, 1e-6, 1e-9)
    nodes = check_int(nodes, "nodes", 2, 200)
    hermite_terms = check_positive_int(hermite_terms, "hermite_terms")
    if dimension is not None and not (isinstance(dimension, str) and dimension == "problem"):
        dimension = check_int(dimension, "dimension ('problem', or None for d -> infinity)", minimum=2)
    if tracers is not None:
        if not isinstance(tracers, torch.Tensor):
            try:
                tracers = torch.as_tensor(np.asarray(tracers, dtype=np.float64))
            except (TypeError, ValueError) as error:
                raise TypeError(f"tracers must be a tensor of radii, got {type(tracers).__name__}") from error
        check_tensor(tracers, "tracers")
        if bool((tracers < 0).any()):
            raise ValueError("tracers must be non-negative radii")
    if device is None and isinstance(tracers, torch.Tensor):
        device = tracers.device
    dtype, device = _dtype_and_device(dtype, device)
    save_at = [0.0, time] if save_at is None else check_times(save_at, "save_at", 0.0, time)
    z, w = hermegauss(nodes)
    z_nodes = torch.as_tensor(z, dtype=dtype)
    weights = torch.as_tensor(w / w.sum(), dtype=dtype, device=device)
    start = initial_radius(z_nodes)
    if not isinstance(start, torch.Tensor):
        raise TypeError(f"initial_radius must return a tensor, got {type(start).__name__}")
    start = start.to(dtype=dtype, device=device)
    if start.shape != (nodes,) or not bool(torch.isfinite(start).all()) or bool((start < 0).any()):
        raise ValueError("initial_radius must map the nodes to finite non-negative radii of the same shape")
    tracer_count = 0
    if tracers is not None:
        tracers = tracers.to(dtype=dtype, device=device).reshape(-1)
        tracer_count = tracers.numel()
        start = torch.cat([start, tracers])

    def velocity(t, radii):
        return problem.radial_velocity(radii, weights, hermite_terms, dimension)

    path = integrate(velocity, start, 0.0, time, method=method, steps=steps, save_at=save_at)
    hint = "use more steps (or method='dopri5') or a shorter time"
    node_radii = check_finite_result(path[:, :nodes], "radial limit", hint=hint)
    risk = torch.stack([problem.radial_risk(r, weights, hermite_terms, dimension) for r in node_radii])
    check_finite_result(path, "radial limit (tracers)", hint=hint)
    check_finite_result(risk, "radial limit risk", hint=hint)
    return RadialSolution(
        times=torch.tensor(np.asarray(save_at), dtype=dtype, device=device),
        node_radii=node_radii,
        node_weights=weights,
        tracer_radii=path[:, nodes:] if tracer_count else None,
        risk=risk,
    )
