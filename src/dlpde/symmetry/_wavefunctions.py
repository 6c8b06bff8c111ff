"""Antisymmetric trial wavefunctions of ``n_up + n_down`` particles in R^d.

Every ansatz maps positions ``X`` of shape ``(batch, N, d)`` (the ``n_up`` spin-up particles
first) to ``(sign, log|psi|)``, each ``(batch,)``; ``psi`` changes sign under the exchange of two
particles of the same spin. All are composable with ``torch.func`` (for the exact Laplacian of
the local energy) and run on any device and dtype of their parameters.

- ``SlaterJastrow``: ``psi = sum_k det[phi^k_a(x_i)]_up det[phi^k_a(x_i)]_down exp(J(X))``, orbitals
  from an MLP times an envelope or from a basis (``HermiteFunctions``), a symmetric Jastrow
  network ``J`` with the electron-electron cusp (Kato 1957) built in.
- ``BackflowDeterminant``: FermiNet (Pfau et al. 2020): permutation-equivariant one- and
  two-particle streams, generalised orbitals ``phi^k_a(x_i; X)``, several determinants.
- ``VandermondeAnsatz``: ``psi = exp(J(X)) sum_k prod_spins prod_{i<j} (y^k_j - y^k_i)`` with
  ``y^k_i`` learned permutation-equivariant scalar features: the ``O(N^2)`` antisymmetric
  construction of Han, Li, Lin, Lu, Zhang, Zhang (arXiv:1912.01765).
- ``ExplicitAntisymmetrizer``: ``psi = sum_P sign(P) g(P X)`` over all ``n_up! n_down!``
  same-spin permutations of an arbitrary network ``g``: exact, a reference for small ``N``.

Systems: ``envelope="gaussian"`` (traps; orbital decay ``exp(-sigma |x - c|^2)``, smooth inputs)
or ``"exponential"`` (atoms; ``exp(-sigma |x - R|)``, distances as inputs). ``from_hamiltonian``
takes the envelope, centres, decay rates and cusp from a ``ManyBodyHamiltonian``.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from dlpde.shared.autodiff import group_mean
from dlpde.shared.checks import check_dtype, check_int, check_positive_int

from ._layers import as_generator, check_sizes, linear, mlp, random_tensor
from ._sets import EquivariantLayer

__all__ = ["SlaterJastrow", "BackflowDeterminant", "VandermondeAnsatz", "ExplicitAntisymmetrizer",
           "HermiteFunctions"]

_ENVELOPES = ("gaussian", "exponential")


# -- helpers -------------------------------------------------------------------------------------
def signed_logsumexp(signs: torch.Tensor, logs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sign, log|s|)`` of ``s = sum_k signs_k exp(logs_k)`` over the last dimension, stably."""
    shift = logs.amax(-1, keepdim=True).detach()
    total = (signs * torch.exp(logs - shift)).sum(-1)
    return torch.sign(total), torch.log(torch.abs(total)) + shift.squeeze(-1)


def _pairwise_distances(x: torch.Tensor, squared: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Differences ``x_i - x_j`` ``(B, N, N, d)`` and distances (or squares) ``(B, N, N)``.

    The diagonal is shifted before the norm so that its gradient stays finite (FermiNet's trick).
    """
    n = x.shape[1]
    diff = x.unsqueeze(2) - x.unsqueeze(1)
    if squared:
        return diff, (diff**2).sum(-1)
    eye = torch.eye(n, dtype=x.dtype, device=x.device)
    return diff, torch.linalg.vector_norm(diff + eye.unsqueeze(-1), dim=-1) * (1 - eye)


def _upper_pairs(n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.triu_indices(n, n, 1, device=device).unbind(0)


class _System(nn.Module):
    """Validation, spins, envelope kind, centres and decays shared by the ansaetze."""

    def __init__(self, n_up: int, n_down: int, dim: int, envelope: str, centers, decays, dtype):
        super().__init__()
        check_int(n_up, "n_up", minimum=0)
        check_int(n_down, "n_down", minimum=0)
        check_positive_int(dim, "dim")
        if n_up + n_down < 1:
            raise ValueError("there must be at least one particle")
        if envelope not in _ENVELOPES:
            raise ValueError(f"envelope must be one of {_ENVELOPES}, got {envelope!r}")
        dtype = check_dtype(dtype)
        centers = torch.zeros(1, dim) if centers is None else torch.as_tensor(centers)
        if centers.dim() != 2 or centers.shape[1] != dim:
            raise ValueError(f"centers must have shape (n_centers, {dim}), got {tuple(centers.shape)}")
        n_centers = centers.shape[0]
        default = 0.5 if envelope == "gaussian" else 1.0
        decays = torch.full((n_centers,), default) if decays is None else torch.as_tensor(decays).reshape(-1)
        if decays.numel() != n_centers or not bool((decays > 0).all()):
            raise ValueError(f"decays must be {n_centers} positive numbers, got {decays.tolist()}")
        self.n_up, self.n_down, self.dim, self.envelope = n_up, n_down, dim, envelope
        self.register_buffer("centers", centers.to(dtype))
        self.register_buffer("spins", torch.tensor([1.0] * n_up + [-1.0] * n_down, dtype=dtype))
        self.initial_decays = decays.to(torch.float64)

    @property
    def n_particles(self) -> int:
        return self.n_up + self.n_down

    @property
    def n_centers(self) -> int:
        return self.centers.shape[0]

    @property
    def spin_groups(self) -> list[list[int]]:
        """Index sets of identical fermions (for ``dlpde.shared.testing.assert_antisymmetric``)."""
        return [g for g in (list(range(self.n_up)), list(range(self.n_up, self.n_particles))) if g]

    @classmethod
    def from_hamiltonian(cls, hamiltonian, **kwargs):
        """Build for ``hamiltonian`` (particles, dimension, envelope, centres, decays, cusp);
        ``kwargs`` are the ansatz's own options and override the system's."""
        options = {**hamiltonian.ansatz_options(), **kwargs}
        return cls(hamiltonian.n_up, hamiltonian.n_down, hamiltonian.dim, **options)

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("x must be a floating-point torch.Tensor of positions")
        if x.dim() != 3 or x.shape[1:] != (self.n_particles, self.dim):
            raise ValueError(f"x must have shape (batch, {self.n_particles}, {self.dim}), "
                             f"got {tuple(x.shape)}")
        if x.dtype != self.centers.dtype or x.device != self.centers.device:
            raise TypeError(f"x is {x.dtype} on {x.device} but the wavefunction is {self.centers.dtype} "
                            f"on {self.centers.device}; move one of them (module.to(...))")

    def center_offsets(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_i - R_m`` ``(B, N, M, d)`` and the envelope distance ``(B, N, M)``: ``|x_i - R_m|^2``
        (Gaussian) or ``|x_i - R_m|`` (exponential)."""
        diff = x.unsqueeze(2) - self.centers
        if self.envelope == "gaussian":
            return diff, (diff**2).sum(-1)
        return diff, torch.linalg.vector_norm(diff, dim=-1)

    def one_body_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Per-particle network inputs ``(B, N, M d [+ M])``: offsets from the centres, and for the
        exponential envelope also their lengths (FermiNet's inputs)."""
        diff, distance = self.center_offsets(x)
        parts = [diff.flatten(2)]
        if self.envelope == "exponential":
            parts.append(distance)
        return torch.cat(parts, -1)

    @property
    def one_body_width(self) -> int:
        return self.n_centers * (self.dim + (self.envelope == "exponential"))


class _OrbitalEnvelope(nn.Module):
    """``env_k(x_i) = sum_m pi_km exp(-|sigma_km| dist_im)``, ``(B, N, M) -> (B, N, K)``."""

    def __init__(self, n_orbitals: int, decays: torch.Tensor, dtype):
        super().__init__()
        self.decay = nn.Parameter(decays.to(dtype).repeat(n_orbitals, 1))
        self.weight = nn.Parameter(torch.ones(n_orbitals, decays.numel(), dtype=dtype))

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        return (torch.exp(-distance.unsqueeze(-2) * self.decay.abs()) * self.weight).sum(-1)


class _PairCusp(nn.Module):
    """``sum_{i<j} a_ij r_ij / (1 + |b_ij| r_ij)``: slope ``a_ij`` at ``r_ij = 0`` (the Kato cusp),
    ``a_ij`` = ``cusp[0]`` for equal spins and ``cusp[1]`` for opposite spins; ``b`` learned."""

    def __init__(self, spins: torch.Tensor, cusp: Sequence[float], dtype):
        super().__init__()
        if len(cusp) != 2 or not all(math.isfinite(float(c)) for c in cusp):
            raise ValueError(f"cusp must be two finite slopes (equal spins, opposite spins), got {cusp!r}")
        n = spins.numel()
        i, j = _upper_pairs(n, "cpu")
        same = (spins[i] == spins[j]).long()
        slope = torch.tensor([float(cusp[1]), float(cusp[0])], dtype=dtype)[same]
        self.register_buffer("slope", slope)
        self.register_buffer("pair_type", same)
        self.register_buffer("pairs", torch.stack([i, j], 1), persistent=False)
        self.inverse_range = nn.Parameter(torch.ones(2, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The cusp factor's exponent at positions ``x`` ``(B, N, d)``: one pair at a time
        (``group_mean``: local derivatives in the forward Laplacian)."""
        b = self.inverse_range.abs()[self.pair_type]

        def per_pair(local):
            r = torch.linalg.vector_norm(local[:, :, 1] - local[:, :, 0], dim=-1)
            return self.slope * r / (1 + b * r)

        return group_mean(per_pair, x, self.pairs) * self.pairs.shape[0]


def _check_log_factor(log_factor):
    if log_factor is not None and not callable(log_factor):
        raise TypeError(f"log_factor must be callable (an nn.Module to train it) or None, got "
                        f"{type(log_factor).__name__}")
    return log_factor


def _pair_cusp(system: _System, cusp, dtype) -> _PairCusp | None:
    return _PairCusp(system.spins, cusp, dtype) if cusp is not None and system.n_particles > 1 else None


class _NeuralJastrow(nn.Module):
    """A symmetric Jastrow exponent ``J(X) = rho(mean_{i<j} phi_2(p_ij), mean_i phi_1(q_i))``.

    ``q_i = (log(1 + |x_i - R_m|^2))_m`` and the spin of ``i``; ``p_ij`` = ``log(1 + r_ij^2)``,
    whether the spins agree, ``s_i + s_j`` and ``s_i s_j`` of the one-body ``s = log(1 + |x - R|^2)``.
    All inputs are smooth functions of squared distances, so ``J`` adds no cusp and no kink; the
    last layer starts at zero (``J = 0``). Invariant under permutations of equal-spin particles.
    The means are ``group_mean``s, so the forward Laplacian carries each particle's (pair's)
    derivatives with respect to its own coordinates only.
    """

    def __init__(self, system: _System, hidden: Sequence[int], generator, dtype):
        super().__init__()
        hidden = check_sizes(hidden, "jastrow_hidden")
        m = system.n_centers
        width = hidden[-1]
        self.has_pairs = system.n_particles > 1
        self.one_body = mlp([m + 1, *hidden], generator, dtype)
        self.pair = mlp([2 + 2 * m, *hidden], generator, dtype) if self.has_pairs else None
        self.readout = mlp([width * (1 + self.has_pairs), width, 1], generator, dtype, final_scale=0.0)

    def forward(self, x: torch.Tensor, system: _System) -> torch.Tensor:
        n = x.shape[1]
        batch = x.shape[0]

        def log_offsets(positions):  # (B, G, d) -> (B, G, M)
            return torch.log1p(((positions.unsqueeze(2) - system.centers) ** 2).sum(-1))

        singles = torch.arange(n, device=x.device).unsqueeze(1)
        spins = system.spins.expand(batch, -1).unsqueeze(-1)

        def one_body(local):  # (B, N, 1, d)
            return self.one_body(torch.cat([log_offsets(local[:, :, 0]), spins], -1))

        pooled = [group_mean(one_body, x, singles)]
        if self.has_pairs:
            i, j = _upper_pairs(n, x.device)
            same = (system.spins[i] == system.spins[j]).to(x.dtype).expand(batch, -1).unsqueeze(-1)

            def pair(local):  # (B, P, 2, d)
                xi, xj = local[:, :, 0], local[:, :, 1]
                r2 = ((xi - xj) ** 2).sum(-1, keepdim=True)
                si, sj = log_offsets(xi), log_offsets(xj)
                return self.pair(torch.cat([torch.log1p(r2), same, si + sj, si * sj], -1))

            pooled.append(group_mean(pair, x, torch.stack([i, j], 1)))
        return self.readout(torch.cat(pooled, -1)).squeeze(-1)


def _slater_determinants(orbitals: torch.Tensor, n_up: int, n_down: int, n_determinants: int):
    """``(sign, log|sum_k det Phi^k_up det Phi^k_down|)`` from orbital values
    ``(B, N, n_det (n_up + n_down))``: columns ``[:n_det n_up]`` are the spin-up orbitals (read at
    the spin-up particles), the rest the spin-down ones."""
    batch = orbitals.shape[0]
    signs = torch.ones(batch, n_determinants, dtype=orbitals.dtype, device=orbitals.device)
    logs = torch.zeros_like(signs)
    for start, count, offset in ((0, n_up, 0), (n_up, n_down, n_determinants * n_up)):
        if count == 0:
            continue
        block = orbitals[:, start:start + count, offset:offset + n_determinants * count]
        matrices = block.reshape(batch, count, n_determinants, count).transpose(1, 2)
        sign, log = torch.linalg.slogdet(matrices)
        signs, logs = signs * sign, logs + log
    return signed_logsumexp(signs, logs)


class HermiteFunctions(nn.Module):
    """Products of Hermite functions ``prod_k h_{n_k}(x_k / l)`` with ``|n| <= max_degree``.

    ``h_n(t) = H_n(t) exp(-t^2/2) / sqrt(2^n n! sqrt(pi))`` (the harmonic-oscillator eigenfunctions
    for ``omega = 1 / l^2``), by the stable recurrence
    ``h_{n+1} = sqrt(2/(n+1)) t h_n - sqrt(n/(n+1)) h_{n-1}``. ``(..., d) -> (..., K)`` with
    ``K = C(max_degree + d, d)``; a one-particle basis for ``SlaterJastrow(orbitals=...)``.
    """

    def __init__(self, dim: int, max_degree: int, length: float = 1.0):
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        self.max_degree = check_int(max_degree, "max_degree", minimum=0)
        if not (length > 0 and math.isfinite(length)):
            raise ValueError(f"length must be positive and finite, got {length}")
        self.length = float(length)
        indices = [a for total in range(max_degree + 1)
                   for a in itertools.product(range(total + 1), repeat=dim) if sum(a) == total]
        self.register_buffer("degrees", torch.tensor(indices, dtype=torch.long), persistent=False)

    @property
    def n_features(self) -> int:
        return self.degrees.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x / self.length
        values = [math.pi**-0.25 * torch.exp(-0.5 * t**2)]
        if self.max_degree >= 1:
            values.append(math.sqrt(2.0) * t * values[0])
        for n in range(1, self.max_degree):
            values.append(math.sqrt(2.0 / (n + 1)) * t * values[n] - math.sqrt(n / (n + 1)) * values[n - 1])
        table = torch.stack(values, -1)  # (..., d, max_degree + 1)
        coordinate = torch.arange(self.dim, device=x.device)
        return table[..., coordinate, self.degrees].prod(-1)


class _DeterminantAnsatz(_System):
    """``log psi = log|sum_k det_up^k det_down^k| + Jastrow + cusp + user factor`` from the
    subclass's ``orbital_values`` (shape ``(B, N, n_det N)``)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_input(x)
        sign, log_abs = _slater_determinants(self.orbital_values(x), self.n_up, self.n_down,
                                             self.n_determinants)
        if self.jastrow is not None:
            log_abs = log_abs + self.jastrow(x, self)
        if self.cusp is not None:
            log_abs = log_abs + self.cusp(x)
        if self.log_factor is not None:
            log_abs = log_abs + self.log_factor(x)
        return sign, log_abs


# -- Slater-Jastrow ------------------------------------------------------------------------------
class SlaterJastrow(_DeterminantAnsatz):
    """``psi(X) = exp(J(X)) sum_k det[phi^k_a(x_i)]_{i,a in up} det[phi^k_a(x_i)]_{i,a in down}``.

    Orbitals: ``orbitals="mlp"``: ``phi^k_a(x) = MLP(x)_{ka} env_{ka}(x)`` with the envelope of the
    system; or a basis module ``(..., d) -> (..., K)`` (e.g. ``HermiteFunctions``) and
    ``phi^k_a = sum_b C^k_{ab} basis_b`` with learned coefficients (no extra envelope). Jastrow:
    the Kato pair cusp ``sum_{i<j} a r_ij / (1 + b r_ij)`` (when ``cusp`` is given) plus a
    symmetric network of smooth pair and one-body features that starts at zero.

    Args:
        n_up, n_down, dim: particles and spatial dimension.
        n_determinants: number of determinant products summed.
        hidden: hidden widths of the orbital MLP.
        jastrow_hidden: hidden widths of the Jastrow network (``()`` for no network).
        envelope, centers, decays: ``"gaussian"`` or ``"exponential"``, centres ``(M, d)`` and
            initial decay rates ``(M,)``.
        cusp: ``(equal-spin slope, opposite-spin slope)`` or ``None``.
        log_factor: a user's own symmetric log-factor ``(B, N, d) -> (B,)`` added to ``log|psi|``
            (e.g. ``(a - 1) sum_{i<j} log r_ij`` for a singular ``1/r^2`` pair potential, whose cusp
            the smooth built-in Jastrow cannot carry). An ``nn.Module`` is registered as a
            submodule: its parameters are trained by ``VMC`` with the rest. It must be invariant
            under permutations of equal-spin particles (not checked).
        generator: seed or CPU generator for the parameters; dtype: their dtype.
    """

    def __init__(self, n_up: int, n_down: int, dim: int, *, n_determinants: int = 1,
                 orbitals: str | nn.Module = "mlp", hidden: Sequence[int] = (32, 32),
                 jastrow_hidden: Sequence[int] = (16, 16), envelope: str = "gaussian", centers=None,
                 decays=None, cusp: Sequence[float] | None = None, log_factor: Callable | None = None,
                 generator=0, dtype: torch.dtype = torch.float64):
        super().__init__(n_up, n_down, dim, envelope, centers, decays, dtype)
        generator = as_generator(generator)
        self.n_determinants = check_positive_int(n_determinants, "n_determinants")
        self.log_factor = _check_log_factor(log_factor)
        n_columns = n_determinants * self.n_particles
        if isinstance(orbitals, str):
            if orbitals != "mlp":
                raise ValueError(f"orbitals must be 'mlp' or a basis module, got {orbitals!r}")
            self.orbital_network = mlp([self.one_body_width, *check_sizes(hidden, "hidden"), n_columns],
                                       generator, dtype)
            self.orbital_envelope = _OrbitalEnvelope(n_columns, self.initial_decays, dtype)
            self.basis = None
        else:
            n_basis = getattr(orbitals, "n_features", None)
            if not isinstance(orbitals, nn.Module) or n_basis is None:
                raise TypeError("a basis must be an nn.Module with an attribute n_features")
            if n_basis < max(n_up, n_down):
                raise ValueError(f"the basis has {n_basis} functions, fewer than {max(n_up, n_down)} "
                                 "particles of one spin")
            self.basis = orbitals.to(dtype)
            self.coefficients = nn.Parameter(random_tensor((n_basis, n_columns), generator, dtype,
                                                           1 / math.sqrt(n_basis)))
        self.jastrow = _NeuralJastrow(self, jastrow_hidden, generator, dtype) if jastrow_hidden else None
        self.cusp = _pair_cusp(self, cusp, dtype)

    def orbital_values(self, x: torch.Tensor) -> torch.Tensor:
        """``phi^k_a(x_i)``, shape ``(B, N, n_det (n_up + n_down))`` (see ``_slater_determinants``)."""
        if self.basis is not None:
            return self.basis(x) @ self.coefficients
        _, distance = self.center_offsets(x)
        return self.orbital_network(self.one_body_inputs(x)) * self.orbital_envelope(distance)


# -- FermiNet ------------------------------------------------------------------------------------
class BackflowDeterminant(_DeterminantAnsatz):
    """FermiNet-style generalised orbitals ``phi^k_a(x_i; X)`` and ``sum_k det_up det_down``.

    Streams: one-particle ``h_i^0`` = offsets from the centres (and their lengths for the
    exponential envelope), two-particle ``h_ij^0`` = ``x_i - x_j`` and ``|x_i - x_j|`` (squared for
    the Gaussian envelope, so that the ansatz stays smooth). Layer ``l``:
    ``f_i = [h_i, mean_{j up} h_j, mean_{j down} h_j, mean_{j up} h_ij, mean_{j down} h_ij]``,
    ``h_i <- tanh(V f_i + b) (+ h_i)``, ``h_ij <- tanh(W h_ij + c) (+ h_ij)`` (residual when the
    widths agree). Orbitals ``phi^k_a(x_i) = (w^k_a . h_i^L + g^k_a) env^k_a(x_i)``. The result is
    equivariant under permutations of equal-spin particles, so each determinant is antisymmetric.
    Pfau, Spencer, Matthews, Foulkes, Phys. Rev. Research 2, 033429 (2020). ``cusp`` adds the
    Kato pair factor ``exp(sum a r / (1 + b r))``; ``jastrow_hidden`` (default ``()``: none) adds
    the symmetric neural Jastrow of ``SlaterJastrow`` (Slater-Jastrow-backflow); ``log_factor``
    a user's own symmetric log-factor, trainable when an ``nn.Module`` (see ``SlaterJastrow``).
    """

    def __init__(self, n_up: int, n_down: int, dim: int, *, n_determinants: int = 1,
                 one_body_width: int = 32, two_body_width: int = 8, n_layers: int = 2,
                 envelope: str = "gaussian", centers=None, decays=None,
                 cusp: Sequence[float] | None = None, jastrow_hidden: Sequence[int] = (),
                 log_factor: Callable | None = None, generator=0, dtype: torch.dtype = torch.float64):
        super().__init__(n_up, n_down, dim, envelope, centers, decays, dtype)
        generator = as_generator(generator)
        self.log_factor = _check_log_factor(log_factor)
        self.n_determinants = check_positive_int(n_determinants, "n_determinants")
        check_positive_int(one_body_width, "one_body_width")
        check_positive_int(two_body_width, "two_body_width")
        self.n_layers = check_positive_int(n_layers, "n_layers")
        self.n_species = int(n_up > 0) + int(n_down > 0)
        one, two = self.one_body_width, dim + 1
        self.one_body_layers, self.two_body_layers = nn.ModuleList(), nn.ModuleList()
        for layer in range(n_layers):
            self.one_body_layers.append(linear(one * (1 + self.n_species) + two * self.n_species,
                                               one_body_width, generator, dtype))
            if layer < n_layers - 1:
                self.two_body_layers.append(linear(two, two_body_width, generator, dtype))
            one, two = one_body_width, two_body_width
        n_columns = n_determinants * self.n_particles
        self.orbital_layer = linear(one_body_width, n_columns, generator, dtype)
        self.orbital_envelope = _OrbitalEnvelope(n_columns, self.initial_decays, dtype)
        self.cusp = _pair_cusp(self, cusp, dtype)
        jastrow_hidden = check_sizes(jastrow_hidden, "jastrow_hidden")
        self.jastrow = _NeuralJastrow(self, jastrow_hidden, generator, dtype) if jastrow_hidden else None

    def _species_means(self, h: torch.Tensor, dim: int) -> list[torch.Tensor]:
        """Means over the particles of each non-empty species along ``dim``."""
        means = []
        for start, count in ((0, self.n_up), (self.n_up, self.n_down)):
            if count:
                means.append(h.narrow(dim, start, count).mean(dim))
        return means


    def orbital_values(self, x: torch.Tensor) -> torch.Tensor:
        """``phi^k_a(x_i; X)``, shape ``(B, N, n_det (n_up + n_down))`` (see ``_slater_determinants``)."""
        n = self.n_particles
        _, center_distance = self.center_offsets(x)
        h_one = self.one_body_inputs(x)
        diff, pair = _pairwise_distances(x, squared=self.envelope == "gaussian")
        h_two = torch.cat([diff, pair.unsqueeze(-1)], -1)
        for layer, one_body in enumerate(self.one_body_layers):
            global_means = [m.unsqueeze(1).expand(-1, n, -1) for m in self._species_means(h_one, 1)]
            features = torch.cat([h_one, *global_means, *self._species_means(h_two, 2)], -1)
            update = torch.tanh(one_body(features))
            h_one = update + h_one if update.shape == h_one.shape else update
            if layer < len(self.two_body_layers):
                update = torch.tanh(self.two_body_layers[layer](h_two))
                h_two = update + h_two if update.shape == h_two.shape else update
        return self.orbital_layer(h_one) * self.orbital_envelope(center_distance)


# -- Vandermonde ---------------------------------------------------------------------------------
class _EquivariantFeatures(nn.Module):
    """``y^k_i = w_k . u_i + EqNet(U)_{ik}`` with ``u_i`` = (offsets from the centres, spin):
    ``EqNet`` = EquivariantLayer, tanh, ..., EquivariantLayer (Zaheer et al.)."""

    def __init__(self, system: _System, n_terms: int, width: int, depth: int, generator, dtype):
        super().__init__()
        n_inputs = system.n_centers * system.dim + 1
        self.skip = linear(n_inputs, n_terms, generator, dtype)
        sizes = [n_inputs] + [width] * depth + [n_terms]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(EquivariantLayer(a, b, "mean", generator, dtype))
            if i < len(sizes) - 2:
                layers.append(nn.Tanh())
        self.network = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, system: _System) -> torch.Tensor:
        diff = (x.unsqueeze(2) - system.centers).flatten(2)
        inputs = torch.cat([diff, system.spins.expand(x.shape[0], -1).unsqueeze(-1)], -1)
        return self.skip(inputs) + self.network(inputs)


class _MonotoneFeatures(nn.Module):
    """1-D features strictly increasing in the particle's own coordinate for every parameter value:
    ``y^k_i = |a_k| x_i + sum_m |v_km| tanh(|w_km| x_i + B_km(c(X), s_i))`` with the context
    ``c(X) = mean_j phi(u_j)`` (``u`` = offsets from the centres and spin), the same for every
    particle. So ``y^k_j - y^k_i`` has the sign of ``x_j - x_i``: each Vandermonde product vanishes
    exactly on the coincidence planes, the nodes of the 1-D fermionic ground state, and nowhere
    else, and the ``K`` products share one sign (no cancellation in their sum). Unconstrained
    features can fold (``y_i = y_j`` at ``x_i != x_j``): spurious nodes where ``E_L ~ 1/distance``.
    """

    def __init__(self, system: _System, n_terms: int, width: int, depth: int, generator, dtype):
        super().__init__()
        n_inputs = system.n_centers + 1
        self.context = mlp([n_inputs, *[width] * depth, width], generator, dtype)
        self.shift = linear(width + 1, n_terms * width, generator, dtype)
        self.slope = nn.Parameter(torch.ones(n_terms, dtype=dtype))
        self.rate = nn.Parameter(random_tensor((n_terms, width), generator, dtype))
        self.scale = nn.Parameter(random_tensor((n_terms, width), generator, dtype, 1 / math.sqrt(width)))

    def forward(self, x: torch.Tensor, system: _System) -> torch.Tensor:
        batch, n = x.shape[0], x.shape[1]
        spins = system.spins.expand(batch, -1).unsqueeze(-1)
        inputs = torch.cat([(x.unsqueeze(2) - system.centers).flatten(2), spins], -1)
        context = self.context(inputs).mean(1, keepdim=True).expand(-1, n, -1)
        shift = self.shift(torch.cat([context, spins], -1)).reshape(batch, n, *self.rate.shape)
        position = x[..., :1]  # (B, N, 1)
        units = torch.tanh(position.unsqueeze(-1) * self.rate.abs() + shift) * self.scale.abs()
        return position * self.slope.abs() + units.sum(-1)


class VandermondeAnsatz(_System):
    """``psi(X) = exp(J(X)) sum_{k=1..K} prod_{spins} prod_{i<j same spin} (y^k_j - y^k_i)``.

    ``y^k_i`` are scalar features, equivariant under permutations of equal-spin particles, and
    ``J`` is symmetric, so each product of pairwise differences (a Vandermonde determinant of the
    features) is antisymmetric at ``O(N^2)`` cost (Han, Li, Lin, Lu, Zhang, Zhang,
    arXiv:1912.01765). Defaults: in 1-D ``y^k_i`` strictly increasing in ``x_i`` for any parameters
    (a positive slope plus positive-weight tanh units whose shifts depend on a mean-pooled context),
    so every product has exactly the ground state's nodes ``x_i = x_j`` (unconstrained features fold
    at random initialisations, ``y_i = y_j`` at ``x_i != x_j``, and the spurious nodes give
    heavy-tailed local energies); in ``d > 1`` ``y = w . u_i + EquivariantLayer network``;
    ``J = neural Jastrow + pair cusp - sum_i sum_m |sigma_m| dist(x_i, R_m)`` (the envelope).

    In more than one dimension with three or more particles of one spin the construction is
    limited: ``psi`` vanishes exactly on the union of the pair surfaces ``{y_i = y_j}``, while a
    generic fermionic ground state in ``d > 1`` has a connected nodal surface that is not of this
    form for smooth features (for three fermions in the 2-D trap it is the set where the three are
    collinear, ``det[1, x_i, y_i] = 0``). Han et al. need non-smooth features there; the smooth
    learned ``y`` leaves a nodal error that training does not remove, so the constructor warns
    (``RuntimeWarning``). Use ``SlaterJastrow`` or ``BackflowDeterminant`` there. Measured on 3
    spin-polarised fermions in the 2-D trap (exact ``E = 5``; 256 walkers, 200 SR steps, default
    widths): Slater-Jastrow 5.00009 +- 9e-5 (variance 1.6e-4), Vandermonde 5.621 +- 0.005
    (variance 0.73).

    Args:
        features: ``None`` (learned) or a callable ``(B, N, d) -> (B, N, K)`` (or ``(B, N)``),
            equivariant under same-spin permutations; an ``nn.Module`` is trained with the rest.
        log_symmetric: ``None`` (learned ``J``) or a callable ``(B, N, d) -> (B,)``, invariant (a
            user's own symmetric factor, e.g. for a singular pair potential); an ``nn.Module``
            is registered as a submodule, so ``VMC`` trains its parameters.
        n_terms: ``K`` (learned features only).
        width, depth: of the equivariant feature network; jastrow_hidden: of the Jastrow network.

    ``VandermondeAnsatz.exact_harmonic_trap(n)`` is the exact 1-D trap ground state.
    """

    def __init__(self, n_up: int, n_down: int, dim: int, *, features: Callable | None = None,
                 log_symmetric: Callable | None = None, n_terms: int = 1, width: int = 32, depth: int = 2,
                 jastrow_hidden: Sequence[int] = (16, 16), envelope: str = "gaussian", centers=None,
                 decays=None, cusp: Sequence[float] | None = None, generator=0,
                 dtype: torch.dtype = torch.float64):
        super().__init__(n_up, n_down, dim, envelope, centers, decays, dtype)
        generator = as_generator(generator)
        check_positive_int(n_terms, "n_terms")
        check_positive_int(width, "width")
        check_int(depth, "depth", minimum=0)
        for name, value in (("features", features), ("log_symmetric", log_symmetric)):
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable or None")
        self.custom_features = features
        self.custom_log_symmetric = log_symmetric
        if dim > 1 and max(n_up, n_down) >= 3:
            warnings.warn(f"VandermondeAnsatz in {dim}-D with {max(n_up, n_down)} particles of one spin: a "
                          "product of pairwise differences of smooth scalar features cannot represent the "
                          "generic nodal surface in d > 1 (see the docstring); expect a nodal error that "
                          "training does not remove, or use SlaterJastrow / BackflowDeterminant",
                          RuntimeWarning, stacklevel=2)
        features_class = _MonotoneFeatures if dim == 1 else _EquivariantFeatures
        self.feature_network = (features_class(self, n_terms, width, depth, generator, dtype)
                                if features is None else None)
        if log_symmetric is None:
            self.jastrow = _NeuralJastrow(self, jastrow_hidden, generator, dtype) if jastrow_hidden else None
            self.decay = nn.Parameter(self.initial_decays.to(dtype))
            self.cusp = _pair_cusp(self, cusp, dtype)

    @classmethod
    def exact_harmonic_trap(cls, n_particles: int, omega: float = 1.0, dtype=torch.float64):
        """``psi = prod_{i<j} (x_j - x_i) exp(-omega sum_i x_i^2 / 2)``: the ground state of
        ``n_particles`` spin-polarised fermions in the 1-D trap ``omega^2 x^2 / 2``, energy
        ``omega N^2 / 2`` (no parameters)."""
        check_int(n_particles, "n_particles", minimum=2)
        return cls(n_particles, 0, 1, features=lambda x: x[..., 0],
                   log_symmetric=lambda x: -0.5 * omega * (x**2).sum((1, 2)), dtype=dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_input(x)
        if self.custom_features is not None:
            y = self.custom_features(x)
            y = y.unsqueeze(-1) if y.dim() == 2 else y
        else:
            y = self.feature_network(x, self)  # (B, N, K)
        signs = torch.ones(y.shape[0], y.shape[2], dtype=x.dtype, device=x.device)
        logs = torch.zeros_like(signs)
        for start, count in ((0, self.n_up), (self.n_up, self.n_down)):
            if count < 2:
                continue
            i, j = _upper_pairs(count, x.device)
            species = y[:, start:start + count]
            differences = species[:, j] - species[:, i]  # (B, pairs, K)
            signs = signs * torch.sign(differences).prod(1)
            logs = logs + torch.log(torch.abs(differences)).sum(1)
        sign, log_abs = signed_logsumexp(signs, logs)
        return sign, log_abs + self._log_symmetric(x)

    def _log_symmetric(self, x: torch.Tensor) -> torch.Tensor:
        if self.custom_log_symmetric is not None:
            return self.custom_log_symmetric(x)
        _, distance = self.center_offsets(x)
        total = -(distance * self.decay.abs()).sum((1, 2))
        if self.jastrow is not None:
            total = total + self.jastrow(x, self)
        if self.cusp is not None:
            total = total + self.cusp(x)
        return total


# -- explicit antisymmetrisation -----------------------------------------------------------------
def _parity(perm: Sequence[int]) -> int:
    inversions = sum(1 for a in range(len(perm)) for b in range(a + 1, len(perm)) if perm[a] > perm[b])
    return -1 if inversions % 2 else 1


class ExplicitAntisymmetrizer(_System):
    """``psi(X) = E(X) sum_{P in S_up x S_down} sign(P) g(P X)`` over all same-spin permutations.

    ``g`` is any network ``(B, N, d) -> (B,)`` (default: an MLP of the flattened offsets from the
    centres) and ``E(X) = exp(-sum_i sum_m |sigma_m| dist(x_i, R_m))`` a symmetric envelope (times the
    Kato pair factor when ``cusp`` is given). Exact
    antisymmetry at ``n_up! n_down!`` evaluations of ``g``: a reference for ``N <= 6``
    (at most 720 permutations).
    """

    max_permutations = 720

    def __init__(self, n_up: int, n_down: int, dim: int, *, network: Callable | None = None,
                 hidden: Sequence[int] = (64, 64), envelope: str = "gaussian", centers=None, decays=None,
                 cusp: Sequence[float] | None = None, generator=0, dtype: torch.dtype = torch.float64):
        super().__init__(n_up, n_down, dim, envelope, centers, decays, dtype)
        count = math.factorial(n_up) * math.factorial(n_down)
        if count > self.max_permutations:
            raise ValueError(f"{count} permutations (n_up! n_down!) exceed {self.max_permutations}: "
                             "use a determinant ansatz for this many particles")
        if network is not None and not callable(network):
            raise TypeError("network must be callable or None")
        generator = as_generator(generator)
        perms, parities = [], []
        for up in itertools.permutations(range(n_up)):
            for down in itertools.permutations(range(n_up, n_up + n_down)):
                perm = list(up) + list(down)
                perms.append(perm)
                parities.append(_parity(perm))
        self.register_buffer("permutations", torch.tensor(perms, dtype=torch.long), persistent=False)
        self.register_buffer("parities", torch.tensor(parities, dtype=dtype), persistent=False)
        self.network = network if network is not None else mlp(
            [self.n_particles * self.n_centers * dim, *check_sizes(hidden, "hidden"), 1], generator, dtype)
        self.decay = nn.Parameter(self.initial_decays.to(dtype))
        self.uses_default_network = network is None
        self.cusp = _pair_cusp(self, cusp, dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_input(x)
        batch, n_perm = x.shape[0], self.permutations.shape[0]
        permuted = x[:, self.permutations].reshape(batch * n_perm, self.n_particles, self.dim)
        if self.uses_default_network:
            offsets = (permuted.unsqueeze(2) - self.centers).flatten(1)
            values = self.network(offsets).reshape(batch, n_perm)
        else:
            values = self.network(permuted).reshape(batch, n_perm)
        total = (values * self.parities).sum(-1)
        _, distance = self.center_offsets(x)
        log_abs = torch.log(torch.abs(total)) - (distance * self.decay.abs()).sum((1, 2))
        if self.cusp is not None:
            log_abs = log_abs + self.cusp(x)
        return torch.sign(total), log_abs
