"""Stabilisation of a Burgers-type PDE: the ``n``-state problem of Nakamura-Zimmerer, Gong & Kang.

The PDE (Nakamura-Zimmerer, Gong & Kang, SISC 2021, section 6.2; their code Tenavi/HJB_NN,
problem ``burgers``) on ``xi in (-1, 1)`` with ``X(-1) = X(1) = 0``:

    X_t = X X_xi + nu X_xi_xi + alpha X exp(beta X) + I_omega(xi) u(t),

an unstable reaction term (``alpha = 1.5``, ``beta = -0.1``), viscosity ``nu = 0.2`` and one
actuator acting on ``omega = (-0.5, -0.2)``. Chebyshev collocation on the ``n + 2`` points
``xi_j = cos(pi j / (n + 1))`` (Trefethen, *Spectral Methods in MATLAB*, p. 54), keeping the ``n``
interior points (the zero boundary values), gives the ``n``-state system

    x' = x * (D x) + nu D2 x + alpha x * exp(beta x) + b u,    b_j = 1 if xi_j in omega else 0,

with ``D``, ``D2`` the interior blocks of the Chebyshev differentiation matrix and of its square.
The cost, with the Clenshaw-Curtis weights ``w`` (p. 128) as the quadrature of ``int X^2 dxi``:

    J = int_0^T [ x^T W x / 2 + W1 u^2 / 2 ] dt + W2 x(T)^T W x(T) / 2,    W = diag(w),

``W1 = 0.1``, ``W2 = 1``, ``T = 8``; initial states uniform in ``[-2, 2]^n``. The linearisation
at 0 is ``A = nu D2 + alpha I`` (one unstable mode at ``n = 10``) and has decay rates down to
about -144: a stiff problem, the reason the paper integrates its BVPs with an implicit method.
"""

from __future__ import annotations

import math

import torch

from dlpde.shared.checks import check_positive, check_positive_int, check_real

from ._control import ControlAffineProblem, _ControlHamiltonian
from ._hamiltonians import _check_pair

__all__ = ["chebyshev_collocation", "burgers_problem"]


def chebyshev_collocation(points: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chebyshev points, differentiation matrix and Clenshaw-Curtis weights on ``[-1, 1]``.

    With ``N = points - 1``: ``xi_j = cos(pi j / N)``, ``j = 0..N`` (shape ``(N + 1,)``, from 1 down
    to -1); ``D`` ``(N + 1, N + 1)`` with ``(D f)(xi_j) = p'(xi_j)`` for the interpolating
    polynomial ``p`` of degree ``N`` (exact for polynomials of degree <= N); ``w`` ``(N + 1,)`` with
    ``sum_j w_j f(xi_j) = int_{-1}^{1} f`` for polynomials of degree <= N (Trefethen, *Spectral
    Methods in MATLAB*, programs ``cheb`` and ``clencurt``). All float64.
    """
    points = check_positive_int(points, "points", maximum=4096)
    if points < 3:
        raise ValueError(f"points must be an integer >= 3, got {points}")
    n = points - 1
    theta = math.pi * torch.arange(n + 1, dtype=torch.float64) / n
    xi = torch.cos(theta)
    c = torch.ones(n + 1, dtype=torch.float64)
    c[0] = c[-1] = 2.0
    c[1::2] *= -1.0
    difference = xi[:, None] - xi[None, :] + torch.eye(n + 1, dtype=torch.float64)
    matrix = (c[:, None] / c[None, :]) / difference
    matrix = matrix - torch.diag(matrix.sum(1))
    weights = torch.empty(n + 1, dtype=torch.float64)
    inner = torch.ones(n - 1, dtype=torch.float64)
    angles = theta[1:-1]
    for k in range(2, n, 2):
        inner -= 2.0 * torch.cos(k * angles) / (k * k - 1)
    if n % 2 == 0:
        weights[0] = 1.0 / (n * n - 1)
        inner -= torch.cos(n * angles) / (n * n - 1)
    else:
        weights[0] = 1.0 / n**2
    weights[-1] = weights[0]
    weights[1:-1] = 2.0 * inner / n
    return xi, matrix, weights


class _BurgersHamiltonian(_ControlHamiltonian):
    """``H(x, p) = -p . f(x) - x^T W x / 2 + (b . p)^2 / (2 W1)`` with closed-form derivatives:
    ``f_x = diag(D x) + diag(x) D + nu D2 + diag(g'(x))``, ``g(x) = alpha x exp(beta x)``;
    ``H_x = -f_x^T p - W x``, ``H_xx = -(diag(p) D + D^T diag(p) + diag(p g''(x))) - W``,
    ``H_xp = -f_x^T``, ``H_pp = b b^T / W1`` (the boundary-value solver's Jacobians, without
    autograd)."""

    def _parts(self, x):
        problem = self.problem
        matrix = problem.differentiation.to(x)
        exponential = torch.exp(problem.beta * x)
        slope = problem.alpha * exponential * (1 + problem.beta * x)  # g'(x)
        return matrix, exponential, slope

    def grad_x(self, x, p):
        _check_pair(x, p)
        problem = self.problem
        matrix, _, slope = self._parts(x)
        adjoint = (
            p * (x @ matrix.T)
            + (x * p) @ matrix
            + problem.viscosity * (p @ problem.second_differentiation.to(x))
            + p * slope
        )
        return -adjoint - problem.quadrature_weights.to(x) * x

    def hessian(self, x, p):
        _check_pair(x, p)
        problem = self.problem
        matrix, exponential, slope = self._parts(x)
        curvature = problem.alpha * problem.beta * exponential * (2 + problem.beta * x)  # g''(x)
        jacobian = (  # f_x, (B, d, d)
            torch.diag_embed(x @ matrix.T + slope)
            + x[:, :, None] * matrix
            + problem.viscosity * problem.second_differentiation.to(x)
        )
        h_xx = -(
            p[:, :, None] * matrix
            + matrix.T * p[:, None, :]
            + torch.diag_embed(p * curvature + problem.quadrature_weights.to(x))
        )
        b = problem.actuator_indicator.to(x)
        h_pp = (b[:, None] * b[None, :] / problem.control_weight_value).expand_as(h_xx)
        top = torch.cat([h_xx, -jacobian.transpose(1, 2)], -1)
        bottom = torch.cat([-jacobian, h_pp], -1)
        return torch.cat([top, bottom], 1)


class _BurgersProblem(ControlAffineProblem):
    """``ControlAffineProblem`` whose Hamiltonian has closed-form derivatives."""

    def hamiltonian(self):
        return _BurgersHamiltonian(self)


def burgers_problem(
    n: int = 10,
    horizon: float = 8.0,
    *,
    viscosity: float = 0.2,
    alpha: float = 1.5,
    beta: float = -0.1,
    actuator: tuple[float, float] = (-0.5, -0.2),
    control_weight: float = 0.1,
    terminal_weight: float = 1.0,
    radius: float = 2.0,
) -> ControlAffineProblem:
    """The Burgers-type stabilisation problem of Nakamura-Zimmerer, Gong & Kang (SISC 2021).

    ``x' = x * (D x) + nu D2 x + alpha x exp(beta x) + b u`` on the ``n`` interior Chebyshev
    points, cost ``int [x^T W x + W1 u^2] / 2 dt + W2 x(T)^T W x(T) / 2`` (see the module
    docstring; defaults are the paper's: ``n = 10``, ``T = 8``, ``nu = 0.2``, ``alpha = 1.5``,
    ``beta = -0.1``, actuator on ``(-0.5, -0.2)``, ``W1 = 0.1``, ``W2 = 1``, initial states in
    ``[-radius, radius]^n`` with ``radius = 2``). Returns a ``ControlAffineProblem`` with
    ``d = n``, ``m = 1``; its attributes ``nodes`` (``xi``, ``(n,)``), ``differentiation``
    (``D``), ``second_differentiation`` (``D2``), ``quadrature_weights`` (``w``) and
    ``actuator_indicator`` (``b``) hold the discretisation.
    """
    n = check_positive_int(n, "n", maximum=256)
    if n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n}")
    horizon = check_positive(horizon, "horizon")
    viscosity = check_positive(viscosity, "viscosity")
    alpha = check_real(alpha, "alpha")
    beta = check_real(beta, "beta")
    if not isinstance(actuator, (tuple, list)) or len(actuator) != 2:
        raise TypeError(f"actuator must be a pair (left, right) of reals, got {actuator!r}")
    left = check_real(actuator[0], "actuator left end", -1.0, 1.0)
    right = check_real(actuator[1], "actuator right end", -1.0, 1.0)
    if not left < right:
        raise ValueError(f"actuator must satisfy left < right, got {actuator!r}")
    control_weight = check_positive(control_weight, "control_weight")
    terminal_weight = check_positive(terminal_weight, "terminal_weight", allow_zero=True)
    radius = check_positive(radius, "radius")

    xi, full, weights = chebyshev_collocation(n + 2)
    first = full[1:-1, 1:-1].clone()
    second = (full @ full)[1:-1, 1:-1].clone()
    xi, weights = xi[1:-1].clone(), weights[1:-1].clone()
    indicator = ((xi > left) & (xi < right)).to(torch.float64)
    if not bool(indicator.any()):
        raise ValueError(f"the actuator interval {actuator!r} contains no collocation point at n = {n}")

    def drift(x):
        matrix, square = first.to(x), second.to(x)
        return x * (x @ matrix.T) + viscosity * (x @ square.T) + alpha * x * torch.exp(beta * x)

    def state_cost(x):
        return 0.5 * (x.square() * weights.to(x)).sum(-1)

    def terminal_cost(x):
        return 0.5 * terminal_weight * (x.square() * weights.to(x)).sum(-1)

    problem = _BurgersProblem(
        drift,
        indicator[:, None],
        state_cost,
        torch.tensor([[control_weight]], dtype=torch.float64),
        terminal_cost,
        dim=n,
        control_dim=1,
        horizon=horizon,
        radius=radius,
        name=f"burgers_{n}",
    )
    problem.nodes, problem.differentiation, problem.second_differentiation = xi, first, second
    problem.quadrature_weights, problem.actuator_indicator = weights, indicator
    problem.viscosity, problem.alpha, problem.beta = viscosity, alpha, beta
    problem.control_weight_value, problem.terminal_weight = control_weight, terminal_weight
    return problem
