"""Helpers shared by the hjb studies: solver construction, error measures, CPU timing."""

from __future__ import annotations

import time

import torch

from .._bvp import pontryagin_data_source
from .._networks import DGMNetwork
from .._problems import HJProblem
from .._solvers import CharacteristicSolver, DGMSolver, ValueGradientSolver

METHODS = ("dgm", "characteristic", "value_gradient")
LABELS = {"dgm": "DGM", "characteristic": "characteristic", "value_gradient": "value-gradient"}


def check_dims_and_steps(dims, steps=None) -> None:
    """Config validation shared by the studies: positive dimensions and, when given, one positive
    step count per dimension."""
    if not dims or any(d < 1 for d in dims):
        raise ValueError(f"dims must be positive ints, got {dims}")
    if steps is not None and (len(steps) != len(dims) or any(s < 1 for s in steps)):
        raise ValueError(f"steps must hold one positive int per entry of dims {dims}, got {steps}")


def relative_l2(estimate: torch.Tensor, exact: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """``||estimate - exact|| / ||exact||`` over the rows in ``mask`` (NaN when ``mask`` is empty)."""
    if mask is not None:
        estimate, exact = estimate[mask], exact[mask]
    if exact.numel() == 0:
        return float("nan")
    return float(
        torch.linalg.vector_norm(estimate - exact) / torch.linalg.vector_norm(exact).clamp_min(1e-300)
    )


def error_table(
    value: torch.Tensor,
    gradient: torch.Tensor,
    problem: HJProblem,
    x: torch.Tensor,
    t: torch.Tensor,
    band: float,
) -> dict:
    """Relative L2 errors of ``u`` and ``grad u`` on all test points, on those within ``band`` of a
    kink (``problem.kink_distance``) and on the others."""
    exact_value, exact_gradient = problem.exact_value(x, t), problem.exact_gradient(x, t)
    near = (
        problem.kink_distance(x, t) < band
        if problem.kink_distance is not None
        else torch.zeros_like(t, dtype=torch.bool)
    )
    out = {"near_fraction": float(near.double().mean())}
    for name, estimate, exact in (("u", value, exact_value), ("grad", gradient, exact_gradient)):
        out[f"{name}_all"] = relative_l2(estimate, exact)
        out[f"{name}_near"] = relative_l2(estimate, exact, near)
        out[f"{name}_away"] = relative_l2(estimate, exact, ~near)
    return out


def make_solver(
    method: str,
    problem: HJProblem,
    *,
    width: int,
    layers: int,
    batch_size: int,
    seed: int,
    device,
    nodes: int = 4,
    hopf_lax_weight: float = 0.0,
    straight: bool = False,
    data_source=None,
    data_points: int = 1024,
    rounds: int = 2,
    data_starts: int = 8,
    bvp_options: dict | None = None,
):
    """The solver of ``method`` with a ``DGMNetwork`` (the same architecture for every method).

    ``straight=True`` (for state-independent ``H``, whose characteristics are straight lines with
    constant ``p``) integrates characteristics with one exact Euler step per quadrature segment.
    The value-gradient solver uses ``data_source`` if given, else ``pontryagin_data_source`` with
    ``data_starts`` random starts and ``bvp_options``.
    """
    network = DGMNetwork(
        problem.dim, width, layers, radius=problem.radius, horizon=problem.horizon, seed=seed, device=device
    )
    if method == "dgm":
        return DGMSolver(
            problem, network, batch_size=batch_size, initial_batch_size=batch_size, seed=seed, device=device
        )
    if method == "characteristic":
        return CharacteristicSolver(
            problem,
            network,
            batch_size=batch_size,
            initial_batch_size=batch_size,
            nodes=nodes,
            hopf_lax_weight=hopf_lax_weight,
            seed=seed,
            device=device,
            method="euler" if straight else "rk4",
            steps=1 if straight else 8,
        )
    if method == "value_gradient":
        if data_source is None:
            data_source = pontryagin_data_source(
                problem, n_starts=data_starts, along_path=True, seed=seed, **(bvp_options or {})
            )
        return ValueGradientSolver(
            problem,
            data_source,
            network,
            initial_points=data_points,
            batch_size=batch_size,
            rounds=rounds,
            points_per_round=max(1, data_points // 2),
            candidates=4 * data_points,
            seed=seed,
            device=device,
        )
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


class CpuTimer:
    """CPU time (user + system) of this process, the budget measure of the studies."""

    def __enter__(self):
        self.start = time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.process_time() - self.start
