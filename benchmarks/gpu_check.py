"""Run every registered core kernel on CUDA and on the CPU in float64; compare and time them.

Each thread lists its kernels in ``dlpde/<thread>/_kernels.py`` or in a subpackage's
``_kernels.py`` (``KERNELS``, a list of ``dlpde.shared.KernelCheck``). For each kernel this
prints the largest absolute and relative difference between the two devices and both median
times, writes JSON to
``benchmarks/results/gpu_check.json``, and exits with status 1 if any kernel mismatches.

    python benchmarks/gpu_check.py                 # on a GPU machine (under 5 minutes)
    python benchmarks/gpu_check.py --device cpu --tiny   # exercise every kernel on the CPU
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

import torch

import dlpde
from dlpde._registry import THREADS
from dlpde.shared.kernels import compare_kernel

RESULTS = Path(__file__).resolve().parent / "results"


def kernel_modules() -> list[str]:
    """Every ``dlpde.<package>[.<subpackage>]._kernels`` module, shared first, then by thread."""
    root = Path(dlpde.__file__).resolve().parent
    order = ("shared", *THREADS)
    names = []
    for path in root.rglob("_kernels.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[0] in order:
            names.append((order.index(parts[0]), len(parts), ".".join(("dlpde", *parts))))
    return [name for *_, name in sorted(names)]


def registered_kernels():
    checks = []
    for name in kernel_modules():
        checks.extend(importlib.import_module(name).KERNELS)
    return checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="device compared with the CPU (default cuda)")
    parser.add_argument("--tiny", action="store_true", help="small sizes (seconds in total)")
    parser.add_argument("--only", default="", help="run the kernels whose name contains this")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=str(RESULTS / "gpu_check.json"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available on this machine; use --device cpu to exercise "
              "the kernels on the CPU", file=sys.stderr)
        return 2
    checks = [c for c in registered_kernels() if args.only in c.name]
    print(f"{len(checks)} kernels, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + (", tiny sizes" if args.tiny else ""))
    print(f"{'kernel':<44} {'max abs':>10} {'max rel':>10} {'cpu s':>9} {args.device + ' s':>9} "
          f"{'speedup':>8}  ok")
    rows, failed = [], 0
    start = time.perf_counter()
    for check in checks:
        try:
            row = compare_kernel(check, device, tiny=args.tiny, repeats=args.repeats)
        except Exception as error:  # report and go on: one broken kernel must not hide others
            traceback.print_exc()
            row = {"name": check.name, "ok": False, "error": f"{type(error).__name__}: {error}"}
        rows.append(row)
        failed += not row["ok"]
        if "error" in row:
            print(f"{check.name:<44} ERROR {row['error']}")
        else:
            print(f"{row['name']:<44} {row['max_abs_diff']:>10.2e} {row['max_rel_diff']:>10.2e} "
                  f"{row['reference_seconds']:>9.4f} {row['device_seconds']:>9.4f} "
                  f"{row['speedup']:>8.1f}  {'yes' if row['ok'] else 'NO'}", flush=True)
    total = time.perf_counter() - start
    print(f"{len(rows) - failed}/{len(rows)} kernels agree; {total:.1f} s in total")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": str(device), "tiny": args.tiny, "seconds": total,
                               "torch": torch.__version__, "kernels": rows}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
