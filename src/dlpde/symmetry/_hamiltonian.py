"""Many-body Hamiltonians of ``N = n_up + n_down`` particles in R^d, and the local energy.

``H = -1/2 sum_i Lap_i + sum_i V_ext(x_i) + sum_{i<j} V_pair(|x_i - x_j|) + constant``
(atomic units, unit mass). Positions are ``(batch, N, d)``, the ``n_up`` spin-up particles first.

The local energy of a trial wavefunction ``psi`` is
``E_L(X) = -1/2 (Lap log|psi| + |grad log|psi||^2) + V(X)`` (so that ``H psi = E_L psi``). The
Laplacian comes from ``dlpde.shared.autodiff.laplacian``: by default the forward Laplacian (one
forward pass of value, gradient and Laplacian; every ansatz of this thread is built from
operations it supports), or exactly by forward-over-reverse differentiation (``N d``
Hessian-vector products), or Hutchinson's unbiased estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch.func import functional_call

from dlpde.shared.autodiff import ForwardLaplacianError, laplacian
from dlpde.shared.checks import (
    check_callable,
    check_choice,
    check_positive,
    check_positive_int,
    check_real,
    check_tensor,
)

__all__ = [
    "ManyBodyHamiltonian",
    "HarmonicTrap",
    "CoulombNuclei",
    "CoulombPair",
    "SoftCoulombPair",
    "ContactPair",
    "harmonic_trap",
    "coulomb_nuclei",
    "coulomb_pair",
    "soft_coulomb_pair",
    "contact_pair",
    "atom",
    "local_energy",
]


def _finite_positive(name: str, value: float) -> float:
    return check_positive(value, name)


def _finite(name: str, value: float) -> float:
    return check_real(value, name)


class HarmonicTrap:
    """``V_ext(x) = omega^2 |x - c|^2 / 2``. Suggested orbital envelope: ``exp(-omega |x - c|^2 / 2)``."""

    envelope = "gaussian"

    def __init__(self, omega: float = 1.0, center: Sequence[float] | None = None):
        self.omega = _finite_positive("omega", omega)
        if center is not None:
            if not isinstance(center, torch.Tensor):
                if isinstance(center, (str, bytes)) or not isinstance(center, (list, tuple)):
                    raise TypeError(f"center must be a sequence of coordinates, got {type(center).__name__}")
                coordinates = [check_real(c, "each center coordinate") for c in center]
                center = torch.tensor(coordinates, dtype=torch.float64)
            check_tensor(center, "center", dim=1, dtype="any")
            if center.dtype == torch.bool or center.is_complex():
                raise TypeError(f"center must hold real coordinates, got {center.dtype}")
        self.center = None if center is None else center.to(torch.float64)

    def centers(self, dim: int) -> torch.Tensor:
        """Trap centre(s), shape ``(1, dim)``."""
        if self.center is None:
            return torch.zeros(1, dim, dtype=torch.float64)
        if self.center.shape != (dim,):
            raise ValueError(f"the trap centre has shape {tuple(self.center.shape)}, expected ({dim},)")
        return self.center[None]

    def decays(self) -> torch.Tensor:
        return torch.tensor([self.omega / 2])

    def constant(self) -> float:
        return 0.0

    def __call__(self, positions: torch.Tensor) -> torch.Tensor:
        c = self.centers(positions.shape[-1]).to(positions)[0]
        return 0.5 * self.omega**2 * ((positions - c) ** 2).sum(-1)

    def __repr__(self):
        return f"harmonic_trap(omega={self.omega})"


class CoulombNuclei:
    """Point nuclei: ``V_ext(x) = -sum_m Z_m / |x - R_m|``, constant ``sum_{m<n} Z_m Z_n / |R_m - R_n|``.

    Suggested orbital envelope: ``exp(-Z_m |x - R_m|)`` (the hydrogenic decay and nuclear cusp).
    """

    envelope = "exponential"

    def __init__(self, charges: Sequence[float], positions: Sequence[Sequence[float]]):
        self.charges = torch.as_tensor(charges, dtype=torch.float64).reshape(-1)
        self.positions = torch.as_tensor(positions, dtype=torch.float64)
        if self.positions.dim() != 2 or self.positions.shape[0] != self.charges.numel():
            raise ValueError("positions must have shape (n_nuclei, dim) matching the charges")
        if not bool((self.charges > 0).all()):
            raise ValueError("nuclear charges must be positive")

    def centers(self, dim: int) -> torch.Tensor:
        if self.positions.shape[1] != dim:
            raise ValueError(f"nuclei live in R^{self.positions.shape[1]}, particles in R^{dim}")
        return self.positions

    def decays(self) -> torch.Tensor:
        return self.charges.clone()

    def constant(self) -> float:
        total = 0.0
        for m in range(len(self.charges)):
            for n in range(m + 1, len(self.charges)):
                distance = float(torch.linalg.vector_norm(self.positions[m] - self.positions[n]))
                total += float(self.charges[m] * self.charges[n]) / distance
        return total

    def __call__(self, positions: torch.Tensor) -> torch.Tensor:
        r = torch.linalg.vector_norm(positions.unsqueeze(-2) - self.positions.to(positions), dim=-1)
        return -(self.charges.to(positions) / r).sum(-1)

    def __repr__(self):
        return f"coulomb_nuclei(charges={self.charges.tolist()})"


class CoulombPair:
    """``V_pair(r) = q / r``. Kato cusp of the pair factor: ``d log psi / dr = q / (d - 1)`` for
    opposite spins and ``q / (d + 1)`` for equal spins at ``r = 0``."""

    def __init__(self, strength: float = 1.0):
        self.strength = _finite("strength", strength)

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        return self.strength / r

    def cusp(self, dim: int) -> tuple[float, float]:
        if dim < 2:
            raise ValueError("the Coulomb pair potential needs dim >= 2 (use soft_coulomb_pair in 1-D)")
        return self.strength / (dim + 1), self.strength / (dim - 1)

    def __repr__(self):
        return f"coulomb_pair(strength={self.strength})"


class SoftCoulombPair:
    """``V_pair(r) = q / sqrt(r^2 + a^2)`` (smooth; no cusp). The usual 1-D model of Coulomb repulsion."""

    def __init__(self, strength: float = 1.0, softening: float = 1.0):
        self.strength = _finite("strength", strength)
        self.softening = _finite_positive("softening", softening)

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        return self.strength / torch.sqrt(r**2 + self.softening**2)

    def cusp(self, dim: int):
        return None

    def __repr__(self):
        return f"soft_coulomb_pair(strength={self.strength}, softening={self.softening})"


class ContactPair:
    """A contact interaction ``g delta(r)`` regularised as a normalised Gaussian of width ``s``:
    ``V_pair(r) = g (2 pi s^2)^{-d/2} exp(-r^2 / (2 s^2))``.

    Spin-polarised fermions vanish at coincidence, so the energy shift of the exact delta is zero
    and that of the Gaussian is ``O(g s^2)`` (in 1-D, to first order, ``g s^2 P''(0) / 2`` with
    ``P`` the pair density, which vanishes quadratically at contact).
    """

    def __init__(self, strength: float, width: float = 0.05, dim: int = 1):
        self.strength = _finite("strength", strength)
        self.width = _finite_positive("width", width)
        self.dim = check_positive_int(dim, "dim")

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        norm = (2 * math.pi * self.width**2) ** (self.dim / 2)
        return self.strength / norm * torch.exp(-(r**2) / (2 * self.width**2))

    def cusp(self, dim: int):
        if dim != self.dim:
            raise ValueError(f"this contact interaction is normalised in {self.dim}-D, the system is {dim}-D")
        return None

    def __repr__(self):
        return f"contact_pair(strength={self.strength}, width={self.width}, dim={self.dim})"


def harmonic_trap(omega: float = 1.0, center: Sequence[float] | None = None) -> HarmonicTrap:
    """External potential ``omega^2 |x - center|^2 / 2`` (centre at the origin by default)."""
    return HarmonicTrap(omega, center)


def coulomb_nuclei(charges: Sequence[float], positions: Sequence[Sequence[float]]) -> CoulombNuclei:
    """Nuclear attraction ``-sum_m Z_m / |x - R_m|`` of fixed point nuclei."""
    return CoulombNuclei(charges, positions)


def coulomb_pair(strength: float = 1.0) -> CoulombPair:
    """Coulomb repulsion ``q / r`` between the particles."""
    return CoulombPair(strength)


def soft_coulomb_pair(strength: float = 1.0, softening: float = 1.0) -> SoftCoulombPair:
    """Soft-Coulomb repulsion ``q / sqrt(r^2 + a^2)``."""
    return SoftCoulombPair(strength, softening)


def contact_pair(strength: float, width: float = 0.05, dim: int = 1) -> ContactPair:
    """Contact interaction ``g delta(r)`` in R^dim, as a normalised Gaussian of width ``width``."""
    return ContactPair(strength, width, dim)


class ManyBodyHamiltonian:
    """``H = -1/2 sum_i Lap_i + sum_i V_ext(x_i) + sum_{i<j} V_pair(|x_i - x_j|) + constant``.

    Args:
        n_up, n_down: numbers of spin-up and spin-down particles (identical fermions within a
            species); positions ``(batch, n_up + n_down, dim)`` list the spin-up ones first.
        dim: spatial dimension ``d``.
        external_potential: per particle, ``(..., d) -> (...)`` (e.g. ``harmonic_trap(1.0)``,
            ``coulomb_nuclei(...)``, or any such callable); ``None`` for none.
        pair_potential: of the distance, ``(...) -> (...)`` (``coulomb_pair()``,
            ``soft_coulomb_pair()``, ``contact_pair(g)``, or any callable); ``None`` for none.

    The ready-made potentials also tell the ansaetze what they need (``ansatz_options``): the
    orbital envelope (Gaussian for traps, exponential for nuclei), the centres and decay rates,
    and the electron-electron cusp of the pair potential.
    """

    def __init__(self, n_up: int, n_down: int, dim: int, external_potential: Callable | None = None,
                 pair_potential: Callable | None = None):
        for name, value, low in (("n_up", n_up, 0), ("n_down", n_down, 0), ("dim", dim, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if n_up + n_down < 1:
            raise ValueError("there must be at least one particle")
        for name, value in (("external_potential", external_potential), ("pair_potential", pair_potential)):
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable or None, got {type(value).__name__}")
        self.n_up, self.n_down, self.dim = n_up, n_down, dim
        self.external_potential = external_potential
        self.pair_potential = pair_potential
        if isinstance(pair_potential, (CoulombPair, ContactPair)):
            pair_potential.cusp(dim)  # validates the dimension

    @property
    def n_particles(self) -> int:
        return self.n_up + self.n_down

    @property
    def spin_groups(self) -> list[list[int]]:
        """Index sets of identical fermions (for ``dlpde.shared.testing.assert_antisymmetric``)."""
        return [g for g in (list(range(self.n_up)), list(range(self.n_up, self.n_particles))) if g]

    def ansatz_options(self) -> dict:
        """Keyword arguments the ansaetze take from the system: ``envelope``, ``centers``,
        ``decays``, ``cusp``. Used by ``<Ansatz>.from_hamiltonian``."""
        ext = self.external_potential
        options = {}
        if hasattr(ext, "envelope") and hasattr(ext, "centers") and hasattr(ext, "decays"):
            options.update(envelope=ext.envelope, centers=ext.centers(self.dim), decays=ext.decays())
        cusp = getattr(self.pair_potential, "cusp", None)
        options["cusp"] = cusp(self.dim) if cusp is not None else None
        return options

    def check_positions(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("positions must be a floating-point torch.Tensor")
        if x.dim() != 3 or x.shape[1:] != (self.n_particles, self.dim):
            raise ValueError(f"positions must have shape (batch, {self.n_particles}, {self.dim}), "
                             f"got {tuple(x.shape)}")

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        """``V(X) = sum_i V_ext(x_i) + sum_{i<j} V_pair(r_ij) + constant``, shape ``(batch,)``."""
        self.check_positions(x)
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if self.external_potential is not None:
            total = total + self.external_potential(x).sum(-1)
            constant = getattr(self.external_potential, "constant", None)
            if constant is not None:
                total = total + constant()
        if self.pair_potential is not None and self.n_particles > 1:
            i, j = torch.triu_indices(self.n_particles, self.n_particles, 1, device=x.device)
            r = torch.linalg.vector_norm(x[:, i] - x[:, j], dim=-1)
            total = total + self.pair_potential(r).sum(-1)
        return total

    def __repr__(self):
        return (f"ManyBodyHamiltonian(n_up={self.n_up}, n_down={self.n_down}, dim={self.dim}, "
                f"external_potential={self.external_potential!r}, pair_potential={self.pair_potential!r})")


def atom(charge: int, n_up: int | None = None, n_down: int | None = None) -> ManyBodyHamiltonian:
    """A neutral (by default) atom of nuclear charge ``Z`` at the origin in 3-D, with Coulomb
    repulsion: ``H = -1/2 sum Lap_i - sum_i Z/|x_i| + sum_{i<j} 1/|x_i - x_j|``.

    Default spins: ``n_up = ceil(Z/2)``, ``n_down = floor(Z/2)``. Helium: ``atom(2)``, exact
    ground-state energy -2.903724377 Ha.
    """
    if isinstance(charge, bool) or not isinstance(charge, int) or charge < 1:
        raise ValueError(f"charge must be a positive int, got {charge!r}")
    n_up = (charge + 1) // 2 if n_up is None else n_up
    n_down = charge // 2 if n_down is None else n_down
    return ManyBodyHamiltonian(n_up, n_down, 3, coulomb_nuclei([float(charge)], [[0.0, 0.0, 0.0]]),
                               coulomb_pair(1.0))


def _log_abs_function(wavefunction: Callable) -> Callable:
    """``X -> log|psi(X)|`` with the parameters of a module detached (no parameter graph)."""
    if isinstance(wavefunction, torch.nn.Module):
        state = {name: t.detach() for name, t in wavefunction.named_parameters()}
        state.update({name: t for name, t in wavefunction.named_buffers()})
        return lambda y: functional_call(wavefunction, state, (y,))[1]
    return lambda y: wavefunction(y)[1]


def local_energy(hamiltonian: ManyBodyHamiltonian, wavefunction: Callable, x: torch.Tensor,
                 method: str = "auto", n_samples: int = 1, generator: torch.Generator | None = None,
                 chunk_size: int | None = None) -> torch.Tensor:
    """``E_L(X) = -1/2 (Lap log|psi| + |grad log|psi||^2) + V(X)``, shape ``(batch,)``.

    Args:
        hamiltonian: a ``ManyBodyHamiltonian``.
        wavefunction: ``X -> (sign, log|psi|)``, each ``(batch,)``, composable with ``torch.func``.
        x: positions ``(batch, N, d)``.
        method: ``"forward"`` (the forward Laplacian, one pass of value, gradient and Laplacian),
            ``"exact"`` (forward-over-reverse, ``N d`` Hessian-vector products), ``"hutchinson"``
            (``n_samples`` Rademacher probes from ``generator``; unbiased) or ``"auto"`` (the
            default: forward, and exact for a wavefunction using an operation the forward
            Laplacian has no rule for). Forward and exact agree to rounding (about 1e-14 relative
            in float64).
        chunk_size: bounds memory (``torch.func.vmap`` chunks, or batch rows per forward pass).

    The result is detached from the wavefunction's parameters (VMC uses it as a weight).
    """
    if not isinstance(hamiltonian, ManyBodyHamiltonian):
        raise TypeError(f"hamiltonian must be a ManyBodyHamiltonian, got {type(hamiltonian).__name__}")
    check_callable(wavefunction, "wavefunction")
    check_choice(method, "method", ("auto", "forward", "exact", "hutchinson"))
    hamiltonian.check_positions(x)
    check_tensor(x, "x", dim=3, finite=True)
    log_abs = _log_abs_function(wavefunction)
    options = dict(n_samples=n_samples, generator=generator, return_gradient=True, chunk_size=chunk_size)
    if method == "auto":
        try:
            lap, grad = laplacian(log_abs, x.detach(), method="forward", **options)
        except ForwardLaplacianError:
            lap, grad = laplacian(log_abs, x.detach(), method="exact", **options)
    else:
        lap, grad = laplacian(log_abs, x.detach(), method=method, **options)
    kinetic = -0.5 * (lap + (grad**2).sum((1, 2)))
    with torch.no_grad():
        return kinetic.detach() + hamiltonian.potential(x.detach())
