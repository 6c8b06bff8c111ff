"""hjb.control: a learned feedback for rigid-body attitude control against LQR and the optimum.

The 6-state rigid body with momentum wheels of Nakamura-Zimmerer, Gong & Kang (SISC 2021):
Pontryagin boundary-value problems (batched multiple shooting, time marching, warm started from
the LQR closed loop) give the optimal value and costate along optimal trajectories; a
``ValueGradientSolver`` regresses ``V`` and ``grad V`` on them, adding the states with the largest
predicted ``|grad V|`` between rounds; the learned value is then used as a feedback
``v = -R^-1 B^T grad V`` and simulated in closed loop from fresh initial states. Its cost is compared
with the LQR feedback's and with the open-loop optimum of the boundary-value solver.
"""

from __future__ import annotations

import dataclasses
import typing

from dlpde.shared import make_generator, new_figure, resolve_device
from dlpde.shared.checks import check_positive, check_probability
from dlpde.shared.studies import Study

from .._bvp import solve_pontryagin_bvp
from .._control import lqr_warm_start, rigid_body_problem
from ._common import check_positive_ints, closed_loop_against_lqr, plot_costs_and_losses, train_on_bvp_data


@dataclasses.dataclass(frozen=True)
class Config:
    horizon: float = 20.0
    segments: int = 20
    steps_per_segment: int = 8
    jacobian_steps: int = 2
    time_marching: tuple[float, ...] = (0.5, 1.0)
    trajectories: int = 96
    rounds: int = 3
    points_per_round: int = 32
    candidates: int = 1024
    width: int = 64
    depth: int = 3
    steps: int = 4000
    batch_size: int = 1024
    lr: float = 3e-3
    gradient_weight: float = 10.0
    test_trajectories: int = 32
    simulation_steps: int = 400
    seed: int = 0
    device: str = "auto"

    # gradient_weight=0: regress the value only (the gradient term off)
    MEANINGFUL_VALUES: typing.ClassVar[dict] = {"gradient_weight": (0,)}

    def __post_init__(self):
        names = (
            "segments",
            "steps_per_segment",
            "jacobian_steps",
            "trajectories",
            "rounds",
            "points_per_round",
            "candidates",
            "width",
            "depth",
            "steps",
            "batch_size",
            "test_trajectories",
            "simulation_steps",
        )
        check_positive_ints(self, names)
        check_positive(self.horizon, "horizon")
        check_positive(self.lr, "lr")
        check_positive(self.gradient_weight, "gradient_weight", allow_zero=True)
        if not isinstance(self.time_marching, tuple):
            raise ValueError(f"time_marching must be a tuple of numbers, got {self.time_marching!r}")
        marching = [check_probability(a, "each of time_marching") for a in self.time_marching]
        if (
            not marching
            or marching[-1] != 1.0
            or any(not 0 < a < b for a, b in zip(marching, marching[1:]))
            or marching[0] <= 0
        ):
            raise ValueError(
                f"time_marching must be increasing fractions in (0, 1] ending at 1, got {marching}"
            )


def _bvp_options(config):
    return {
        "segments": config.segments,
        "steps_per_segment": config.steps_per_segment,
        "jacobian_steps": config.jacobian_steps,
        "time_marching": config.time_marching,
    }


def _train(config, run_dir, problem, hj, device):
    """BVP data, adaptive value-gradient training; returns the solver, history and statistics."""
    return train_on_bvp_data(config, run_dir, problem, hj, device, _bvp_options(config), state_dim=6)


def run(config: Config, run_dir) -> dict:
    device = resolve_device(config.device)
    problem = rigid_body_problem(config.horizon)
    hj = problem.hj_problem()
    lqr = problem.lqr_problem()
    solver, history, training = _train(config, run_dir, problem, hj, device)
    run_dir.write_csv("history.csv", history)

    x0 = hj.sample(config.test_trajectories, make_generator(40_000 + config.seed), initial=True)

    def optimum():
        warm = lqr_warm_start(problem, config.segments)(x0, config.time_marching[0] * config.horizon)
        solution = solve_pontryagin_bvp(hj, x0, config.horizon, initial_guess=warm, **_bvp_options(config))
        return {"value": solution.value, "converged": solution.converged, "states": solution.states}

    best = run_dir.cached("test_optimum", optimum)
    ok = best["converged"]
    optimal = best["value"][ok]
    loops = closed_loop_against_lqr(problem, solver, lqr, x0[ok], optimal, config.simulation_steps)
    learned, linear = loops["learned"], loops["lqr"]
    predicted = solver.value(x0, config.horizon)[ok]
    value_error = float((predicted - optimal).abs().mean() / optimal.abs().mean())
    metrics = {
        "test_converged": int(ok.sum()),
        "value_relative_error_at_x0": value_error,
        **loops["metrics"],
        "data_points": training["data_points"],
        "training_cpu_seconds": training["cpu_seconds"],
    }
    kept = ", ".join(f"{r['kept']}/{r['asked']}" for r in training["log"])
    run_dir.add_section(
        "Closed-loop cost from fresh initial states",
        loops["table"]
        + (
            f"\n\n{int(ok.sum())} of {config.test_trajectories} test initial states (uniform, |v_i| <= pi/3, "
            f"|w_i| <= pi/4) with a converged boundary-value solve (the optimum). Learned value at x0 vs "
            f"optimum: mean relative error {value_error:.2e}. The learned feedback costs less than LQR "
            f"from {100 * metrics['learned_beats_lqr_fraction']:.0f}% of the states. Training data: "
            f"{training['data_points']} points on optimal trajectories (BVP solves converged per round: "
            f"{kept})."
        ),
    )
    times = learned["times"][:, 0].numpy()
    fig, axes = new_figure(1, 3, width=3.6, height=2.8)
    for k, label in enumerate(("phi", "theta", "psi")):
        axes[0].plot(times, learned["states"][:, 0, k].numpy(), "-", label=f"{label}, learned")
        axes[0].plot(times, linear["states"][:, 0, k].numpy(), ":", color=f"C{k}", label=f"{label}, LQR")
    axes[0].set(xlabel="time", title="Euler angles from the first converged test state")
    axes[0].legend(fontsize=6)
    plot_costs_and_losses(axes[1], axes[2], loops, history, "test state (sorted)")
    run_dir.save_figure(
        fig,
        "control",
        "Rigid-body attitude control: closed-loop trajectories, cost relative to "
        "the boundary-value optimum, and the training losses",
    )
    return metrics


STUDY = Study(
    name="hjb.control",
    description="Rigid-body attitude control (6 states): value-gradient regression on Pontryagin BVP data "
    "as a feedback, closed-loop cost against LQR and the optimum.",
    config=Config,
    presets={
        "smoke": Config(
            horizon=2.0,
            segments=2,
            steps_per_segment=2,
            jacobian_steps=1,
            time_marching=(1.0,),
            trajectories=2,
            rounds=2,
            points_per_round=1,
            candidates=8,
            width=8,
            depth=1,
            steps=4,
            batch_size=64,
            test_trajectories=2,
            simulation_steps=10,
        ),
        "quick": Config(
            trajectories=32, rounds=2, points_per_round=16, candidates=256, steps=1500, test_trajectories=12
        ),
        "full": Config(),
        "paper": Config(
            trajectories=1024,
            rounds=5,
            points_per_round=512,
            candidates=16384,
            steps=20000,
            batch_size=8192,
            test_trajectories=256,
        ),
    },
    run=run,
    citations=("nakamurazimmerer2021adaptive", "pontryagin1962", "aim2019dlpde"),
)
