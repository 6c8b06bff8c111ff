"""Hamilton-Jacobi initial-value problems with exact solutions.

Convention: ``u_t + H(x, grad u) = 0`` on ``R^d x (0, T]``, ``u(x, 0) = g(x)``. An ``HJProblem``
bundles the Hamiltonian, the initial data ``g``, the exact viscosity solution and its gradient
where known, the sampling box ``[-radius, radius]^d x (0, horizon]`` used by the solvers, and
optional extras used by the studies: ``kink_distance(x, t)`` (distance to the set where ``u`` is
not differentiable), ``spurious_solutions`` (zero-residual functions that are not the
viscosity solution) and ``initial_pieces`` (convex ``g_k`` with ``g = min_k g_k``).

Closed forms (Evans, *PDE*, ch. 3 and 10; Darbon & Osher 2016):

- ``min_of_quadratics_problem``: ``H = p^T M p / 2``, ``g = min_k g_k``,
  ``g_k(x) = (x - a_k)^T Q_k (x - a_k)/2 + c_k``. For convex ``H`` the Hopf-Lax formula commutes
  with the minimum, so ``u = min_k u_k`` with ``u_k = (x - a_k)^T (Q_k^{-1} + t M)^{-1} (x - a_k)/2
  + c_k``; characteristics of different branches cross where two branches tie (shocks).
- ``kink_problem``: ``H = |p|^2/2`` and ``g = -|x|`` (shock at 0: ``u = -|x| - t/2``),
  ``g = |x|`` (rarefaction fan: ``u = |x|^2/(2t)`` for ``|x| < t``, ``|x| - t/2`` outside) and
  ``g = 0`` (``u = 0``), with the zero-residual non-viscosity solutions ``|x| - t/2`` and
  ``min(0, |x| - t/2)`` of the last two.
- ``lqr_problem``: ``u = x^T P(t) x / 2`` with ``P`` from the Riccati equation, solved by scipy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import torch

from dlpde.shared.checks import (
    NonFiniteResultError,
    check_bool,
    check_callable,
    check_choice,
    check_int,
    check_positive,
    check_positive_int,
    check_tensor,
)
from dlpde.shared.device import resolve_device, resolve_dtype
from dlpde.shared.random import make_generator

from ._hamiltonians import Hamiltonian, LQRHamiltonian, QuadraticHamiltonian, _real_tensor, _symmetric_psd

__all__ = [
    "HJProblem",
    "QuadraticPieces",
    "min_of_quadratics_problem",
    "kink_problem",
    "lqr_problem",
    "RiccatiSolution",
]


def _check_points(x: torch.Tensor, dim: int | None = None, name: str = "x") -> None:
    """``x``: a float32/float64 ``(batch, dim)`` tensor (NaN allowed: a hot path; entry points that
    promise a finite answer check finiteness themselves)."""
    check_tensor(x, name, dim=2, finite=False, nonempty=False)
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} columns, got shape {tuple(x.shape)}")


def _times(t, x: torch.Tensor) -> torch.Tensor:
    """``t`` (a number or a ``(B,)`` tensor) as a ``(B,)`` tensor like ``x``; checks ``t >= 0``."""
    if isinstance(t, torch.Tensor) and (t.dtype == torch.bool or t.is_complex()):
        raise TypeError(f"t must be a real number or a real tensor, got {t.dtype}")
    try:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"t must be a number or a tensor of shape ({x.shape[0]},), got {type(t).__name__}"
        ) from None
    if t.dim() == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a number or a tensor of shape ({x.shape[0]},), got {tuple(t.shape)}")
    if not bool((t >= 0).all()) or not bool(torch.isfinite(t).all()):
        raise ValueError("t must be finite and non-negative")
    return t


@dataclasses.dataclass(frozen=True)
class HJProblem:
    """An initial-value problem ``u_t + H(x, grad u) = 0``, ``u(x, 0) = initial(x)``.

    Fields: ``hamiltonian``; ``initial`` ``g: (B, d) -> (B,)``; ``exact_value(x, t) -> (B,)`` and
    ``exact_gradient(x, t) -> (B, d)`` (the viscosity solution; ``None`` when unknown); ``dim``;
    ``radius`` (half-width of the sampling box, a number or a tuple of ``dim`` numbers) and
    ``horizon`` ``T``; ``name``; ``kink_distance(x, t) -> (B,)`` (optional);
    ``spurious_solutions`` (name -> ``(x, t) -> (B,)``, optional); and ``initial_pieces``
    (optional: functions ``g_k: (B, d) -> (B,)``, each convex, with ``g = min_k g_k``; for a convex,
    state-independent ``H`` the viscosity solution is then ``min_k u_k``, ``u_k`` the solution from
    ``g_k``, which ``CharacteristicSolver(pieces=True)`` uses).
    """

    hamiltonian: Hamiltonian
    initial: Callable[[torch.Tensor], torch.Tensor]
    exact_value: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    exact_gradient: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    dim: int = dataclasses.field(default=1, kw_only=True)
    radius: float | tuple[float, ...] = dataclasses.field(default=1.0, kw_only=True)
    horizon: float = dataclasses.field(default=1.0, kw_only=True)
    name: str = dataclasses.field(default="problem", kw_only=True)
    kink_distance: Callable | None = dataclasses.field(default=None, kw_only=True)
    spurious_solutions: Mapping[str, Callable] = dataclasses.field(default_factory=dict, kw_only=True)
    initial_pieces: tuple = dataclasses.field(default=(), kw_only=True)

    def __post_init__(self):
        if not isinstance(self.hamiltonian, Hamiltonian):
            raise TypeError(f"hamiltonian must be a Hamiltonian, got {type(self.hamiltonian).__name__}")
        check_callable(self.initial, "initial")
        for name in ("exact_value", "exact_gradient", "kink_distance"):
            if getattr(self, name) is not None:
                check_callable(getattr(self, name), name)
        if not isinstance(self.spurious_solutions, Mapping):
            raise TypeError(f"spurious_solutions must be a mapping name -> (x, t) -> (batch,), got "
                            f"{type(self.spurious_solutions).__name__}")
        for name, function in self.spurious_solutions.items():
            check_callable(function, f"spurious_solutions[{name!r}]")
        if not isinstance(self.initial_pieces, (tuple, list)):
            raise TypeError(f"initial_pieces must be a tuple of functions (B, d) -> (B,), got "
                            f"{type(self.initial_pieces).__name__}")
        for k, function in enumerate(self.initial_pieces):
            check_callable(function, f"initial_pieces[{k}]")
        object.__setattr__(self, "initial_pieces", tuple(self.initial_pieces))
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {type(self.name).__name__}")
        # stored as plain Python numbers (a frozen dataclass: set through object.__setattr__)
        object.__setattr__(self, "dim", check_positive_int(self.dim, "dim"))
        if self.hamiltonian.dim is not None and self.hamiltonian.dim != self.dim:
            raise ValueError(f"dim={self.dim} but the Hamiltonian has dimension {self.hamiltonian.dim}")
        if isinstance(self.radius, tuple):
            if len(self.radius) not in (1, self.dim):
                raise ValueError(
                    f"radius must be a positive number or {self.dim} positive numbers, got {self.radius!r}"
                )
            radius = tuple(check_positive(r, "radius") for r in self.radius)
        else:
            radius = check_positive(self.radius, "radius")
        object.__setattr__(self, "radius", radius)
        object.__setattr__(self, "horizon", check_positive(self.horizon, "horizon"))

    def radius_tensor(self, dtype=torch.float64, device="cpu") -> torch.Tensor:
        """The half-widths of the sampling box as a ``(dim,)`` tensor."""
        radius = self.radius if isinstance(self.radius, tuple) else (self.radius,) * self.dim
        return torch.tensor(radius, dtype=dtype, device=device)

    def sample(
        self,
        n: int,
        generator: torch.Generator | int | None = None,
        dtype=torch.float64,
        device="cpu",
        initial: bool = False,
    ):
        """``n`` points uniform in the box: ``(x, t)`` with ``t ~ U(0, horizon]``, or only ``x``
        when ``initial=True``. Drawn on the generator's device, then moved to ``device``."""
        n = check_int(n, "n", minimum=0)
        dtype = check_choice(resolve_dtype(dtype), "dtype", (torch.float32, torch.float64))
        device = resolve_device(device)
        check_bool(initial, "initial")
        generator = make_generator(0 if generator is None else generator)
        where = generator.device
        u = torch.rand(n, self.dim, generator=generator, dtype=dtype, device=where)
        x = ((2 * u - 1) * self.radius_tensor(dtype, where)).to(device)
        if initial:
            return x
        t = (self.horizon * (1 - torch.rand(n, generator=generator, dtype=dtype, device=where))).to(device)
        return x, t

    def residual(self, value: Callable, x: torch.Tensor, t, step: float = 1e-5) -> torch.Tensor:
        """``u_t + H(x, grad u)`` of a function ``value(x, t)`` by central finite differences
        (step ``step`` in every coordinate), shape ``(B,)``. An independent check of a claimed
        solution; ``t`` must exceed ``step``."""
        _check_points(x, self.dim)
        t = _times(t, x)
        with torch.no_grad():
            u_t = (value(x, t + step) - value(x, t - step)) / (2 * step)
            grad = torch.empty_like(x)
            for i in range(self.dim):
                e = torch.zeros_like(x)
                e[:, i] = step
                grad[:, i] = (value(x + e, t) - value(x - e, t)) / (2 * step)
            return u_t + self.hamiltonian.value(x, grad)


# --------------------------------------------------------------------------------------------
# min of quadratics


def _default_layout(dim: int):
    """Three branches whose kinks are curved in the (x1, x2)-plane and present in every ``d``."""
    centres = torch.zeros(3, dim, dtype=torch.float64)
    centres[0, 0], centres[1, 0] = 0.6, -0.6
    if dim >= 2:
        centres[2, 1] = 0.7
    else:
        centres[2, 0] = 0.05
    precisions = torch.ones(3, dim, dtype=torch.float64)
    precisions[1, 0] = 2.0
    precisions[2, 0] = 0.5
    if dim >= 2:
        precisions[1, 1], precisions[2, 1] = 0.5, 2.0
    offsets = torch.tensor([0.0, 0.05, 0.1 if dim >= 2 else 0.02], dtype=torch.float64)
    return centres, precisions, offsets


class _MinOfQuadratics:
    """Branch values and gradients ``u_k = w^T (1 + t Lambda_k)^{-1} w / 2 + c_k``,
    ``w = T_k (x - a_k)``, ``T_k = V_k^T Q_k^{1/2}``, ``Q_k^{1/2} M Q_k^{1/2} = V_k Lambda_k V_k^T``,
    so that ``(Q_k^{-1} + t M)^{-1} = T_k^T (1 + t Lambda_k)^{-1} T_k`` (O(K d^2) per point, O(K d)
    when every ``Q_k`` and ``M`` are diagonal)."""

    def __init__(self, centres, precisions, offsets, mass):
        self.centres, self.offsets, self.mass = centres, offsets, mass
        diagonal = lambda m: bool(
            (m - torch.diag_embed(torch.diagonal(m, dim1=-2, dim2=-1))).abs().max() == 0
        )  # noqa: E731
        self.diagonal = diagonal(precisions) and diagonal(mass)
        # Isotropic branches (Q_k = q_k I, M = m I): u_k = s_k(t) |x - a_k|^2/2 + c_k with
        # s_k = q_k/(1 + t q_k m) and |x - a_k|^2 = |x|^2 - 2 x.a_k + |a_k|^2, one (B, d) x (d, K)
        # matrix product per call instead of a (B, K, d) tensor (about 1e6-1e7 points/s at d = 100).
        self.isotropic = False
        if self.diagonal:
            q = torch.diagonal(precisions, dim1=-2, dim2=-1)
            m = torch.diagonal(mass)
            if bool((q == q[:, :1]).all()) and bool((m == m[0]).all()):
                self.isotropic = True
                self.scalar_precisions, self.scalar_mass = q[:, 0].clone(), float(m[0])
                self.centre_norms_sq = (centres * centres).sum(-1)
        if self.diagonal:  # T_k = diag(sqrt(q_k)), Lambda_k = q_k * diag(M): O(K d) per point
            q = torch.diagonal(precisions, dim1=-2, dim2=-1)
            self.transforms, self.eigenvalues = q.sqrt(), q * torch.diagonal(mass)
            return
        transforms, eigenvalues = [], []
        for q in precisions:
            w, v = torch.linalg.eigh(q)
            root = v @ torch.diag(w.sqrt()) @ v.T
            lam, vec = torch.linalg.eigh(root @ mass @ root)
            transforms.append(vec.T @ root)
            eigenvalues.append(lam.clamp_min(0))
        self.transforms = torch.stack(transforms)
        self.eigenvalues = torch.stack(eigenvalues)

    def _transform(self, x):
        """``w_k = T_k (x - a_k)``, shape ``(B, K, d)``."""
        shifted = x.unsqueeze(1) - self.centres.to(x)
        if self.diagonal:
            return shifted * self.transforms.to(x)
        return torch.einsum("kij,bkj->bki", self.transforms.to(x), shifted)

    def branches(self, x, t, with_gradients=True):
        """Values ``(B, K)`` and gradients ``(B, K, d)`` of every branch."""
        w = self._transform(x)
        scaled = w / (1 + t[:, None, None] * self.eigenvalues.to(x))
        values = 0.5 * (w * scaled).sum(-1) + self.offsets.to(x)
        if not with_gradients:
            return values, None
        if self.diagonal:
            return values, scaled * self.transforms.to(x)
        return values, torch.einsum("kji,bkj->bki", self.transforms.to(x), scaled)

    def hopf_lax(self, x, t, gradient: bool = True, minimiser: bool = True, chunk: int = 1024):
        """``(value, gradient, minimiser y = x - t M grad u, branch)`` in row chunks that stay in the
        cache (one pass over ``x`` from memory instead of one per tensor operation)."""
        value = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
        branch = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
        grad = torch.empty_like(x) if gradient else None
        want_minimiser = minimiser
        minimiser = torch.empty_like(x) if want_minimiser else None
        centres = self.centres.to(x)
        for start in range(0, x.shape[0], chunk):
            rows = slice(start, start + chunk)
            xc, tc = x[rows], t[rows]
            if self.isotropic:
                values, factor = self._isotropic_values(xc, tc)
                value[rows], index = values.min(-1)
                chosen = centres[index]
                shifted = xc - chosen
                scale = factor.gather(1, index[:, None])
                if gradient:
                    torch.mul(shifted, scale, out=grad[rows])
                if want_minimiser:  # y = x - t m s (x - a) = a + (1 - t m s)(x - a)
                    coefficient = 1 - tc[:, None] * self.scalar_mass * scale
                    torch.addcmul(chosen, shifted, coefficient, out=minimiser[rows])
            else:
                values, gradients = self.branches(xc, tc)
                value[rows], index = values.min(-1)
                chosen = gradients[torch.arange(xc.shape[0], device=x.device), index]
                if gradient:
                    grad[rows] = chosen
                if want_minimiser:
                    minimiser[rows] = xc - tc[:, None] * (chosen @ self.mass.to(x))
            branch[rows] = index
        return value, grad, minimiser, branch

    def _isotropic_values(self, x, t):
        """``(B, K)`` branch values and the ``(B, K)`` factors ``s_k(t)`` of the isotropic case."""
        q = self.scalar_precisions.to(x)
        norms_sq = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square()
        distance_sq = torch.addmm(norms_sq + self.centre_norms_sq.to(x), x, self.centres.to(x).T, alpha=-2.0)
        distance_sq = distance_sq.clamp_min(0)
        factor = q / (1 + t[:, None] * (q * self.scalar_mass))
        return 0.5 * factor * distance_sq + self.offsets.to(x), factor

    def value(self, x, t):
        if self.isotropic:
            return self._isotropic_values(x, t)[0].min(-1).values
        return self.branches(x, t, with_gradients=False)[0].min(-1).values

    def gradient(self, x, t):
        if self.isotropic:
            values, factor = self._isotropic_values(x, t)
            index = values.argmin(-1)
            rows = torch.arange(x.shape[0], device=x.device)
            return factor[rows, index, None] * (x - self.centres.to(x)[index])
        values, gradients = self.branches(x, t)
        index = values.argmin(-1)
        return gradients[torch.arange(x.shape[0], device=x.device), index]

    def initial(self, x):
        if self.isotropic:
            return (
                self._isotropic_values(x, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))[0]
                .min(-1)
                .values
            )
        w = self._transform(x)
        return (0.5 * (w * w).sum(-1) + self.offsets.to(x)).min(-1).values

    def kink_distance(self, x, t):
        """First-order distance to the nearest tie ``u_k = u_{k*}``: ``min_k (u_k - u_{k*}) /
        |grad u_k - grad u_{k*}|`` (exact when the tie set is a hyperplane)."""
        values, gradients = self.branches(x, t)
        best = values.argmin(-1)
        rows = torch.arange(x.shape[0], device=x.device)
        gap = values - values[rows, best].unsqueeze(-1)
        slope = torch.linalg.vector_norm(gradients - gradients[rows, best].unsqueeze(1), dim=-1)
        distance = gap / slope.clamp_min(torch.finfo(x.dtype).tiny)
        distance[rows, best] = float("inf")
        return distance.min(-1).values


def _as_precisions(precisions, k: int, d: int) -> torch.Tensor:
    precisions = torch.as_tensor(precisions, dtype=torch.float64)
    if precisions.shape == (k,):
        precisions = precisions[:, None, None] * torch.eye(d, dtype=torch.float64)
    elif precisions.shape == (k, d):
        precisions = torch.diag_embed(precisions)
    elif precisions.shape != (k, d, d):
        raise ValueError(
            f"precisions must have shape ({k},), ({k}, {d}) or ({k}, {d}, {d}), got {tuple(precisions.shape)}"
        )
    for i, q in enumerate(precisions):
        _symmetric_psd(q, f"precisions[{i}]", definite=True)
    return precisions


def _float64(value, name: str, **pattern) -> torch.Tensor:
    """A float64 tensor from a tensor or nested sequence (numbers given in Python stay exact)."""
    return _real_tensor(value, name, **pattern).to(torch.float64)


class QuadraticPieces:
    """Initial data ``g(x) = min_k g_k(x)``, ``g_k(x) = (x - a_k)^T Q_k (x - a_k)/2 + c_k``.

    ``centres``: ``(K, d)``; ``precisions``: ``(K,)`` scalars, ``(K, d)`` diagonals or ``(K, d, d)``
    positive definite matrices (default ones); ``offsets``: ``(K,)`` (default zeros). Calling it
    evaluates ``g`` on ``(B, d)`` points; ``pieces()`` lists the convex ``g_k`` as functions;
    ``hopf_lax(mass, x, t)`` is the closed-form solution for ``H = p^T M p/2``,
    ``u = min_k (x - a_k)^T (Q_k^{-1} + t M)^{-1} (x - a_k)/2 + c_k`` (Darbon & Osher 2016), with
    its gradient.
    """

    def __init__(self, centres, precisions=None, offsets=None):
        self.centres = _float64(centres, "centres", dim=2)
        k, d = self.centres.shape
        self.dim, self.count = d, k
        precisions = torch.ones(k, dtype=torch.float64) if precisions is None else precisions
        self.precisions = _as_precisions(_float64(precisions, "precisions"), k, d)
        offsets = torch.zeros(k, dtype=torch.float64) if offsets is None else offsets
        self.offsets = _float64(offsets, "offsets", shape=(k,))
        self._data = _MinOfQuadratics(
            self.centres, self.precisions, self.offsets, torch.eye(d, dtype=torch.float64)
        )
        self._solutions = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check_points(x, self.dim)
        return self._data.initial(x)

    def piece(self, k: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """The convex piece ``g_k``, a function ``(B, d) -> (B,)``."""
        k = check_int(k, "k", 0, self.count - 1)
        centre, precision, offset = self.centres[k], self.precisions[k], self.offsets[k]

        def g_k(y):
            shifted = y - centre.to(y)
            return 0.5 * ((shifted @ precision.to(y)) * shifted).sum(-1) + offset.to(y)

        return g_k

    def pieces(self) -> list:
        return [self.piece(k) for k in range(self.count)]

    def _solution(self, mass: torch.Tensor) -> _MinOfQuadratics:
        key = (mass.shape, tuple(mass.double().reshape(-1).tolist()))
        if key not in self._solutions:
            self._solutions = {
                key: _MinOfQuadratics(self.centres, self.precisions, self.offsets, mass.double())
            }
        return self._solutions[key]

    def hopf_lax(self, mass, x: torch.Tensor, t, gradient: bool = True, minimiser: bool = True):
        """``(value, gradient, minimiser, branch)`` of the closed-form solution for
        ``H = p^T M p / 2``: shapes ``(B,)``, ``(B, d)``, ``(B, d)`` (``y = x - t M grad u``) and
        ``(B,)`` (the index of the minimising piece); ``None`` for a gradient or minimiser not
        asked for."""
        mass = _symmetric_psd(mass, "mass").to(torch.float64)
        if mass.shape != (self.dim, self.dim):
            raise ValueError(f"mass must have shape ({self.dim}, {self.dim}), got {tuple(mass.shape)}")
        _check_points(x, self.dim)
        t = _times(t, x)
        gradient, minimiser = check_bool(gradient, "gradient"), check_bool(minimiser, "minimiser")
        return self._solution(mass).hopf_lax(x, t, gradient=gradient, minimiser=minimiser)

    def __repr__(self):
        return f"QuadraticPieces(count={self.count}, dim={self.dim})"


def min_of_quadratics_problem(
    dim: int,
    centres=None,
    precisions=None,
    offsets=None,
    mass=None,
    radius: float = 1.0,
    horizon: float = 1.0,
) -> HJProblem:
    """``H = p^T M p/2``, ``g(x) = min_k (x - a_k)^T Q_k (x - a_k)/2 + c_k``; exact
    ``u = min_k (x - a_k)^T (Q_k^{-1} + t M)^{-1} (x - a_k)/2 + c_k``.

    ``centres``: ``(K, d)``; ``precisions``: ``(K,)`` scalars, ``(K, d)`` diagonals or ``(K, d, d)``
    positive definite matrices; ``offsets``: ``(K,)``; ``mass``: ``M`` (default identity). Without
    ``centres`` a fixed three-branch layout is used whose ties are curved surfaces crossing the
    box in every dimension (the ``hjb.crossing`` problem).
    """
    dim = check_positive_int(dim, "dim")
    if centres is None:
        if precisions is not None or offsets is not None:
            raise ValueError("give centres together with precisions and offsets")
        centres, precisions, offsets = _default_layout(dim)
    centres = _float64(centres, "centres", shape=(None, dim))
    k = centres.shape[0]
    if precisions is None:
        precisions = torch.ones(k, dtype=torch.float64)
    precisions = _as_precisions(_float64(precisions, "precisions"), k, dim)
    offsets = torch.zeros(k, dtype=torch.float64) if offsets is None else _float64(offsets, "offsets")
    if offsets.shape != (k,):
        raise ValueError(f"offsets must have shape ({k},), got {tuple(offsets.shape)}")
    if mass is None:
        mass = torch.eye(dim, dtype=torch.float64)
    mass = _symmetric_psd(mass, "mass").to(torch.float64)
    if mass.shape != (dim, dim):
        raise ValueError(f"mass must have shape ({dim}, {dim}), got {tuple(mass.shape)}")
    branches = _MinOfQuadratics(centres, precisions, offsets, mass)

    def piece(k):
        def g_k(x):
            _check_points(x, dim)
            w = branches._transform(x)[:, k]
            return 0.5 * (w * w).sum(-1) + offsets[k].to(x)

        return g_k

    def exact_value(x, t):
        _check_points(x, dim)
        return branches.value(x, _times(t, x))

    def exact_gradient(x, t):
        _check_points(x, dim)
        return branches.gradient(x, _times(t, x))

    def kink_distance(x, t):
        _check_points(x, dim)
        return branches.kink_distance(x, _times(t, x))

    def initial(x):
        _check_points(x, dim)
        return branches.initial(x)

    return HJProblem(
        QuadraticHamiltonian(mass),
        initial,
        exact_value,
        exact_gradient,
        dim=dim,
        radius=radius,
        horizon=horizon,
        name=f"min_of_quadratics_d{dim}",
        kink_distance=kink_distance if k > 1 else None,
        initial_pieces=tuple(piece(j) for j in range(k)),
    )


# --------------------------------------------------------------------------------------------
# kink data with H = |p|^2 / 2


def _norm(x):
    return torch.linalg.vector_norm(x, dim=-1)


def _unit(x):
    norm = _norm(x).unsqueeze(-1)
    return torch.where(norm > 0, x / norm.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(x))


def kink_problem(initial: str, dim: int = 1, radius: float = 1.0, horizon: float = 1.0) -> HJProblem:
    """``H = |p|^2/2`` with kinked data: ``initial`` is ``"negative_norm"`` (``g = -|x|``),
    ``"norm"`` (``g = |x|``) or ``"zero"`` (``g = 0``).

    Viscosity solutions: ``-|x| - t/2`` (characteristics cross at ``x = 0``); the rarefaction fan
    ``|x|^2/(2t)`` for ``|x| < t`` and ``|x| - t/2`` outside; ``0``. Spurious zero-residual
    solutions (Lipschitz, satisfying the PDE almost everywhere): ``|x| - t/2`` for ``g = |x|`` and
    ``min(0, |x| - t/2)`` for ``g = 0``.
    """
    check_choice(initial, "initial", ("negative_norm", "norm", "zero"))
    dim = check_positive_int(dim, "dim")
    spurious, kink = {}, None
    if initial == "negative_norm":

        def g(x):
            _check_points(x, dim)
            return -_norm(x)

        def value(x, t):
            _check_points(x, dim)
            return -_norm(x) - 0.5 * _times(t, x)

        def grad(x, t):
            _check_points(x, dim)
            _times(t, x)
            return -_unit(x)

        def kink(x, t):
            return _norm(x)
    elif initial == "norm":

        def g(x):
            _check_points(x, dim)
            return _norm(x)

        def value(x, t):
            _check_points(x, dim)
            t = _times(t, x)
            r = _norm(x)
            fan = 0.5 * r**2 / t.clamp_min(torch.finfo(x.dtype).tiny)
            return torch.where(r < t, fan, r - 0.5 * t)

        def grad(x, t):
            _check_points(x, dim)
            t = _times(t, x)
            inside = (_norm(x) < t).unsqueeze(-1)
            return torch.where(inside, x / t.clamp_min(torch.finfo(x.dtype).tiny).unsqueeze(-1), _unit(x))

        def norm_minus_half_t(x, t):
            return _norm(x) - 0.5 * _times(t, x)

        spurious = {"|x| - t/2": norm_minus_half_t}
    else:

        def g(x):
            _check_points(x, dim)
            return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)

        def value(x, t):
            _check_points(x, dim)
            return torch.zeros_like(_times(t, x))

        def grad(x, t):
            _check_points(x, dim)
            _times(t, x)
            return torch.zeros_like(x)

        def clipped_cone(x, t):
            return torch.clamp(_norm(x) - 0.5 * _times(t, x), max=0.0)

        spurious = {"min(0, |x| - t/2)": clipped_cone}
    return HJProblem(
        QuadraticHamiltonian.identity(dim),
        g,
        value,
        grad,
        dim=dim,
        radius=radius,
        horizon=horizon,
        name=f"kink_{initial}_d{dim}",
        kink_distance=kink,
        spurious_solutions=spurious,
    )


# --------------------------------------------------------------------------------------------
# LQR


class RiccatiSolution:
    """``P(t)`` on ``[0, horizon]`` from ``P' = A^T P + P A + Q - P G P``, ``G = B R^{-1} B^T``,
    ``P(0) = P0``, by scipy's DOP853 (``rtol = atol = 1e-12``) with its dense output.

    ``self(t)`` takes a number or a ``(n,)`` tensor and returns ``(d, d)`` or ``(n, d, d)`` in
    float64 on the CPU; repeated times are evaluated once.
    """

    def __init__(self, A, B, Q, R, P0, horizon: float):
        import numpy as np
        from scipy.integrate import solve_ivp

        hamiltonian = LQRHamiltonian(A, B, Q, R)
        self.dim = d = hamiltonian.dim
        self.horizon = check_positive(horizon, "horizon")
        A = hamiltonian.A.double().numpy()
        Q = hamiltonian.Q.double().numpy()
        G = hamiltonian.gain.double().numpy()
        self.initial_matrix = _symmetric_psd(P0, "P0").to(torch.float64)
        if self.initial_matrix.shape != (d, d):
            raise ValueError(f"P0 must have shape ({d}, {d}), got {tuple(self.initial_matrix.shape)}")
        P0 = self.initial_matrix.numpy()

        def rhs(_, y):
            P = y.reshape(d, d)
            dP = A.T @ P + P @ A + Q - P @ G @ P
            return (0.5 * (dP + dP.T)).ravel()

        solution = solve_ivp(
            rhs, (0.0, self.horizon), P0.ravel(), method="DOP853", rtol=1e-12, atol=1e-12, dense_output=True
        )
        if not solution.success or not np.isfinite(solution.y).all():
            raise NonFiniteResultError(
                f"the Riccati solve failed ({solution.message}); check that A, Q and P0 are of moderate size"
            )
        self._dense = solution.sol
        self._np = np

    def __call__(self, t) -> torch.Tensor:
        np = self._np
        times = _real_tensor(t, "t", dim=(0, 1), nonempty=False).detach().to("cpu", torch.float64)
        scalar = times.dim() == 0
        times = times.reshape(-1)
        if bool((times < -1e-12).any()) or bool((times > self.horizon * (1 + 1e-12)).any()):
            raise ValueError(f"t must lie in [0, {self.horizon}]")
        unique, inverse = torch.unique(times, return_inverse=True)
        chunks = []
        for start in range(0, unique.numel(), 512):
            values = self._dense(unique[start : start + 512].numpy())  # (d*d, n)
            chunks.append(torch.from_numpy(np.ascontiguousarray(values.T)))
        matrices = torch.cat(chunks).reshape(-1, self.dim, self.dim)
        matrices = 0.5 * (matrices + matrices.transpose(1, 2))
        out = matrices[inverse]
        return out[0] if scalar else out


def lqr_problem(A, B, Q, R, P0, horizon: float = 1.0, radius: float = 1.0) -> HJProblem:
    """The LQR problem in time-to-go form: ``LQRHamiltonian(A, B, Q, R)``, ``g(x) = x^T P0 x/2``,
    exact ``u(x, t) = x^T P(t) x / 2`` and ``grad u = P(t) x`` with ``P`` from ``RiccatiSolution``."""
    hamiltonian = LQRHamiltonian(A, B, Q, R)
    dim = hamiltonian.dim
    riccati = RiccatiSolution(A, B, Q, R, P0, horizon)
    initial_matrix = riccati.initial_matrix

    def initial(x):
        _check_points(x, dim)
        return 0.5 * ((x @ initial_matrix.to(x)) * x).sum(-1)

    def exact_gradient(x, t):
        _check_points(x, dim)
        P = riccati(_times(t, x)).to(x)
        return torch.einsum("bij,bj->bi", P, x)

    def exact_value(x, t):
        return 0.5 * (exact_gradient(x, t) * x).sum(-1)

    return HJProblem(
        hamiltonian,
        initial,
        exact_value,
        exact_gradient,
        dim=dim,
        radius=radius,
        horizon=horizon,
        name=f"lqr_d{dim}",
    )
