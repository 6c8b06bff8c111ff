"""dlpde.ntk against neural-tangents, side by side in one run: time ratios, peak memory, agreement.

Analytic kernels (``analytic_kernels`` vs ``kernel_fn`` after jit warm-up):
  - depth-3 ReLU fully connected network on 4096 x 4096 inputs (d = 32), float32 and float64;
  - a small CNN (two 3x3 convolutions, ReLU, global average pooling) on 8x8x3 images.
Empirical NTK of an MLP (``empirical_ntk``, methods 'jacobian', 'ntk_vp', 'structured') against
``empirical_ntk_fn`` implementations 1 (Jacobian contraction) and 2 (NTK-vector products), and
against a naive loop of per-sample ``torch.autograd.grad`` Jacobians.

Needs the neural-tangents side environment for the peer; without it the dlpde half runs and the
peer is reported as skipped. Peak memory: the largest resident-set growth during the call (CPU,
sampled every 2 ms) or ``torch.cuda.max_memory_allocated`` (CUDA, dlpde only).

    python benchmarks/ntk_vs_neural_tangents.py [--tiny] [--device cpu|cuda] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from dlpde.ntk import Conv, Dense, GlobalAvgPool, Relu, Serial, analytic_kernels, build_network, empirical_ntk
from dlpde.shared import make_generator

RESULTS = Path(__file__).resolve().parent / "results"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def measure(fn, repeats: int, device: torch.device):
    """Median seconds after one warm-up call, and the peak memory growth of the warm-up call."""
    def sync(out=None):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elif out is not None and hasattr(out, "block_until_ready"):
            out.block_until_ready()
        return out

    peak, stop = [0], threading.Event()
    base = _rss_bytes()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes() - base)
            time.sleep(0.002)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    out = sync(fn())
    stop.set()
    watcher.join()
    memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak[0]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - start)
    return out, statistics.median(times), memory


def _neural_tangents():
    try:
        import jax

        jax.config.update("jax_enable_x64", True)  # before neural_tangents creates any constant
        import neural_tangents
    except ImportError as error:
        return None, f"neural-tangents unavailable ({error})"
    return neural_tangents, None


def _channels_last(x):
    return x.permute(0, *range(2, x.dim()), 1).contiguous() if x.dim() > 2 else x


def analytic_cases(tiny: bool):
    n_fc, n_cnn = (256, 16) if tiny else (4096, 128)
    fc = Serial(Dense(512, 1.4, 0.1), Relu(), Dense(512, 1.4, 0.1), Relu(), Dense(512, 1.4, 0.1), Relu(),
                Dense(1, 1.0, 0.1))
    conv = Conv(64, (3, 3), (1, 1), "SAME", 1.4, 0.1)
    cnn = Serial(conv, Relu(), conv, Relu(), GlobalAvgPool(), Dense(1))
    g = make_generator(0)
    x_fc = torch.randn(n_fc, 32, generator=g, dtype=torch.float64)
    x_cnn = torch.randn(n_cnn, 3, 4 if tiny else 8, 4 if tiny else 8, generator=g, dtype=torch.float64)
    return [("fc_depth3_relu", fc, x_fc, (torch.float32, torch.float64)),
            ("cnn_gap", cnn, x_cnn, (torch.float64,))]


def run_analytic(nt, device, tiny, repeats):
    rows = []
    for name, spec, x, dtypes in analytic_cases(tiny):
        for dtype in dtypes:
            xd = x.to(device=device, dtype=dtype)
            batch = 64 if name == "cnn_gap" else None
            ours, ours_time, ours_memory = measure(lambda: analytic_kernels(spec, xd, batch_size=batch)[1],
                                                   repeats, device)
            row = {"case": name, "n": x.shape[0], "dtype": str(dtype).removeprefix("torch."),
                   "dlpde_seconds": ours_time, "dlpde_peak_bytes": ours_memory}
            if nt is not None:
                import jax
                import jax.numpy as jnp

                kernel_fn = jax.jit(spec.to_stax(nt.stax)[2], static_argnames="get")
                xj = jnp.asarray(_channels_last(x).numpy(),
                                 dtype=jnp.float32 if dtype == torch.float32 else jnp.float64)
                theirs, their_time, their_memory = measure(lambda: kernel_fn(xj, xj, get="ntk"), repeats,
                                                           torch.device("cpu"))
                reference = torch.tensor(np.asarray(theirs), dtype=torch.float64)
                row.update(neural_tangents_seconds=their_time, neural_tangents_peak_bytes=their_memory,
                           ratio_neural_tangents_over_dlpde=their_time / ours_time,
                           max_relative_difference=float(((ours.cpu().double() - reference).abs()
                                                          / reference.abs().max()).max()))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _naive_jacobian_ntk(net, x):
    params = list(net.parameters())
    rows = []
    for n in range(x.shape[0]):
        grads = torch.autograd.grad(net(x[n:n + 1]).sum(), params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    jac = torch.stack(rows)
    return jac @ jac.T


def run_empirical(nt, device, tiny, repeats):
    n, width = (32, 128) if tiny else (256, 512)
    spec = Serial(Dense(width, 1.4, 0.1), Relu(), Dense(width, 1.4, 0.1), Relu(), Dense(1, 1.0, 0.1))
    net = build_network(spec, (32,), 0, torch.float64, device)
    x = torch.randn(n, 32, generator=make_generator(1), dtype=torch.float64).to(device)
    results = {}
    for method in ("jacobian", "ntk_vp", "structured"):
        results[f"dlpde_{method}"] = measure(lambda m=method: empirical_ntk(net, x, method=m), repeats,
                                             device)
    results["naive_loop"] = measure(lambda: _naive_jacobian_ntk(net, x), repeats, device)
    reference = results["dlpde_jacobian"][0].cpu()
    if nt is not None:
        import jax
        import jax.numpy as jnp

        apply_fn = spec.to_stax(nt.stax)[1]
        params = []
        for layer, module in zip(spec.layers, net.layers):
            if isinstance(layer, Dense):
                params.append((jnp.asarray(module.weight.detach().cpu().numpy().T),
                               jnp.asarray(module.bias.detach().cpu().numpy().reshape(1, -1))))
            else:
                params.append(())
        xj = jnp.asarray(x.cpu().numpy())
        for implementation in (1, 2):
            fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), implementation=implementation))
            results[f"neural_tangents_impl{implementation}"] = measure(
                lambda f=fn: f(xj, None, params), repeats, torch.device("cpu"))
    rows = []
    base = results["dlpde_jacobian"][1]
    for name, (out, seconds, memory) in results.items():
        value = torch.tensor(np.asarray(out), dtype=torch.float64) if name.startswith("neural") \
            else out.detach().cpu().double()
        row = {"case": f"empirical_mlp_n{n}_width{width}", "method": name, "seconds": seconds,
               "peak_bytes": memory,
               "ratio_over_dlpde_jacobian": seconds / base,
               "max_relative_difference": float(((value - reference).abs() / reference.abs().max()).max())}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=str(RESULTS / "ntk_vs_neural_tangents.json"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    nt, why = _neural_tangents()
    if nt is None:
        print(f"peer skipped: {why}; running the dlpde half only", file=sys.stderr)
    analytic = run_analytic(nt, device, args.tiny, args.repeats)
    empirical = run_empirical(nt, device, args.tiny, args.repeats)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": str(device), "tiny": args.tiny, "torch": torch.__version__,
                               "neural_tangents": None if nt is None else version("neural-tangents"),
                               "peer_skipped": why,
                               "analytic": analytic, "empirical": empirical}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
