"""Particle steps per second of a two-layer mean-field network: dlpde (PyTorch) against NumPy.

The same online-SGD update with mean-field time scaling on the same mini-batches,

    theta_i <- theta_i + 2 h mean_b (y_b - f(x_b)) grad_theta [a_i tanh(<w_i, x_b> + b_i)],

run by ``dlpde.meanfield.mean_field_sgd`` (autograd, vectorised over particles, through the one
training loop of ``dlpde.shared.train``) and by a NumPy implementation with the gradient written
out. For ``n = 10^3 .. 10^6`` particles it prints steps per second of both, their ratio and the
largest difference of the final particles, and writes JSON.

    python benchmarks/meanfield_particle_steps.py            # n = 1e3 .. 1e6 (about a minute)
    python benchmarks/meanfield_particle_steps.py --tiny     # seconds
    python benchmarks/meanfield_particle_steps.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dlpde.meanfield import TwoLayerMeanField, mean_field_sgd
from dlpde.shared import resolve_device

RESULTS = Path(__file__).resolve().parent / "results"


def numpy_steps(particles: np.ndarray, batches, step: float) -> np.ndarray:
    """The same update with explicit gradients: columns of ``particles`` are ``(a, w, b)``."""
    p = particles.copy()
    n, d = p.shape[0], p.shape[1] - 2
    for x, y in batches:
        a, w, b = p[:, 0], p[:, 1 : 1 + d], p[:, -1]
        hidden = np.tanh(x @ w.T + b)  # (B, n)
        residual = y - hidden @ a / n  # (B,)
        slope = (1.0 - hidden**2) * residual[:, None]  # (B, n)
        batch = x.shape[0]
        grad_a = hidden.T @ residual / batch
        grad_w = a[:, None] * (slope.T @ x) / batch
        grad_b = a * slope.mean(0)
        p[:, 0] += 2 * step * grad_a
        p[:, 1 : 1 + d] += 2 * step * grad_w
        p[:, -1] += 2 * step * grad_b
    return p


def measure(n: int, d: int, batch: int, steps: int, device: torch.device, dtype: torch.dtype, repeats: int):
    rng = np.random.default_rng(n)
    batches = [(rng.standard_normal((batch, d)), None) for _ in range(steps)]
    batches = [(x, np.sin(x[:, 0]) + 0.5 * x[:, 1]) for x, _ in batches]
    model = TwoLayerMeanField(
        n, d, "tanh", bias=True, bias_scale=0.5, generator=1, dtype=dtype, device=device
    )
    start = model.particles.detach().clone()
    on_device = [
        (torch.as_tensor(x, dtype=dtype, device=device), torch.as_tensor(y, dtype=dtype, device=device))
        for x, y in batches
    ]
    step = 0.01

    def loss(k):
        x, y = on_device[k]
        return ((y - model(x)) ** 2).mean()

    def run_torch():
        model.set_particles(start)
        mean_field_sgd(model, loss, steps * step, step, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    start_numpy = start.double().cpu().numpy()
    torch_times, numpy_times = [], []
    run_torch()  # warm-up
    for _ in range(repeats):
        begin = time.perf_counter()
        run_torch()
        torch_times.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        final_numpy = numpy_steps(start_numpy, batches, step)
        numpy_times.append(time.perf_counter() - begin)
    difference = float(np.abs(model.particles.detach().double().cpu().numpy() - final_numpy).max())
    torch_rate, numpy_rate = steps / min(torch_times), steps / min(numpy_times)
    return {
        "n": n,
        "d": d,
        "batch": batch,
        "steps": steps,
        "dlpde_steps_per_second": torch_rate,
        "numpy_steps_per_second": numpy_rate,
        "speedup": torch_rate / numpy_rate,
        "max_abs_difference": difference,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="n = 100, 1000 and a few steps (seconds)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=str(RESULTS / "meanfield_particle_steps.json"))
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    sizes = (100, 1000) if args.tiny else (1_000, 10_000, 100_000, 1_000_000)
    d, batch = (5, 8) if args.tiny else (10, 32)
    print(f"two-layer mean-field online SGD, d={d}, batch={batch}, {args.dtype}, dlpde on {device} vs NumPy")
    print(f"{'n':>9} {'dlpde steps/s':>14} {'numpy steps/s':>14} {'ratio':>7} {'max |diff|':>11}")
    rows = []
    for n in sizes:
        steps = 3 if args.tiny else max(3, min(50, 20_000_000 // (n * batch)))
        row = measure(n, d, batch, steps, device, dtype, args.repeats)
        rows.append(row)
        print(
            f"{n:>9} {row['dlpde_steps_per_second']:>14.1f} {row['numpy_steps_per_second']:>14.1f} "
            f"{row['speedup']:>7.2f} {row['max_abs_difference']:>11.2e}",
            flush=True,
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": str(device),
                "dtype": args.dtype,
                "torch_threads": torch.get_num_threads(),
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    tolerance = 1e-9 if dtype == torch.float64 else 1e-3
    return 0 if all(r["max_abs_difference"] < tolerance for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
