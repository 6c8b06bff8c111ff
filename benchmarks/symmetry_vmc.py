"""VMC throughput against N for each ansatz: Metropolis walker-steps per second and exact local
energies per second, on spin-polarised fermions in the 1-D harmonic trap (the symmetry.trap system).

The peer is the explicit antisymmetriser (a sum over all N! permutations, the textbook reference),
run where N! stays small: the ratio shows what the determinant / Vandermonde constructions buy.

    python benchmarks/symmetry_vmc.py            # N = 2, 4, 8, 16
    python benchmarks/symmetry_vmc.py --tiny     # seconds
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dlpde.symmetry import (
    VMC,
    BackflowDeterminant,
    ExplicitAntisymmetrizer,
    ManyBodyHamiltonian,
    SlaterJastrow,
    VandermondeAnsatz,
    harmonic_trap,
)

RESULTS = Path(__file__).resolve().parent / "results"
ANSATZE = {"slater_jastrow": SlaterJastrow, "backflow": BackflowDeterminant, "vandermonde": VandermondeAnsatz,
           "explicit": ExplicitAntisymmetrizer}


def measure(name, n, walkers, metropolis_steps, energy_repeats):
    hamiltonian = ManyBodyHamiltonian(n, 0, 1, harmonic_trap(1.0))
    wavefunction = ANSATZE[name].from_hamiltonian(hamiltonian, generator=1)
    vmc = VMC(hamiltonian, wavefunction, n_walkers=walkers, burn_in=20, generator=2)
    vmc.equilibrate()
    start = time.perf_counter()
    vmc.walkers.step(metropolis_steps)
    move_seconds = time.perf_counter() - start
    vmc.local_energies()
    start = time.perf_counter()
    for _ in range(energy_repeats):
        vmc.local_energies()
    energy_seconds = (time.perf_counter() - start) / energy_repeats
    return {"ansatz": name, "n": n, "walkers": walkers,
            "parameters": sum(p.numel() for p in wavefunction.parameters()),
            "walker_steps_per_second": walkers * metropolis_steps / move_seconds,
            "local_energies_per_second": walkers / energy_seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--json", default=str(RESULTS / "symmetry_vmc.json"))
    args = parser.parse_args(argv)
    sizes, walkers, steps, repeats = ((3,), 16, 5, 1) if args.tiny else ((2, 4, 6, 8, 16), 1024, 20, 3)
    rows = []
    print(f"{'ansatz':<16} {'N':>3} {'params':>7} {'walker-steps/s':>15} {'E_L/s':>10} "
          f"{'E_L/s vs explicit':>18}")
    for n in sizes:
        reference = None
        for name in ("explicit", "slater_jastrow", "backflow", "vandermonde"):
            if name == "explicit" and n > 5:
                continue
            row = measure(name, n, walkers, steps, repeats)
            if name == "explicit":
                reference = row["local_energies_per_second"]
            row["speedup_over_explicit"] = row["local_energies_per_second"] / reference if reference else None
            rows.append(row)
            ratio = f"{row['speedup_over_explicit']:.1f}" if reference else "-"
            print(f"{name:<16} {n:>3} {row['parameters']:>7} {row['walker_steps_per_second']:>15.0f} "
                  f"{row['local_energies_per_second']:>10.0f} {ratio:>18}", flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "symmetry_vmc", "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
