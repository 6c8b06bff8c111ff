"""Core-kernel checks for ``benchmarks/gpu_check.py``.

Each thread lists its core kernels in ``dlpde/<thread>/_kernels.py`` as ``KERNELS``, a list of
``KernelCheck``. ``build(device, tiny)`` must create its inputs on the CPU from a fixed seed in
float64 and move them to ``device`` (so the CPU and CUDA runs see identical inputs), and return
a zero-argument callable running the kernel; the callable returns a tensor, or a tuple/dict of
tensors. ``compare_kernel`` runs a check on two devices and reports the largest difference and
the median time on each.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["KernelCheck", "compare_kernel", "flatten_outputs"]


@dataclasses.dataclass(frozen=True)
class KernelCheck:
    name: str
    build: Callable[[torch.device, bool], Callable[[], object]]
    rtol: float = 1e-7
    atol: float = 1e-9


def flatten_outputs(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in flatten_outputs(out[k])]
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in flatten_outputs(item)]
    if isinstance(out, (int, float)):
        return [torch.tensor(float(out), dtype=torch.float64)]
    raise TypeError(f"kernel outputs must be tensors (or tuples/dicts of them), got {type(out)}")


def _time(fn, device: torch.device, repeats: int) -> tuple[object, float]:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    out = fn()  # warm-up (and the output that is compared)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def compare_kernel(check: KernelCheck, device: torch.device, reference: str = "cpu",
                   tiny: bool = False, repeats: int = 3) -> dict:
    """Run ``check`` on ``reference`` and ``device``; return differences and times."""
    device, reference = torch.device(device), torch.device(reference)
    ref_out, ref_time = _time(check.build(reference, tiny), reference, repeats)
    dev_out, dev_time = _time(check.build(device, tiny), device, repeats)
    ref_list, dev_list = flatten_outputs(ref_out), flatten_outputs(dev_out)
    if len(ref_list) != len(dev_list):
        raise AssertionError(f"{check.name}: different numbers of outputs on the two devices")
    max_abs, max_rel, ok = 0.0, 0.0, True
    for a, b in zip(ref_list, dev_list):
        a = a.detach().to("cpu", torch.float64)
        b = b.detach().to("cpu", torch.float64)
        if a.shape != b.shape:
            raise AssertionError(f"{check.name}: shapes differ {tuple(a.shape)} vs {tuple(b.shape)}")
        diff = (a - b).abs()
        if diff.numel():
            max_abs = max(max_abs, float(diff.max()))
            max_rel = max(max_rel, float((diff / a.abs().clamp_min(1e-300)).max()))
            ok = ok and bool((diff <= check.atol + check.rtol * a.abs()).all())
    return {"name": check.name, "max_abs_diff": max_abs, "max_rel_diff": max_rel, "ok": ok,
            "reference_device": str(reference), "device": str(device),
            "reference_seconds": ref_time, "device_seconds": dev_time,
            "speedup": ref_time / dev_time if dev_time > 0 else float("inf")}
