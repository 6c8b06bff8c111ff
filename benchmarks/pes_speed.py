"""Energies+forces per second of each potential against the number of atoms, side by side with
ASE's own EMT calculator on the same configurations.

Configurations: Mackay icosahedra of copper (13, 55, 147, 309, ... atoms) with Gaussian
displacements of 0.1 Angstrom. Each model (the study's full-preset sizes, random weights: the
cost does not depend on them) evaluates a batch of configurations at once; ASE's EMT, which
generated the study's labels, evaluates them one by one. Reported: configurations per second
(median of ``--repeats``), atoms x configurations per second, and the ratio to ASE.

    python benchmarks/pes_speed.py                 # sizes 13..309 (a few minutes on one core)
    python benchmarks/pes_speed.py --tiny --json /tmp/pes_speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dlpde.shared import make_generator, resolve_device

RESULTS = Path(__file__).resolve().parent / "results"


def configurations(shells: int, batch: int, seed: int = 0):
    """``batch`` displaced copies of the Cu icosahedron with ``shells`` shells, as ASE Atoms."""
    from ase.cluster import Icosahedron

    reference = Icosahedron("Cu", shells)
    generator = make_generator(seed)
    frames = []
    for _ in range(batch):
        atoms = reference.copy()
        noise = 0.1 * torch.randn(len(atoms), 3, generator=generator, dtype=torch.float64)
        atoms.set_positions(atoms.get_positions() + noise.numpy())
        frames.append(atoms)
    return frames


def models(dtype, n_atoms: int, tiny: bool) -> dict:
    from dlpde.symmetry.pes import (
        CoordinateMLP,
        EquivariantPotential,
        MomentTensorPotential,
        SymmetryFunctionPotential,
    )

    linear = MomentTensorPotential((29,), cutoff=5.0, min_distance=2.0, level_max=12 if tiny else 20)
    with torch.no_grad():
        linear.weights.copy_(1e-3 * torch.randn(linear.weights.shape, generator=make_generator(1),
                                                dtype=torch.float64))
    return {
        "equivariant": EquivariantPotential((29,), cutoff=4.0, l_max=1, channels=8, n_layers=2, dtype=dtype),
        "moment_tensor": linear,
        "symmetry_function": SymmetryFunctionPotential((29,), cutoff=5.0, min_distance=2.0, dtype=dtype),
        "coordinate_mlp": CoordinateMLP((29,), n_atoms, dtype=dtype),
    }


def _median_seconds(fn, repeats: int, synchronise) -> float:
    fn()  # warm-up
    synchronise()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronise()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="one small size, seconds")
    parser.add_argument("--shells", default="2,3,4,5", help="icosahedron shells (2: 13 atoms, 3: 55, ...)")
    parser.add_argument("--batch", type=int, default=8, help="configurations per evaluation")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                        help="dtype of the neural models (the linear MTP is float64)")
    parser.add_argument("--json", default=str(RESULTS / "pes_speed.json"))
    args = parser.parse_args(argv)
    from ase.calculators.emt import EMT

    device = resolve_device(args.device)
    shells = [2] if args.tiny else [int(s) for s in args.shells.split(",")]
    batch = 2 if args.tiny else args.batch
    repeats = 1 if args.tiny else args.repeats

    def synchronise():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rows = []
    print(f"{'atoms':>6} {'method':<20} {'configs/s':>11} {'atom-configs/s':>15} {'vs ASE':>8}")
    for shell in shells:
        frames = configurations(shell, batch)
        n_atoms = len(frames[0])
        calculator = EMT()

        def ase_pass():
            for atoms in frames:
                atoms.calc = calculator
                atoms.get_potential_energy()
                atoms.get_forces()
                calculator.reset()

        ase_rate = batch / _median_seconds(ase_pass, repeats, lambda: None)
        rows.append({"atoms": n_atoms, "method": "ase_emt", "configs_per_second": ase_rate,
                     "ratio_to_ase": 1.0})
        print(f"{n_atoms:>6} {'ase_emt':<20} {ase_rate:>11.1f} {ase_rate * n_atoms:>15.0f} {1.0:>8.2f}")
        positions = torch.as_tensor(np.stack([a.get_positions() for a in frames]))
        species = torch.full((n_atoms,), 29, dtype=torch.long, device=device)
        for name, model in models(getattr(torch, args.dtype), n_atoms, args.tiny).items():
            model = model.to(device)
            x = positions.to(device, next(model.parameters()).dtype)
            rate = batch / _median_seconds(lambda model=model, x=x: model.energy_and_forces(x, species),
                                           repeats, synchronise)
            rows.append({"atoms": n_atoms, "method": name, "configs_per_second": rate,
                         "ratio_to_ase": rate / ase_rate})
            print(f"{n_atoms:>6} {name:<20} {rate:>11.1f} {rate * n_atoms:>15.0f} {rate / ase_rate:>8.2f}",
                  flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": str(device), "dtype": args.dtype, "batch": batch, "tiny": args.tiny,
                               "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                               "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
