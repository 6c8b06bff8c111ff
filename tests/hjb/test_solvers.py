"""Neural solvers: losses vanish on the exact solution, short trainings approach it, runs are
reproducible and resumable, bad options are rejected."""

import pytest
import torch

from dlpde.hjb import (
    CharacteristicSolver,
    DGMNetwork,
    DGMSolver,
    Hamiltonian,
    HJProblem,
    QuadraticHamiltonian,
    ValueGradientSolver,
    ValueNetwork,
    min_of_quadratics_problem,
    pontryagin_data_source,
)
from dlpde.shared import make_generator


def smooth_problem(d=2):
    """H = |p|^2/2, g = |x|^2/2: u = |x|^2 / (2 (1 + t)) (a single quadratic: no kinks)."""
    return min_of_quadratics_problem(d, centres=torch.zeros(1, d), precisions=torch.ones(1))


class Exact(torch.nn.Module):
    """A fixed function as a network (so that a solver's loss can be evaluated on it)."""

    def __init__(self, function):
        super().__init__()
        self.function = function
        self.unused = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x, t):
        return self.function(x, t) + self.unused


def _relative_error(solver, problem, n=2000):
    x, t = problem.sample(n, make_generator(99))
    exact = problem.exact_value(x, t)
    return float((solver.value(x, t) - exact).norm() / exact.norm())


@pytest.mark.parametrize("quadrature", ["gauss", "trapezoid", "random"])
def test_losses_vanish_on_the_exact_solution_and_not_on_a_perturbed_one(quadrature):
    problem = min_of_quadratics_problem(3)
    exact = Exact(problem.exact_value)
    wrong = Exact(lambda x, t: problem.exact_value(x, t) + 0.1 * t * x[:, 0])
    for make in (
        lambda net: DGMSolver(problem, net, dtype=torch.float64),
        lambda net: CharacteristicSolver(
            problem, net, quadrature=quadrature, dtype=torch.float64, hopf_lax_weight=1.0
        ),
    ):
        assert float(make(exact).loss(0)[0].detach()) < 1e-20
        assert float(make(wrong).loss(0)[0].detach()) > 1e-4


@pytest.mark.parametrize("method", ["dgm", "characteristic", "value_gradient"])
def test_short_training_approaches_the_exact_solution(method):
    """200 steps on u = |x|^2/(2(1+t)) in d = 2: the relative L2 error falls below 0.1 (about
    0.02-0.05 measured) from about 1 at initialisation."""
    problem = smooth_problem()
    network = DGMNetwork(2, 16, 2, seed=3)
    if method == "dgm":
        solver = DGMSolver(problem, network, batch_size=128, initial_batch_size=128)
    elif method == "characteristic":
        solver = CharacteristicSolver(
            problem, network, batch_size=128, initial_batch_size=128, nodes=3, method="euler", steps=1
        )
    else:
        source = pontryagin_data_source(
            problem, n_starts=0, segments=1, steps_per_segment=1, method="euler", along_path=True
        )
        solver = ValueGradientSolver(
            problem,
            source,
            network,
            initial_points=256,
            batch_size=256,
            rounds=2,
            points_per_round=64,
            candidates=256,
        )
    before = _relative_error(solver, problem)
    history = solver.fit(200, lr=1e-2, progress=False)
    after = _relative_error(solver, problem)
    assert before > 0.5 and after < 0.1, (before, after)
    assert history[-1]["step"] == (199 if method != "value_gradient" else 99)


def test_value_gradient_rounds_add_points_with_large_predicted_gradients():
    problem = smooth_problem()
    source = pontryagin_data_source(problem, n_starts=0, segments=1, steps_per_segment=1, method="euler")
    solver = ValueGradientSolver(
        problem,
        source,
        ValueNetwork(2, 16, 2),
        initial_points=64,
        rounds=3,
        points_per_round=16,
        candidates=512,
    )
    solver.fit(30, lr=1e-2, progress=False)
    assert solver.data_sizes == [64, 80, 96]
    added = solver.data["x"][64:80].double()
    norms = torch.linalg.vector_norm(problem.exact_gradient(added, solver.data["t"][64:80].double()), dim=-1)
    everywhere = torch.linalg.vector_norm(
        problem.exact_gradient(*problem.sample(512, make_generator(1))), dim=-1
    )
    assert float(norms.mean()) > float(everywhere.mean())


def test_training_is_reproducible_and_resumes_from_a_checkpoint(tmp_path):
    problem = min_of_quadratics_problem(2)

    def solver():
        return CharacteristicSolver(
            problem,
            DGMNetwork(2, 8, 1, seed=5),
            batch_size=16,
            initial_batch_size=16,
            seed=5,
            method="euler",
            steps=1,
        )

    full = solver()
    full.fit(6, progress=False)
    interrupted = solver()
    interrupted.fit(3, progress=False, checkpoint=tmp_path / "c.pt", schedule=None)
    resumed = solver()
    resumed.fit(6, progress=False, checkpoint=tmp_path / "c.pt", schedule=None)
    reference = solver()
    reference.fit(6, progress=False, schedule=None)
    for a, b in zip(resumed.network.parameters(), reference.network.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    again = solver()
    again.fit(6, progress=False)
    for a, b in zip(full.network.parameters(), again.network.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_value_and_gradient_follow_the_input_dtype_and_reject_bad_inputs():
    problem = min_of_quadratics_problem(2)
    solver = DGMSolver(problem, DGMNetwork(2, 8, 1))
    x = torch.zeros(5, 2, dtype=torch.float64)
    assert solver.value(x, 0.5).dtype == torch.float64 and solver.gradient(x, 0.5).shape == (5, 2)
    with pytest.raises(ValueError, match="columns"):
        solver.value(torch.zeros(5, 3), 0.5)
    with pytest.raises(ValueError, match="quadrature"):
        CharacteristicSolver(problem, quadrature="simpson")
    with pytest.raises(ValueError, match="batch_size"):
        DGMSolver(problem, batch_size=0)
    with pytest.raises(TypeError, match="HJProblem"):
        DGMSolver(problem.hamiltonian)
    with pytest.raises(TypeError, match="network"):
        DGMSolver(problem, network=lambda x, t: t)
    nonconvex = HJProblem(Hamiltonian.from_function(lambda x, p: -(p**2).sum(-1)), problem.initial, dim=2)
    with pytest.raises(ValueError, match="Hopf-Lax"):
        CharacteristicSolver(nonconvex, hopf_lax_weight=1.0)
    with pytest.raises(ValueError, match="dimension"):
        HJProblem(QuadraticHamiltonian.identity(3), problem.initial, dim=2)


def test_dgm_network_implements_the_gated_layers():
    """Sirignano & Spiliopoulos (2018): S1 = tanh(W1 z + b1); Z, G, R = tanh(U z + W S + b);
    H = tanh(U_h z + W_h (S * R) + b_h); S <- (1 - G) * H + Z * S; u = w^T S + b."""
    net = DGMNetwork(3, 5, 2, radius=2.0, horizon=4.0, seed=1, dtype=torch.float64)
    x = torch.randn(7, 3, generator=make_generator(0), dtype=torch.float64)
    t = torch.rand(7, generator=make_generator(1), dtype=torch.float64) * 4
    z = torch.cat([x / 2.0, (t / 2.0 - 1)[:, None]], 1)
    s = torch.tanh(z @ net.first_weight.T + net.first_bias)
    for u_w, w_w, b in zip(net.input_weights, net.state_weights, net.gate_biases):
        gates = [
            torch.tanh(
                z @ u_w[k * 5 : (k + 1) * 5].T + s @ w_w[k * 5 : (k + 1) * 5].T + b[k * 5 : (k + 1) * 5]
            )
            for k in range(3)
        ]
        h = torch.tanh(z @ u_w[15:].T + (s * gates[2]) @ w_w[15:].T + b[15:])
        s = (1 - gates[1]) * h + gates[0] * s
    torch.testing.assert_close(net(x, t), (s @ net.output_weight.T + net.output_bias)[:, 0])


def test_networks_use_no_global_random_state():
    state = torch.get_rng_state()
    a, b = DGMNetwork(4, 8, 2, seed=3), ValueNetwork(4, 8, 2, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    for p, q in zip(a.parameters(), DGMNetwork(4, 8, 2, seed=3).parameters()):
        assert torch.equal(p, q)
    assert any(
        not torch.equal(p, q) for p, q in zip(b.parameters(), ValueNetwork(4, 8, 2, seed=4).parameters())
    )


def test_differentiating_through_the_characteristics_changes_the_gradient():
    problem = min_of_quadratics_problem(2)
    grads = []
    for stop in (True, False):
        solver = CharacteristicSolver(
            problem,
            DGMNetwork(2, 8, 1, seed=2),
            batch_size=32,
            initial_batch_size=32,
            stop_gradient=stop,
            seed=4,
        )
        loss, _ = solver.loss(0)
        grads.append(
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(solver.network.parameters()))])
        )
    assert bool(torch.isfinite(grads[1]).all()) and float((grads[0] - grads[1]).abs().max()) > 1e-6


def _branch_problems(d):
    """The single-branch problems of the hjb.crossing layout: u_k in closed form (one quadratic)."""
    from dlpde.hjb._problems import _default_layout

    centres, precisions, offsets = _default_layout(d)
    return [
        min_of_quadratics_problem(d, centres=centres[k : k + 1], precisions=precisions[k : k + 1],
                                  offsets=offsets[k : k + 1])
        for k in range(3)
    ]


class ExactHeads(torch.nn.Module):
    """Heads u_k = the exact branch solutions (+ eps t x_1, a perturbation), as a network with heads."""

    heads = 3

    def __init__(self, d, eps=0.0):
        super().__init__()
        self.branches, self.eps = _branch_problems(d), eps
        self.unused = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def each_head(self, x, t):
        return torch.stack(
            [b.exact_value(x[k], t[k]) + self.eps * t[k] * x[k][:, 0] for k, b in enumerate(self.branches)]
        ) + self.unused

    def forward(self, x, t):
        return torch.stack([b.exact_value(x, t) for b in self.branches], -1).min(-1).values


def test_min_of_heads_network_is_the_minimum_of_independent_heads():
    from dlpde.hjb._networks import MinOfHeadsNetwork

    net = MinOfHeadsNetwork(3, 4, 6, 2, radius=2.0, horizon=3.0, seed=1, dtype=torch.float64)
    x = torch.randn(9, 3, generator=make_generator(0), dtype=torch.float64)
    t = 3 * torch.rand(9, generator=make_generator(1), dtype=torch.float64)
    heads = net.heads_at(x, t)
    # head k by hand: a tanh perceptron on z = (x / 2, 2 t / 3 - 1) with its own weights
    z = torch.cat([x / 2.0, (2 * t / 3 - 1)[:, None]], 1)
    for k in range(4):
        h = z
        for i, (w, b) in enumerate(zip(net.weights, net.biases)):
            h = h @ w[k] + b.reshape(4, -1)[k]
            h = torch.tanh(h) if i < 2 else h
        torch.testing.assert_close(heads[:, k], h[:, 0])
    torch.testing.assert_close(net(x, t), heads.min(-1).values)
    # each_head: head k sees only x[k] (one backward pass gives every head's gradient)
    xs = x.expand(4, 9, 3).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net.each_head(xs, t.expand(4, 9))[2].sum(), xs)
    assert float(grad[[0, 1, 3]].abs().max()) == 0 and float(grad[2].abs().max()) > 0


@pytest.mark.parametrize("band", [None, 0.05])
def test_pieces_loss_vanishes_on_the_exact_branches_and_not_on_perturbed_ones(band):
    problem = min_of_quadratics_problem(2)
    for eps, small in ((0.0, True), (0.1, False)):
        solver = CharacteristicSolver(problem, ExactHeads(2, eps), pieces=True, head_band=band,
                                      dtype=torch.float64, method="euler", steps=1)
        loss = float(solver.loss(0)[0].detach())
        assert (loss < 1e-20) if small else (loss > 1e-4), (eps, loss)


def test_pieces_training_reaches_the_kinked_solution_in_one_dimension():
    """One head per convex piece in d = 1, 600 steps of 16-wide heads: the relative L2 error of u
    near the kinks falls from about 1 at initialisation to below 0.35 (0.23 measured; longer
    training is the study's business: 2.5e-2 after 3000 steps of 32-wide heads)."""
    from dlpde.hjb._networks import MinOfHeadsNetwork

    problem = min_of_quadratics_problem(1)
    network = MinOfHeadsNetwork(1, 3, 16, 2, seed=1)
    solver = CharacteristicSolver(problem, network, pieces=True, head_band=0.05, batch_size=128,
                                  initial_batch_size=128, nodes=3, method="euler", steps=1, seed=1)
    solver.fit(600, lr=1e-2, progress=False)
    x, t = problem.sample(4000, make_generator(7))
    near = problem.kink_distance(x, t) < 0.05
    exact = problem.exact_value(x, t)
    error = float((solver.value(x, t) - exact)[near].norm() / exact[near].norm())
    assert error < 0.35, error


def test_foot_newton_finds_each_branch_momentum_from_a_wrong_start():
    """One Newton iteration on y + t H_p(grad g_k(y)) = x from the foot of a perturbed network's p
    gives grad u_k(x, t) of the exact branch (quadratic g_k and H: Newton is exact), in d = 3;
    without the iteration the perturbation is still there."""
    problem = min_of_quadratics_problem(3)
    branches = _branch_problems(3)
    x, t = problem.sample(64, make_generator(5))
    x, t = x.double(), t.double()
    wrong = ExactHeads(3, 0.5)
    for newton in (0, 1):
        solver = CharacteristicSolver(problem, wrong, pieces=True, foot_newton=newton, dtype=torch.float64,
                                      method="euler", steps=1)
        for k, (piece, branch) in enumerate(zip(problem.initial_pieces, branches)):
            xk = x.clone().requires_grad_(True)
            (p,) = torch.autograd.grad(wrong.each_head(xk.expand(3, -1, -1), t.expand(3, -1))[k].sum(), xk)
            momentum = solver._solve_momentum(piece, x, t, p)
            error = float((momentum - branch.exact_gradient(x, t)).abs().max())
            assert (error < 1e-10) if newton else (error > 1e-2), (newton, k, error)


def test_gradient_weight_needs_pieces_and_the_solved_foot():
    problem = min_of_quadratics_problem(2)
    with pytest.raises(ValueError, match="foot_newton"):
        CharacteristicSolver(problem, foot_newton=1)
    with pytest.raises(ValueError, match="gradient_weight needs foot_newton"):
        CharacteristicSolver(problem, pieces=True, gradient_weight=1.0)
    with pytest.raises(ValueError, match="foot_newton"):
        CharacteristicSolver(problem, pieces=True, foot_newton=-1)
    solver = CharacteristicSolver(problem, ExactHeads(2), pieces=True, foot_newton=1, gradient_weight=1.0,
                                  dtype=torch.float64, method="euler", steps=1)
    loss, metrics = solver.loss(0)
    assert float(loss.detach()) < 1e-20 and "gradient" in metrics


def test_pieces_option_rejects_what_it_cannot_use():
    from dlpde.hjb import kink_problem

    problem = min_of_quadratics_problem(2)
    with pytest.raises(ValueError, match="initial_pieces"):
        CharacteristicSolver(kink_problem("zero", 1), pieces=True)
    with pytest.raises(ValueError, match="heads=3"):
        CharacteristicSolver(problem, DGMNetwork(2, 8, 1), pieces=True)
    with pytest.raises(ValueError, match="head_band"):
        CharacteristicSolver(problem, head_band=0.1)
    with pytest.raises(ValueError, match="Hopf-Lax"):
        CharacteristicSolver(problem, pieces=True, hopf_lax_weight=1.0)
    nonconvex = HJProblem(Hamiltonian.from_function(lambda x, p: -(p**2).sum(-1)), problem.initial, dim=2,
                          initial_pieces=problem.initial_pieces)
    with pytest.raises(ValueError, match="convex"):
        CharacteristicSolver(nonconvex, pieces=True)
    pieces = problem.initial_pieces
    y = torch.randn(50, 2, generator=make_generator(3), dtype=torch.float64)
    torch.testing.assert_close(torch.stack([g(y) for g in pieces]).min(0).values, problem.initial(y))
