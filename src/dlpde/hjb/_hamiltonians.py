"""Hamiltonians ``H(x, p)`` of ``u_t + H(x, grad u) = 0`` with their derivatives and Lagrangians.

Every Hamiltonian maps ``x, p`` of shape ``(B, d)`` to ``(B,)`` and provides

- ``value(x, p)`` (also ``__call__``), ``grad_p(x, p)`` and ``grad_x(x, p)`` (shape ``(B, d)``):
  closed forms where known, reverse-mode autograd (``dlpde.shared.autodiff.gradient``) otherwise;
- ``hessian(x, p)``: the ``(B, 2d, 2d)`` Hessian ``[[H_xx, H_xp], [H_px, H_pp]]`` of ``H`` in
  ``y = (x, p)``, used by the Pontryagin boundary-value solver (``torch.func`` by default);
- ``convex`` (in ``p``), ``state_dependent`` (whether ``H`` depends on ``x``), and, where known,
  ``lagrangian(x, q) = sup_p { p.q - H(x, p) }`` (the Legendre transform ``L = H*``).
  ``lagrangian_is_indicator`` marks Lagrangians that are 0 on a convex set of velocities and
  ``+inf`` outside it; ``project_velocity(q)`` is the Euclidean projection onto that set.

References: Evans, *Partial Differential Equations*, ch. 3 and 10 (characteristics, Hopf-Lax).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import func as tfunc

from dlpde.shared.autodiff import gradient
from dlpde.shared.checks import (
    check_bool,
    check_callable,
    check_choice,
    check_positive,
    check_positive_int,
    check_tensor,
)

__all__ = ["Hamiltonian", "QuadraticHamiltonian", "NormHamiltonian", "LQRHamiltonian"]


def _check_pair(x: torch.Tensor, p: torch.Tensor) -> None:
    """``x`` and ``p``: float32/float64 tensors of one shape ``(batch, dim)`` (NaN allowed: this runs
    at every integrator stage, and a non-finite input gives a non-finite value, not a wrong one)."""
    check_tensor(x, "x", dim=2, finite=False, nonempty=False)
    check_tensor(p, "p", dim=2, finite=False, nonempty=False)
    if x.shape != p.shape:
        raise ValueError(
            f"x and p must have the same shape (batch, dim), got {tuple(x.shape)} and {tuple(p.shape)}"
        )


def _real_tensor(value, name: str, **pattern) -> torch.Tensor:
    """A float32/float64 tensor from a tensor, array or nested sequence of numbers (integers become
    float64; float32/float64 tensors keep their dtype), checked by ``check_tensor(**pattern)``."""
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"{name} must be a tensor or a sequence of numbers, got {type(value).__name__}"
            ) from None
    elif value.dtype != torch.bool and not value.is_floating_point() and not value.is_complex():
        value = value.to(torch.float64)
    return check_tensor(value, name, **pattern)


def _square_matrix(matrix, name: str) -> torch.Tensor:
    matrix = _real_tensor(matrix, name, dim=2)
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {tuple(matrix.shape)}")
    return matrix


def _symmetric_psd(matrix, name: str, definite: bool = False) -> torch.Tensor:
    matrix = _square_matrix(matrix, name)
    scale = float(matrix.abs().max()) or 1.0
    if float((matrix - matrix.T).abs().max()) > 1e-10 * scale:
        raise ValueError(f"{name} must be symmetric")
    smallest = float(torch.linalg.eigvalsh(matrix.double()).min())
    if smallest < (1e-12 * scale if definite else -1e-10 * scale):
        kind = "positive definite" if definite else "positive semidefinite"
        raise ValueError(f"{name} must be {kind}; its smallest eigenvalue is {smallest:.3e}")
    return matrix


def _differentiable(function: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    """``function(y) + 0 * sum(y)``: keeps a function that ignores ``y`` differentiable by autograd
    (its gradient is then zero instead of an error)."""
    return lambda y: function(y) + 0.0 * y.sum(-1)


class Hamiltonian:
    """Base class: subclasses implement ``value`` and may override the derivatives.

    ``dim`` is the dimension ``d`` when the Hamiltonian fixes it (``None`` otherwise).
    """

    convex: bool = False
    state_dependent: bool = True
    lagrangian_is_indicator: bool = False
    dim: int | None = None

    def value(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return self.value(x, p)

    def grad_p(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``dH/dp``, shape ``(B, d)``; differentiable when ``x`` or ``p`` requires grad."""
        _check_pair(x, p)
        keep = x.requires_grad or p.requires_grad
        return gradient(_differentiable(lambda q: self.value(x, q)), p, create_graph=keep)

    def grad_x(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``dH/dx``, shape ``(B, d)``; zero for state-independent Hamiltonians."""
        _check_pair(x, p)
        if not self.state_dependent:
            return torch.zeros_like(x)
        keep = x.requires_grad or p.requires_grad
        return gradient(_differentiable(lambda y: self.value(y, p)), x, create_graph=keep)

    def characteristic_rates(self, x: torch.Tensor, p: torch.Tensor):
        """``(H_p, H_x, H)`` at once (shapes ``(B, d)``, ``(B, d)``, ``(B,)``): the right-hand side
        of the characteristic system. Subclasses with closed forms share work between the three;
        a function Hamiltonian gets both gradients from one reverse pass."""
        return self.grad_p(x, p), self.grad_x(x, p), self.value(x, p)

    def hessian(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``(B, 2d, 2d)`` Hessian of ``H`` in ``(x, p)`` (``torch.func``: ``value`` must be a
        composable torch function)."""
        _check_pair(x, p)
        d = x.shape[1]

        def single(y):
            return self.value(y[:d].unsqueeze(0), y[d:].unsqueeze(0)).squeeze(0)

        return tfunc.vmap(tfunc.hessian(single))(torch.cat([x, p], dim=1))

    def lagrangian(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """``L(x, q) = sup_p { p.q - H(x, p) }``, shape ``(B,)``."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form Lagrangian")

    def project_velocity(self, q: torch.Tensor) -> torch.Tensor:
        """Projection onto the set where the Lagrangian is finite (identity unless it is an
        indicator)."""
        return q

    @classmethod
    def from_function(
        cls,
        function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        convex: bool = False,
        lagrangian: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        state_dependent: bool = True,
        dim: int | None = None,
    ) -> Hamiltonian:
        """A Hamiltonian from a user's batched function ``H(x, p) -> (B,)``.

        Derivatives come from autograd (``grad_p``, ``grad_x``) and ``torch.func``
        (``hessian``). ``convex`` declares convexity in ``p``; ``lagrangian(x, q)`` may be given
        when known (``hopf_lax_value`` needs it); ``state_dependent=False`` declares ``H = H(p)``.
        """
        check_callable(function, "function")
        if lagrangian is not None:
            check_callable(lagrangian, "lagrangian")
        check_bool(convex, "convex")
        check_bool(state_dependent, "state_dependent")
        dim = None if dim is None else check_positive_int(dim, "dim")
        return _FunctionHamiltonian(function, convex, lagrangian, state_dependent, dim)


class _FunctionHamiltonian(Hamiltonian):
    def __init__(self, function, convex, lagrangian, state_dependent, dim):
        self.function = function
        self.convex = bool(convex)
        self._lagrangian = lagrangian
        self.state_dependent = bool(state_dependent)
        self.dim = dim

    def value(self, x, p):
        _check_pair(x, p)
        out = self.function(x, p)
        if not isinstance(out, torch.Tensor) or out.shape != (x.shape[0],):
            raise ValueError(
                f"the Hamiltonian function must return shape ({x.shape[0]},), got "
                f"{getattr(out, 'shape', type(out).__name__)}"
            )
        return out

    def characteristic_rates(self, x, p):
        _check_pair(x, p)
        keep = x.requires_grad or p.requires_grad
        with torch.enable_grad():
            xs = x if x.requires_grad else x.detach().requires_grad_(True)
            ps = p if p.requires_grad else p.detach().requires_grad_(True)
            h = self.value(xs, ps)
            grad_x, grad_p = torch.autograd.grad(h.sum(), (xs, ps), create_graph=keep, allow_unused=True)
        grad_x = torch.zeros_like(x) if grad_x is None or not self.state_dependent else grad_x
        grad_p = torch.zeros_like(p) if grad_p is None else grad_p
        return grad_p, grad_x, h if keep else h.detach()

    def lagrangian(self, x, q):
        if self._lagrangian is None:
            return super().lagrangian(x, q)
        return self._lagrangian(x, q)

    def __repr__(self):
        return f"Hamiltonian.from_function({getattr(self.function, '__name__', 'H')}, convex={self.convex})"


class QuadraticHamiltonian(Hamiltonian):
    """``H(p) = p^T M p / 2`` with ``M`` symmetric positive semidefinite (``d x d``), optionally
    plus a quadratic potential: ``H(x, p) = p^T M p / 2 + x^T K x / 2`` (``potential=K``, symmetric;
    a harmonic oscillator for positive definite ``K``).

    ``grad_p = M p``, ``grad_x = K x`` (0 without a potential); for positive definite ``M`` the
    Lagrangian is ``L(x, q) = q^T M^{-1} q / 2 - x^T K x / 2``, and without a potential the
    Hopf-Lax value is ``u(x, t) = min_y g(y) + (x - y)^T M^{-1} (x - y) / (2t)``.
    """

    convex = True
    state_dependent = False

    def __init__(self, matrix, potential=None):
        self.matrix = _symmetric_psd(matrix, "matrix")
        self.dim = self.matrix.shape[0]
        self.potential = None
        if potential is not None:
            potential = _square_matrix(potential, "potential").to(self.matrix)
            if potential.shape != self.matrix.shape:
                raise ValueError(
                    f"potential must have shape {tuple(self.matrix.shape)}, got {tuple(potential.shape)}"
                )
            if float((potential - potential.T).abs().max()) > 1e-10 * (float(potential.abs().max()) or 1.0):
                raise ValueError("potential must be symmetric")
            self.potential = 0.5 * (potential + potential.T)
            self.state_dependent = True
        eigenvalues = torch.linalg.eigvalsh(self.matrix.double())
        definite = float(eigenvalues.min()) > 1e-12 * float(eigenvalues.abs().max() or 1.0)
        self.inverse = torch.linalg.inv(self.matrix) if definite else None

    @classmethod
    def identity(cls, dim: int, dtype=torch.float64) -> QuadraticHamiltonian:
        """``H = |p|^2 / 2`` in ``dim`` dimensions."""
        dim = check_positive_int(dim, "dim")
        return cls(torch.eye(dim, dtype=dtype))

    def _check_dim(self, p):
        if p.shape[1] != self.dim:
            raise ValueError(f"expected dimension {self.dim}, got p of shape {tuple(p.shape)}")

    def value(self, x, p):
        _check_pair(x, p)
        self._check_dim(p)
        out = 0.5 * ((p @ self.matrix.to(p)) * p).sum(-1)
        if self.potential is not None:
            out = out + 0.5 * ((x @ self.potential.to(x)) * x).sum(-1)
        return out

    def grad_p(self, x, p):
        _check_pair(x, p)
        self._check_dim(p)
        return p @ self.matrix.to(p)

    def grad_x(self, x, p):
        _check_pair(x, p)
        self._check_dim(p)
        if self.potential is None:
            return torch.zeros_like(x)
        return x @ self.potential.to(x)

    def characteristic_rates(self, x, p):
        _check_pair(x, p)
        self._check_dim(p)
        h_p = p @ self.matrix.to(p)
        kinetic = 0.5 * (h_p * p).sum(-1)
        if self.potential is None:
            return h_p, torch.zeros_like(x), kinetic
        h_x = x @ self.potential.to(x)
        return h_p, h_x, kinetic + 0.5 * (h_x * x).sum(-1)

    def hessian(self, x, p):
        _check_pair(x, p)
        self._check_dim(p)
        d = self.dim
        out = torch.zeros(x.shape[0], 2 * d, 2 * d, dtype=p.dtype, device=p.device)
        out[:, d:, d:] = self.matrix.to(p)
        if self.potential is not None:
            out[:, :d, :d] = self.potential.to(p)
        return out

    def lagrangian(self, x, q):
        if self.inverse is None:
            raise NotImplementedError("the Lagrangian of p^T M p / 2 is finite only for invertible M")
        _check_pair(x, q)
        self._check_dim(q)
        out = 0.5 * ((q @ self.inverse.to(q)) * q).sum(-1)
        if self.potential is not None:
            out = out - 0.5 * ((x @ self.potential.to(x)) * x).sum(-1)
        return out

    def __repr__(self):
        extra = "" if self.potential is None else ", potential"
        return f"QuadraticHamiltonian(dim={self.dim}{extra})"


def _project_l1_ball(q: torch.Tensor, radius: float) -> torch.Tensor:
    """Euclidean projection of each row onto ``{|v|_1 <= radius}`` (Duchi et al. 2008)."""
    absolute = q.abs()
    inside = absolute.sum(-1) <= radius
    sorted_abs, _ = torch.sort(absolute, dim=-1, descending=True)
    cumulative = sorted_abs.cumsum(-1) - radius
    index = torch.arange(1, q.shape[-1] + 1, dtype=q.dtype, device=q.device)
    active = (sorted_abs - cumulative / index) > 0
    count = active.to(q.dtype).sum(-1, keepdim=True).clamp_min(1)
    threshold = cumulative.gather(-1, count.long() - 1) / count
    projected = torch.sign(q) * (absolute - threshold).clamp_min(0)
    return torch.where(inside.unsqueeze(-1), q, projected)


class NormHamiltonian(Hamiltonian):
    """``H(p) = c |p|_r`` with ``r = order`` in ``{1, 2, inf}`` and speed ``c > 0``.

    The Lagrangian is the indicator of the dual-norm ball ``{q : |q|_{r*} <= c}``
    (``r* = inf, 2, 1``), so the Hopf-Lax value is ``u(x, t) = min { g(y) : |x - y|_{r*} <= c t }``
    (front propagation with speed ``c``). ``grad_p`` is the subgradient ``c d|p|_r/dp`` (0 at
    ``p = 0``).
    """

    convex = True
    state_dependent = False
    lagrangian_is_indicator = True

    def __init__(self, order: int | float = 2, speed: float = 1.0):
        check_choice(order, "order", (1, 2, float("inf")))
        self.order = {1: 1, 2: 2, float("inf"): float("inf")}[order]
        self.speed = check_positive(speed, "speed")
        self.dual_order = {1: float("inf"), 2: 2, float("inf"): 1}[order]

    def value(self, x, p):
        _check_pair(x, p)
        return self.speed * torch.linalg.vector_norm(p, ord=self.order, dim=-1)

    def grad_p(self, x, p):
        _check_pair(x, p)
        if self.order == 1:
            return self.speed * torch.sign(p)
        if self.order == 2:
            norm = torch.linalg.vector_norm(p, dim=-1, keepdim=True)
            return self.speed * torch.where(
                norm > 0, p / norm.clamp_min(torch.finfo(p.dtype).tiny), torch.zeros_like(p)
            )
        index = p.abs().argmax(-1, keepdim=True)
        out = torch.zeros_like(p)
        return out.scatter(-1, index, self.speed * torch.sign(p.gather(-1, index)))

    def lagrangian(self, x, q):
        _check_pair(x, q)
        norm = torch.linalg.vector_norm(q, ord=self.dual_order, dim=-1)
        inside = norm <= self.speed * (1 + 1e-12)
        return torch.where(inside, torch.zeros_like(norm), torch.full_like(norm, float("inf")))

    def project_velocity(self, q):
        check_tensor(q, "q", min_dim=1, finite=False, nonempty=False)
        c = self.speed
        if self.dual_order == float("inf"):
            return q.clamp(-c, c)
        if self.dual_order == 2:
            norm = torch.linalg.vector_norm(q, dim=-1, keepdim=True)
            return q * torch.clamp(c / norm.clamp_min(torch.finfo(q.dtype).tiny), max=1.0)
        return _project_l1_ball(q, c)

    def __repr__(self):
        return f"NormHamiltonian(order={self.order}, speed={self.speed})"


class LQRHamiltonian(Hamiltonian):
    """The linear-quadratic regulator in time-to-go form,
    ``H(x, p) = -p^T A x - x^T Q x / 2 + p^T B R^{-1} B^T p / 2``.

    ``u(x, t) = x^T P(t) x / 2`` solves ``u_t + H(x, grad u) = 0`` when
    ``P' = A^T P + P A + Q - P B R^{-1} B^T P`` (the Riccati equation), ``t`` being the time to
    go of the control problem ``min int (x^T Q x + v^T R v)/2 + x(T)^T P(0) x(T)/2``,
    ``x' = A x + B v``; the optimal control is ``v = -R^{-1} B^T grad u``.
    Shapes: ``A``, ``Q``: ``(d, d)``; ``B``: ``(d, m)``; ``R``: ``(m, m)`` positive definite.
    """

    convex = True
    state_dependent = True

    def __init__(self, A, B, Q, R):
        self.A = _square_matrix(A, "A")
        self.dim = self.A.shape[0]
        self.B = _real_tensor(B, "B", dim=2).to(self.A)
        if self.B.shape[0] != self.dim:
            raise ValueError(f"B must have shape ({self.dim}, m), got {tuple(self.B.shape)}")
        self.Q = _symmetric_psd(Q, "Q").to(self.A)
        if self.Q.shape[0] != self.dim:
            raise ValueError(f"Q must have shape ({self.dim}, {self.dim}), got {tuple(self.Q.shape)}")
        self.R = _symmetric_psd(R, "R", definite=True).to(self.A)
        if self.R.shape[0] != self.B.shape[1]:
            raise ValueError(
                f"R must have shape ({self.B.shape[1]}, {self.B.shape[1]}), got {tuple(self.R.shape)}"
            )
        self.gain = self.B @ torch.linalg.solve(self.R, self.B.T)  # G = B R^-1 B^T
        self.gain = 0.5 * (self.gain + self.gain.T)
        eigenvalues = torch.linalg.eigvalsh(self.gain.double())
        definite = float(eigenvalues.min()) > 1e-12 * float(eigenvalues.abs().max() or 1.0)
        self.gain_inverse = torch.linalg.inv(self.gain) if definite else None

    def _check_dim(self, x):
        if x.shape[1] != self.dim:
            raise ValueError(f"expected dimension {self.dim}, got shape {tuple(x.shape)}")

    def value(self, x, p):
        _check_pair(x, p)
        self._check_dim(x)
        A, Q, G = self.A.to(x), self.Q.to(x), self.gain.to(x)
        return -(p * (x @ A.T)).sum(-1) - 0.5 * ((x @ Q) * x).sum(-1) + 0.5 * ((p @ G) * p).sum(-1)

    def grad_p(self, x, p):
        _check_pair(x, p)
        self._check_dim(x)
        return -x @ self.A.to(x).T + p @ self.gain.to(x)

    def grad_x(self, x, p):
        _check_pair(x, p)
        self._check_dim(x)
        return -p @ self.A.to(x) - x @ self.Q.to(x)

    def characteristic_rates(self, x, p):
        _check_pair(x, p)
        self._check_dim(x)
        A, Q, G = self.A.to(x), self.Q.to(x), self.gain.to(x)
        ax, gp, qx = x @ A.T, p @ G, x @ Q
        value = -(p * ax).sum(-1) - 0.5 * (qx * x).sum(-1) + 0.5 * (gp * p).sum(-1)
        return gp - ax, -p @ A - qx, value

    def hessian(self, x, p):
        _check_pair(x, p)
        self._check_dim(x)
        A, Q, G = self.A.to(x), self.Q.to(x), self.gain.to(x)
        top = torch.cat([-Q, -A.T], dim=1)
        bottom = torch.cat([-A, G], dim=1)
        return torch.cat([top, bottom], dim=0).expand(x.shape[0], -1, -1)

    def lagrangian(self, x, q):
        """``L(x, q) = (q + A x)^T G^{-1} (q + A x)/2 + x^T Q x/2`` with ``G = B R^-1 B^T``
        (finite only when ``G`` is invertible)."""
        if self.gain_inverse is None:
            raise NotImplementedError("the LQR Lagrangian is finite only when B R^-1 B^T is invertible")
        _check_pair(x, q)
        self._check_dim(x)
        v = q + x @ self.A.to(x).T
        return 0.5 * ((v @ self.gain_inverse.to(x)) * v).sum(-1) + 0.5 * ((x @ self.Q.to(x)) * x).sum(-1)

    def __repr__(self):
        return f"LQRHamiltonian(dim={self.dim}, controls={self.B.shape[1]})"
