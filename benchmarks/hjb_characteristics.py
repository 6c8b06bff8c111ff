"""Batched characteristics (``dlpde.hjb.characteristics``) vs a loop of ``scipy.integrate.solve_ivp``.

Both integrate the characteristic system ``x' = H_p, p' = -H_x, z' = p.H_p - H`` of the nonlinear
Hamiltonian ``H(x, p) = |p|^2/2 - sum_i cos(x_i)`` (a chain of pendulums) from random starts in
``d = 10`` over ``[0, 1]``, with the same embedded Runge-Kutta pair (Dormand-Prince 5(4)) and
the same tolerances ``rtol = 1e-8``, ``atol = 1e-10``: dlpde steps all trajectories together
(one batched tensor, the step size set by the worst trajectory), scipy's ``RK45`` one trajectory at
a time. Reported: both wall times, their ratio, and the largest difference of the end states.

    python benchmarks/hjb_characteristics.py          # 10,000 trajectories
    python benchmarks/hjb_characteristics.py --tiny   # 20 trajectories (seconds)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dlpde.hjb import Hamiltonian, characteristics
from dlpde.shared import make_generator, resolve_device

RESULTS = Path(__file__).resolve().parent / "results"


def _clock(device: torch.device) -> float:
    """CPU time of this process on the CPU (robust on a shared machine; run single-threaded),
    synchronised wall time on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


RTOL, ATOL = 1e-8, 1e-10


def pendulum_chain() -> Hamiltonian:
    return Hamiltonian.from_function(
        lambda x, p: 0.5 * (p**2).sum(-1) - torch.cos(x).sum(-1), convex=True, dim=None
    )


def scipy_rhs(dim: int):
    def rhs(_, y):
        x, p = y[:dim], y[dim : 2 * dim]
        hamiltonian = 0.5 * p @ p - np.cos(x).sum()
        return np.concatenate([p, -np.sin(x), [p @ p - hamiltonian]])

    return rhs


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--trajectories", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=str(RESULTS / "hjb_characteristics.json"))
    args = parser.parse_args(argv)
    from scipy.integrate import solve_ivp

    n = 20 if args.tiny else args.trajectories
    dim = args.dim
    device = resolve_device(args.device)
    generator = make_generator(0)
    x0 = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    p0 = torch.randn(n, dim, generator=generator, dtype=torch.float64)

    def batched():
        end = characteristics(
            pendulum_chain(), x0.to(device), p0.to(device), t1=1.0, method="dopri5", rtol=RTOL, atol=ATOL
        )
        return torch.cat([end.x, end.p, end.z[:, None]], -1).cpu()

    batched()  # warm-up (first autograd call)
    start = _clock(device)
    ours = batched()
    ours_seconds = _clock(device) - start

    rhs = scipy_rhs(dim)
    start = _clock(device)
    theirs = np.stack(
        [
            solve_ivp(
                rhs,
                (0.0, 1.0),
                np.concatenate([x0[b].numpy(), p0[b].numpy(), [0.0]]),
                method="RK45",
                rtol=RTOL,
                atol=ATOL,
            ).y[:, -1]
            for b in range(n)
        ]
    )
    scipy_seconds = _clock(device) - start
    difference = float(np.abs(ours.numpy() - theirs).max())
    result = {
        "tiny": args.tiny,
        "trajectories": n,
        "dim": dim,
        "device": str(device),
        "rtol": RTOL,
        "atol": ATOL,
        "dlpde_seconds": ours_seconds,
        "scipy_loop_seconds": scipy_seconds,
        "speedup": scipy_seconds / ours_seconds,
        "max_difference": difference,
    }
    print(f"{n} characteristics in d = {dim} (rtol {RTOL:g}, atol {ATOL:g}), device {device}")
    print(f"  dlpde batched dopri5     {ours_seconds:10.3f} s")
    print(f"  scipy solve_ivp loop     {scipy_seconds:10.3f} s")
    print(f"  speed-up {result['speedup']:.1f}x, largest difference of the end states {difference:.2e}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
