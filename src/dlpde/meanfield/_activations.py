"""Activations of the mean-field models, with their Gaussian (Hermite) moments where closed.

A model takes ``activation`` as a name (``"relu"``, ``"tanh"``, ``"linear"``, ``"sigmoid"``,
``"erf"``), a callable acting elementwise on tensors, or one of the two classes below. The
classes also give the normalised Hermite coefficients of ``t -> sigma(a t)``,

    c_k(a) = E[sigma(a Z) He_k(Z)] / sqrt(k!),    Z ~ N(0, 1),  a >= 0,

and their derivatives in ``a``, in closed form. Mehler's formula turns them into the kernel of
two correlated units, ``E[sigma(a Z_1) sigma(b Z_2)] = sum_k corr^k c_k(a) c_k(b)``, which is
what the radial reduction of the isotropic Gaussian problem needs (``_isotropic.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from dlpde.shared import check_positive, check_positive_int, check_real, check_tensor

__all__ = ["PiecewiseLinearActivation", "GaussianWellActivation", "resolve_activation"]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _normal_pdf(u: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * u * u) / _SQRT_2PI


def _normal_cdf(u: torch.Tensor) -> torch.Tensor:
    return torch.special.ndtr(u)


class PiecewiseLinearActivation:
    """A continuous piecewise-linear activation through the points ``(knots[i], values[i])``.

    Beyond the first and last knot it continues with ``left_slope`` and ``right_slope``. It is
    stored as ``sigma(t) = values[0] + left_slope (t - knots[0]) + sum_i jump_i relu(t - knots[i])``
    with ``jump_i`` the change of slope at ``knots[i]``. ``ramp(...)`` gives the clipped linear
    unit of Mei, Montanari & Nguyen's isotropic Gaussian example; ``relu()`` the ReLU.
    """

    def __init__(
        self,
        knots: Sequence[float],
        values: Sequence[float],
        left_slope: float = 0.0,
        right_slope: float = 0.0,
    ):
        knots, values = _real_sequence(knots, "knots"), _real_sequence(values, "values")
        left_slope, right_slope = check_real(left_slope, "left_slope"), check_real(right_slope, "right_slope")
        if len(knots) != len(values):
            raise ValueError(
                f"knots and values must have equal length, got {len(knots)} knots and {len(values)} values"
            )
        if any(b <= a for a, b in zip(knots, knots[1:])):
            raise ValueError(f"knots must be strictly increasing, got {knots}")
        slopes = [float(left_slope)]
        slopes += [(v1 - v0) / (k1 - k0) for k0, k1, v0, v1 in zip(knots, knots[1:], values, values[1:])]
        slopes.append(float(right_slope))
        if not all(math.isfinite(v) for v in slopes):
            raise ValueError(f"the slopes between the knots overflow, got {slopes}")
        self.knots = tuple(knots)
        self.values = tuple(values)
        self.left_slope = float(left_slope)
        self.right_slope = float(right_slope)
        self.jumps = tuple(b - a for a, b in zip(slopes, slopes[1:]))

    @classmethod
    def ramp(cls, low_knot: float, high_knot: float, low_value: float, high_value: float):
        """``low_value`` below ``low_knot``, ``high_value`` above ``high_knot``, linear between."""
        return cls((low_knot, high_knot), (low_value, high_value))

    @classmethod
    def relu(cls):
        return cls((0.0, 1.0), (0.0, 1.0), left_slope=0.0, right_slope=1.0)

    def __repr__(self):
        return (
            f"PiecewiseLinearActivation(knots={self.knots}, values={self.values}, "
            f"left_slope={self.left_slope}, right_slope={self.right_slope})"
        )

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        out = self.values[0] + self.left_slope * (t - self.knots[0])
        for knot, jump in zip(self.knots, self.jumps):
            if jump != 0.0:
                out = out + jump * torch.relu(t - knot)
        return out

    def hermite_coefficients(self, scale: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(c, dc/da)`` of shape ``(*scale.shape, count)`` at ``a = scale >= 0``.

        Closed forms (``u = tau / a`` for a knot ``tau``, phi and Phi the normal density and
        distribution): ``E relu(aZ - tau) = a (phi(u) - u Phi(-u))``,
        ``E[relu(aZ - tau) Z] = a Phi(-u)`` and, by Stein's lemma, for ``k >= 2``
        ``E[relu(aZ - tau) He_k(Z)] = a He_{k-2}(u) phi(u)``.
        """
        _check_count(count)
        a = scale.clamp_min(1e-300)
        knots = torch.tensor(self.knots, dtype=a.dtype, device=a.device)
        jumps = torch.tensor(self.jumps, dtype=a.dtype, device=a.device)
        u = knots / a[..., None]
        far = u.abs() > 40.0  # phi(u) and u^k phi(u) underflow to zero
        u_near = torch.where(far, torch.zeros_like(u), u)
        pdf = torch.where(far, torch.zeros_like(u), _normal_pdf(u_near))
        tail = _normal_cdf(-u)
        weighted = jumps * a[..., None]
        constant = self.values[0] - self.left_slope * self.knots[0]
        coefficients = [
            constant
            + (
                weighted
                * (
                    pdf
                    - torch.where(far, torch.zeros_like(u), u) * tail
                    + torch.where(far & (u < 0), -u, torch.zeros_like(u))
                )
            ).sum(-1)
        ]
        derivatives = [(jumps * pdf).sum(-1)]
        if count > 1:
            coefficients.append(self.left_slope * a + (weighted * tail).sum(-1))
            derivatives.append(self.left_slope + (jumps * (tail + u_near * pdf)).sum(-1))
        previous, current = torch.zeros_like(u), torch.ones_like(u)  # He_{j-1}/sqrt((j-1)!), He_j/sqrt(j!)
        for k in range(2, count):
            j = k - 2
            norm = math.sqrt(k * (k - 1))
            coefficients.append((weighted * current * pdf).sum(-1) / norm)
            # d/da [a q(u)] = q - u q'(u), q = He_j(u) phi(u) (normalised), He_j' = sqrt(j) He_{j-1}
            derivatives.append(
                (jumps * pdf * (current - u_near * math.sqrt(j) * previous + u_near * u_near * current)).sum(
                    -1
                )
                / norm
            )
            previous, current = current, (u_near * current - math.sqrt(j) * previous) / math.sqrt(j + 1)
        return torch.stack(coefficients, -1), torch.stack(derivatives, -1)


class GaussianWellActivation:
    """``sigma(t) = offset - amplitude exp(-t^2 / (2 width^2))``: even, bounded, smooth.

    Its Gaussian moments are elementary, including the two-unit kernel
    ``E[sigma(aZ_1) sigma(bZ_2)] = offset^2 - offset amplitude (g(a) + g(b)) +
    amplitude^2 width^2 / sqrt((width^2 + a^2)(width^2 + b^2) - a^2 b^2 corr^2)``,
    ``g(a) = width / sqrt(width^2 + a^2)``, so the population risk of a finite network on the
    isotropic Gaussian problem is exact (``IsotropicGaussianProblem.population_risk``).
    """

    def __init__(self, amplitude: float = 3.0, offset: float = 1.5, width: float = 1.0):
        amplitude, offset = check_real(amplitude, "amplitude"), check_real(offset, "offset")
        width = check_positive(width, "width")
        self.amplitude, self.offset, self.width = float(amplitude), float(offset), float(width)

    def __repr__(self):
        return f"GaussianWellActivation(amplitude={self.amplitude}, offset={self.offset}, width={self.width})"

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return self.offset - self.amplitude * torch.exp(-0.5 * (t / self.width) ** 2)

    def hermite_coefficients(self, scale: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(c, dc/da)`` of shape ``(*scale.shape, count)``; odd coefficients vanish and
        ``c_{2m}(a) = -amplitude g(a) (-e(a))^m sqrt(binom(2m, m)) / 2^m`` (plus ``offset`` at
        ``m = 0``), with ``g = width / sqrt(width^2 + a^2)`` and ``e = a^2 / (width^2 + a^2)``
        (from ``E[exp(-l Z^2/2) He_{2m}(Z)] = (1+l)^{-1/2} (-l/(1+l))^m (2m-1)!!``)."""
        _check_count(count)
        a = scale
        w2 = self.width**2
        g = self.width / torch.sqrt(w2 + a * a)
        e = a * a / (w2 + a * a)
        dg = -g * a / (w2 + a * a)
        de = 2.0 * a * w2 / (w2 + a * a) ** 2
        k = torch.arange(count, device=a.device)
        m = (k // 2).to(a.dtype)
        log_norm = 0.5 * (torch.lgamma(2 * m + 1) - 2 * torch.lgamma(m + 1)) - m * math.log(2.0)
        constant = torch.where(k % 2 == 0, torch.exp(log_norm) * (-1.0) ** m, torch.zeros_like(m))
        power = e[..., None] ** m
        power_derivative = torch.where(m > 0, m * e[..., None] ** (m - 1).clamp_min(0), torch.zeros_like(m))
        c = -self.amplitude * constant * g[..., None] * power
        dc = (
            -self.amplitude
            * constant
            * (dg[..., None] * power + g[..., None] * power_derivative * de[..., None])
        )
        c[..., 0] = c[..., 0] + self.offset
        return c, dc


_NUMBER_DTYPES = (torch.float32, torch.float64, torch.int32, torch.int64)


def _real_sequence(value, name: str) -> list[float]:
    """A non-empty sequence (list, tuple, 1-D array or tensor) of finite real numbers, as floats."""
    if isinstance(value, np.ndarray):
        value = value.tolist() if value.ndim == 1 else value
    if isinstance(value, torch.Tensor):
        return [float(v) for v in check_tensor(value, name, dim=1, dtype=_NUMBER_DTYPES).tolist()]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of real numbers, got {type(value).__name__}")
    if len(value) == 0:
        raise ValueError(f"{name} must not be empty")
    return [check_real(v, f"{name}[{i}]") for i, v in enumerate(value)]


def _check_count(count):
    check_positive_int(count, "count")


def _erf_unit(t):
    return torch.erf(t / math.sqrt(2.0))


def _identity(t):
    return t


_NAMED: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "erf": _erf_unit,
    "linear": _identity,
}


def resolve_activation(activation) -> Callable[[torch.Tensor], torch.Tensor]:
    """A name in ``relu, tanh, sigmoid, erf (= erf(t/sqrt 2)), linear``, or a callable."""
    if isinstance(activation, str):
        if activation not in _NAMED:
            raise ValueError(f"activation must be one of {sorted(_NAMED)} or a callable, got {activation!r}")
        return _NAMED[activation]
    if callable(activation):
        return activation
    raise TypeError(f"activation must be a name or a callable, got {type(activation).__name__}")
