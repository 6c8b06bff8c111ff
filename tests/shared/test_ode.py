"""Integrators: measured order against expm, Dopri5 tolerance, backward time, gradients."""

import numpy as np
import pytest
import scipy.linalg
import torch

from dlpde.shared import INTEGRATORS, integrate, make_generator
from dlpde.shared.testing import assert_convergence_order, assert_gradcheck

DT = torch.float64
A = np.array([[0.0, 1.0, 0.0], [-2.0, -0.3, 0.5], [0.1, 0.0, -1.0]])


def linear(t, y):
    return y @ torch.as_tensor(A.T)


@pytest.fixture
def y0():
    return torch.randn(5, 3, generator=make_generator(0), dtype=DT)


def exact(y0, t0, t1):
    return y0 @ torch.as_tensor(scipy.linalg.expm(A * (t1 - t0)).T)


@pytest.mark.parametrize("method", ["euler", "heun", "rk4"])
@pytest.mark.parametrize("t0,t1", [(0.0, 2.0), (2.0, 0.5)])
def test_measured_order_matches(method, t0, t1, y0):
    steps = [16, 32, 64, 128]
    errors = [
        float((integrate(linear, y0, t0, t1, method=method, steps=n) - exact(y0, t0, t1)).abs().max())
        for n in steps
    ]
    h = [abs(t1 - t0) / n for n in steps]
    order = INTEGRATORS[method].order
    assert_convergence_order(h, errors, expected=order, tol=0.3)


def test_order_check_would_catch_a_wrong_tableau(y0):
    """Heun with a wrong weight is first order: the order test must reject it."""

    class BrokenHeun(INTEGRATORS["heun"]):
        b = (0.4, 0.6)

    steps = [16, 32, 64, 128]
    errors = []
    for n in steps:
        y, h = y0, 2.0 / n
        for i in range(n):
            y = BrokenHeun().step(linear, i * h, y, h)
        errors.append(float((y - exact(y0, 0.0, 2.0)).abs().max()))
    with pytest.raises(AssertionError, match="order"):
        assert_convergence_order([2.0 / n for n in steps], errors, expected=2, tol=0.3)


@pytest.mark.parametrize("rtol", [1e-4, 1e-7, 1e-10])
def test_dopri5_meets_tolerance(rtol, y0):
    for t0, t1 in [(0.0, 3.0), (3.0, 0.0)]:
        y = integrate(linear, y0, t0, t1, method="dopri5", rtol=rtol, atol=rtol * 1e-2)
        ref = exact(y0, t0, t1)
        # global error stays within a modest multiple of the local tolerance
        assert float(((y - ref).abs() / (rtol * 1e-2 + rtol * ref.abs())).max()) < 50


def test_dopri5_tighter_is_better_and_fixed_is_exactish(y0):
    loose = integrate(linear, y0, 0.0, 3.0, method="dopri5", rtol=1e-4, atol=1e-6)
    tight = integrate(linear, y0, 0.0, 3.0, method="dopri5", rtol=1e-9, atol=1e-11)
    ref = exact(y0, 0.0, 3.0)
    assert float((tight - ref).abs().max()) < 1e-3 * float((loose - ref).abs().max())


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_save_at(method, y0):
    times = [0.0, 0.3, 1.1, 2.0]
    ys = integrate(linear, y0, 0.0, 2.0, method=method, steps=200, rtol=1e-10, atol=1e-12, save_at=times)
    assert ys.shape == (4, *y0.shape)
    for k, t in enumerate(times):
        torch.testing.assert_close(ys[k], exact(y0, 0.0, t), rtol=1e-7, atol=1e-8)
    back = integrate(
        linear, ys[-1], 2.0, 0.0, method=method, steps=200, rtol=1e-10, atol=1e-12, save_at=times[::-1]
    )
    torch.testing.assert_close(back[-1], y0, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_gradients_flow(method):
    theta = torch.tensor([0.7, -0.2], dtype=DT, requires_grad=True)
    y0 = torch.tensor([[1.0, 0.5], [0.2, -0.3]], dtype=DT, requires_grad=True)

    def solve(y_init, params):
        def f(t, y):
            return torch.stack([params[0] * y[:, 1], -torch.sin(y[:, 0]) + params[1] * y[:, 1]], -1)

        return integrate(f, y_init, 0.0, 1.0, method=method, steps=20, rtol=1e-10, atol=1e-12)

    assert_gradcheck(solve, (y0, theta))


def test_bad_inputs(y0):
    with pytest.raises(ValueError, match="method"):
        integrate(linear, y0, 0.0, 1.0, method="rk45")
    with pytest.raises(ValueError, match="steps"):
        integrate(linear, y0, 0.0, 1.0, method="rk4")
    with pytest.raises(ValueError, match="save_at"):
        integrate(linear, y0, 0.0, 1.0, steps=4, save_at=[0.5, 0.2])
    with pytest.raises(ValueError, match="save_at"):
        integrate(linear, y0, 0.0, 1.0, steps=4, save_at=[2.0])
    with pytest.raises(ValueError, match="non-finite"):
        integrate(linear, y0 * float("nan"), 0.0, 1.0, steps=4)
    with pytest.raises(TypeError):
        integrate(linear, [1.0], 0.0, 1.0, steps=4)


# --------------------------------------------------------------------------------------------
# per-row step-size control (step_control="row")


@pytest.mark.parametrize("rtol", [1e-5, 1e-9])
def test_row_step_control_meets_tolerance_forward_and_backward(rtol, y0):
    for t0, t1 in [(0.0, 3.0), (3.0, 0.0)]:
        y = integrate(linear, y0, t0, t1, method="dopri5", rtol=rtol, atol=rtol * 1e-2, step_control="row")
        ref = exact(y0, t0, t1)
        assert float(((y - ref).abs() / (rtol * 1e-2 + rtol * ref.abs())).max()) < 50


def test_row_step_control_save_at_and_three_dimensional_states(y0):
    times = [0.0, 0.3, 1.1, 2.0]
    stacked = torch.stack([y0, 2 * y0], 1)  # (5, 2, 3): rows are the first axis

    def f(t, y):
        assert t.shape == (y.shape[0],)  # one time per row
        return y @ torch.as_tensor(A.T)

    ys = integrate(
        f, stacked, 0.0, 2.0, method="dopri5", rtol=1e-10, atol=1e-12, save_at=times, step_control="row"
    )
    assert ys.shape == (4, 5, 2, 3)
    for k, t in enumerate(times):
        torch.testing.assert_close(ys[k, :, 0], exact(y0, 0.0, t), rtol=1e-7, atol=1e-8)
        torch.testing.assert_close(ys[k, :, 1], exact(2 * y0, 0.0, t), rtol=1e-7, atol=1e-8)


def test_row_step_control_spends_work_where_the_rows_need_it():
    """``y' = -lambda_b y`` with rates spread over 1.5 decades (the rate rides along in the state,
    so ``f`` sees whichever rows it is given): per-row control evaluates fewer rows in total than
    one batch step size set by the fastest row, at the same accuracy."""
    rates = torch.logspace(-1, 1.5, 64, dtype=DT)
    state = torch.stack([torch.ones(64, dtype=DT), rates], 1)
    counted = {"rows": 0}

    def f(t, y):
        counted["rows"] += y.shape[0]
        return torch.stack([-y[:, 1] * y[:, 0], torch.zeros_like(y[:, 1])], 1)

    work, error = {}, {}
    for mode in ("batch", "row"):
        counted["rows"] = 0
        out = integrate(f, state, 0.0, 2.0, method="dopri5", rtol=1e-8, atol=1e-12, step_control=mode)
        work[mode] = counted["rows"]
        error[mode] = float((out[:, 0] - torch.exp(-2 * rates)).abs().max())
    assert error["row"] < 1e-8 and error["batch"] < 1e-8
    assert work["row"] < 0.7 * work["batch"]


def test_row_step_control_agrees_with_batch_control_and_is_differentiable():
    theta = torch.tensor([0.7, -0.2], dtype=DT, requires_grad=True)
    y0 = torch.tensor([[1.0, 0.5], [0.2, -0.3], [2.0, 0.1]], dtype=DT, requires_grad=True)

    def solve(y_init, params, mode="row"):
        def f(t, y):
            return torch.stack([params[0] * y[:, 1], -torch.sin(y[:, 0]) + params[1] * y[:, 1]], -1)

        return integrate(f, y_init, 0.0, 1.0, method="dopri5", rtol=1e-10, atol=1e-12, step_control=mode)

    torch.testing.assert_close(solve(y0, theta), solve(y0, theta, "batch"), rtol=1e-8, atol=1e-9)
    assert_gradcheck(solve, (y0, theta))


def test_row_step_control_validates():
    with pytest.raises(ValueError, match="step_control"):
        integrate(linear, torch.ones(2, 3, dtype=DT), 0.0, 1.0, method="dopri5", step_control="trajectory")
    with pytest.raises(ValueError, match="rows"):
        integrate(lambda t, y: -y, torch.ones(3, dtype=DT), 0.0, 1.0, method="dopri5", step_control="row")
    with pytest.raises(ValueError, match="non-finite"):
        integrate(
            lambda t, y: y * float("inf"),
            torch.ones(2, 3, dtype=DT),
            0.0,
            1.0,
            method="dopri5",
            step_control="row",
        )
