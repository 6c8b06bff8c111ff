"""symmetry.sets: learning curves of permutation-invariant architectures.

Target (invariant under permutations of the N points, points uniform in [-1, 1]^d):
``f(X) = sum_{i<j} exp(-2 |x_i - x_j|^2) + 1/2 sum_i cos(pi |x_i|)`` (a pair energy plus a one-body
term). Models: DeepSets on the exact multisymmetric power sums (``PowerSumEmbedding``), DeepSets
with a learned ``phi``, attention pooling (Set Transformer PMA), a plain MLP on the flattened
points, and the same MLP trained on randomly permuted copies (data augmentation). Reported: test
relative mean-squared error against the number of training sets, and how much each model's
prediction moves when the points of a test set are permuted (zero for the invariant ones).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
import torch
from torch import nn

from dlpde.shared import Study, make_generator, resolve_device, resolve_dtype, train

from .._layers import mlp
from .._sets import AttentionPooling, DeepSets, PowerSumEmbedding
from ._checks import check_fields, check_int_tuple, check_subset
from ._vmc_runs import point_seed

MODELS = ("power_sums", "deep_sets", "attention", "mlp", "mlp_augmented")
LABELS = {"power_sums": "DeepSets + power sums", "deep_sets": "DeepSets (learned phi)",
          "attention": "attention pooling", "mlp": "MLP", "mlp_augmented": "MLP + permutations"}


@dataclasses.dataclass(frozen=True)
class Config:
    dims: tuple[int, ...] = (1, 2, 3)
    n_points: int = 4
    models: tuple[str, ...] = MODELS
    train_sizes: tuple[int, ...] = (64, 256, 1024, 4096)
    test_size: int = 4096
    steps: int = 3000
    batch_size: int = 256
    lr: float = 3e-3
    width: int = 64
    latent: int = 32
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        check_int_tuple(self.dims, "dims")
        check_subset(self.models, "models", MODELS)
        check_int_tuple(self.train_sizes, "train_sizes", minimum=2)
        check_fields(self, positive=("n_points", "test_size", "steps", "batch_size", "width", "latent"),
                     positive_reals=("lr",))
        if self.latent % 4:
            raise ValueError(f"latent must be divisible by 4 (attention heads), got {self.latent}")


def target(x: torch.Tensor) -> torch.Tensor:
    """``sum_{i<j} exp(-2 |x_i - x_j|^2) + 1/2 sum_i cos(pi |x_i|)`` for ``x`` of shape (B, N, d)."""
    i, j = torch.triu_indices(x.shape[1], x.shape[1], 1, device=x.device)
    pair = torch.exp(-2 * ((x[:, i] - x[:, j]) ** 2).sum(-1)).sum(-1)
    return pair + 0.5 * torch.cos(math.pi * torch.linalg.vector_norm(x, dim=-1)).sum(-1)


class _Standardize(nn.Module):
    """``(z - mean) / std`` with statistics fixed from training data."""

    def __init__(self, features: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", features.mean(0))
        self.register_buffer("std", features.std(0).clamp_min(1e-6))

    def forward(self, z):
        return (z - self.mean) / self.std


class _Flat(nn.Module):
    """A network on the flattened points ``(B, N d)`` (not invariant)."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, x):
        return self.network(x.flatten(1))


def build_model(name: str, config: Config, dim: int, x_train: torch.Tensor, generator) -> nn.Module:
    dtype, w, k, n = x_train.dtype, config.width, config.latent, config.n_points
    if name == "power_sums":
        embedding = PowerSumEmbedding(dim, n).to(x_train.device)
        pooled = embedding(x_train).sum(1)
        rho = nn.Sequential(_Standardize(pooled), mlp([embedding.n_features, w, w, 1], generator, dtype))
        return DeepSets(embedding, rho, "sum")
    if name == "deep_sets":
        return DeepSets(mlp([dim, w, w, k], generator, dtype), mlp([k, w, w, 1], generator, dtype), "sum")
    if name == "attention":
        return DeepSets(mlp([dim, w, k], generator, dtype), mlp([k, w, 1], generator, dtype),
                        AttentionPooling(k, n_heads=4, n_seeds=1, generator=generator, dtype=dtype))
    return _Flat(mlp([n * dim, w, w, 1], generator, dtype))


def _data(config: Config, dim: int, device, dtype):
    g = make_generator(point_seed(config.seed, "sets-data", dim))
    size = max(config.train_sizes) + config.test_size
    x = (2 * torch.rand(size, config.n_points, dim, generator=g, dtype=torch.float64) - 1)
    y = target(x)
    x, y = x.to(device, dtype), y.to(device, dtype)
    test = slice(max(config.train_sizes), None)
    return x, y, x[test], y[test]


def _task(task) -> dict:
    config, point, checkpoint, resume = task
    dim, name, size = point["dim"], point["model"], point["size"]
    device, dtype = resolve_device(config.device), resolve_dtype(config.dtype)
    x, y, x_test, y_test = _data(config, dim, device, dtype)
    x_train, y_train = x[:size], y[:size]
    seed = point_seed(config.seed, dim, name, size)
    model = build_model(name, config, dim, x_train, make_generator(seed)).to(device)
    batches = make_generator(seed + 1, device)
    scale = y_train.var().clamp_min(1e-12)
    batch = min(config.batch_size, size)

    def loss_fn(step):
        index = torch.randint(0, size, (batch,), generator=batches, device=device)
        inputs = x_train[index]
        if name == "mlp_augmented":
            order = torch.rand(batch, config.n_points, generator=batches, device=device).argsort(-1)
            inputs = torch.take_along_dim(inputs, order.unsqueeze(-1), dim=1)
        return ((model(inputs).squeeze(-1) - y_train[index]) ** 2).mean() / scale

    history = train(model, loss_fn, config.steps, lr=config.lr, schedule="cosine", checkpoint=checkpoint,
                    checkpoint_every=500, resume=resume, generators=[batches], progress=False)
    with torch.no_grad():
        prediction = model(x_test).squeeze(-1)
        order = torch.rand(x_test.shape[:2], generator=make_generator(seed + 2, device),
                           device=device).argsort(-1)
        permuted = model(torch.take_along_dim(x_test, order.unsqueeze(-1), dim=1)).squeeze(-1)
        spread = y_test.std()
        return {"test_relative_mse": float(((prediction - y_test) ** 2).mean() / y_test.var()),
                "permutation_sensitivity": float((permuted - prediction).abs().mean() / spread),
                "final_train_loss": float(history[-1]["loss"]),
                "n_parameters": sum(p.numel() for p in model.parameters())}


def run(config: Config, run_dir) -> dict:
    points = [{"dim": d, "model": m, "size": s} for d in config.dims for m in config.models
              for s in config.train_sizes]
    keys = [f"d{p['dim']}-{p['model']}-n{p['size']}" for p in points]
    tasks = [(config, p, str(run_dir.checkpoint_path(k)), run_dir.resume) for p, k in zip(points, keys)]
    results = run_dir.map(_task, tasks, keys=keys, desc="set-model trainings")
    rows = [{**p, **r} for p, r in zip(points, results)]
    run_dir.write_csv("results.csv", rows)
    metrics = {}
    for r in rows:
        per_model = metrics.setdefault(f"d{r['dim']}", {}).setdefault(r["model"], {})
        per_model[f"n{r['size']}"] = r["test_relative_mse"]
    largest = max(config.train_sizes)
    for d in config.dims:
        at_largest = {r["model"]: r["test_relative_mse"] for r in rows
                      if r["dim"] == d and r["size"] == largest}
        metrics[f"d{d}"]["best_at_largest_size"] = min(at_largest, key=at_largest.get)
    _report(config, run_dir, rows)
    return metrics


def _report(config, run_dir, rows) -> None:
    from dlpde.shared import new_figure

    fig, axes = new_figure(1, len(config.dims), width=3.6)
    axes = np.atleast_1d(axes)
    for ax, d in zip(axes, config.dims):
        for i, model in enumerate(config.models):
            chosen = [r for r in rows if r["dim"] == d and r["model"] == model]
            ax.loglog([r["size"] for r in chosen], [r["test_relative_mse"] for r in chosen], "o-",
                      color=f"C{i}", label=LABELS[model])
        ax.set(xlabel="training sets", ylabel="test relative MSE",
               title=f"N = {config.n_points} points in d = {d}")
    axes[0].legend(fontsize=7)
    run_dir.save_figure(fig, "learning_curves", "Test relative MSE against training-set size for a "
                        "permutation-invariant target.")
    sizes = " | ".join(f"n = {s}" for s in config.train_sizes)
    lines = [f"| d | model | {sizes} | permutation sensitivity |",
             "|---|---|" + "---|" * (len(config.train_sizes) + 1)]
    for d in config.dims:
        for model in config.models:
            chosen = [r for r in rows if r["dim"] == d and r["model"] == model]
            errors = " | ".join(f"{r['test_relative_mse']:.2e}" for r in chosen)
            sensitivity = chosen[-1]["permutation_sensitivity"]
            lines.append(f"| {d} | {LABELS[model]} | {errors} | {sensitivity:.1e} |")
    run_dir.add_section("Test error", "Test relative MSE (mean squared error / variance of the target) "
                        f"after {config.steps} Adam steps. Permutation sensitivity: mean |f(PX) - f(X)| / "
                        "std(y) on the test sets at the largest training size (0 up to rounding for "
                        "invariant models).\n\n" + "\n".join(lines))


STUDY = Study(
    name="symmetry.sets",
    description="Learning curves on a permutation-invariant target of N points in d = 1, 2, 3: DeepSets "
                "(power sums, learned phi), attention pooling, MLP, MLP with permutation augmentation.",
    config=Config,
    presets={
        "smoke": Config(dims=(2,), train_sizes=(32,), test_size=256, steps=5, width=16, latent=8),
        "quick": Config(train_sizes=(64, 256, 1024), test_size=2048, steps=400),
        "full": Config(),
        "paper": Config(n_points=6, train_sizes=(64, 256, 1024, 4096, 16384, 65536), test_size=16384,
                        steps=20000, width=128, latent=64),
    },
    run=run,
    citations=("zaheer2017deepsets", "wagstaff2019limitations", "han2019universal", "lee2019settransformer"),
)
