"""Numerics of the building blocks against independent references: ASE's neighbour list,
brute-force symmetry functions, an exactly recoverable linear fit, closed-form cutoffs."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from dlpde.symmetry.pes import (
    CoordinateMLP,
    EquivariantPotential,
    MomentTensorPotential,
    SymmetryFunctionPotential,
    basis_products,
    bessel_basis,
    cosine_cutoff,
    evaluate_potential,
    fit_potential,
    moment_invariants,
    neighbour_list,
    polynomial_cutoff,
)

from .conftest import make_models


def test_import_is_light():
    code = ("import sys, dlpde.symmetry.pes; print([m for m in "
            "('e3nn', 'ase', 'matplotlib', 'skimage', 'scipy.optimize') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_periodic_neighbour_list_matches_ase(cu_fcc):
    from ase import Atoms
    from ase.neighborlist import neighbor_list as ase_neighbor_list

    cutoff = 5.0  # larger than half the 7.2 Angstrom cell: atoms see several images of each other
    moved = cu_fcc.positions.clone()
    moved[:, :4] += 2 * cu_fcc.cells[:, 1:2]  # unwrapped positions are handled too
    pairs = neighbour_list(moved, cutoff, cu_fcc.cells)
    flat = moved.reshape(-1, 3)
    vectors = (flat[pairs.neighbours] - flat[pairs.centers]
               + torch.einsum("ek,ekl->el", pairs.shifts, cu_fcc.cells[pairs.configuration]))
    for b in range(2):
        atoms = Atoms(numbers=cu_fcc.species[b].numpy(), positions=cu_fcc.positions[b].numpy(),
                      cell=cu_fcc.cells[b].numpy(), pbc=True)
        i, j, d = ase_neighbor_list("ijd", atoms, cutoff)
        mine = pairs.configuration == b
        n = cu_fcc.n_atoms
        ours = sorted(zip((pairs.centers[mine] - b * n).tolist(), (pairs.neighbours[mine] - b * n).tolist(),
                          np.round(vectors[mine].norm(dim=-1).numpy(), 9)))
        theirs = sorted(zip(i.tolist(), j.tolist(), np.round(d, 9)))
        assert ours == theirs


def test_open_neighbour_list_is_all_close_pairs(cu13):
    pairs = neighbour_list(cu13.positions[:2], 3.0)
    distances = torch.cdist(cu13.positions[:2], cu13.positions[:2])
    assert pairs.centers.numel() == int((distances < 3.0).sum() - 26)


def test_cutoff_functions():
    r = torch.tensor([0.0, 2.5, 5.0, 6.0], dtype=torch.float64, requires_grad=True)
    envelope = polynomial_cutoff(r, 5.0)
    assert envelope.tolist() == [1.0, pytest.approx(envelope[1].item()), 0.0, 0.0]
    slope = torch.autograd.grad(envelope.sum(), r, create_graph=True)[0]
    assert abs(slope[2].item()) < 1e-12  # smooth at the cutoff (degree 6: five vanishing derivatives)
    torch.testing.assert_close(cosine_cutoff(r, 5.0).detach(),
                               torch.tensor([1.0, 0.5, 0.0, 0.0], dtype=torch.float64))
    basis = bessel_basis(torch.tensor([1.3], dtype=torch.float64), 5.0, 3)
    expected = [math.sqrt(2 / 5) * math.sin(n * math.pi * 1.3 / 5) / 1.3 for n in (1, 2, 3)]
    np.testing.assert_allclose(basis[0].numpy(), expected, rtol=1e-14)


def test_symmetry_functions_match_brute_force(cu13):
    model = SymmetryFunctionPotential((29, 79), cutoff=4.0, min_distance=2.0, n_radial=3,
                                      angular_eta=(0.0, 3.0), zetas=(1.0, 2.0), hidden=(4,))
    positions = cu13.positions[0].numpy()
    species = cu13.species[0].clone()
    species[::4] = 79
    index = model.species_table[species]
    features = model.descriptors(torch.as_tensor(positions)[None], index[None], None)[0].numpy()
    rc, n = 4.0, len(positions)

    def fc(r):
        return 0.5 * (math.cos(math.pi * r / rc) + 1) if r < rc else 0.0

    centres = np.linspace(2.0, rc, 3)
    eta = 1 / (2 * (centres[1] - centres[0]) ** 2)
    s = index.numpy()
    for i in range(n):
        g2 = np.zeros((2, 3))
        g4 = np.zeros((3, 2, 2, 2))  # species pair (0-0, 0-1, 1-1), eta, zeta, lambda
        for j in range(n):
            rij = np.linalg.norm(positions[j] - positions[i])
            if j == i or rij >= rc:
                continue
            g2[s[j]] += np.exp(-eta * (rij - centres) ** 2) * fc(rij)
            for k in range(j + 1, n):
                rik = np.linalg.norm(positions[k] - positions[i])
                if k == i or rik >= rc:
                    continue
                rjk = np.linalg.norm(positions[k] - positions[j])
                cos = np.dot(positions[j] - positions[i], positions[k] - positions[i]) / (rij * rik)
                pair = {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 2}[(s[j], s[k])]
                for a, e in enumerate((0.0, 3.0 / rc**2)):
                    for b, zeta in enumerate((1.0, 2.0)):
                        for c, lam in enumerate((1.0, -1.0)):
                            g4[pair, a, b, c] += (2 ** (1 - zeta) * (1 + lam * cos) ** zeta
                                                  * np.exp(-e * (rij**2 + rik**2 + rjk**2))
                                                  * fc(rij) * fc(rik) * fc(rjk))
        np.testing.assert_allclose(features[i], np.concatenate([g2.ravel(), g4.ravel()]), rtol=1e-10,
                                   atol=1e-12)


def test_moment_tensor_basis_counts():
    # connected contractions of level <= 8 for one species (lev M_{mu,nu} = 2 + 4 mu + nu)
    invariants = moment_invariants(1, 4, 8)
    assert invariants == [((0, 0, 0),), ((1, 0, 0),), ((0, 0, 1), (0, 0, 1)), ((0, 0, 2), (0, 0, 2))]
    # levels 2, 6, 6, 8: products of total level <= 8
    assert sorted(basis_products(invariants, 8)) == sorted(
        [(), (0,), (1,), (2,), (3,), (0, 0), (0, 1), (0, 2), (0, 0, 0), (0, 0, 0, 0)])
    # level counts for one species reproduce Shapeev's growth: strictly increasing
    counts = [len(basis_products(moment_invariants(1, 4, level), level)) for level in (10, 12, 14, 16)]
    assert counts == sorted(set(counts))


def test_moment_invariants_are_full_contractions():
    # three order-2 moments: tr(A B C); orders (1, 1, 2): v^T A w; brute force with einsum
    model = MomentTensorPotential((29,), cutoff=5.0, min_distance=1.0, level_max=16, readout="mlp")
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(7, 3, generator=generator, dtype=torch.float64) * 1.5
    channel = torch.ones(7, 1, dtype=torch.float64)
    values = model.environment_invariants(vectors, channel)
    r = vectors.norm(dim=-1)
    u = vectors / r[:, None]
    f = model._pair_parts(vectors, channel)["weight"]  # (7, n_radial)
    m1 = torch.einsum("dc,dk->ck", f, u)
    m2 = torch.einsum("dc,dk,dl->ckl", f, u, u)
    m3 = torch.einsum("dc,dk,dl,dm->cklm", f, u, u, u)
    expected = {((0, 0, 2), (0, 0, 2), (0, 0, 2)): torch.einsum("ij,jk,ki->", m2[0], m2[0], m2[0]),
                ((0, 0, 1), (0, 0, 1), (0, 0, 2)): m1[0] @ m2[0] @ m1[0],
                ((0, 0, 1), (0, 0, 2), (0, 0, 3)): torch.einsum("i,jk,ijk->", m1[0], m2[0], m3[0]),
                ((0, 0, 3), (0, 0, 3)): (m3[0] ** 2).sum(),
                ((0, 0, 1), (1, 0, 1)): m1[0] @ m1[1]}
    for invariant, value in expected.items():
        assert invariant in model.invariants
        torch.testing.assert_close(values[model.invariants.index(invariant)], value, rtol=1e-12, atol=1e-12)


def test_linear_fit_recovers_a_moment_tensor_teacher(cu13):
    """Least squares on energies and forces of a linear MTP reproduces it exactly (to 1e-6
    relative: the normal equations square the condition number of the design). The final loss
    sits at round-off, which varies with the threads (measured 0.0 on 2 threads, 1.6e-16 on 1,
    against a mean squared energy of 2.6e4), so its bound is 1e-14; the relative errors below
    are the sharp check."""
    teacher = MomentTensorPotential((29,), cutoff=5.0, min_distance=2.0, level_max=12)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(5)
        weights = torch.randn(teacher.weights.shape, generator=generator, dtype=torch.float64)
        teacher.weights.copy_(0.1 * weights)
    energies, forces = teacher.energy_and_forces(cu13.positions, cu13.species)
    data = type(cu13)(cu13.positions, cu13.species, energies, forces, None, dict(cu13.parameters))
    student = MomentTensorPotential((29,), cutoff=5.0, min_distance=2.0, level_max=12)
    history = fit_potential(student, data, ridge=0.0)
    assert history[-1]["loss"] < 1e-14
    errors = evaluate_potential(student, data)
    assert errors["energy_mae"] < 1e-6 * float(energies.abs().mean())
    assert errors["force_mae"] < 1e-6 * float(forces.abs().mean())


def test_linear_design_matches_autograd(cu13):
    model = MomentTensorPotential((29, 79), cutoff=5.0, min_distance=2.0, level_max=12)
    species = cu13.species[:2].clone()
    species[:, 1::3] = 79
    positions = cu13.positions[:2].clone().requires_grad_(True)
    index = model.species_table[species]
    design, jacobian = model.linear_design(positions, index, None)
    basis = model._products(model.descriptors(positions, index, None))
    one_hot = torch.nn.functional.one_hot(index, 2).to(basis.dtype)
    summed = torch.einsum("bnp,bns->bsp", basis, one_hot).reshape(2, -1)
    torch.testing.assert_close(design, summed.detach())
    for column in (0, 3, summed.shape[1] - 1):
        (gradient,) = torch.autograd.grad(summed[:, column].sum(), positions, retain_graph=True)
        torch.testing.assert_close(jacobian[:, column], gradient, rtol=1e-10, atol=1e-10)


def test_isolated_atoms_have_no_environment():
    """Atoms farther apart than every cutoff: forces vanish, energies are the per-atom constants."""
    positions = torch.tensor([[[0.0, 0.0, 0.0], [20.0, 0.0, 0.0], [0.0, 40.0, 0.0]]], dtype=torch.float64)
    species = torch.tensor([29, 29, 29])
    for name, model in make_models((29,), 3).items():
        energies, forces = model.energy_and_forces(positions, species)
        assert torch.isfinite(energies).all()
        if name != "coordinate_mlp":
            assert forces.abs().max() == 0.0
            single = model(positions[:, :1], species[:1])
            torch.testing.assert_close(energies, 3 * single)


def test_smoothness_across_the_cutoff():
    """The energy of a pair is continuous with continuous force as it crosses r_c."""
    for model in make_models((29,), 2).values():
        if model.cutoff is None:
            continue
        r = torch.linspace(model.cutoff - 1e-3, model.cutoff + 1e-3, 5, dtype=torch.float64)
        positions = torch.zeros(5, 2, 3, dtype=torch.float64)
        positions[:, 1, 0] = r
        energies, forces = model.energy_and_forces(positions, torch.tensor([29, 29]))
        assert (energies - energies[-1]).abs().max() < 1e-6
        assert forces.abs().max() < 1e-3


@pytest.mark.parametrize("build", [
    lambda: EquivariantPotential((29,), l_max=-1), lambda: EquivariantPotential((29,), cutoff=0.0),
    lambda: MomentTensorPotential((29,), readout="cubic"), lambda: MomentTensorPotential((29,), max_order=5),
    lambda: SymmetryFunctionPotential((29,), n_radial=1), lambda: CoordinateMLP((29,), 0),
    lambda: CoordinateMLP((0,), 3)])
def test_bad_construction(build):
    with pytest.raises(ValueError):
        build()


def test_bad_inputs(cu13):
    model = make_models((29,), 13)["symmetry_function"]
    positions, species = cu13.positions[:2], cu13.species[:2]
    with pytest.raises(ValueError, match="positions"):
        model(positions[..., :2], species)
    with pytest.raises(TypeError, match="species"):
        model(positions, species.double())
    with pytest.raises(ValueError, match="not among"):
        model(positions, torch.full_like(species, 79))
    with pytest.raises(ValueError, match="cells"):
        model(positions, species, torch.eye(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        model(positions * float("nan"), species)
    with pytest.raises(ValueError, match="species must have shape"):
        model(positions, species[:, :5])
    with pytest.raises(ValueError, match="13 atoms"):
        make_models((29,), 13)["coordinate_mlp"](positions[:, :5], species[:, :5])
