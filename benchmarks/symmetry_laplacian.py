"""Local energies: the forward Laplacian against the exact forward-over-reverse method, Hutchinson's
estimate and a naive loop.

System: N electrons (half spin up) in a 3-D harmonic trap with Coulomb repulsion; ansatz:
Slater-Jastrow with backflow (``BackflowDeterminant`` with the Kato pair cusp and a neural
Jastrow), at equilibrated walkers of the initial wavefunction, float64. Side by side in one run:

- ``forward``: ``local_energy(..., method="forward")`` (one pass of value, gradient and Laplacian
  through the network, ``dlpde.shared.autodiff``; Li et al., Nature Machine Intelligence 2024);
- ``exact``: ``method="exact"``, N d Hessian-vector products (forward over reverse) vectorised by
  ``torch.func``: the implementation before the forward Laplacian;
- ``hutchinson4``: 4 Rademacher probes (an estimate, not exact);
- ``naive``: the peer, a Python loop of N d reverse-over-reverse passes (``torch.autograd.grad``).

Times are process CPU seconds (run with OMP_NUM_THREADS=1: single-threaded work, much less
distorted by other load than wall time), the least over rounds in which the methods take turns.
Ratios are times over the forward Laplacian's (> 1: the forward Laplacian is faster); accuracy is
the largest deviation of forward and naive from exact. Walkers per N shrink at large N to bound
memory (the same walkers for every method).

    python benchmarks/symmetry_laplacian.py            # N = 2, 4, 8, 16, 32
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
    VMC,
    BackflowDeterminant,
    ManyBodyHamiltonian,
    coulomb_pair,
    harmonic_trap,
    local_energy,
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


def timed_round_robin(functions, repeats):
    """Outputs and the least process CPU time of each function over ``repeats`` rounds, the
    functions taking turns (so that a burst of load on a shared machine hits all of them)."""
    outputs = {name: fn() for name, fn in functions.items()}  # warm-up
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.process_time()
            outputs[name] = fn()
            best[name] = min(best[name], time.process_time() - start)
    return outputs, best


def system(n):
    hamiltonian = ManyBodyHamiltonian(n - n // 2, n // 2, 3, harmonic_trap(1.0), coulomb_pair(1.0))
    wavefunction = BackflowDeterminant.from_hamiltonian(hamiltonian, jastrow_hidden=(16, 16), generator=1)
    return hamiltonian, wavefunction


def measure(n, walkers, repeats):
    hamiltonian, wavefunction = system(n)
    vmc = VMC(hamiltonian, wavefunction, n_walkers=walkers, burn_in=30, generator=2)
    vmc.equilibrate()
    x = vmc.walkers.x
    g = make_generator(3)
    outputs, seconds = timed_round_robin({
        "forward": lambda: local_energy(hamiltonian, wavefunction, x, method="forward"),
        "exact": lambda: local_energy(hamiltonian, wavefunction, x, method="exact"),
        "naive": lambda: naive_local_energy(hamiltonian, wavefunction, x),
        "hutchinson4": lambda: local_energy(hamiltonian, wavefunction, x, method="hutchinson", n_samples=4,
                                            generator=g)}, repeats)
    forward, exact, naive, hutchinson = (outputs[k] for k in ("forward", "exact", "naive", "hutchinson4"))
    t_forward, t_exact, t_naive, t_h = (seconds[k] for k in ("forward", "exact", "naive", "hutchinson4"))
    scale = float(exact.abs().max())
    return {"n": n, "walkers": walkers, "coordinates": 3 * n,
            "parameters": sum(p.numel() for p in wavefunction.parameters()),
            "forward_seconds": t_forward, "exact_seconds": t_exact, "naive_seconds": t_naive,
            "hutchinson4_seconds": t_h,
            "exact_over_forward": t_exact / t_forward, "naive_over_forward": t_naive / t_forward,
            "hutchinson4_over_forward": t_h / t_forward, "naive_over_exact": t_naive / t_exact,
            "forward_max_deviation": float((forward - exact).abs().max()),
            "forward_relative_deviation": float((forward - exact).abs().max()) / max(scale, 1e-300),
            "naive_max_deviation": float((naive - exact).abs().max()),
            "hutchinson4_probe_spread": float((hutchinson - exact).std()),
            "sampling_spread": float(exact.std())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="one small size (seconds)")
    parser.add_argument("--json", default=str(RESULTS / "symmetry_laplacian.json"))
    args = parser.parse_args(argv)
    if args.tiny:
        plan, repeats = ((2, 8),), 1
    else:
        plan, repeats = ((2, 256), (4, 256), (8, 128), (16, 64), (32, 16)), 3
    rows = []
    print(f"{'N':>3} {'walkers':>7} {'fwd CPU s':>9} {'exact/fwd':>9} {'naive/fwd':>9} {'H4/fwd':>7} "
          f"{'naive/exact':>11} {'fwd rel. dev.':>13}")
    for n, walkers in plan:
        row = measure(n, walkers, repeats)
        rows.append(row)
        print(f"{n:>3} {walkers:>7} {row['forward_seconds']:>9.4f} {row['exact_over_forward']:>9.2f} "
              f"{row['naive_over_forward']:>9.2f} {row['hutchinson4_over_forward']:>7.2f} "
              f"{row['naive_over_exact']:>11.2f} {row['forward_relative_deviation']:>13.1e}", flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "symmetry_laplacian", "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
