"""Local energies: exact forward-over-reverse Laplacian vs Hutchinson's estimate vs a naive loop.

For the FermiNet-style ``BackflowDeterminant`` on N electrons in a 3-D harmonic trap with soft-Coulomb
repulsion (half spin up), at equilibrated walkers of the initial wavefunction:
- time per batch of local energies: exact (``dlpde.shared.autodiff.laplacian``, N d Hessian-vector
  products vectorised by ``torch.func``), Hutchinson with 1 and 4 Rademacher probes, and the peer, a
  Python loop of N d reverse-over-reverse passes (``torch.autograd.grad`` with ``create_graph``);
- accuracy: the naive loop against the exact value (max deviation), and the extra variance of
  Hutchinson's estimate (over probes, at fixed walkers) relative to the sampling variance of the
  exact local energy over walkers, which sets how many more samples Hutchinson needs. The
  "effective cost" ratio is ``time_h / time_exact * (1 + probe variance / sampling variance)``.

    python benchmarks/symmetry_laplacian.py            # N = 2, 4, 8, 16 (a few minutes)
    python benchmarks/symmetry_laplacian.py --tiny     # seconds
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dlpde.shared import make_generator
from dlpde.symmetry import (
    BackflowDeterminant,
    ManyBodyHamiltonian,
    harmonic_trap,
    local_energy,
    soft_coulomb_pair,
)
from dlpde.symmetry._hamiltonian import _log_abs_function

RESULTS = Path(__file__).resolve().parent / "results"


def naive_local_energy(hamiltonian, wavefunction, x):
    """The peer: Lap log|psi| by a loop of reverse-over-reverse passes, one per coordinate."""
    f = _log_abs_function(wavefunction)
    x = x.detach().requires_grad_(True)
    flat_dim = x[0].numel()
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
        flat = grad.reshape(x.shape[0], -1)
        lap = torch.zeros(x.shape[0], dtype=x.dtype)
        for i in range(flat_dim):
            (second,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True)
            lap = lap + second.reshape(x.shape[0], -1)[:, i]
    kinetic = -0.5 * (lap + (grad.detach() ** 2).sum((1, 2)))
    return kinetic.detach() + hamiltonian.potential(x.detach())


def timed(fn, repeats):
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return out, (time.perf_counter() - start) / repeats


def measure(n, walkers, repeats, probe_repeats):
    hamiltonian = ManyBodyHamiltonian(n - n // 2, n // 2, 3, harmonic_trap(1.0), soft_coulomb_pair(1.0, 0.5))
    wavefunction = BackflowDeterminant.from_hamiltonian(hamiltonian, generator=1)
    from dlpde.symmetry import VMC

    vmc = VMC(hamiltonian, wavefunction, n_walkers=walkers, burn_in=100, generator=2)
    vmc.equilibrate()
    x = vmc.walkers.x
    exact, t_exact = timed(lambda: local_energy(hamiltonian, wavefunction, x), repeats)
    naive, t_naive = timed(lambda: naive_local_energy(hamiltonian, wavefunction, x), repeats)
    row = {"n": n, "walkers": walkers, "coordinates": 3 * n, "exact_seconds": t_exact,
           "naive_seconds": t_naive, "naive_over_exact": t_naive / t_exact,
           "naive_max_deviation": float((naive - exact).abs().max()),
           "sampling_variance": float(exact.var())}
    for probes in (1, 4):
        g = make_generator(3)
        _, t_h = timed(lambda: local_energy(hamiltonian, wavefunction, x, method="hutchinson",
                                            n_samples=probes, generator=g), repeats)
        estimates = torch.stack([local_energy(hamiltonian, wavefunction, x, method="hutchinson",
                                              n_samples=probes, generator=g) for _ in range(probe_repeats)])
        probe_variance = float(estimates.var(0).mean())
        row[f"hutchinson{probes}_seconds"] = t_h
        row[f"hutchinson{probes}_over_exact"] = t_h / t_exact
        row[f"hutchinson{probes}_probe_variance"] = probe_variance
        standard_error = (estimates.std(0) / probe_repeats**0.5).clamp_min(1e-300)
        deviation = (estimates.mean(0) - exact) / standard_error
        row[f"hutchinson{probes}_bias_sigma"] = float(deviation.abs().max())
        extra = probe_variance / row["sampling_variance"]
        row[f"hutchinson{probes}_effective_cost"] = t_h / t_exact * (1 + extra)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="one small size (seconds)")
    parser.add_argument("--json", default=str(RESULTS / "symmetry_laplacian.json"))
    args = parser.parse_args(argv)
    sizes, walkers, repeats, probe_repeats = ((2,), 16, 1, 8) if args.tiny else ((2, 4, 8, 16), 256, 3, 32)
    rows = []
    print(f"{'N':>3} {'exact s':>9} {'naive/exact':>11} {'naive dev':>9} {'H1/exact':>8} {'H4/exact':>8} "
          f"{'H1 eff.':>8} {'H4 eff.':>8} {'probe/sampling var (H1)':>24}")
    for n in sizes:
        row = measure(n, walkers, repeats, probe_repeats)
        rows.append(row)
        print(f"{n:>3} {row['exact_seconds']:>9.4f} {row['naive_over_exact']:>11.2f} "
              f"{row['naive_max_deviation']:>9.1e} "
              f"{row['hutchinson1_over_exact']:>8.2f} {row['hutchinson4_over_exact']:>8.2f} "
              f"{row['hutchinson1_effective_cost']:>8.2f} {row['hutchinson4_effective_cost']:>8.2f} "
              f"{row['hutchinson1_probe_variance'] / row['sampling_variance']:>24.2f}", flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "symmetry_laplacian", "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
