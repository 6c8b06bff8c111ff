"""``MomentTensorPotential``: Shapeev's moment tensor potential (MTP).

A. V. Shapeev, "Moment tensor potentials: a class of systematically improvable interatomic
potentials", Multiscale Model. Simul. 14, 1153 (2016).

Moment tensors of atom ``i``, for radial index ``mu``, neighbour species ``s`` and order ``nu``:

    M_{mu,s,nu}(i) = sum_{j in N(i), z_j = s} f_mu(r_ij) u_ij^{(x) nu},   u_ij = r_ij / |r_ij|,

a symmetric Cartesian tensor of order ``nu`` (``u^{(x) 0} = 1``). The radial functions are
Chebyshev polynomials times Shapeev's cutoff factor, ``f_mu(r) = T_mu(xi(r)) (1 - r/r_c)^2``
with ``xi`` mapping ``[r_min, r_c]`` to ``[-1, 1]``.

Rotation invariants are full contractions of products of moment tensors. This implementation
uses the connected contractions of one, two and three tensors: ``M_{.,0}``; ``M_{nu} : M_{nu}``
(``nu`` shared indices); and, for orders ``(a, b, c)`` obeying the triangle inequality with
``a + b + c`` even, the unique contraction of three symmetric tensors in which tensors ``k``
and ``l`` share ``e_kl = (nu_k + nu_l - nu_m) / 2`` indices. Following Shapeev, each moment has
the level ``lev(M_{mu,nu}) = 2 + 4 mu + nu`` and a contraction the sum of its moments' levels.

Readouts:
  - ``"linear"`` (Shapeev's construction): the basis is every product of contracted invariants
    (including the empty product 1) of total level ``<= level_max``; the atomic energy is
    ``sum_alpha w_{z_i, alpha} B_alpha(i)``, a per-species linear model that ``fit_potential``
    fits exactly by linear least squares on energies and forces.
  - ``"mlp"``: the contracted invariants (standardised) feed a per-species MLP.
"""

from __future__ import annotations

import itertools
import math

import torch

from dlpde.shared import check_int, check_positive, check_positive_int, check_real, check_tensor

from ._descriptor import DescriptorPotential
from ._neighbours import neighbour_table

__all__ = ["MomentTensorPotential", "chebyshev_radial_functions", "moment_invariants", "basis_products"]


def chebyshev_radial_functions(distance: torch.Tensor, n_functions: int, cutoff: float,
                               min_distance: float) -> torch.Tensor:
    """``f_mu(r) = T_mu(xi) (1 - r / r_c)^2`` for ``mu = 0..n-1``, zero beyond r_c; ``(..., n)``.

    ``xi = (2 r - r_c - r_min) / (r_c - r_min)``; ``T_mu`` by the recurrence
    ``T_{mu+1} = 2 xi T_mu - T_{mu-1}``.
    """
    check_tensor(distance, "distance", nonempty=False)
    n_functions = check_positive_int(n_functions, "n_functions")
    cutoff = check_positive(cutoff, "cutoff")
    min_distance = check_real(min_distance, "min_distance", 0.0)
    if not min_distance < cutoff:
        raise ValueError(f"min_distance must lie in [0, cutoff), got {min_distance} (cutoff {cutoff})")
    xi = (2.0 * distance - cutoff - min_distance) / (cutoff - min_distance)
    values = [torch.ones_like(xi), xi]
    for _ in range(2, n_functions):
        values.append(2.0 * xi * values[-1] - values[-2])
    damping = torch.where(distance < cutoff, (1.0 - distance / cutoff) ** 2, torch.zeros_like(distance))
    return torch.stack(values[:n_functions], dim=-1) * damping[..., None]


def _is_connected_contraction(orders) -> bool:
    """Whether moments of these tensor orders have a connected full contraction (see above)."""
    if len(orders) == 1:
        return orders[0] == 0
    if len(orders) == 2:
        return orders[0] == orders[1] and orders[0] >= 1
    a, b, c = orders
    return min(a, b, c) >= 1 and min(a + b - c, a + c - b, b + c - a) >= 0 and (a + b + c) % 2 == 0


def _level(moments) -> int:
    """Shapeev's level of a product of moments ``(mu, s, nu)``: ``sum (2 + 4 mu + nu)``."""
    return sum(2 + 4 * mu + nu for mu, _, nu in moments)


def moment_invariants(n_species: int, max_order: int, level_max: int) -> list[tuple]:
    """Connected contractions of 1-3 moments ``(mu, s, nu)`` of level ``<= level_max``."""
    n_species = check_positive_int(n_species, "n_species")
    max_order = check_int(max_order, "max_order", minimum=0)
    level_max = check_int(level_max, "level_max", minimum=2)
    n_radial = (level_max - 2) // 4 + 1
    moments = [(mu, s, nu) for mu in range(n_radial) for s in range(n_species)
               for nu in range(max_order + 1) if 2 + 4 * mu + nu <= level_max]
    found = []
    for size in (1, 2, 3):
        for combination in itertools.combinations_with_replacement(moments, size):
            if _level(combination) <= level_max and _is_connected_contraction(
                    [nu for _, _, nu in combination]):
                found.append(combination)
    return found


def basis_products(invariants, level_max: int) -> list[tuple[int, ...]]:
    """Multisets of invariant indices of total level ``<= level_max``, the empty one first."""
    level_max = check_int(level_max, "level_max", minimum=0)
    if isinstance(invariants, (str, bytes)) or not isinstance(invariants, (list, tuple)):
        raise TypeError(f"invariants must be a list of moment contractions, got {type(invariants).__name__}")
    for invariant in invariants:
        triples = isinstance(invariant, tuple) and all(
            isinstance(m, tuple) and len(m) == 3 and all(isinstance(v, int) for v in m) for m in invariant)
        if not triples:
            raise TypeError("each invariant must be a tuple of (mu, s, nu) integer triples "
                            "(as moment_invariants returns them)")
    levels = [_level(invariant) for invariant in invariants]
    products = [()]

    def extend(product, start, level):
        for k in range(start, len(levels)):
            if level + levels[k] <= level_max:
                products.append(product + (k,))
                extend(product + (k,), k, level + levels[k])

    extend((), 0, 0)
    return products


class MomentTensorPotential(DescriptorPotential):
    """Moment tensor potential with a linear (Shapeev) or MLP readout.

    Args:
        elements: atomic numbers the model knows.
        cutoff: r_c; min_distance: r_min of the Chebyshev map (a typical closest approach).
        level_max: largest level of a contraction (``"mlp"``) or of a basis function (``"linear"``).
        max_order: largest tensor order ``nu`` (``<= 4``).
        readout: ``"linear"`` or ``"mlp"``; hidden, seed: the MLP's widths and initial weights.
        dtype: parameter dtype.
    """

    def __init__(self, elements, cutoff: float = 5.0, min_distance: float = 1.5, level_max: int = 16,
                 max_order: int = 4, readout: str = "linear", hidden=(64, 64), seed: int = 0,
                 dtype=torch.float64):
        if readout not in ("linear", "mlp"):
            raise ValueError(f"readout must be 'linear' or 'mlp', got {readout!r}")
        if not 0 <= min_distance < cutoff:
            raise ValueError(f"min_distance must lie in [0, cutoff), got {min_distance}")
        if isinstance(max_order, bool) or not (isinstance(max_order, int) and 0 <= max_order <= 4):
            raise ValueError(f"max_order must be an int in 0..4, got {max_order!r}")
        if isinstance(level_max, bool) or not (isinstance(level_max, int) and level_max >= 2):
            raise ValueError(f"level_max must be an int >= 2, got {level_max!r}")
        self.min_distance, self.level_max, self.max_order, self.readout = (
            float(min_distance), level_max, max_order, readout)
        self.n_radial = (level_max - 2) // 4 + 1
        invariants = moment_invariants(len({int(z) for z in elements}), max_order, level_max)
        super().__init__(elements, cutoff, len(invariants), hidden if readout == "mlp" else None, seed,
                         dtype)
        self.invariants = invariants
        if readout == "linear":
            self.basis = basis_products(invariants, level_max)
            self.weights = torch.nn.Parameter(torch.zeros(self.n_species, len(self.basis), dtype=dtype))

    # -- features ----------------------------------------------------------------------------
    def _environments(self, positions, species_index, cells):
        """Each atom's pair vectors as a padded table ``(A, D, 3)`` and the one-hot species of
        the neighbours ``(A, D, S)`` (zero rows for padding); also the pair table ``(A, D)``."""
        pairs, vectors = self.pairs(positions, cells)
        table = neighbour_table(pairs.centers, pairs.n_atoms)
        present = table >= 0
        slot = table.clamp_min(0)
        padding = positions.new_zeros(3)
        padding[0] = 2.0 * self.cutoff  # beyond the cutoff: a padded slot contributes exactly zero
        environment = torch.where(present[..., None], vectors[slot], padding)
        neighbour_species = species_index.reshape(-1)[pairs.neighbours[slot]]
        channel = torch.nn.functional.one_hot(neighbour_species, self.n_species).to(positions.dtype)
        return environment, channel * present[..., None], pairs, table

    def _pair_parts(self, vectors: torch.Tensor, channel: torch.Tensor, derivatives: bool = False) -> dict:
        """The factors of the pair terms ``T_{c,nu}(r) = w_c(r) U_nu(r)`` of pair vectors ``(..., 3)``:
        ``weight`` ``w_c = f_mu(|r|) [z = s]`` ``(..., mu*S+s)`` (``neighbour one-hot channel (..., S)``)
        and ``powers`` ``U_nu = u^{(x) nu}``, ``u = r / |r|``, a list of ``(..., 3^nu)``.

        With ``derivatives=True`` also ``slope`` ``f_mu'(|r|) [z = s]``, ``unit`` ``u``, and
        ``power_derivatives`` ``dU_nu/dr`` ``(..., 3^nu, 3)`` by ``dU_{nu+1}/dr = dU_nu/dr (x) u +
        U_nu (x) (I - u u^T) / |r|``; then ``dT/dr = w' U (x) u + w dU/dr``.
        """
        from torch import func

        distance = vectors.pow(2).sum(-1).sqrt()
        unit = vectors / distance[..., None]

        def radial_functions(r):
            return chebyshev_radial_functions(r, self.n_radial, self.cutoff, self.min_distance)

        parts = {"unit": unit}
        if derivatives:  # f'(r) elementwise: one forward-mode product with a unit tangent
            radial, radial_slope = func.jvp(radial_functions, (distance,), (torch.ones_like(distance),))
            parts["slope"] = (radial_slope[..., :, None] * channel[..., None, :]).flatten(-2)
            projector = (torch.eye(3, dtype=vectors.dtype, device=vectors.device)
                         - unit[..., :, None] * unit[..., None, :]) / distance[..., None, None]
        else:
            radial = radial_functions(distance)
        parts["weight"] = (radial[..., :, None] * channel[..., None, :]).flatten(-2)
        power = torch.ones_like(distance)[..., None]
        power_derivative = torch.zeros_like(vectors)[..., None, :]
        parts["powers"], parts["power_derivatives"] = [], []
        for nu in range(self.max_order + 1):
            parts["powers"].append(power)
            if derivatives:
                parts["power_derivatives"].append(power_derivative)
            if nu == self.max_order:
                break
            if derivatives:
                power_derivative = (power_derivative[..., :, None, :] * unit[..., None, :, None]
                                    + power[..., :, None, None] * projector[..., None, :, :]).flatten(-3, -2)
            power = (power[..., :, None] * unit[..., None, :]).flatten(-2)
        return parts

    def _moments(self, parts) -> list[torch.Tensor]:
        """``M_nu[..., c, k] = sum_d w_c(r_d) U_nu(r_d)_k`` from pair parts over ``(..., D)`` slots."""
        return [torch.einsum("...dc,...dk->...ck", parts["weight"], power) for power in parts["powers"]]

    def _contract(self, channels, invariant, gradients: bool = False):
        """One invariant from the moments ``channels[nu][mu*S+s] (..., 3^nu)``; with
        ``gradients=True`` also ``[(moment, dI/dM_moment), ...]`` for each of its factors."""
        def tensor(moment):
            mu, s, nu = moment
            return channels[nu][mu * self.n_species + s]

        if len(invariant) == 1:
            value = tensor(invariant[0])[..., 0]
            return (value, [(invariant[0], torch.ones_like(value)[..., None])]) if gradients else value
        if len(invariant) == 2:
            first, second = tensor(invariant[0]), tensor(invariant[1])
            value = (first * second).sum(-1)
            return (value, [(invariant[0], second), (invariant[1], first)]) if gradients else value
        a, b, c = (nu for _, _, nu in invariant)
        e_ab, e_ac, e_bc = (a + b - c) // 2, (a + c - b) // 2, (b + c - a) // 2
        first = tensor(invariant[0]).unflatten(-1, (3**e_ab, 3**e_ac))
        second = tensor(invariant[1]).unflatten(-1, (3**e_ab, 3**e_bc))
        third = tensor(invariant[2]).unflatten(-1, (3**e_ac, 3**e_bc))
        # I = sum_{p,q,r} A_pq B_pr C_qr = sum_{q,r} (A^T B)_qr C_qr
        first_second = first.transpose(-1, -2) @ second
        value = (first_second * third).sum((-1, -2))
        if not gradients:
            return value
        return value, [(invariant[0], (second @ third.transpose(-1, -2)).flatten(-2)),
                       (invariant[1], (first @ third).flatten(-2)),
                       (invariant[2], first_second.flatten(-2))]

    def _contractions(self, moments: list[torch.Tensor]) -> torch.Tensor:
        """The invariants ``(..., n_invariants)`` from moments ``M_nu (..., mu*S+s, 3^nu)``."""
        channels = [moment.unbind(-2) for moment in moments]
        return torch.stack([self._contract(channels, invariant) for invariant in self.invariants], dim=-1)

    def environment_invariants(self, environment: torch.Tensor, channel: torch.Tensor) -> torch.Tensor:
        """Contracted invariants from padded pair vectors ``(..., D, 3)`` and neighbour one-hot
        species ``(..., D, S)``; ``M_nu = sum_d T_nu(r_d)``; returns ``(..., n_invariants)``."""
        return self._contractions(self._moments(self._pair_parts(environment, channel)))

    def _products(self, invariants: torch.Tensor, jacobian: bool = False):
        """Basis functions ``B_alpha = prod_{k in alpha} I_k``: ``(..., n_invariants) -> (..., n_basis)``;
        with ``jacobian=True`` also ``dB/dI (..., n_basis, n_invariants)``."""
        ones = torch.ones_like(invariants[..., 0])
        factors = invariants.unbind(-1)
        columns = [math.prod((factors[k] for k in product), start=ones) for product in self.basis]
        basis = torch.stack(columns, dim=-1)
        if not jacobian:
            return basis
        derivative = invariants.new_zeros(*basis.shape, invariants.shape[-1])
        for alpha, product in enumerate(self.basis):
            for position, k in enumerate(product):
                others = product[:position] + product[position + 1:]
                derivative[..., alpha, k] += math.prod((factors[q] for q in others), start=ones)
        return basis, derivative

    def descriptors(self, positions, species_index, cells) -> torch.Tensor:
        """The contracted invariants of every atom, ``(B, N, n_invariants)``."""
        environment, channel, _, _ = self._environments(positions, species_index, cells)
        invariants = self.environment_invariants(environment, channel)
        return invariants.reshape(*positions.shape[:2], len(self.invariants))

    def atomic_energies(self, positions, species_index, cells):
        if self.readout == "mlp":
            return super().atomic_energies(positions, species_index, cells)
        basis = self._products(self.descriptors(positions, species_index, cells))
        return (basis * self.weights[species_index]).sum(-1)

    def linear_design(self, positions, species_index, cells) -> tuple[torch.Tensor, torch.Tensor]:
        """For the linear readout, ``E_b = sum_{s,alpha} w_{s,alpha} Phi_{b,s,alpha}`` (before the
        energy scale and shift): returns ``Phi (B, S * n_basis)`` and ``dPhi/dx (B, S * n_basis, N, 3)``.

        ``Phi_{b,s,alpha} = sum_{i in b, z_i = s} B_alpha(i)``. The derivative is exact, by the
        chain rule through the moments: atom i's basis depends on its pair vectors r_d only
        through ``M = sum_d T(r_d)``, so ``dB/dr_d = (dB/dI) (dI/dM) (dT/dr)(r_d)``, each factor
        in closed form (products, contractions, ``_pair_parts``), and
        ``d r_ij / d x_j = -d r_ij / d x_i = I`` assembling dPhi/dx. This is much cheaper than
        one reverse pass per basis function.
        """
        b, n, _ = positions.shape
        environment, channel, pairs, table = self._environments(positions.detach(), species_index, cells)
        parts = self._pair_parts(environment, channel, derivatives=True)
        channels = [moment.unbind(-2) for moment in self._moments(parts)]
        # dI/dr_d = sum over the factors M_{c,nu} of I: <dI/dM, dT_{c,nu}/dr (r_d)>
        #         = w_c'(r_d) <dI/dM, U_nu(r_d)> u_d + w_c(r_d) <dI/dM, dU_nu/dr (r_d)>
        powers = [power.transpose(1, 2) for power in parts["powers"]]  # (A, m, D)
        # (A, m, D * 3)
        power_derivatives = [d.permute(0, 2, 1, 3).flatten(2) for d in parts["power_derivatives"]]
        weight, slope, unit = parts["weight"], parts["slope"], parts["unit"]
        values, invariant_derivatives = [], []
        for invariant in self.invariants:
            value, gradients = self._contract(channels, invariant, gradients=True)
            derivative = 0.0
            for (mu, s, nu), gradient in gradients:
                c = mu * self.n_species + s
                along_power = (gradient[:, None, :] @ powers[nu])[:, 0]  # (A, D)
                along_derivative = (gradient[:, None, :] @ power_derivatives[nu]).reshape(unit.shape)
                derivative = derivative + (slope[..., c, None] * along_power[..., None] * unit
                                           + weight[..., c, None] * along_derivative)
            values.append(value)
            invariant_derivatives.append(derivative)
        invariants = torch.stack(values, dim=-1)  # (A, K)
        d_invariant = torch.stack(invariant_derivatives, dim=1)  # (A, K, D, 3)
        basis, d_basis_d_invariant = self._products(invariants, jacobian=True)  # (A, P), (A, P, K)
        jacobian = torch.einsum("apk,akdx->adpx", d_basis_d_invariant, d_invariant)  # (A, D, P, 3)
        one_hot = torch.nn.functional.one_hot(species_index.reshape(-1), self.n_species).to(basis.dtype)
        design = torch.einsum("ap,as->asp", basis, one_hot).reshape(b, n, -1).sum(1)
        # dB(i)/dr_d for the weights of species z_i: (A, D, S * P, 3); padded slots are exactly 0
        per_species = (jacobian[:, :, None] * one_hot[:, None, :, None, None]).flatten(2, 3)
        neighbour = torch.where(table >= 0, pairs.neighbours[table.clamp_min(0)], 0) \
            if pairs.neighbours.numel() else table.clamp_min(0)
        # r_d = x_j - x_i: + dB/dr_d onto the neighbour j, - onto the centre i
        gradient = torch.zeros(b * n, per_species.shape[2], 3, dtype=basis.dtype, device=basis.device)
        gradient = (gradient.index_add(0, neighbour.reshape(-1), per_species.flatten(0, 1))
                    - per_species.sum(1))
        # x_j of configuration b only enters Phi_b
        gradient = gradient.reshape(b, n, -1, 3).permute(0, 2, 1, 3)
        return design, gradient
