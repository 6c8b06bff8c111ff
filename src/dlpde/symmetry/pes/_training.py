"""Fitting, evaluating, symmetry-testing and relaxing potentials.

Training loss (energies per atom and force components, both in units of the model's energy
scale ``s``, over a batch of M configurations of N atoms):

    L = w_E / M sum_b ((E_hat_b - E_b) / (N s))^2 + w_F / (3 N M) sum_{b,i,a} ((F_hat_bia - F_bia) / s)^2.

``fit_potential`` minimises it with Adam through ``dlpde.shared.train`` (mini-batches drawn by
an explicit generator, optionally in random frames), or exactly by linear least squares for a
model that is linear in its parameters (the linear moment tensor potential).
"""

from __future__ import annotations

import copy

import torch

from dlpde.shared import (
    check_bool,
    check_int,
    check_positive,
    check_positive_int,
    check_real,
    check_tensor,
    make_generator,
    train,
)
from dlpde.shared.checks import check_path
from dlpde.shared.testing import random_rotation

from ._checks import check_dataset, check_model
from ._potential import energy_and_forces

__all__ = ["fit_potential", "evaluate_potential", "equivariance_errors", "relax_geometry"]


def _batch(data, index):
    cells = None if data.cells is None else data.cells[index]
    return data.positions[index], data.species[index], data.energies[index], data.forces[index], cells


def _random_frame(positions, species, forces, cells, generator):
    """The same configurations in a random orthogonal frame and atom order (per batch)."""
    reflect = bool(torch.randint(0, 2, (1,), generator=generator))
    rotation = random_rotation(3, positions.dtype, positions.device, generator, reflection=reflect)
    order = torch.randperm(positions.shape[1], generator=generator).to(positions.device)
    positions, forces = positions[:, order] @ rotation.T, forces[:, order] @ rotation.T
    cells = None if cells is None else cells @ rotation.T
    return positions, species[:, order], forces, cells


def _parameter_dtype(model) -> torch.dtype:
    return next(p for p in model.parameters() if p.is_floating_point()).dtype


def _parameter_device(model) -> torch.device:
    return next(model.parameters()).device


def _check_weights(energy_weight, force_weight):
    energy_weight = check_real(energy_weight, "energy_weight", 0.0)
    force_weight = check_real(force_weight, "force_weight", 0.0)
    if energy_weight < 0 or force_weight < 0 or energy_weight + force_weight <= 0:
        raise ValueError(f"energy_weight and force_weight must be >= 0 and not both 0, got "
                         f"{energy_weight}, {force_weight}")


def fit_potential(model, train_set, *, steps: int = 1000, batch_size: int = 16, lr: float = 5e-3,
                  energy_weight: float = 1.0, force_weight: float = 1.0, augment: bool = False,
                  seed: int = 0, schedule="cosine", ridge: float = 1e-10, checkpoint=None,
                  resume: bool = False, progress: bool = True, desc: str = "fit") -> list[dict]:
    """Fit ``model`` to ``train_set`` (a ``PESDataset``); returns the training history.

    First fits the model's normalisation (``fit_normalisation``). A model with
    ``readout == "linear"`` is then fitted exactly: the loss above plus
    ``ridge * |D w|^2`` (``D`` the column norms of the design matrix) is minimised by solving
    the normal equations (``steps``, ``lr``, ``batch_size``, ``augment`` do not apply). Any
    other model is trained for ``steps`` Adam steps on batches of ``batch_size``
    configurations drawn with replacement by a generator seeded with ``seed``; ``augment``
    presents each batch in a random rotation/reflection and atom order (the baseline's
    augmentation); ``checkpoint``/``resume`` as in ``dlpde.shared.train``. Finally the
    per-species reference energies, which do not affect forces, are set to their least-squares
    optimum on ``train_set`` (``refit_energy_shift``).
    """
    check_model(model)
    check_dataset(train_set, "train_set")
    _check_weights(energy_weight, force_weight)
    check_int(steps, "steps", minimum=0)
    check_positive_int(batch_size, "batch_size")
    check_positive(lr, "lr")
    check_bool(augment, "augment")
    check_int(seed, "seed", minimum=0)
    check_real(ridge, "ridge", 0.0)
    check_path(checkpoint, "checkpoint", allow_none=True)
    check_bool(resume, "resume")
    check_bool(progress, "progress")
    if not isinstance(desc, str):
        raise TypeError(f"desc must be a str, got {type(desc).__name__}")
    if not (schedule is None or isinstance(schedule, str) or callable(schedule)):
        raise TypeError(f"schedule must be a name, a callable or None, got {type(schedule).__name__}")
    for name in ("fit_normalisation", "refit_energy_shift"):
        if not callable(getattr(model, name, None)):
            raise TypeError(f"model must be an AtomicPotential (it has no {name})")
    model.fit_normalisation(train_set)
    data = train_set.to(_parameter_device(model), _parameter_dtype(model))
    if getattr(model, "readout", None) == "linear":
        return _fit_linear(model, data, energy_weight, force_weight, ridge)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    generator = make_generator(seed)
    scale = float(model.energy_scale)
    n_atoms = data.n_atoms

    def loss_fn(step):
        index = torch.randint(len(data), (batch_size,), generator=generator).to(data.positions.device)
        positions, species, energies, forces, cells = _batch(data, index)
        if augment:
            positions, species, forces, cells = _random_frame(positions, species, forces, cells, generator)
        predicted_energies, predicted_forces = energy_and_forces(model, positions, species, cells,
                                                                 create_graph=True)
        energy_error = (predicted_energies - energies) / (n_atoms * scale)
        force_error = (predicted_forces - forces) / scale
        energy_loss, force_loss = energy_error.pow(2).mean(), force_error.pow(2).mean()
        loss = energy_weight * energy_loss + force_weight * force_loss
        return loss, {"energy_rmse_per_atom": energy_loss.detach().sqrt() * scale,
                      "force_rmse": force_loss.detach().sqrt() * scale}

    history = train(model, loss_fn, steps, optimizer="adam", lr=lr, schedule=schedule,
                    generators=[generator], checkpoint=checkpoint, resume=resume, progress=progress,
                    desc=desc, log_every=max(1, steps // 200))
    model.refit_energy_shift(train_set)
    return history


def _fit_linear(model, data, energy_weight, force_weight, ridge, chunk: int = 64):
    """Exact least squares for ``E = sum_i s w_{z_i} . B(i) + sum_i e_{z_i}`` on energies and forces."""
    n_species, n_basis = model.weights.shape
    width = n_species * n_basis
    n_configs, n_atoms = len(data), data.n_atoms
    dtype, device = model.weights.dtype, model.weights.device
    gram = torch.zeros(width, width, dtype=torch.float64, device=device)
    moment = torch.zeros(width, dtype=torch.float64, device=device)
    target_square = 0.0
    scale = float(model.energy_scale)
    energy_row = (energy_weight / n_configs) ** 0.5 / n_atoms
    force_row = (force_weight / (3 * n_atoms * n_configs)) ** 0.5
    for start in range(0, n_configs, chunk):
        index = torch.arange(start, min(start + chunk, n_configs), device=device)
        positions, species, energies, forces, cells = _batch(data, index)
        _, species_index, cells = model._inputs(positions, species, cells)
        with torch.no_grad():
            summed, jacobian = model.linear_design(positions, species_index, cells)
        shift = model.atomic_energy_shift.to(dtype)[species_index].sum(1)
        rows = torch.cat([energy_row * scale * summed.detach(),
                          -force_row * scale * jacobian.permute(0, 2, 3, 1).reshape(-1, width)]
                         ).to(torch.float64)
        targets = torch.cat([energy_row * (energies - shift), force_row * forces.reshape(-1)])
        targets = targets.to(torch.float64)
        gram += rows.T @ rows
        moment += rows.T @ targets
        target_square += float(targets @ targets)
    norms = gram.diagonal().clamp_min(1e-300).sqrt()
    scaled = gram / norms[:, None] / norms[None, :] + ridge * torch.eye(width, dtype=torch.float64,
                                                                        device=device)
    solution = torch.linalg.solve(scaled, moment / norms) / norms
    with torch.no_grad():
        model.weights.copy_(solution.reshape(n_species, n_basis).to(dtype))
    loss = float(solution @ gram @ solution - 2 * solution @ moment) + target_square
    return [{"step": 0, "loss": loss / scale**2, "method": "least_squares"}]


@torch.no_grad()
def evaluate_potential(model, dataset, batch_size: int = 64) -> dict:
    """Errors of ``model`` on ``dataset``: energy MAE/RMSE (per configuration), force-component
    MAE/RMSE, and the predictions (``energies (M,)``, ``forces (M, N, 3)``, CPU tensors)."""
    check_model(model)
    check_dataset(dataset)
    batch_size = check_positive_int(batch_size, "batch_size")
    data = dataset.to(_parameter_device(model), _parameter_dtype(model))
    predicted_energies, predicted_forces = [], []
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)), device=data.positions.device)
        positions, species, _, _, cells = _batch(data, index)
        energies, forces = energy_and_forces(model, positions, species, cells)
        predicted_energies.append(energies.cpu().double())
        predicted_forces.append(forces.cpu().double())
    energies, forces = torch.cat(predicted_energies), torch.cat(predicted_forces)
    energy_error = energies - dataset.energies.double()
    force_error = forces - dataset.forces.double()
    return {"energy_mae": float(energy_error.abs().mean()),
            "energy_rmse": float(energy_error.pow(2).mean().sqrt()),
            "force_mae": float(force_error.abs().mean()),
            "force_rmse": float(force_error.pow(2).mean().sqrt()),
            "energies": energies, "forces": forces}


def equivariance_errors(model, dataset, n_trials: int = 4, seed: int = 0) -> dict:
    """Largest ``|E(g x) - E(x)|`` and ``|F(g x) - g F(x)|`` over random ``g`` in float64.

    ``g`` combines a Haar-random rotation (a reflection in every other trial), a translation
    and a permutation of the atoms; the model is evaluated in a float64 copy on up to 8
    configurations of ``dataset``, so that the result measures the symmetry of the model, not
    its rounding.
    """
    check_model(model)
    check_dataset(dataset)
    n_trials = check_positive_int(n_trials, "n_trials")
    check_int(seed, "seed", minimum=0)
    model64 = copy.deepcopy(model).to(torch.float64)
    data = dataset.subset(range(min(len(dataset), 8))).to(_parameter_device(model64), torch.float64)
    generator = make_generator(seed)
    positions, species, cells = data.positions, data.species, data.cells
    energies, forces = energy_and_forces(model64, positions, species, cells)
    worst_energy, worst_forces = 0.0, 0.0
    for trial in range(n_trials):
        rotation = random_rotation(3, torch.float64, positions.device, generator, reflection=trial % 2 == 1)
        shift = torch.randn(3, generator=generator, dtype=torch.float64).to(positions.device)
        order = torch.randperm(positions.shape[1], generator=generator).to(positions.device)
        moved_cells = None if cells is None else cells @ rotation.T
        moved_energies, moved_forces = energy_and_forces(
            model64, positions[:, order] @ rotation.T + shift, species[:, order], moved_cells)
        worst_energy = max(worst_energy, float((moved_energies - energies).abs().max()))
        worst_forces = max(worst_forces, float((moved_forces - forces[:, order] @ rotation.T).abs().max()))
    return {"energy": worst_energy, "forces": worst_forces}


def relax_geometry(model, positions, species, cells=None, steps: int = 50, progress: bool = False) -> dict:
    """Local minima of the model's energy from ``positions (B, N, 3)`` by L-BFGS.

    The positions are the parameters of ``dlpde.shared.train`` with the L-BFGS optimiser
    (strong-Wolfe line search, up to 20 evaluations per step) and the loss ``sum_b E(x_b)``
    (the B minimisations are independent). Returns ``positions``, ``energies`` and the largest
    remaining force component ``max_force`` per configuration.
    """
    check_model(model)
    check_tensor(positions, "positions", dim=3, shape=(None, None, 3))
    check_int(steps, "steps", minimum=0)
    check_bool(progress, "progress")
    x = positions.detach().clone().to(_parameter_dtype(model)).requires_grad_(True)
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        train([x], lambda step: model(x, species, cells).sum(), steps, optimizer="lbfgs", lr=1.0,
              progress=progress, desc="relax",
              optimizer_kwargs={"max_iter": 20, "tolerance_grad": 1e-12, "tolerance_change": 1e-16,
                                "history_size": 50})
    finally:
        for p in frozen:
            p.requires_grad_(True)
    energies, forces = energy_and_forces(model, x.detach(), species, cells)
    return {"positions": x.detach(), "energies": energies,
            "max_force": forces.abs().flatten(1).max(dim=1).values}
