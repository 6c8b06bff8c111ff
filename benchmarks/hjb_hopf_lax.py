"""Exact Hopf-Lax (``hopf_lax_min_of_convex``), the multi-start ``hopf_lax_value`` and the Hopf
formula (``hopf_value``) at d = 100, side by side with a NumPy closed form and Darbon-Osher's
published per-point times.

The problem: ``H = |p|^2/2`` and ``g`` the minimum of 8 random quadratics in ``d = 100``, whose
viscosity solution has the closed form ``u = min_k (x - a_k)^T (Q_k^-1 + t I)^-1 (x - a_k)/2 + c_k``.
Rows of the report:

- dlpde closed form (``hopf_lax_min_of_convex`` with ``QuadraticPieces``), value only and with
  the minimiser, against the same formula written in NumPy on a ``(B, K, d)`` array (the peer);
- dlpde convex solver (``method="convex_solver"``: one convex problem per piece and point),
  with the fraction of points within 1e-8 of the closed form;
- the multi-start ``hopf_lax_value`` (8 random starts, the characteristic, ``y = x`` and the 8
  centres as guesses) with its fraction and its self-reported hit rate;
- the Hopf formula ``u = -min_p { g*(p) + t H(p) - x.p }`` for one convex quadratic ``g`` (the
  first piece) and for ``H = |p|_1`` (a non-smooth Hamiltonian, proximal steps), each against its
  closed form, with seconds per point beside Darbon & Osher's 1e-8 to 1e-4 s per point.

Times are CPU seconds of this process (run with one thread: ``OMP_NUM_THREADS=1``).

    python benchmarks/hjb_hopf_lax.py          # 100,000 closed-form points, 2,000 solver points
    python benchmarks/hjb_hopf_lax.py --tiny   # seconds
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dlpde.hjb import (
    NormHamiltonian,
    QuadraticHamiltonian,
    QuadraticPieces,
    hopf_lax_min_of_convex,
    hopf_lax_value,
    hopf_value,
)
from dlpde.shared import make_generator, resolve_device

RESULTS = Path(__file__).resolve().parent / "results"
DARBON_OSHER_SECONDS_PER_POINT = (1e-8, 1e-4)


def _clock(device: torch.device) -> float:
    """CPU time of this process on the CPU (robust on a shared machine; run single-threaded),
    synchronised wall time on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


def problem(dim: int, branches: int = 8):
    generator = make_generator(1)
    centres = 0.5 * torch.randn(branches, dim, generator=generator, dtype=torch.float64)
    precisions = 0.5 + 1.5 * torch.rand(branches, generator=generator, dtype=torch.float64)
    offsets = 0.5 * torch.rand(branches, generator=generator, dtype=torch.float64)
    return QuadraticPieces(centres, precisions, offsets)


def numpy_closed_form(x, t, centres, precisions, offsets):
    """The same formula on a ``(B, K, d)`` array, in chunks of 1,000 points."""
    out = np.empty(x.shape[0])
    for start in range(0, x.shape[0], 1000):
        xc, tc = x[start : start + 1000], t[start : start + 1000]
        distance_sq = ((xc[:, None, :] - centres[None]) ** 2).sum(-1)
        out[start : start + 1000] = (
            0.5 * precisions / (1 + tc[:, None] * precisions) * distance_sq + offsets
        ).min(1)
    return out


def _timed(device, function, repeats=1):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = _clock(device)
        result = function()
        best = min(best, _clock(device) - start)
    return best, result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--points", type=int, default=2000, help="points for the iterative solvers")
    parser.add_argument("--closed-form-points", type=int, default=100_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=str(RESULTS / "hjb_hopf_lax.json"))
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    n = 50 if args.tiny else args.points
    n_closed = 5000 if args.tiny else args.closed_form_points
    repeats = 1 if args.tiny else 3
    dim = args.dim
    pieces = problem(dim)
    hamiltonian = QuadraticHamiltonian.identity(dim)
    generator = make_generator(2)
    x = (2 * torch.rand(max(n, n_closed), dim, generator=generator, dtype=torch.float64) - 1).to(device)
    t = (1 - torch.rand(max(n, n_closed), generator=generator, dtype=torch.float64)).to(device)
    xc, tc = x[:n_closed], t[:n_closed]

    hopf_lax_min_of_convex(hamiltonian, pieces, x[:10], t[:10])  # warm-up
    closed_seconds, (exact, _) = _timed(
        device, lambda: hopf_lax_min_of_convex(hamiltonian, pieces, xc, tc, minimiser=False), repeats
    )
    closed_y_seconds, _ = _timed(device, lambda: hopf_lax_min_of_convex(hamiltonian, pieces, xc, tc), repeats)
    arrays = [a.cpu().numpy() for a in (xc, tc, pieces.centres, pieces.precisions[:, 0, 0], pieces.offsets)]
    numpy_seconds, numpy_value = _timed(device, lambda: numpy_closed_form(*arrays), repeats)
    numpy_difference = float(np.abs(numpy_value - exact.cpu().numpy()).max())

    solver_seconds, (solved, _, solver_info) = _timed(
        device,
        lambda: hopf_lax_min_of_convex(
            hamiltonian, pieces, x[:n], t[:n], method="convex_solver", return_info=True
        ),
    )
    solver_difference = (solved - exact[:n]).abs()
    multi_seconds, (multi, _, multi_info) = _timed(
        device,
        lambda: hopf_lax_value(
            hamiltonian, pieces, x[:n], t[:n], generator=3, initial_guesses=pieces.centres, return_info=True
        ),
    )
    multi_difference = (multi - exact[:n]).abs()

    # Hopf formula, convex g = g_0 (one quadratic): g*(p) = a.p + |p|^2/(2 q) - c.
    a, q, c = pieces.centres[0].to(device), float(pieces.precisions[0, 0, 0]), float(pieces.offsets[0])

    def conjugate(p):
        return p @ a + (p * p).sum(-1) / (2 * q) - c

    single = QuadraticPieces(pieces.centres[:1], pieces.precisions[:1], pieces.offsets[:1])
    single_exact, _ = hopf_lax_min_of_convex(hamiltonian, single, x[:n], t[:n])
    hopf_seconds, (hopf, _) = _timed(device, lambda: hopf_value(hamiltonian, conjugate, x[:n], t[:n]))
    hopf_difference = float((hopf - single_exact).abs().max())
    # H = |p|_1 (front propagation in the max norm), g = |x|^2/2: u = sum_i max(|x_i| - t, 0)^2 / 2.
    l1 = NormHamiltonian(1)
    l1_seconds, (hopf_l1, _) = _timed(
        device, lambda: hopf_value(l1, lambda p: 0.5 * (p * p).sum(-1), x[:n], t[:n])
    )
    l1_exact = 0.5 * ((x[:n].abs() - t[:n, None]).clamp_min(0) ** 2).sum(-1)
    l1_difference = float((hopf_l1 - l1_exact).abs().max())

    result = {
        "tiny": args.tiny,
        "dim": dim,
        "branches": pieces.count,
        "device": str(device),
        "closed_form_points": n_closed,
        "solver_points": n,
        "closed_form_points_per_second": n_closed / closed_seconds,
        "closed_form_with_minimiser_points_per_second": n_closed / closed_y_seconds,
        "numpy_closed_form_points_per_second": n_closed / numpy_seconds,
        "dlpde_over_numpy": numpy_seconds / closed_seconds,
        "numpy_max_difference": numpy_difference,
        "convex_solver_points_per_second": n / solver_seconds,
        "convex_solver_max_difference": float(solver_difference.max()),
        "convex_solver_fraction_within_1e-8": float((solver_difference < 1e-8).double().mean()),
        "convex_solver_converged": solver_info["converged"],
        "multi_start_points_per_second": n / multi_seconds,
        "multi_start_max_difference": float(multi_difference.max()),
        "multi_start_fraction_within_1e-8": float((multi_difference < 1e-8).double().mean()),
        "multi_start_self_reported_hit_rate": multi_info["hit_rate"],
        "hopf_quadratic_seconds_per_point": hopf_seconds / n,
        "hopf_quadratic_max_difference": hopf_difference,
        "hopf_l1_seconds_per_point": l1_seconds / n,
        "hopf_l1_max_difference": l1_difference,
        "darbon_osher_seconds_per_point": list(DARBON_OSHER_SECONDS_PER_POINT),
    }
    print(f"d = {dim}, min of {pieces.count} quadratics, H = |p|^2/2, device {device}")
    print(f"  closed form (dlpde, value)        {result['closed_form_points_per_second']:12.3g} points/s")
    print(
        f"  closed form (dlpde, + minimiser)  "
        f"{result['closed_form_with_minimiser_points_per_second']:12.3g} points/s"
    )
    print(
        f"  closed form (NumPy (B, K, d))     {result['numpy_closed_form_points_per_second']:12.3g} points/s"
        f"   dlpde/NumPy speed {result['dlpde_over_numpy']:.1f}x, difference {numpy_difference:.1e}"
    )
    print(
        f"  convex solver per piece           {result['convex_solver_points_per_second']:12.3g} points/s"
        f"   within 1e-8 at {100 * result['convex_solver_fraction_within_1e-8']:.1f}% "
        f"(max {result['convex_solver_max_difference']:.1e})"
    )
    print(
        f"  multi-start hopf_lax_value        {result['multi_start_points_per_second']:12.3g} points/s"
        f"   within 1e-8 at {100 * result['multi_start_fraction_within_1e-8']:.1f}% "
        f"(max {result['multi_start_max_difference']:.1e}); self-reported hit rate "
        f"{100 * multi_info['hit_rate']:.1f}%"
    )
    lo, hi = DARBON_OSHER_SECONDS_PER_POINT
    print(
        f"  Hopf formula, quadratic g         {result['hopf_quadratic_seconds_per_point']:12.2e} s/point"
        f"   (max difference {hopf_difference:.1e}; Darbon-Osher {lo:g} to {hi:g} s/point)"
    )
    print(
        f"  Hopf formula, H = |p|_1           {result['hopf_l1_seconds_per_point']:12.2e} s/point"
        f"   (max difference {l1_difference:.1e})"
    )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
