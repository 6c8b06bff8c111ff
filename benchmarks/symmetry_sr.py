"""Stochastic reconfiguration: sample-space (minSR / kernel trick) solve against conjugate gradients.

One SR step of ``dlpde.symmetry.VMC.natural_gradient`` for a Slater-Jastrow ansatz with about
10^4 parameters at 10^3 walkers (8 fermions in a 3-D harmonic trap, float64), side by side:

- ``cg``: the parameter-space solve as it was (conjugate gradients on ``S + lambda I``, the
  default 100 iterations and tolerance 1e-6, two products with the centred ``O`` per iteration);
- ``kernel``: ``delta = A^T (A A^T + lambda I)^{-1} b``, one 10^3 x 10^3 Cholesky solve
  (Chen & Heyl 2024; Rende et al. 2024).

Both include the per-walker log-derivatives ``O`` (the same work, timed separately too). The
accuracy column compares each update with a tightly converged CG reference (tolerance 1e-13,
5000 iterations): equal updates to solver tolerance.

    python benchmarks/symmetry_sr.py           # 10^4 parameters, 10^3 walkers (about a minute)
    python benchmarks/symmetry_sr.py --tiny    # seconds
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dlpde.symmetry import VMC, ManyBodyHamiltonian, SlaterJastrow, harmonic_trap

RESULTS = Path(__file__).resolve().parent / "results"


def _flat(delta):
    return torch.cat([d.reshape(-1) for d in delta])


def timed(fn, repeats):
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def measure(walkers, hidden, repeats):
    hamiltonian = ManyBodyHamiltonian(4, 4, 3, harmonic_trap(1.0))
    wavefunction = SlaterJastrow.from_hamiltonian(hamiltonian, hidden=hidden, jastrow_hidden=(32, 32),
                                                  generator=1)
    vmc = VMC(hamiltonian, wavefunction, n_walkers=walkers, optimizer="sr", burn_in=20, generator=2,
              sr_max_step=1e30)
    vmc.equilibrate()
    x = vmc.walkers.x
    energies = vmc.local_energies(x)
    n_parameters = sum(p.numel() for p in vmc.parameters)
    _, t_o = timed(lambda: vmc.log_derivatives(x), repeats)
    results = {}
    for solver in ("cg", "kernel"):
        vmc.sr_solver = solver
        (delta, iterations, residual, _), seconds = timed(lambda: vmc.natural_gradient(x, energies), repeats)
        results[solver] = {"seconds": seconds, "solve_seconds": seconds - t_o, "iterations": iterations,
                           "residual": residual, "delta": _flat(delta)}
    vmc.sr_solver, vmc.sr_tolerance, vmc.sr_iterations = "cg", 1e-13, 5000
    start = time.perf_counter()
    reference, ref_iterations, ref_residual, _ = vmc.natural_gradient(x, energies)
    ref_seconds = time.perf_counter() - start
    reference = _flat(reference)
    row = {"walkers": walkers, "parameters": n_parameters, "log_derivative_seconds": t_o,
           "reference_cg_iterations": ref_iterations, "reference_cg_residual": ref_residual,
           "reference_cg_seconds": ref_seconds}
    for solver, r in results.items():
        row[f"{solver}_seconds"] = r["seconds"]
        row[f"{solver}_solve_seconds"] = r["solve_seconds"]
        row[f"{solver}_iterations"] = r["iterations"]
        row[f"{solver}_residual"] = r["residual"]
        row[f"{solver}_relative_difference"] = float((r["delta"] - reference).norm() / reference.norm())
    row["cg_over_kernel"] = row["cg_seconds"] / row["kernel_seconds"]
    row["converged_cg_over_kernel"] = ref_seconds / row["kernel_seconds"]
    row["cg_over_kernel_solve_only"] = row["cg_solve_seconds"] / max(row["kernel_solve_seconds"], 1e-9)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a small problem (seconds)")
    parser.add_argument("--json", default=str(RESULTS / "symmetry_sr.json"))
    args = parser.parse_args(argv)
    walkers, hidden, repeats = (32, (16,), 1) if args.tiny else (1000, (64, 64), 3)
    row = measure(walkers, hidden, repeats)
    print(f"{row['parameters']} parameters, {row['walkers']} walkers, float64; O = per-walker "
          f"log-derivatives ({row['log_derivative_seconds']:.3f} s, included in both)")
    print(f"{'solver':<8} {'s/step':>8} {'solve s':>8} {'CG its':>7} {'residual':>9} "
          f"{'rel. diff to ref':>16}")
    for solver in ("cg", "kernel"):
        print(f"{solver:<8} {row[solver + '_seconds']:>8.3f} {row[solver + '_solve_seconds']:>8.3f} "
              f"{row[solver + '_iterations']:>7} {row[solver + '_residual']:>9.1e} "
              f"{row[solver + '_relative_difference']:>16.1e}")
    print(f"cg (100 its) / kernel time per SR step: {row['cg_over_kernel']:.2f}x (solve only: "
          f"{row['cg_over_kernel_solve_only']:.2f}x); CG converged to 1e-13 (the reference): "
          f"{row['reference_cg_iterations']} iterations, {row['reference_cg_seconds']:.1f} s, "
          f"{row['converged_cg_over_kernel']:.1f}x the kernel's time")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "symmetry_sr", "rows": [row]}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
