"""A tiny study for the sweep and engine tests (registered via DLPDE_EXTRA_STUDIES or extra_modules).

Its work is a grid of independent points handed to ``RunDir.map``, so it exercises the engines
the way ``ntk.alpha_phase`` does.
"""

from __future__ import annotations

import dataclasses

import torch

from dlpde.shared import Study, make_generator


@dataclasses.dataclass(frozen=True)
class Config:
    scale: float = 1.0
    n_points: int = 3
    fail_scale: float = -1.0
    flaky: bool = False
    seed: int = 0
    device: str = "auto"


def point_value(task) -> dict:
    """One grid point: a float64 random-feature computation seeded from the task alone."""
    seed, scale, index = task
    g = make_generator(1000 * seed + index)
    a = torch.randn(64, 64, generator=g, dtype=torch.float64)
    x = torch.randn(64, 16, generator=g, dtype=torch.float64)
    return {"index": index, "value": float(torch.tanh(scale * a @ x / 8).square().mean())}


def run(config: Config, run_dir) -> dict:
    if config.scale == config.fail_scale:
        raise RuntimeError(f"scale {config.scale} fails on purpose")
    marker = run_dir.path / "attempted"
    if config.flaky and not marker.exists():
        marker.write_text("1")
        raise RuntimeError("flaky trial fails on its first attempt")
    points = run_dir.map(point_value, [(config.seed, config.scale, i) for i in range(config.n_points)],
                         desc="points")
    values = [p["value"] for p in points]
    return {"mean_value": sum(values) / len(values), "values": values,
            "nested": {"max_value": max(values)}}


STUDY = Study(
    name="example.grid",
    description="A grid of random-feature evaluations (test study for sweeps and engines).",
    config=Config,
    presets={"smoke": Config(n_points=2), "quick": Config(), "full": Config(n_points=8)},
    run=run,
)
