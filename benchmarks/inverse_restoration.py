"""Inference time per image of each restoration method, against TV (Chambolle-Pock) and BM3D
where the optional ``bm3d`` package is installed, on one noisy image (sigma = 25/255).

Times are for untrained networks of the sizes the ``inverse.denoise`` / ``inverse.deblur``
studies train (inference cost does not depend on the weights); the ratio column is the time
of TV divided by the time of the method.

    python benchmarks/inverse_restoration.py [--tiny] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from dlpde.inverse import (
    TRD,
    DnCNN,
    GaussianBlur,
    GaussianNoise,
    Identity,
    UNet,
    UnrolledProximalGradient,
    load_image,
    total_variation_restoration,
    wavelet_denoise,
)

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--json", default=str(RESULTS / "inverse_restoration.json"))
    args = parser.parse_args(argv)
    size, repeats = (32, 1) if args.tiny else (256, 3)
    g = torch.Generator().manual_seed(0)
    clean = load_image("camera", size)
    noisy = GaussianNoise(25 / 255)(clean, g)[None]
    methods = {
        "TV (Chambolle-Pock, 200 it.)": lambda: total_variation_restoration(
            Identity(), noisy, 0.08, stopping=200).solution,
        "TRD (5 stages, 5x5 x 24)": TRD(5, 5, generator=g),
        "TRD diffusion (5 steps)": TRD(5, 5, fidelity=False, generator=g),
        "DnCNN (8 x 24)": DnCNN(8, 24, batch_norm=False, generator=g).eval(),
        "UNet (2 levels, 16)": UNet(2, 16, generator=g).eval(),
        "unrolled PG (TV prior, 10 stages)": UnrolledProximalGradient(
            GaussianBlur(2.0, boundary="reflect"), "tv", 10, operator_norm=1.0),
        "wavelet (BayesShrink)": lambda: wavelet_denoise(noisy, 25 / 255),
    }
    try:
        import bm3d

        methods["BM3D"] = lambda: torch.tensor(bm3d.bm3d(noisy[0].double().numpy(), 25 / 255))
    except ImportError:
        pass
    rows = []
    with torch.no_grad():
        for name, method in methods.items():
            run = method if not isinstance(method, torch.nn.Module) else (lambda m=method: m(noisy))
            run()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            rows.append({"method": name, "seconds_per_image": statistics.median(times)})
    tv = rows[0]["seconds_per_image"]
    for row in rows:
        row["tv_time_ratio"] = tv / row["seconds_per_image"]
        print(f"{row['method']:<36} {row['seconds_per_image']:.4f} s/image  "
              f"TV/method {row['tv_time_ratio']:.2f}")
    result = {"tiny": args.tiny, "size": size, "torch_threads": torch.get_num_threads(), "rows": rows}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
