"""A tiny study used to test the runner and the command line (registered through
``DLPDE_EXTRA_STUDIES=tests.shared.example_study`` or ``extra_modules``)."""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

import torch

from dlpde.shared import Study, make_generator, new_figure, resolve_device, train


@dataclasses.dataclass(frozen=True)
class Config:
    steps: int = 20
    width: int = 8
    lr: float = 0.05
    activation: Literal["tanh", "relu"] = "tanh"
    sizes: tuple[int, ...] = (10, 20)
    fail_at_step: int = -1
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


def run(config: Config, run_dir) -> dict:
    if os.environ.get("EXAMPLE_STUDY_CHILD_CPU"):  # work in a child process (as a local engine's workers)
        import subprocess
        import sys

        busy = ("import time\nt = time.process_time()\n"
                f"while time.process_time() - t < {float(os.environ['EXAMPLE_STUDY_CHILD_CPU'])}: pass")
        subprocess.run([sys.executable, "-c", busy], check=True)
    device = resolve_device(config.device)
    g = make_generator(config.seed, device)
    x = torch.linspace(-1, 1, 32, device=device, dtype=torch.float64)[:, None]
    y = torch.sin(3 * x)
    act = torch.nn.Tanh() if config.activation == "tanh" else torch.nn.ReLU()
    model = torch.nn.Sequential(torch.nn.Linear(1, config.width), act,
                                torch.nn.Linear(config.width, 1)).to(device, torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, device=device, dtype=p.dtype) * 0.5)

    def loss_fn(step):
        if step == config.fail_at_step and os.environ.get("EXAMPLE_STUDY_CRASH"):
            raise KeyboardInterrupt
        return ((model(x) - y) ** 2).mean()

    history = train(model, loss_fn, config.steps, lr=config.lr, progress=False,
                    checkpoint=run_dir.checkpoint_path("model"), checkpoint_every=5,
                    resume=run_dir.resume)
    extra = run_dir.cached("extra", lambda: {"sum_sizes": sum(config.sizes)})
    run_dir.write_csv("history.csv", history)
    fig, ax = new_figure()
    ax.plot([h["loss"] for h in history])
    run_dir.save_figure(fig, "loss", caption="training loss")
    run_dir.add_section("Notes", "A test study.")
    return {"final_loss": history[-1]["loss"], "sum_sizes": extra["sum_sizes"],
            "n_history": len(history)}


STUDY = Study(
    name="example.fit",
    description="Fit sin(3x) with a tiny network (test study).",
    config=Config,
    presets={"smoke": Config(steps=5), "quick": Config(), "full": Config(steps=200)},
    run=run,
    citations=("paszke2019pytorch",),
    in_tour=True,
)
