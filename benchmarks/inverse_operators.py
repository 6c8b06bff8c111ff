"""Operator throughput: dlpde.inverse against scikit-image / SciPy on the same work, with accuracy.

- Radon transform (parallel beam) against ``skimage.transform.radon`` (circle=True, odd size so
  that both rotate about the same pixel): time and relative difference of the sinograms.
- Filtered back-projection against ``skimage.transform.iradon`` (ramp): time and the error of
  each reconstruction against the phantom (inside the inscribed circle).
- Convolution with reflect boundary against ``scipy.ndimage.convolve`` (mode mirror), which
  scikit-image's filters use: time and largest difference.

    python benchmarks/inverse_operators.py [--tiny] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from dlpde.inverse import MotionBlur, Radon, filtered_back_projection, shepp_logan_phantom

RESULTS = Path(__file__).resolve().parent / "results"


def _time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--json", default=str(RESULTS / "inverse_operators.json"))
    args = parser.parse_args(argv)
    from scipy.ndimage import convolve
    from skimage.transform import iradon, radon

    size, angles, batch, repeats = (33, 12, 4, 1) if args.tiny else (257, 180, 16, 3)
    phantom = shepp_logan_phantom(size, torch.float64)
    theta = np.linspace(0.0, 180.0, angles, endpoint=False)
    operator = Radon(torch.tensor(theta), size)
    rows = []

    ours, t_ours = _time(lambda: operator(phantom), repeats)
    theirs, t_theirs = _time(lambda: radon(phantom.numpy(), theta=theta, circle=True), repeats)
    rows.append({"work": f"radon {size}^2, {angles} angles", "dlpde_s": t_ours, "peer_s": t_theirs,
                 "peer": "skimage.transform.radon",
                 "relative_difference": float(np.linalg.norm(ours.numpy() - theirs.T)
                                              / np.linalg.norm(theirs))})

    sinogram = ours
    disk = torch.tensor(np.hypot(*np.meshgrid(np.arange(size) - size // 2, np.arange(size) - size // 2))
                        < size / 2 - 1)
    rec, t_ours = _time(lambda: filtered_back_projection(operator, sinogram, "ramp"), repeats)
    rec_sk, t_theirs = _time(lambda: iradon(sinogram.numpy().T, theta=theta, filter_name="ramp",
                                            circle=True), repeats)

    def error(image):
        image = torch.as_tensor(image)
        return float((image - phantom)[disk].norm() / phantom[disk].norm())

    rows.append({"work": f"FBP {size}^2, {angles} angles", "dlpde_s": t_ours, "peer_s": t_theirs,
                 "peer": "skimage.transform.iradon", "dlpde_error": error(rec), "peer_error": error(rec_sk)})

    images = torch.rand(batch, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    blur = MotionBlur(15.0, 30.0, boundary="reflect")
    ours, t_ours = _time(lambda: blur(images), repeats)
    kernel = blur.kernel.numpy()
    theirs, t_theirs = _time(lambda: np.stack([convolve(x, kernel, mode="mirror") for x in images.numpy()]),
                             repeats)
    rows.append({"work": f"convolution {batch} x {size}^2, kernel {kernel.shape[0]}^2, reflect",
                 "dlpde_s": t_ours, "peer_s": t_theirs, "peer": "scipy.ndimage.convolve",
                 "max_difference": float(np.abs(ours.numpy() - theirs).max())})

    for row in rows:
        row["speedup"] = row["peer_s"] / row["dlpde_s"]
        extras = {k: v for k, v in row.items() if k not in ("work", "dlpde_s", "peer_s", "peer", "speedup")}
        print(f"{row['work']:<44} dlpde {row['dlpde_s']:.4f} s  {row['peer']} {row['peer_s']:.4f} s  "
              f"speedup {row['speedup']:.2f}  " + "  ".join(f"{k} {v:.2e}" for k, v in extras.items()))
    result = {"tiny": args.tiny, "torch_threads": torch.get_num_threads(), "rows": rows}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
