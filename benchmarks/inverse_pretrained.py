"""PSNR of the shipped pretrained denoisers (``dlpde.inverse.pretrained``) side by side with
TV at its PSNR-best weight (an oracle, as in the ``inverse.denoise`` study) and wavelet
shrinkage, on the held-out test images (camera, astronaut; never seen in training) with the
fixed noise of the denoise study, at sigma = 15, 25, 50 (0-255 scale). The gap column is
method minus best-weight TV (dB); published anchors (BM3D at sigma 25, measured here: camera
29.91, astronaut 31.26 dB) are printed for reference only.

    python benchmarks/inverse_pretrained.py [--tiny] [--json PATH]

``--tiny`` uses 64 x 64 centre crops, sigma 25 only, and 3 TV evaluations.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dlpde.inverse import Identity, pretrained, pretrained_record, psnr, wavelet_denoise
from dlpde.inverse._pretrained import PRETRAINED_METHODS, _test_pair
from dlpde.inverse.studies._common import best_weight_tv

RESULTS = Path(__file__).resolve().parent / "results"
BM3D_SIGMA25 = {"camera": 29.91, "astronaut": 31.26}  # measured here (REFERENCES.md)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--json", default=str(RESULTS / "inverse_pretrained.json"))
    args = parser.parse_args(argv)
    size, sigmas, evaluations = (64, (25,), 3) if args.tiny else (None, (15, 25, 50), 6)
    rows = []
    for sigma in sigmas:
        for name in ("camera", "astronaut"):
            clean, noisy = _test_pair(name, sigma, size)
            row = {"sigma": sigma, "image": name, "noisy": float(psnr(noisy.clamp(0, 1).double(),
                                                                      clean.double()))}
            start = time.process_time()
            s = sigma / 255
            estimate, weight = best_weight_tv(Identity(), noisy.double()[None], clean.double()[None],
                                              0.3 * s, 2.0 * s, evaluations)
            row["TV"] = float(psnr(estimate[0].clamp(0, 1), clean.double()))
            row["TV_weight"] = weight
            row["TV_cpu_s"] = time.process_time() - start
            row["wavelet"] = float(psnr(wavelet_denoise(noisy[None], s)[0].clamp(0, 1).double(),
                                        clean.double()))
            for method in PRETRAINED_METHODS:
                with torch.no_grad():
                    out = pretrained(method, sigma)(noisy[None])[0].clamp(0, 1)
                row[method] = float(psnr(out.double(), clean.double()))
                row[f"{method}_minus_TV"] = row[method] - row["TV"]
            rows.append(row)
    header = ["sigma", "image", "noisy", "wavelet", "TV", *PRETRAINED_METHODS,
              *[f"{m}-TV" for m in PRETRAINED_METHODS]]
    print(" | ".join(f"{h:>9}" for h in header))
    for r in rows:
        cells = [r["sigma"], r["image"], r["noisy"], r["wavelet"], r["TV"],
                 *[r[m] for m in PRETRAINED_METHODS], *[r[f"{m}_minus_TV"] for m in PRETRAINED_METHODS]]
        print(" | ".join(f"{c:9.2f}" if isinstance(c, float) else f"{c!s:>9}" for c in cells))
    if not args.tiny:
        for r in rows:
            if r["sigma"] == 25:
                print(f"BM3D sigma 25 {r['image']}: {BM3D_SIGMA25[r['image']]:.2f} dB; "
                      f"TRD - BM3D = {r['trd'] - BM3D_SIGMA25[r['image']]:+.2f} dB")
    training = {f"{m}-sigma{s}": pretrained_record(m, s)["cpu_seconds"] for m in PRETRAINED_METHODS
                for s in sigmas}
    result = {"rows": rows, "size": size or "full", "training_cpu_seconds": training,
              "bm3d_sigma25_reference": BM3D_SIGMA25}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
