"""Neural solvers of ``u_t + H(x, grad u) = 0``, ``u(x, 0) = g(x)``, with one interface.

``solver.fit(steps, ...)`` trains through ``dlpde.shared.train.train`` (checkpoint, resume,
progress bar, NaN guard) and returns the history; ``solver.value(x, t)`` and
``solver.gradient(x, t)`` evaluate the learned ``u`` and ``grad_x u``. Points are sampled
uniformly in the problem's box ``[-radius, radius]^d x (0, T]`` from the solver's own generator
(saved in checkpoints). Derivatives come from ``dlpde.shared.autodiff.gradient``.

- ``DGMSolver`` (Sirignano & Spiliopoulos 2018): the DGM network and the loss
  ``mean_i (u_t + H(x_i, grad u))^2 + lambda_0 mean_j (u(y_j, 0) - g(y_j))^2``.
- ``CharacteristicSolver`` (the characteristic-regularised method of the AIM workshop "Deep
  learning and PDEs"): with ``p_i = grad u(x_i, t_i; w)`` trace the backward characteristic
  ``(x^i(s), p^i(s), z^i(s))`` from ``(x_i, t_i)`` to ``s = 0`` anchored at ``z(0) = g(x^i(0))``
  and minimise ``mean_i [ int_0^{t_i} (u(x^i(s), s) - z^i(s))^2 ds + (u_t + H)^2(x_i, t_i) ]
  + mean_j (u(y_j, 0) - g(y_j))^2`` (+ an optional Hopf-Lax upper-bound penalty
  ``relu(u(x_i, t_i) - min_j [g(y_j) + t_i L((x_i - y_j)/t_i)])^2`` for convex ``H``). With
  ``pieces=True`` (initial data ``g = min_k g_k`` of convex pieces, convex state-independent
  ``H``) the network is a ``MinOfHeadsNetwork`` and head ``k`` is trained by the same loss with
  ``g_k`` in place of ``g``: each ``u_k`` is smooth, and ``u = min_k u_k`` is the viscosity
  solution with its kinks (the Hopf-Lax formula commutes with the minimum).
- ``ValueGradientSolver`` (Nakamura-Zimmerer, Gong & Kang 2021): regression of ``u`` and
  ``grad u`` on data from Pontryagin boundary-value solves, with adaptive sampling.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from dlpde.shared.autodiff import gradient
from dlpde.shared.checks import (
    check_bool,
    check_callable,
    check_choice,
    check_int,
    check_positive,
    check_positive_int,
    check_real,
)
from dlpde.shared.device import resolve_device, resolve_dtype
from dlpde.shared.ode import INTEGRATORS
from dlpde.shared.random import make_generator
from dlpde.shared.train import train

from ._characteristics import backward_characteristics
from ._networks import DGMNetwork, MinOfHeadsNetwork, ValueNetwork
from ._problems import HJProblem, _check_points, _times

__all__ = ["DGMSolver", "CharacteristicSolver", "ValueGradientSolver"]


class _NeuralSolver:
    """Common machinery: the network, sampling, derivatives, ``fit``, ``value``, ``gradient``."""

    def __init__(
        self,
        problem: HJProblem,
        network: torch.nn.Module | None,
        default_network: Callable,
        *,
        batch_size: int,
        initial_batch_size: int,
        seed: int,
        dtype,
        device,
    ):
        if not isinstance(problem, HJProblem):
            raise TypeError(f"problem must be an HJProblem, got {type(problem).__name__}")
        for name, value in (("batch_size", batch_size), ("initial_batch_size", initial_batch_size)):
            check_positive_int(value, name)
        self.problem = problem
        self.device = resolve_device(device)
        self.dtype = check_choice(resolve_dtype(dtype), "dtype", (torch.float32, torch.float64))
        dtype = self.dtype
        self.batch_size = batch_size
        self.initial_batch_size = initial_batch_size
        if network is None:
            network = default_network(
                problem.dim,
                radius=problem.radius,
                horizon=problem.horizon,
                seed=seed,
                dtype=dtype,
                device=self.device,
            )
        if not isinstance(network, torch.nn.Module):
            raise TypeError("network must be a torch.nn.Module mapping (x, t) to (batch,)")
        self.network = network
        self.generator = make_generator(seed + 1)

    # -- sampling and derivatives ----------------------------------------------------------
    def _sample(self, n: int):
        return self.problem.sample(n, self.generator, self.dtype, self.device)

    def _sample_initial(self, n: int):
        return self.problem.sample(n, self.generator, self.dtype, self.device, initial=True)

    def _derivatives(self, x: torch.Tensor, t: torch.Tensor):
        """``(grad_x u, u_t)`` at ``(x, t)``, differentiable with respect to the parameters."""
        d = x.shape[1]
        grad = gradient(lambda xt: self.network(xt[:, :d], xt[:, d]), torch.cat([x, t.unsqueeze(-1)], -1))
        return grad[:, :d], grad[:, d]

    def _initial_misfit(self, y: torch.Tensor) -> torch.Tensor:
        return self.network(
            y, torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        ) - self.problem.initial(y)

    # -- the public interface --------------------------------------------------------------
    def loss(self, step: int):
        """The training loss at ``step`` and a dict of its parts."""
        raise NotImplementedError

    def fit(
        self,
        steps: int,
        *,
        lr: float = 1e-3,
        optimizer: str = "adam",
        schedule="cosine",
        checkpoint=None,
        resume: bool = True,
        progress: bool = True,
        log_every: int = 10,
        callback=None,
        desc: str | None = None,
    ) -> list[dict]:
        """Train for ``steps`` steps with ``dlpde.shared.train.train``; returns the history."""
        self.network.train()
        return train(
            self.network,
            self.loss,
            steps,
            optimizer=optimizer,
            lr=lr,
            schedule=schedule,
            checkpoint=checkpoint,
            resume=resume,
            generators=[self.generator],
            progress=progress,
            desc=desc or type(self).__name__,
            log_every=log_every,
            callback=callback,
        )

    def _prepare(self, x, t):
        _check_points(x, self.problem.dim)
        t = _times(t, x)
        return x.to(self.device, self.dtype), t.to(self.device, self.dtype)

    def value(self, x: torch.Tensor, t, chunk: int = 65536) -> torch.Tensor:
        """``u(x, t)``, shape ``(B,)``, in the dtype and on the device of ``x``."""
        xs, ts = self._prepare(x, t)
        with torch.no_grad():
            out = torch.cat(
                [self.network(xs[i : i + chunk], ts[i : i + chunk]) for i in range(0, xs.shape[0], chunk)]
            )
        return out.to(x)

    def gradient(self, x: torch.Tensor, t, chunk: int = 65536) -> torch.Tensor:
        """``grad_x u(x, t)``, shape ``(B, d)``, in the dtype and on the device of ``x``."""
        xs, ts = self._prepare(x, t)
        parts = []
        for i in range(0, xs.shape[0], chunk):
            xi, ti = xs[i : i + chunk], ts[i : i + chunk]
            parts.append(gradient(lambda y, ti=ti: self.network(y, ti), xi, create_graph=False))
        return torch.cat(parts).to(x)


class DGMSolver(_NeuralSolver):
    """The Deep Galerkin Method: ``DGMNetwork`` and the residual + initial-condition loss
    ``mean_i (u_t + H(x_i, grad u))^2 + initial_weight * mean_j (u(y_j, 0) - g(y_j))^2``
    on ``batch_size`` interior and ``initial_batch_size`` initial points per step."""

    def __init__(
        self,
        problem: HJProblem,
        network: torch.nn.Module | None = None,
        *,
        batch_size: int = 256,
        initial_batch_size: int = 256,
        initial_weight: float = 1.0,
        seed: int = 0,
        dtype=torch.float32,
        device="cpu",
    ):
        super().__init__(
            problem,
            network,
            DGMNetwork,
            batch_size=batch_size,
            initial_batch_size=initial_batch_size,
            seed=seed,
            dtype=dtype,
            device=device,
        )
        self.initial_weight = check_positive(initial_weight, "initial_weight", allow_zero=True)

    def loss(self, step):
        x, t = self._sample(self.batch_size)
        u_x, u_t = self._derivatives(x, t)
        residual = (u_t + self.problem.hamiltonian.value(x, u_x)).square().mean()
        initial = self._initial_misfit(self._sample_initial(self.initial_batch_size)).square().mean()
        return residual + self.initial_weight * initial, {"residual": residual, "initial": initial}


_QUADRATURES = ("gauss", "trapezoid", "random")


class CharacteristicSolver(_NeuralSolver):
    """The characteristic-regularised solver (see the module docstring for the loss).

    Args:
        problem: the ``HJProblem`` (its Hamiltonian, ``g`` and sampling box).
        network: any module ``(x, t) -> (B,)`` (default ``ValueNetwork``).
        nodes, quadrature: the path integral ``int_0^t (u - z)^2 ds = t int_0^1 (...) dtau`` by
            ``"gauss"`` (Gauss-Legendre, ``nodes`` points), ``"trapezoid"`` (``nodes`` equispaced
            points including both ends) or ``"random"`` (``nodes`` uniform random fractions per
            step, a Monte Carlo estimate).
        stop_gradient: treat ``p = grad u(x_i, t_i; w)`` as a constant when tracing (default), or
            differentiate through the characteristic as well.
        method, steps: integrator of the characteristic system (``dlpde.shared.ode``).
        path_weight, residual_weight, initial_weight, hopf_lax_weight: loss weights; the
            Hopf-Lax penalty (convex ``H`` with a Lagrangian only) compares ``u(x_i, t_i)`` with
            the candidates ``y`` = the initial points of the step and the feet of all traced
            characteristics.
        pieces: train one head per convex piece of ``g`` (``problem.initial_pieces``; needs a
            convex, state-independent ``H``, a network with ``each_head`` and one head per piece,
            default ``MinOfHeadsNetwork``; not combined with the Hopf-Lax penalty). The loss is the
            sum over heads of each head's loss on the same sampled points.
        head_band: with ``pieces``, weight head ``k``'s loss at a point by
            ``floor + (1 - floor) exp(-(u_k - min_j u_j) / head_band)`` (``head_floor``; the gap from
            the current heads, detached, at the interior points and from the exact ``g_k`` at the
            initial points), so that each head spends its capacity where it is the minimum or close
            to it; ``None``: every point counts fully for every head.
        foot_newton: with ``pieces``, the number of Newton iterations that solve the
            characteristic equation ``y + t H_p(grad g_k(y)) = x`` for head ``k``'s foot ``y``,
            started from the network's ``p`` (0: the foot the network's ``p`` gives, the workshop's
            loss as it is). Each piece being convex, the solution is the one characteristic of
            ``u_k`` through ``(x, t)``, so with it the path targets are exact values of ``u_k`` and the
            path loss is regression on them (one iteration is exact for quadratic ``g_k`` and ``H``).
        gradient_weight: with ``pieces``, weight of ``mean |grad u_k(x, t) - p_k|^2`` with ``p_k`` the
            characteristic's momentum (constant along it for state-independent ``H``); a Sobolev
            term that needs ``foot_newton >= 1`` (without it ``p_k`` is the network's own gradient).
    """

    def __init__(
        self,
        problem: HJProblem,
        network: torch.nn.Module | None = None,
        *,
        batch_size: int = 256,
        initial_batch_size: int = 256,
        nodes: int = 6,
        quadrature: str = "gauss",
        stop_gradient: bool = True,
        method: str = "rk4",
        steps: int = 8,
        path_weight: float = 1.0,
        residual_weight: float = 1.0,
        initial_weight: float = 1.0,
        hopf_lax_weight: float = 0.0,
        pieces: bool = False,
        head_band: float | None = None,
        head_floor: float = 0.1,
        foot_newton: int = 0,
        gradient_weight: float = 0.0,
        seed: int = 0,
        dtype=torch.float32,
        device="cpu",
    ):
        if not isinstance(problem, HJProblem):
            raise TypeError(f"problem must be an HJProblem, got {type(problem).__name__}")
        self.pieces = check_bool(pieces, "pieces")
        self.head_band = None if head_band is None else check_positive(head_band, "head_band")
        self.head_floor = check_real(head_floor, "head_floor", 0.0, 1.0)
        if head_band is not None and not pieces:
            raise ValueError("head_band weights the heads of pieces=True; leave it None otherwise")
        self.foot_newton = check_int(foot_newton, "foot_newton", minimum=0)
        self.gradient_weight = float(check_positive(gradient_weight, "gradient_weight", allow_zero=True))
        if (self.foot_newton or self.gradient_weight) and not pieces:
            raise ValueError("foot_newton and gradient_weight apply to pieces=True; leave them 0 otherwise")
        if self.gradient_weight and not self.foot_newton:
            raise ValueError("gradient_weight needs foot_newton >= 1 (the exact momentum of each head)")
        if pieces:
            hamiltonian = problem.hamiltonian
            if not problem.initial_pieces:
                raise ValueError("pieces=True needs a problem with initial_pieces (g = min_k g_k)")
            if not (hamiltonian.convex and not hamiltonian.state_dependent):
                raise ValueError("pieces=True needs a convex, state-independent Hamiltonian")
            if check_positive(hopf_lax_weight, "hopf_lax_weight", allow_zero=True):
                raise ValueError("pieces=True is not combined with the Hopf-Lax penalty (hopf_lax_weight=0)")
            count = len(problem.initial_pieces)

            def default_network(dim, **kwargs):
                return MinOfHeadsNetwork(dim, count, **kwargs)

        else:
            default_network = ValueNetwork
        super().__init__(
            problem,
            network,
            default_network,
            batch_size=batch_size,
            initial_batch_size=initial_batch_size,
            seed=seed,
            dtype=dtype,
            device=device,
        )
        check_choice(quadrature, "quadrature", _QUADRATURES)
        nodes = check_int(nodes, "nodes", minimum=2 if quadrature == "trapezoid" else 1)
        method = check_choice(method, "method", sorted(INTEGRATORS))
        if steps is not None or method != "dopri5":  # dopri5 chooses its own steps
            steps = check_positive_int(steps, "steps")
        path_weight, residual_weight, initial_weight, hopf_lax_weight = (
            check_positive(w, name, allow_zero=True)
            for w, name in (
                (path_weight, "path_weight"),
                (residual_weight, "residual_weight"),
                (initial_weight, "initial_weight"),
                (hopf_lax_weight, "hopf_lax_weight"),
            )
        )
        if hopf_lax_weight and not (problem.hamiltonian.convex and not problem.hamiltonian.state_dependent):
            raise ValueError("the Hopf-Lax penalty needs a convex, state-independent Hamiltonian")
        self.nodes, self.quadrature = nodes, quadrature
        self.stop_gradient = check_bool(stop_gradient, "stop_gradient")
        self.method, self.steps = method, steps
        self.path_weight, self.residual_weight = float(path_weight), float(residual_weight)
        self.initial_weight, self.hopf_lax_weight = float(initial_weight), float(hopf_lax_weight)
        if quadrature == "gauss":
            points, weights = np.polynomial.legendre.leggauss(nodes)
            self._fractions = torch.tensor((points + 1) / 2, dtype=torch.float64)
            self._weights = torch.tensor(weights / 2, dtype=torch.float64)
        elif quadrature == "trapezoid":
            self._fractions = torch.linspace(0, 1, nodes, dtype=torch.float64)
            weights = torch.full((nodes,), 1.0 / (nodes - 1), dtype=torch.float64)
            weights[0] = weights[-1] = 0.5 / (nodes - 1)
            self._weights = weights
        if pieces:
            heads = getattr(self.network, "heads", None)
            if not callable(getattr(self.network, "each_head", None)) or heads != count:
                raise ValueError(
                    f"pieces=True needs a network with each_head and heads={count} (one per piece), "
                    f"e.g. MinOfHeadsNetwork; got {type(self.network).__name__}"
                )

    def _quadrature(self):
        if self.quadrature == "random":
            fractions = torch.rand(self.nodes, generator=self.generator, dtype=torch.float64).sort().values
            return fractions, torch.full((self.nodes,), 1.0 / self.nodes, dtype=torch.float64)
        return self._fractions, self._weights

    def _head_weights(self, values: torch.Tensor) -> torch.Tensor:
        """``(K, B)`` weights of the heads from their values (see ``head_band``)."""
        if self.head_band is None:
            return torch.ones_like(values)
        gap = values - values.min(0, keepdim=True).values
        return self.head_floor + (1 - self.head_floor) * torch.exp(-gap / self.head_band)

    def _solve_momentum(self, piece, x, t, p):
        """``grad g_k(y)`` at the foot ``y`` of the characteristic of ``u_k`` through ``(x, t)``:
        ``foot_newton`` Newton iterations on ``F(y) = y + t H_p(grad g_k(y)) - x`` (Jacobian
        ``I + t H_pp grad^2 g_k``, the Hessian of ``g_k`` by autograd) from ``y = x - t H_p(p)``."""
        hamiltonian, d = self.problem.hamiltonian, x.shape[1]
        x, t, p = x.detach(), t.detach()[:, None], p.detach()
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        with torch.enable_grad():
            y = x - t * hamiltonian.grad_p(x, p)
            for _ in range(self.foot_newton):
                y = y.detach().requires_grad_(True)
                (q,) = torch.autograd.grad(piece(y).sum(), y, create_graph=True)
                curvature = torch.stack(
                    [torch.autograd.grad(q[:, j].sum(), y, retain_graph=True)[0] for j in range(d)], 1
                )
                jacobian = eye + t[..., None] * hamiltonian.hessian(x, q.detach())[:, d:, d:] @ curvature
                residual = y + t * hamiltonian.grad_p(x, q) - x
                y = y - torch.linalg.solve(jacobian, residual.detach().unsqueeze(-1)).squeeze(-1)
            y = y.detach().requires_grad_(True)
            (q,) = torch.autograd.grad(piece(y).sum(), y)
        return q

    def _pieces_loss(self):
        """The loss summed over heads: head ``k`` with the initial data ``g_k``."""
        problem, hamiltonian, network = self.problem, self.problem.hamiltonian, self.network
        x, t = self._sample(self.batch_size)
        y = self._sample_initial(self.initial_batch_size)
        k, (b, d) = network.heads, x.shape
        xt = torch.cat([x, t.unsqueeze(-1)], -1).repeat(k, 1, 1).requires_grad_(True)
        heads = network.each_head(xt[..., :d], xt[..., d])
        (grad,) = torch.autograd.grad(heads.sum(), xt, create_graph=True)
        u_x, u_t = grad[..., :d], grad[..., d]
        targets = torch.stack([piece(y) for piece in problem.initial_pieces])
        weight, initial_weight = self._head_weights(heads.detach()), self._head_weights(targets)
        residual = u_t + hamiltonian.value(x.repeat(k, 1), u_x.reshape(k * b, d)).reshape(k, b)
        residual = (weight * residual.square()).mean() * k
        fractions, weights = self._quadrature()
        p = u_x.detach() if self.stop_gradient else u_x
        if self.foot_newton:
            p = torch.stack([self._solve_momentum(piece, x, t, p[head])
                             for head, piece in enumerate(problem.initial_pieces)])
        nodes, z, times = [], [], None
        for head, piece in enumerate(problem.initial_pieces):
            path = backward_characteristics(
                hamiltonian, x, t, p[head], piece, fractions=fractions, method=self.method, steps=self.steps
            )
            nodes.append(path.x.reshape(-1, d))
            z.append(path.z.reshape(-1))
            times = path.times.reshape(-1)
        u_path = network.each_head(torch.stack(nodes), times.expand(k, -1))
        misfit = (u_path - torch.stack(z)).square().reshape(k, -1, b)
        path_loss = (weight * t * (weights.to(misfit)[:, None] * misfit).sum(1)).mean() * k
        zeros = torch.zeros(k, y.shape[0], dtype=y.dtype, device=y.device)
        misfit = (network.each_head(y.expand(k, *y.shape), zeros) - targets).square()
        initial = (initial_weight * misfit).mean() * k
        loss = self.path_weight * path_loss + self.residual_weight * residual + self.initial_weight * initial
        metrics = {"path": path_loss, "residual": residual, "initial": initial}
        if self.gradient_weight:
            sobolev = (weight * (u_x - p).square().sum(-1)).mean() * k
            loss = loss + self.gradient_weight * sobolev
            metrics["gradient"] = sobolev
        return loss, metrics

    def loss(self, step):
        if self.pieces:
            return self._pieces_loss()
        problem, hamiltonian = self.problem, self.problem.hamiltonian
        x, t = self._sample(self.batch_size)
        y = self._sample_initial(self.initial_batch_size)
        u_x, u_t = self._derivatives(x, t)
        residual = (u_t + hamiltonian.value(x, u_x)).square().mean()
        fractions, weights = self._quadrature()
        p = u_x.detach() if self.stop_gradient else u_x
        path = backward_characteristics(
            hamiltonian, x, t, p, problem.initial, fractions=fractions, method=self.method, steps=self.steps
        )
        k, b, d = path.x.shape
        u_path = self.network(path.x.reshape(k * b, d), path.times.reshape(k * b)).reshape(k, b)
        misfit = (u_path - path.z).square()
        path_loss = (t * (weights.to(misfit)[:, None] * misfit).sum(0)).mean()
        initial = self._initial_misfit(y).square().mean()
        loss = self.path_weight * path_loss + self.residual_weight * residual + self.initial_weight * initial
        metrics = {"path": path_loss, "residual": residual, "initial": initial}
        if self.hopf_lax_weight:
            with torch.no_grad():
                candidates = torch.cat([y, path.x[0].detach()])
                start_values = problem.initial(candidates)
                velocity = ((x[:, None, :] - candidates[None]) / t[:, None, None]).reshape(-1, d)
                lagrangian = hamiltonian.lagrangian(torch.zeros_like(velocity), velocity)
                bound = (start_values[None] + t[:, None] * lagrangian.reshape(b, -1)).min(1).values
            excess = torch.relu(self.network(x, t) - bound).square().mean()
            loss = loss + self.hopf_lax_weight * excess
            metrics["hopf_lax"] = excess
        return loss, metrics


class ValueGradientSolver(_NeuralSolver):
    """Supervised value + gradient ("Sobolev") regression (Nakamura-Zimmerer, Gong & Kang 2021).

    ``data_source(x, t) -> dict(x=(N, d), t=(N,), value=(N,), gradient=(N, d))`` produces data,
    e.g. ``pontryagin_data_source`` (Pontryagin boundary-value solves); it may return other or
    fewer points than asked (whole optimal trajectories, unconverged solves dropped). The loss is
    ``mean (u - V)^2 / mean V^2 + gradient_weight * mean |grad u - grad V|^2 / mean |grad V|^2``
    on minibatches of ``batch_size``. ``fit`` runs ``rounds`` rounds; between rounds it draws
    ``candidates`` random points, keeps the ``points_per_round`` with the largest predicted
    ``|grad u|`` and adds their data (the adaptive sampling of Nakamura-Zimmerer et al.).
    """

    def __init__(
        self,
        problem: HJProblem,
        data_source: Callable,
        network: torch.nn.Module | None = None,
        *,
        initial_points: int = 1024,
        batch_size: int = 1024,
        gradient_weight: float = 10.0,
        rounds: int = 1,
        points_per_round: int = 512,
        candidates: int = 4096,
        seed: int = 0,
        dtype=torch.float32,
        device="cpu",
    ):
        super().__init__(
            problem,
            network,
            ValueNetwork,
            batch_size=batch_size,
            initial_batch_size=1,
            seed=seed,
            dtype=dtype,
            device=device,
        )
        check_callable(data_source, "data_source")
        for name, value in (
            ("initial_points", initial_points),
            ("rounds", rounds),
            ("points_per_round", points_per_round),
            ("candidates", candidates),
        ):
            check_positive_int(value, name)
        self.data_source = data_source
        self.gradient_weight = check_positive(gradient_weight, "gradient_weight", allow_zero=True)
        self.rounds, self.points_per_round, self.candidates = rounds, points_per_round, candidates
        self.initial_points = initial_points
        self.data: dict[str, torch.Tensor] | None = None
        self.data_sizes: list[int] = []

    def _add_data(self, x, t):
        new = self.data_source(x.to(torch.float64), t.to(torch.float64))
        new = {k: new[k].to(self.device, self.dtype) for k in ("x", "t", "value", "gradient")}
        if self.data is None:
            self.data = new
        else:
            self.data = {k: torch.cat([self.data[k], new[k]]) for k in new}
        self.data_sizes.append(int(self.data["x"].shape[0]))

    def _select_adaptive(self):
        x, t = self.problem.sample(self.candidates, self.generator, torch.float64, "cpu")
        norms = torch.linalg.vector_norm(self.gradient(x, t), dim=-1)
        keep = norms.topk(min(self.points_per_round, norms.numel())).indices
        return x[keep], t[keep]

    def loss(self, step):
        data = self.data
        n = data["x"].shape[0]
        index = (
            torch.randint(0, n, (min(self.batch_size, n),), generator=self.generator).to(self.device)
            if self.batch_size < n
            else torch.arange(n, device=self.device)
        )
        x, t = data["x"][index], data["t"][index]
        value, grad = data["value"][index], data["gradient"][index]
        u = self.network(x, t)
        u_x = gradient(lambda y: self.network(y, t), x)
        value_loss = (u - value).square().mean() / value.square().mean().clamp_min(1e-12)
        gradient_loss = (u_x - grad).square().sum(-1).mean() / grad.square().sum(-1).mean().clamp_min(1e-12)
        return value_loss + self.gradient_weight * gradient_loss, {
            "value": value_loss,
            "gradient": gradient_loss,
        }

    def fit(self, steps: int, **kwargs) -> list[dict]:
        """``rounds`` rounds of ``steps // rounds`` training steps, adding adaptively chosen
        data between rounds (``kwargs`` as in the other solvers; a checkpoint path gets the
        round number appended)."""
        if self.data is None:
            self._add_data(*self.problem.sample(self.initial_points, self.generator, torch.float64, "cpu"))
        history = []
        checkpoint = kwargs.pop("checkpoint", None)
        per_round = max(1, steps // self.rounds)
        for round_index in range(self.rounds):
            if round_index > 0:
                self._add_data(*self._select_adaptive())
            path = None if checkpoint is None else f"{checkpoint}.round{round_index}"
            rows = super().fit(per_round, checkpoint=path, **kwargs)
            history.extend({**row, "round": round_index, "data": self.data_sizes[-1]} for row in rows)
        return history
