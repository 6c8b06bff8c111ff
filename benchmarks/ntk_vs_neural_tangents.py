"""dlpde.ntk against neural-tangents, side by side in one run: time ratios, peak-memory ratios, agreement.

Analytic kernels (``analytic_kernels(..., get="ntk")`` vs neural-tangents' jitted ``kernel_fn(...,
get="ntk")``), the sizes of the issue:
  - ``fc_depth3_relu``: depth-3 ReLU fully connected network (width 512, W_std 1.4, b_std 0.1) on
    4096 x 4096 inputs (d = 32), float32 and float64;
  - ``cnn_gap``: a small CNN (two 3x3 SAME convolutions of 64 channels, ReLU, global average
    pooling, dense readout) on 128 images of 3 x 8 x 8, float32.
Empirical NTK of an MLP (``empirical_ntk`` methods 'jacobian', 'ntk_vp', 'structured') against
``empirical_ntk_fn`` implementations 1 (Jacobian contraction) and 2 (NTK-vector products) and a
naive loop of per-sample ``torch.autograd.grad`` Jacobians, float64.

Method. Each side runs in its own fresh subprocess (same interpreter, same thread settings:
``--threads`` intra-op threads for torch and XLA, the process pinned to that many CPUs), so
neither side sees the other's allocations or caches; inside it the measurements follow one another:
  1. import, build the inputs (and for neural-tangents compile the jitted function ahead of time
     with ``jit(...).lower(...).compile()``, which allocates no result buffers);
  2. peak memory: after one warm-up call (one-time runtime initialisation is not the kernel's),
     return freed heap to the system (``malloc_trim``; glibc's mmap threshold is fixed at 1 MiB
     in both workers so freed buffers leave the resident set), reset the kernel's peak-RSS
     counter (``/proc/self/clear_refs`` <- 5), run the call, and report ``VmHWM`` after it minus
     ``VmRSS`` before it: the resident memory the call itself needed, result included (exact, no
     sampling);
  3. time: median over ``--repeats`` further calls of the process CPU seconds (user + sys, all
     threads) and of the wall seconds. Ratios use CPU seconds, which the load of other processes
     on a shared machine distorts far less than wall time; wall ratios are printed beside them.
Ratios are neural-tangents / dlpde (> 1: dlpde faster or smaller). Needs the neural-tangents
environment for the peer (without it the dlpde half runs and the peer is reported as skipped).

    python benchmarks/ntk_vs_neural_tangents.py [--tiny] [--repeats 3] [--threads 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ANALYTIC = [("fc_depth3_relu", "float32"), ("fc_depth3_relu", "float64"), ("cnn_gap", "float32")]
EMPIRICAL = ["dlpde_jacobian", "dlpde_ntk_vp", "dlpde_structured", "naive_loop",
             "neural_tangents_impl1", "neural_tangents_impl2"]


# ----------------------------------------------------------------------------------------------
# worker side: one measurement in a fresh process


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _measure(fn, repeats: int) -> dict:
    """Peak resident growth of one warm call, then median CPU and wall seconds of ``repeats`` calls."""
    import ctypes
    import gc

    out = fn()  # warm-up: one-time runtime initialisation is not the kernel's memory
    del out
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back before the baseline
    base = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM (the peak RSS) to the current RSS
    out = fn()
    peak = _status_kb("VmHWM") - base
    cpu, wall = [], []
    for _ in range(repeats):
        del out
        gc.collect()
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"out": out, "peak_bytes": int(peak), "cpu_seconds": statistics.median(cpu),
            "wall_seconds": statistics.median(wall)}


def _specs(tiny: bool):
    from dlpde.ntk import Conv, Dense, GlobalAvgPool, Relu, Serial

    fc = Serial(Dense(512, 1.4, 0.1), Relu(), Dense(512, 1.4, 0.1), Relu(), Dense(512, 1.4, 0.1), Relu(),
                Dense(1, 1.0, 0.1))
    conv = Conv(64, (3, 3), (1, 1), "SAME", 1.4, 0.1)
    cnn = Serial(conv, Relu(), conv, Relu(), GlobalAvgPool(), Dense(1))
    n_fc, n_cnn, side = (256, 16, 4) if tiny else (4096, 128, 8)
    return {"fc_depth3_relu": (fc, (n_fc, 32)), "cnn_gap": (cnn, (n_cnn, 3, side, side))}


def _inputs(shape):
    import torch

    from dlpde.shared import make_generator

    return torch.randn(*shape, generator=make_generator(0), dtype=torch.float64)


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)  # before neural_tangents creates any constant
    import neural_tangents

    return jax, neural_tangents


def _analytic_job(job) -> dict:
    import torch

    spec, shape = _specs(job["tiny"])[job["case"]]
    x = _inputs(shape)
    if job["side"] == "dlpde":
        from dlpde.ntk import analytic_kernels

        xd = x.to(getattr(torch, job["dtype"]))
        result = _measure(lambda: analytic_kernels(spec, xd, get="ntk"), job["repeats"])
        result["out"] = result["out"].double().numpy()
        return result
    jax, nt = _jax()
    import jax.numpy as jnp

    xc = x.permute(0, *range(2, x.dim()), 1).contiguous() if x.dim() > 2 else x  # channels last
    xj = jnp.asarray(xc.numpy(), dtype=getattr(jnp, job["dtype"]))
    kernel_fn = spec.to_stax(nt.stax)[2]
    compiled = jax.jit(lambda a: kernel_fn(a, a, get="ntk")).lower(xj).compile()
    result = _measure(lambda: compiled(xj).block_until_ready(), job["repeats"])
    result["out"] = np.asarray(result["out"], dtype=np.float64)
    return result


def _naive_jacobian_ntk(net, x):
    import torch

    params = list(net.parameters())
    rows = []
    for n in range(x.shape[0]):
        grads = torch.autograd.grad(net(x[n:n + 1]).sum(), params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    jac = torch.stack(rows)
    return jac @ jac.T


def _empirical_job(job) -> dict:
    import torch

    from dlpde.ntk import Dense, Relu, Serial, build_network, empirical_ntk
    from dlpde.shared import make_generator

    n, width = (32, 128) if job["tiny"] else (256, 512)
    spec = Serial(Dense(width, 1.4, 0.1), Relu(), Dense(width, 1.4, 0.1), Relu(), Dense(1, 1.0, 0.1))
    net = build_network(spec, (32,), 0, torch.float64, "cpu")
    x = torch.randn(n, 32, generator=make_generator(1), dtype=torch.float64)
    method = job["side"]
    if method.startswith("dlpde_"):
        result = _measure(lambda: empirical_ntk(net, x, method=method.removeprefix("dlpde_")).detach(),
                          job["repeats"])
    elif method == "naive_loop":
        result = _measure(lambda: _naive_jacobian_ntk(net, x).detach(), job["repeats"])
    else:
        jax, nt = _jax()
        import jax.numpy as jnp

        apply_fn = spec.to_stax(nt.stax)[1]
        params = [(jnp.asarray(m.weight.detach().numpy().T), jnp.asarray(m.bias.detach().numpy()[None]))
                  if isinstance(layer, Dense) else () for layer, m in zip(spec.layers, net.layers)]
        xj = jnp.asarray(x.numpy())
        fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), implementation=int(method[-1]))
        compiled = jax.jit(lambda a, p: fn(a, None, p)).lower(xj, params).compile()
        result = _measure(lambda: compiled(xj, params).block_until_ready(), job["repeats"])
        result["out"] = np.asarray(result["out"], dtype=np.float64)
        return result
    result["out"] = result["out"].double().numpy()
    return result


def worker(jobs: list[dict]) -> int:
    """Run one side's jobs in this process, one after another (printing one result line each)."""
    threads = jobs[0]["threads"]
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    import torch

    torch.set_num_threads(threads)
    for job in jobs:
        result = (_analytic_job if job["kind"] == "analytic" else _empirical_job)(job)
        np.save(job["out"], result.pop("out"))
        print("RESULT " + json.dumps(result), flush=True)
        del result
    return 0


# ----------------------------------------------------------------------------------------------
# parent side: one subprocess per side, then ratios


def _environment(threads: int) -> dict:
    env = dict(os.environ)
    # a fixed mmap threshold: buffers over 1 MiB are mapped and unmapped on free, so the resident
    # set follows the live memory of both sides (glibc would otherwise raise the threshold and
    # keep freed buffers resident, hiding them from the peak measurement)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="3",
               JAX_PLATFORMS="cpu", MALLOC_MMAP_THRESHOLD_=str(2**20), MALLOC_TRIM_THRESHOLD_=str(2**20))
    xla = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" if threads == 1 else ""
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + xla).strip()
    return env


def _run(jobs: list[dict], folder: str) -> list[tuple[dict, np.ndarray]]:
    """One fresh subprocess for a list of jobs of one side."""
    jobs = [dict(job, out=os.path.join(folder, f"{i}-{job['kind']}-{job['side']}.npy"))
            for i, job in enumerate(jobs)]
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(jobs)], capture_output=True,
                          text=True, env=_environment(jobs[0]["threads"]))
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or len(lines) != len(jobs):
        raise RuntimeError(f"worker for {jobs[0]['side']} failed:\n{done.stderr[-3000:]}")
    return [(json.loads(line[len("RESULT "):]), np.load(job["out"])) for line, job in zip(lines, jobs)]


def _relative_difference(a: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(a.reshape(reference.shape) - reference).max() / np.abs(reference).max())


def _side(method: str) -> str:
    return "neural_tangents" if method.startswith("neural_tangents") else "dlpde"


def run_all(peer: bool, tiny: bool, repeats: int, threads: int, empirical: bool, folder: str):
    """Every job, grouped into one subprocess per side (dlpde first, then neural-tangents)."""
    common = {"tiny": tiny, "repeats": repeats, "threads": threads}
    jobs = {"dlpde": [], "neural_tangents": []}
    for case, dtype in ANALYTIC:
        for side in ("dlpde", "neural_tangents") if peer else ("dlpde",):
            jobs[side].append({"kind": "analytic", "case": case, "dtype": dtype, "side": side, **common})
    for method in EMPIRICAL if empirical else ():
        if peer or _side(method) == "dlpde":
            jobs[_side(method)].append({"kind": "empirical", "side": method, **common})
    results = {}
    for side_jobs in jobs.values():
        if side_jobs:
            for job, outcome in zip(side_jobs, _run(side_jobs, folder)):
                results[job["kind"], job.get("case"), job.get("dtype"), job["side"]] = outcome
    analytic = []
    for case, dtype in ANALYTIC:
        ours, ours_out = results["analytic", case, dtype, "dlpde"]
        shape = _specs(tiny)[case][1]
        row = {"case": case, "n": shape[0], "input_shape": list(shape[1:]), "dtype": dtype,
               "dlpde_cpu_seconds": ours["cpu_seconds"], "dlpde_wall_seconds": ours["wall_seconds"],
               "dlpde_peak_bytes": ours["peak_bytes"]}
        if peer:
            theirs, their_out = results["analytic", case, dtype, "neural_tangents"]
            row.update(neural_tangents_cpu_seconds=theirs["cpu_seconds"],
                       neural_tangents_wall_seconds=theirs["wall_seconds"],
                       neural_tangents_peak_bytes=theirs["peak_bytes"],
                       time_ratio=theirs["cpu_seconds"] / ours["cpu_seconds"],
                       wall_time_ratio=theirs["wall_seconds"] / ours["wall_seconds"],
                       memory_ratio=theirs["peak_bytes"] / max(ours["peak_bytes"], 1),
                       max_relative_difference=_relative_difference(ours_out, their_out))
        analytic.append(row)
        print(json.dumps(row), flush=True)
    rows = []
    if empirical:
        n, width = (32, 128) if tiny else (256, 512)
        measured = {key[3]: value for key, value in results.items() if key[0] == "empirical"}
        reference, base = measured["dlpde_jacobian"][1], measured["dlpde_jacobian"][0]["cpu_seconds"]
        for method, (numbers, out) in measured.items():
            row = {"case": f"empirical_mlp_n{n}_width{width}", "method": method, **numbers,
                   "ratio_over_dlpde_jacobian": numbers["cpu_seconds"] / base,
                   "max_relative_difference": _relative_difference(out, reference)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return analytic, rows


def table(rows: list[dict]) -> str:
    lines = ["case             dtype    dlpde s   nt s   time nt/dlpde   dlpde MB   nt MB   memory nt/dlpde"
             "   wall nt/dlpde   max rel diff"]
    for r in rows:
        if "time_ratio" not in r:
            lines.append(f"{r['case']:<16} {r['dtype']:<8} {r['dlpde_cpu_seconds']:7.3f}   (peer skipped)"
                         f"   {r['dlpde_peak_bytes'] / 2**20:8.1f}")
            continue
        lines.append(f"{r['case']:<16} {r['dtype']:<8} {r['dlpde_cpu_seconds']:7.3f} "
                     f"{r['neural_tangents_cpu_seconds']:6.3f}   {r['time_ratio']:13.2f}   "
                     f"{r['dlpde_peak_bytes'] / 2**20:8.1f} {r['neural_tangents_peak_bytes'] / 2**20:7.1f}   "
                     f"{r['memory_ratio']:15.2f}   {r['wall_time_ratio']:13.2f}   "
                     f"{r['max_relative_difference']:.1e}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of both sides")
    parser.add_argument("--skip-empirical", action="store_true")
    parser.add_argument("--json", default=str(RESULTS / "ntk_vs_neural_tangents.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1")
    peer = all(importlib.util.find_spec(name) is not None for name in ("jax", "neural_tangents"))
    why = None if peer else "neural-tangents (or jax) is not installed in this environment"
    if why:
        print(f"peer skipped: {why}; running the dlpde half only", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        analytic, empirical = run_all(peer, args.tiny, args.repeats, args.threads, not args.skip_empirical,
                                      folder)
    print(table(analytic))
    import torch

    versions = {"torch": torch.__version__}
    if peer:
        from importlib.metadata import version

        versions.update(jax=version("jax"), neural_tangents=version("neural-tangents"))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": "cpu", "tiny": args.tiny, "threads": args.threads,
                               "repeats": args.repeats, **versions, "peer_skipped": why,
                               "method": "one fresh subprocess per side; peak = VmHWM - VmRSS "
                                         "around a warm call; time = median process CPU seconds",
                               "analytic": analytic, "empirical": empirical}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
