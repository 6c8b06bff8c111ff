"""Batched characteristics (``dlpde.hjb.characteristics``) side by side with torchdiffeq, torchode
and a loop of ``scipy.integrate.solve_ivp``.

All integrate the characteristic system ``x' = H_p, p' = -H_x, z' = p.H_p - H`` of the harmonic
Hamiltonian ``H(x, p) = |p|^2/2 + x^T K x/2`` (``K`` a fixed random positive definite matrix,
eigenvalues in about [0.5, 3]) from 10,000 random starts in ``d = 10`` over ``[0, 1]``, with the
same embedded Runge-Kutta pair (Dormand-Prince 5(4)) and tolerances ``rtol = 1e-8``,
``atol = 1e-10``. Rows:

- dlpde, per-row step control (``step_control="row"``), closed-form derivatives
  (``QuadraticHamiltonian(I, potential=K)``);
- dlpde, one step size for the batch, closed-form derivatives;
- dlpde, per-row step control, autograd derivatives (``Hamiltonian.from_function``);
- torchdiffeq ``odeint(method="dopri5")`` (one step size for the batch) and torchode
  (``Dopri5`` with an ``IntegralController``: per-trajectory steps), both on the same closed-form
  vector field; skipped when not installed (``pip install dlpde[bench]``);
- scipy ``solve_ivp(RK45)`` one trajectory at a time, on a subset, scaled to the full count.

Accuracy: the largest difference of each end state from the exact solution
``x(t) = cos(sqrt(K) t) x0 + sqrt(K)^-1 sin(sqrt(K) t) p0``, ``p = x'``,
``z(t) = (x(t).p(t) - x0.p0)/2`` (since ``d(x.p)/dt = |p|^2 - x^T K x = 2 z'``).
Times are CPU seconds of this process, one thread.

    python benchmarks/hjb_characteristics.py          # 10,000 trajectories
    python benchmarks/hjb_characteristics.py --tiny   # 20 trajectories (seconds)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import torch

from dlpde.hjb import Hamiltonian, QuadraticHamiltonian, characteristics
from dlpde.shared import make_generator, resolve_device

RESULTS = Path(__file__).resolve().parent / "results"
RTOL, ATOL = 1e-8, 1e-10


def _clock(device: torch.device) -> float:
    """CPU time of this process on the CPU (robust on a shared machine), synchronised wall time
    on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


def stiffness(dim: int) -> torch.Tensor:
    generator = make_generator(7)
    root = torch.randn(dim, dim, generator=generator, dtype=torch.float64) / dim**0.5
    return root @ root.T + 0.5 * torch.eye(dim, dtype=torch.float64)


def exact_end(K, x0, p0, t):
    """The exact ``(x, p, z)`` at time ``t`` by the eigen-decomposition of ``K``."""
    w, v = torch.linalg.eigh(K)
    omega = w.sqrt()
    a, b = x0 @ v, p0 @ v
    x = (a * torch.cos(omega * t) + b / omega * torch.sin(omega * t)) @ v.T
    p = (-a * omega * torch.sin(omega * t) + b * torch.cos(omega * t)) @ v.T
    z = 0.5 * ((x * p).sum(-1) - (x0 * p0).sum(-1))
    return torch.cat([x, p, z[:, None]], -1)


def closed_form_field(K, dim):
    def field(t, y):
        x, p = y[..., :dim], y[..., dim : 2 * dim]
        kx = x @ K
        return torch.cat([p, -kx, 0.5 * ((p * p).sum(-1) - (x * kx).sum(-1)).unsqueeze(-1)], -1)

    return field


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--trajectories", type=int, default=10_000)
    parser.add_argument("--scipy-trajectories", type=int, default=500)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many timed runs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=str(RESULTS / "hjb_characteristics.json"))
    args = parser.parse_args(argv)
    from scipy.integrate import solve_ivp

    n = 20 if args.tiny else args.trajectories
    n_scipy = min(n, 10 if args.tiny else args.scipy_trajectories)
    repeats = 1 if args.tiny else args.repeats
    dim = args.dim
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    generator = make_generator(0)
    x0 = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    p0 = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    K = stiffness(dim)
    exact = exact_end(K, x0, p0, 1.0)
    Kd, x0d, p0d = K.to(device), x0.to(device), p0.to(device)
    y0d = torch.cat([x0d, p0d, torch.zeros(n, 1, dtype=torch.float64, device=device)], -1)
    field = closed_form_field(Kd, dim)

    closed_form = QuadraticHamiltonian(torch.eye(dim, dtype=torch.float64), potential=K)
    autograd = Hamiltonian.from_function(
        lambda x, p: 0.5 * (p * p).sum(-1) + 0.5 * ((x @ Kd) * x).sum(-1), convex=True
    )

    def dlpde_run(hamiltonian, control):
        def run():
            end = characteristics(
                hamiltonian, x0d, p0d, t1=1.0, method="dopri5", rtol=RTOL, atol=ATOL, step_control=control
            )
            return torch.cat([end.x, end.p, end.z[:, None]], -1)

        return run

    contenders = {
        "dlpde_row_closed_form": dlpde_run(closed_form, "row"),
        "dlpde_batch_closed_form": dlpde_run(closed_form, "batch"),
        "dlpde_row_autograd": dlpde_run(autograd, "row"),
    }
    skipped = []
    if importlib.util.find_spec("torchdiffeq") is not None:
        from torchdiffeq import odeint

        times = torch.tensor([0.0, 1.0], dtype=torch.float64, device=device)
        contenders["torchdiffeq"] = lambda: odeint(field, y0d, times, method="dopri5", rtol=RTOL, atol=ATOL)[
            -1
        ]
    else:
        skipped.append("torchdiffeq")
    if importlib.util.find_spec("torchode") is not None:
        import torchode

        term = torchode.ODETerm(field)
        solver = torchode.AutoDiffAdjoint(
            torchode.Dopri5(term=term), torchode.IntegralController(atol=ATOL, rtol=RTOL, term=term)
        )
        t_eval = torch.tensor([0.0, 1.0], dtype=torch.float64, device=device).repeat(n, 1)
        contenders["torchode"] = lambda: solver.solve(torchode.InitialValueProblem(y0=y0d, t_eval=t_eval)).ys[
            :, -1
        ]
    else:
        skipped.append("torchode")

    seconds, differences = {}, {}
    for name, run in contenders.items():
        run()  # warm-up
        best = float("inf")
        for _ in range(repeats):
            start = _clock(device)
            out = run()
            best = min(best, _clock(device) - start)
        seconds[name] = best
        differences[name] = float((out.cpu() - exact).abs().max())

    K_np = K.numpy()

    def rhs(_, y):
        x, p = y[:dim], y[dim : 2 * dim]
        kx = K_np @ x
        return np.concatenate([p, -kx, [0.5 * (p @ p - x @ kx)]])

    start = time.process_time()
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
            for b in range(n_scipy)
        ]
    )
    seconds["scipy_loop_scaled"] = (time.process_time() - start) * n / n_scipy
    differences["scipy_loop_scaled"] = float(np.abs(theirs - exact[:n_scipy].numpy()).max())

    reference = seconds["dlpde_row_closed_form"]
    result = {
        "tiny": args.tiny,
        "trajectories": n,
        "scipy_trajectories": n_scipy,
        "dim": dim,
        "device": str(device),
        "rtol": RTOL,
        "atol": ATOL,
        "seconds": seconds,
        "max_difference_from_exact": differences,
        "time_over_dlpde_row": {name: value / reference for name, value in seconds.items()},
        "skipped": skipped,
        "max_difference": max(differences.values()),
    }
    print(f"{n} characteristics of |p|^2/2 + x^T K x/2 in d = {dim} (rtol {RTOL:g}, atol {ATOL:g}), {device}")
    for name in seconds:
        print(
            f"  {name:26s} {seconds[name]:9.3f} s   {seconds[name] / reference:6.2f}x dlpde-row time   "
            f"max error {differences[name]:.1e}"
        )
    if skipped:
        print(f"  skipped (not installed): {', '.join(skipped)}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
