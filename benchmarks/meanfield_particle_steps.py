"""Particle steps per second of a two-layer mean-field network: dlpde (PyTorch) against NumPy.

The same online-SGD update with mean-field time scaling on the same mini-batches,

    theta_i <- theta_i + 2 h mean_b (y_b - f(x_b)) grad_theta [a_i tanh(<w_i, x_b> + b_i)],

run by ``dlpde.meanfield.mean_field_sgd`` on ``TwoLayerMeanField.squared_loss`` (loss and gradient
fused in two passes over cache-sized blocks of particles, through the one training loop of
``dlpde.shared.train``) and by a NumPy implementation with the gradient written out (the
whole-layer ``(B, n)`` arrays). For ``n = 10^3 .. 10^6`` particles it prints steps per second of
both in float64 (same work, same dtype: the headline ratio), the ratio of dlpde in float32 to the
same NumPy float64 run (the study's default dtype; its final particles differ from float64 by the
printed amount), the largest differences of the final particles, and writes JSON with the
thread settings. Time each side as the best of ``--repeats`` interleaved runs.

    python benchmarks/meanfield_particle_steps.py            # n = 1e3 .. 1e6 (about a minute)
    python benchmarks/meanfield_particle_steps.py --tiny     # seconds
    python benchmarks/meanfield_particle_steps.py --device cuda

Both sides run on the same number of threads: ``OMP_NUM_THREADS`` (default 1), also given to
NumPy's BLAS (``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, set before NumPy loads) and to
``torch.set_num_threads``; the counts each library reports are printed and written to the JSON.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import time
from pathlib import Path

THREADS = int(os.environ.get("OMP_NUM_THREADS", "1"))
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = str(THREADS)

import numpy as np  # noqa: E402  (after the thread settings)
import torch  # noqa: E402

from dlpde.meanfield import TwoLayerMeanField, mean_field_sgd  # noqa: E402
from dlpde.shared import resolve_device  # noqa: E402

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

    model32 = TwoLayerMeanField(
        n, d, "tanh", bias=True, bias_scale=0.5, generator=1, dtype=torch.float32, device=device
    )
    on_device32 = [(x.float(), y.float()) for x, y in on_device]

    def run_torch(net, data):
        net.set_particles(start.to(net.particles.dtype))
        mean_field_sgd(net, lambda k: net.squared_loss(*data[k], set_grad=True), steps * step, step,
                       progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(fn):
        begin = time.perf_counter()
        result = fn()
        return time.perf_counter() - begin, result

    start_numpy = start.double().cpu().numpy()
    times = {"dlpde": [], "dlpde32": [], "numpy": []}
    run_torch(model, on_device)  # warm-up
    run_torch(model32, on_device32)
    for _ in range(repeats):
        times["dlpde"].append(timed(lambda: run_torch(model, on_device))[0])
        elapsed, final_numpy = timed(lambda: numpy_steps(start_numpy, batches, step))
        times["numpy"].append(elapsed)
        times["dlpde32"].append(timed(lambda: run_torch(model32, on_device32))[0])
    difference = float(np.abs(model.particles.detach().double().cpu().numpy() - final_numpy).max())
    difference32 = float(np.abs(model32.particles.detach().double().cpu().numpy() - final_numpy).max())
    rate = {k: steps / min(v) for k, v in times.items()}
    return {
        "n": n,
        "d": d,
        "batch": batch,
        "steps": steps,
        "dlpde_steps_per_second": rate["dlpde"],
        "dlpde_float32_steps_per_second": rate["dlpde32"],
        "numpy_steps_per_second": rate["numpy"],
        "speedup": rate["dlpde"] / rate["numpy"],
        "speedup_float32": rate["dlpde32"] / rate["numpy"],
        "max_abs_difference": difference,
        "max_abs_difference_float32": difference32,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="n = 100, 1000 and a few steps (seconds)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sizes", default=None, help="comma-separated n (default 1e3,1e4,1e5,1e6)")
    parser.add_argument("--json", default=str(RESULTS / "meanfield_particle_steps.json"))
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    torch.set_num_threads(THREADS)
    dtype = torch.float64
    sizes = (100, 1000) if args.tiny else (1_000, 10_000, 100_000, 1_000_000)
    if args.sizes:
        sizes = tuple(int(float(v)) for v in args.sizes.split(","))
    d, batch = (5, 8) if args.tiny else (10, 32)
    threads = _threads()
    print(f"two-layer mean-field online SGD, d={d}, batch={batch}, dlpde on {device} vs NumPy")
    print(f"threads: {threads}")
    print(
        f"{'n':>9} {'dlpde f64/s':>12} {'numpy f64/s':>12} {'ratio f64':>9} {'max |diff|':>10} "
        f"{'dlpde f32/s':>12} {'ratio f32':>9} {'f32 |diff|':>10}"
    )
    rows = []
    for n in sizes:
        steps = 3 if args.tiny else max(3, min(50, 20_000_000 // (n * batch)))
        row = measure(n, d, batch, steps, device, dtype, args.repeats)
        rows.append(row)
        print(
            f"{n:>9} {row['dlpde_steps_per_second']:>12.1f} {row['numpy_steps_per_second']:>12.1f} "
            f"{row['speedup']:>9.2f} {row['max_abs_difference']:>10.2e} "
            f"{row['dlpde_float32_steps_per_second']:>12.1f} {row['speedup_float32']:>9.2f} "
            f"{row['max_abs_difference_float32']:>10.2e}",
            flush=True,
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": str(device),
                "dtype": "float64 (headline), float32 (dlpde only)",
                "threads": threads,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    ok = all(r["max_abs_difference"] < 1e-9 and r["max_abs_difference_float32"] < 1e-3 for r in rows)
    return 0 if ok else 1


def _threads() -> dict:
    """Thread counts of both sides as the libraries report them (NumPy's OpenBLAS through its C API)."""
    info = {"torch_intra_op": torch.get_num_threads(), "dlpde_kernel": 1, "numpy_blas": _numpy_blas_threads()}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        info[name] = os.environ.get(name)
    return info


def _numpy_blas_threads():
    """The thread count of the OpenBLAS bundled with NumPy, or None where it cannot be asked."""
    folder = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in glob.glob(os.path.join(folder, "*openblas*")):
        library = ctypes.CDLL(path)
        for symbol in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                       "openblas_get_num_threads"):
            if hasattr(library, symbol):
                return int(getattr(library, symbol)())
    return None


if __name__ == "__main__":
    raise SystemExit(main())
