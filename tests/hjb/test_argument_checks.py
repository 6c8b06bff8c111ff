"""Bad arguments to the hjb public entry points are a ValueError/TypeError naming the argument;
numbers and lists keep working where tensors are accepted; a closed loop that blows up is a
NonFiniteResultError instead of NaN states."""

import math

import pytest
import torch

from dlpde.hjb import (
    ControlAffineProblem,
    DGMNetwork,
    LQRHamiltonian,
    NormHamiltonian,
    QuadraticHamiltonian,
    RiccatiSolution,
    ValueNetwork,
    characteristic_data_source,
    kink_problem,
    lqr_problem,
    lqr_warm_start,
    min_of_quadratics_problem,
    rigid_body_problem,
    simulate_closed_loop,
    value_feedback,
)
from dlpde.shared import NonFiniteResultError

EYE2 = torch.eye(2, dtype=torch.float64)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: QuadraticHamiltonian("bogus"), TypeError, "matrix"),
        (lambda: QuadraticHamiltonian(torch.ones(2, 3)), ValueError, "square"),
        (lambda: QuadraticHamiltonian(torch.tensor([[1.0, math.nan], [0, 1]])), ValueError, "finite"),
        (lambda: QuadraticHamiltonian(EYE2.half()), TypeError, "matrix"),
        (lambda: NormHamiltonian(order=torch.ones(3)), ValueError, "order"),
        (lambda: NormHamiltonian(order=3), ValueError, "order"),
        (lambda: NormHamiltonian(speed=math.inf), ValueError, "speed"),
        (lambda: LQRHamiltonian(lambda x: x, EYE2, EYE2, EYE2), TypeError, "A"),
        (lambda: LQRHamiltonian(EYE2, "B", EYE2, EYE2), TypeError, "B"),
        (lambda: RiccatiSolution(EYE2, EYE2, EYE2, EYE2, EYE2, horizon=math.nan), ValueError, "horizon"),
        (lambda: lqr_problem(EYE2, EYE2, EYE2, EYE2, "P0"), TypeError, "P0"),
        (lambda: min_of_quadratics_problem(2, centres="cpu"), TypeError, "centres"),
        (lambda: min_of_quadratics_problem(0), ValueError, "dim"),
        (lambda: min_of_quadratics_problem(2, radius=torch.ones(8, 3)), TypeError, "radius"),
        (lambda: min_of_quadratics_problem(2, horizon=math.inf), ValueError, "horizon"),
        (lambda: kink_problem("norm", dim=True), TypeError, "dim"),
        (lambda: ValueNetwork(1, 3, dtype=torch.ones(2)), TypeError, "dtype"),
        (lambda: DGMNetwork(1, 3, dtype=torch.float16), ValueError, "dtype"),
        (lambda: DGMNetwork(1, 0), ValueError, "width"),
        (lambda: DGMNetwork(2, 3, radius=(1.0, -1.0)), ValueError, "radius"),
        (lambda: characteristic_data_source("bogus"), TypeError, "problem"),
        (lambda: characteristic_data_source(kink_problem("zero"), nodes=1), ValueError, "nodes"),
        (lambda: characteristic_data_source(kink_problem("zero"), method="bogus"), ValueError, "method"),
        (lambda: rigid_body_problem(horizon=None), TypeError, "horizon"),
        (lambda: rigid_body_problem(horizon=torch.ones(8, 3)), TypeError, "horizon"),
        (lambda: value_feedback("bogus", lambda x, t: x), TypeError, "problem"),
        (lambda: value_feedback(rigid_body_problem(), 3.0), TypeError, "value_gradient"),
        (lambda: lqr_warm_start(None, 2), TypeError, "problem"),
        (lambda: lqr_warm_start(rigid_body_problem(), 0), ValueError, "segments"),
        (lambda: simulate_closed_loop(1.0, lambda x, t: x, torch.zeros(2, 6)), TypeError, "problem"),
    ],
)
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_network_forward_checks_shapes_and_dtype():
    net = DGMNetwork(2, 4, 1, seed=0)
    with pytest.raises(ValueError, match="x"):
        net(torch.zeros(3, 5), torch.zeros(3))
    with pytest.raises(ValueError, match="t"):
        net(torch.zeros(3, 2), torch.zeros(4))
    with pytest.raises(TypeError, match="x"):
        net(torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    # a 1-d tensor radius is accepted like a tuple
    a = DGMNetwork(2, 4, 1, radius=torch.tensor([1.0, 2.0]), seed=0)
    b = DGMNetwork(2, 4, 1, radius=(1.0, 2.0), seed=0)
    x, t = torch.rand(5, 2), torch.rand(5)
    assert torch.equal(a(x, t), b(x, t))


def test_matrices_from_lists_and_integer_tensors_equal_float64_ones():
    h_list = QuadraticHamiltonian([[2, 0], [0, 1]])
    h_int = QuadraticHamiltonian(torch.tensor([[2, 0], [0, 1]]))
    x = torch.rand(4, 2, dtype=torch.float64)
    expected = (x[:, 0] ** 2 + 0.5 * x[:, 1] ** 2)
    torch.testing.assert_close(h_list.value(x, x), expected, rtol=1e-15, atol=0)
    torch.testing.assert_close(h_int.value(x, x), expected, rtol=1e-15, atol=0)


def _unstable(feedback_gain):
    """x' = x + v, q = phi = |x|^2/2, R = 1: the feedback v = -k x is unstable for k < 1."""
    return ControlAffineProblem(
        lambda x: x,
        torch.ones(1, 1, dtype=torch.float64),
        lambda x: 0.5 * (x * x).sum(-1),
        torch.eye(1, dtype=torch.float64),
        lambda x: 0.5 * (x * x).sum(-1),
        dim=1,
        control_dim=1,
        horizon=800.0,
    ), (lambda x, time: -feedback_gain * x)


def test_closed_loop_blow_up_is_a_named_error_not_nan():
    problem, feedback = _unstable(0.0)  # x(t) = x0 e^t overflows float64 well before t = 800
    x0 = torch.ones(2, 1, dtype=torch.float64)
    with pytest.raises(NonFiniteResultError, match="closed-loop"):
        simulate_closed_loop(problem, feedback, x0, steps=2000)
    with pytest.raises(ValueError, match="feedback"):
        simulate_closed_loop(problem, lambda x, time: x.sum(-1), x0)
    # the stable loop x' = (1 - 2) x: cost int_0^T x0^2 e^{-2t} (1 + 4)/2 dt + x(T)^2/2 (closed form)
    problem, feedback = _unstable(2.0)
    run = simulate_closed_loop(problem, feedback, x0, horizon=2.0, steps=400)
    exact = 1.25 * (1 - math.exp(-4.0)) + 0.5 * math.exp(-4.0)
    torch.testing.assert_close(run["cost"], torch.full((2,), exact, dtype=torch.float64), rtol=1e-8, atol=0)
