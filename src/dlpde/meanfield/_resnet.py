"""Mean-field ResNet and ResNeXt, their continuous-depth limit, the adjoint, and block reordering.

A residual block (a particle) is ``f(x; theta) = U sigma(W x)``, ``U`` of shape ``(D, k)``, ``W`` of
shape ``(k, D)`` (``k = block_width``). The network of depth ``L`` and width ``M`` is

    x_{l+1} = x_l + (1 / (L M)) sum_{j=1}^M f(x_l; theta_{l,j}),    l = 0, ..., L-1,

``M = 1`` being a (mean-field in depth) ResNet and ``M > 1`` a ResNeXt of cardinality ``M`` (the
particles of a layer are its parallel branches). With the particles of layer ``l`` drawn from a
measure ``rho_t`` at ``t = l / L`` it is the forward-Euler discretisation, with Monte Carlo
quadrature, of the ODE in depth (E, Ma & Wu 2020; Lu, Ma, Lu, Lu & Ying 2020)

    dX/dt = F(X, t) = int f(X; theta) rho_t(d theta),    t in [0, 1],

with errors O(1/L) (Euler) and O((L M)^-1/2) (independent sampling). For the loss
``E = (1/B) sum_b (1/2) |X_b(1) - Y_b|^2`` backpropagation is the adjoint ODE

    dP/dt = -(d_X F(X, t))^T P,    P_b(1) = (X_b(1) - Y_b) / B,

and the mean-field training of the particles (step scaled by ``N = L M``, ``_dynamics.py``) is
the Wasserstein gradient flow ``d_s rho_t = div_theta(rho_t grad_theta dE/drho(theta, t))`` with
``dE/drho(theta, t) = sum_b P_b(t) . f(X_b(t); theta)``: a particle at depth ``t`` moves with
``v = -grad_theta sum_b P_b(t) . f(X_b(t); theta)`` (``particle_velocity``). In the discrete
network ``P(t_l)`` is ``p_{l+1} = dE/dx_{l+1}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from dlpde.shared import (
    check_callable,
    check_finite_result,
    check_int,
    check_positive,
    check_positive_int,
    check_same_device,
    check_tensor,
    integrate,
    make_generator,
    resolve_device,
    resolve_dtype,
)

from ._activations import resolve_activation
from ._validate import check_field_value, check_integration, check_times

__all__ = [
    "MeanFieldResNet",
    "GaussianBlockMeasure",
    "block_outputs",
    "linear_block_moments",
    "linear_resnet_training",
    "particle_velocity",
    "resnet_limit",
    "resnet_limit_adjoint",
]


def _positive_int(name, value):
    return check_positive_int(value, name)


def block_outputs(
    x: torch.Tensor, particles: torch.Tensor, dim: int, block_width: int, activation: Callable
) -> torch.Tensor:
    """``f(x_b; theta_j) = U_j sigma(W_j x_b)`` for every input and particle: ``x (B, D)``,
    ``particles (M, 2 D k)`` (``U`` row-major then ``W`` row-major) -> ``(B, M, D)``.

    ``activation``: a name of ``resolve_activation`` or an elementwise callable."""
    dim = check_positive_int(dim, "dim")
    block_width = check_positive_int(block_width, "block_width")
    check_tensor(x, "x", shape=(None, dim))
    check_tensor(particles, "particles", shape=(None, 2 * dim * block_width))
    check_same_device(x=x, particles=particles)
    if x.dtype != particles.dtype:
        raise TypeError(f"x and particles must have one dtype, got {x.dtype} and {particles.dtype}")
    activation = _checked_activation(resolve_activation(activation))
    out = _block_outputs(x, particles, dim, block_width, activation)
    return check_finite_result(out, "block outputs", hint="the activation overflows on these inputs")


def _checked_activation(activation):
    """Wrap a user's activation so that a wrong shape or a non-tensor is a clear error."""

    def checked(t):
        value = activation(t)
        if not isinstance(value, torch.Tensor) or value.shape != t.shape:
            shown = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"activation must act elementwise (same shape {tuple(t.shape)}), got {shown}")
        return value

    return checked


def _block_outputs(x, particles, dim, block_width, activation):
    u = particles[:, : dim * block_width].reshape(-1, dim, block_width)
    w = particles[:, dim * block_width :].reshape(-1, block_width, dim)
    hidden = activation(torch.einsum("mkd,bd->bmk", w, x))
    return torch.einsum("mdk,bmk->bmd", u, hidden)


class MeanFieldResNet(nn.Module):
    """``x_{l+1} = x_l + (1/(L M)) sum_j U_{l,j} sigma(W_{l,j} x_l)`` (module docstring).

    ``particles`` has shape ``(depth, width, 2 dim block_width)``; a ResNet is ``width=1``, a
    ResNeXt of cardinality ``width`` has ``width`` parallel branches of ``block_width`` units.
    Default initialisation i.i.d. over blocks: ``U ~ N(0, output_scale^2)``,
    ``W ~ N(0, input_scale^2 / dim)`` from ``generator`` (CPU, seed default 0); or pass
    ``particles`` (e.g. ``GaussianBlockMeasure.sample``). ``mean_field_scale = depth width``.
    """

    def __init__(
        self,
        depth: int,
        width: int,
        dim: int,
        block_width: int = 1,
        activation="tanh",
        *,
        input_scale: float = 1.0,
        output_scale: float = 1.0,
        particles: torch.Tensor | None = None,
        generator=None,
        dtype=None,
        device=None,
    ):
        super().__init__()
        for name, value in (("depth", depth), ("width", width), ("dim", dim), ("block_width", block_width)):
            _positive_int(name, value)
        self.depth, self.width, self.dim, self.block_width = depth, width, dim, block_width
        self.activation = resolve_activation(activation)
        size = 2 * dim * block_width
        if particles is None:
            generator = make_generator(0 if generator is None else generator, "cpu")
            u = output_scale * torch.randn(
                depth, width, dim * block_width, generator=generator, dtype=torch.float64
            )
            w = (
                input_scale
                / math.sqrt(dim)
                * torch.randn(depth, width, block_width * dim, generator=generator, dtype=torch.float64)
            )
            particles = torch.cat([u, w], -1).to(
                dtype=resolve_dtype(dtype), device=resolve_device("cpu" if device is None else device)
            )
        elif particles.shape != (depth, width, size):
            raise ValueError(
                f"particles must have shape ({depth}, {width}, {size}), got {tuple(particles.shape)}"
            )
        self.particles = nn.Parameter(particles)
        self.register_buffer(
            "trainable_mask", torch.ones(size, dtype=particles.dtype, device=particles.device)
        )

    def __repr__(self):
        return (
            f"MeanFieldResNet(depth={self.depth}, width={self.width}, dim={self.dim}, "
            f"block_width={self.block_width})"
        )

    @property
    def mean_field_scale(self) -> int:
        return self.depth * self.width

    def _check_input(self, x):
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"x must have shape (batch, {self.dim}), got "
                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
        if x.dtype != self.particles.dtype or x.device != self.particles.device:
            raise ValueError(
                f"x must be {self.particles.dtype} on {self.particles.device}, got {x.dtype} on {x.device}"
            )

    def layer_field(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """``(1/M) sum_j f(x; theta_{layer, j})``, shape ``(B, D)``."""
        return _block_outputs(x, self.particles[layer], self.dim, self.block_width, self.activation).mean(1)

    def states(self, x: torch.Tensor) -> torch.Tensor:
        """All hidden states ``x_0 = x, ..., x_L``, shape ``(L + 1, B, D)``."""
        self._check_input(x)
        out = [x]
        for layer in range(self.depth):
            out.append(out[-1] + self.layer_field(out[-1], layer) / self.depth)
        return torch.stack(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x_L``, shape ``(B, D)``."""
        return self.states(x)[-1]

    def adjoint_states(self, x: torch.Tensor, target: torch.Tensor):
        """``(states (L+1, B, D), adjoints (L+1, B, D))`` for ``E = mean_b |x_L - y_b|^2 / 2``:
        ``p_l = dE/dx_l`` by backpropagation, i.e. the discrete adjoint
        ``p_l = p_{l+1} + (1/L) (d_x field_l(x_l))^T p_{l+1}``, ``p_L = (x_L - y) / B``."""
        with torch.enable_grad():
            start = x.detach().requires_grad_(True)
            hidden = [start]
            for layer in range(self.depth):
                hidden.append(hidden[-1] + self.layer_field(hidden[-1], layer) / self.depth)
            loss = 0.5 * ((hidden[-1] - target) ** 2).sum(-1).mean()
            grads = torch.autograd.grad(loss, hidden)
        return torch.stack([h.detach() for h in hidden]), torch.stack(grads)

    def reorder_blocks(self, permutation: torch.Tensor) -> None:
        """Put the blocks of layer ``permutation[l]`` at depth ``l`` (all branches move together)."""
        permutation = torch.as_tensor(permutation, device=self.particles.device)
        if sorted(permutation.tolist()) != list(range(self.depth)):
            raise ValueError(
                f"permutation must be a permutation of range({self.depth}), got {permutation.tolist()}"
            )
        with torch.no_grad():
            self.particles.copy_(self.particles[permutation].clone())

    def depth_gradient(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``d/dt g_l(t)`` at ``t_l = l/L`` for every layer, ``g_l(t) = sum_b P_b(t) . field_l(X_b(t))``.

        ``g_l`` is the first variation of the loss with respect to placing the blocks of layer
        ``l`` at depth ``t`` (module docstring); moving a layer towards ``-d_t g_l`` lowers the loss
        to first order. Central differences over the neighbouring depths (one-sided at the ends),
        with ``X(t_l) = x_l`` and ``P(t_l) = p_{l+1}``.
        """
        states, adjoints = self.adjoint_states(x, target)
        x_at, p_at = states[:-1], adjoints[1:]  # X(t_l) = x_l, P(t_l) = p_{l+1}
        slopes = []
        with torch.no_grad():
            for layer in range(self.depth):
                up, down = min(layer + 1, self.depth - 1), max(layer - 1, 0)
                g_up = (p_at[up] * self.layer_field(x_at[up], layer)).sum()
                g_down = (p_at[down] * self.layer_field(x_at[down], layer)).sum()
                slopes.append((g_up - g_down) * self.depth / max(up - down, 1))
        return torch.stack(slopes)

    def reorder_by_depth_gradient(
        self, x: torch.Tensor, target: torch.Tensor, depth_step: float
    ) -> torch.Tensor:
        """One block-reordering step: each layer moves to the virtual depth
        ``t_l - depth_step d_t g_l`` (``depth_gradient``) and the layers are re-sorted by it
        (the depth marginal stays uniform). Returns the permutation applied."""
        if not (depth_step >= 0 and math.isfinite(depth_step)):
            raise ValueError(f"depth_step must be non-negative and finite, got {depth_step}")
        slope = self.depth_gradient(x, target)
        virtual = (
            torch.arange(self.depth, dtype=slope.dtype, device=slope.device) / self.depth - depth_step * slope
        )
        permutation = torch.argsort(virtual, stable=True)
        self.reorder_blocks(permutation)
        return permutation


def particle_velocity(
    particles: torch.Tensor,
    states: torch.Tensor,
    adjoints: torch.Tensor,
    dim: int,
    block_width: int,
    activation,
) -> torch.Tensor:
    """Wasserstein-gradient-flow velocity ``v(theta) = -grad_theta sum_b <P_b, f(X_b; theta)>``.

    ``particles (M, p)`` at one depth, ``states`` and ``adjoints`` ``(B, D)`` at that depth. In the
    discrete network with ``(x_l, p_{l+1})`` this is ``-L M dE/dtheta_{l,j}`` exactly; with the
    continuous ``(X(t), P(t))`` (``resnet_limit_adjoint``) it is the limit velocity field.
    """
    dim = check_positive_int(dim, "dim")
    block_width = check_positive_int(block_width, "block_width")
    check_tensor(particles, "particles", shape=(None, 2 * dim * block_width))
    check_tensor(states, "states", shape=(None, dim))
    check_tensor(adjoints, "adjoints", shape=tuple(states.shape))
    check_same_device(particles=particles, states=states, adjoints=adjoints)
    if not particles.dtype == states.dtype == adjoints.dtype:
        raise TypeError(f"particles, states and adjoints must have one dtype, got {particles.dtype}, "
                        f"{states.dtype} and {adjoints.dtype}")
    activation = _checked_activation(resolve_activation(activation))
    with torch.enable_grad():
        theta = particles.detach().requires_grad_(True)
        objective = (_block_outputs(states, theta, dim, block_width, activation) * adjoints[:, None, :]).sum()
        (grad,) = torch.autograd.grad(objective, theta)
    return -grad


class GaussianBlockMeasure:
    """A depth-dependent Gaussian law ``rho_t`` of blocks whose mean field is a 1-D Gaussian integral.

    The ``k`` units of a block are i.i.d.: ``w ~ N(0, (scale^2 / D) I_D)`` and
    ``u = A(t) w + noise eta``, ``eta ~ N(0, I_D)``, ``A(t) = sum_q t^q coupling[q]``. By Stein's
    lemma ``E[u sigma(<w, x>)] = A(t) E[w sigma(<w, x>)] = (scale^2 / D) A(t) x E[sigma'(<w, x>)]``, so

        F(x, t) = k (scale^2 / D) A(t) x G(scale^2 |x|^2 / D),    G(v) = E[sigma'(sqrt(v) Z)],

    with ``G`` by Gauss-Hermite quadrature (``quadrature_nodes``; ``sigma'`` by autograd): accurate to
    rounding for ``v = scale^2 |x|^2 / D`` of order one (about 1e-8 at ``v = 10`` with 96 nodes).
    """

    def __init__(
        self,
        dim: int,
        block_width: int,
        activation,
        coupling: torch.Tensor,
        scale: float = 1.0,
        noise: float = 0.0,
        quadrature_nodes: int = 96,
    ):
        _positive_int("dim", dim)
        _positive_int("block_width", block_width)
        check_tensor(coupling, "coupling", shape=(None, dim, dim))
        scale = check_positive(scale, "scale")
        noise = check_positive(noise, "noise", allow_zero=True)
        quadrature_nodes = check_int(quadrature_nodes, "quadrature_nodes", 2, 1000)
        self.dim, self.block_width, self.activation = dim, block_width, resolve_activation(activation)
        self.coupling, self.scale, self.noise = coupling, float(scale), float(noise)
        import numpy as np
        from numpy.polynomial.hermite_e import hermegauss

        z, w = hermegauss(quadrature_nodes)
        self._nodes = torch.as_tensor(z)
        self._weights = torch.as_tensor(w / np.sqrt(2 * np.pi))

    def coupling_at(self, t: float) -> torch.Tensor:
        powers = torch.tensor(
            [t**q for q in range(self.coupling.shape[0])],
            dtype=self.coupling.dtype,
            device=self.coupling.device,
        )
        return torch.einsum("q,qij->ij", powers, self.coupling)

    def mean_derivative(self, variance: torch.Tensor) -> torch.Tensor:
        """``G(v) = E[sigma'(sqrt(v) Z)]`` by Gauss-Hermite quadrature, elementwise in ``variance``
        (``sigma'`` by autograd, kept differentiable in ``variance``)."""
        points = variance[..., None].clamp_min(0).sqrt() * self._nodes.to(variance)
        with torch.enable_grad():
            probe = points if points.requires_grad else points.detach().requires_grad_(True)
            (slope,) = torch.autograd.grad(
                self.activation(probe).sum(), probe, create_graph=points.requires_grad
            )
        return slope @ self._weights.to(variance)

    def field(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """``F(x, t)``, ``x (B, D)`` -> ``(B, D)`` (differentiable in ``x``)."""
        g = self.mean_derivative(self.scale**2 / self.dim * (x * x).sum(-1))
        a = self.coupling_at(t).to(x)
        return self.block_width * self.scale**2 / self.dim * (x @ a.T) * g[:, None]

    def sample(self, depth: int, width: int, generator=None, dtype=None, device=None) -> torch.Tensor:
        """Particles ``(depth, width, 2 D k)`` for ``MeanFieldResNet``: layer ``l`` from ``rho_{l/depth}``
        (drawn on the CPU in float64 from ``generator``, then cast and moved)."""
        generator = make_generator(0 if generator is None else generator, "cpu")
        d, k = self.dim, self.block_width
        w = (
            self.scale
            / math.sqrt(d)
            * torch.randn(depth, width, k, d, generator=generator, dtype=torch.float64)
        )
        eta = torch.randn(depth, width, k, d, generator=generator, dtype=torch.float64)
        couplings = torch.stack([self.coupling_at(layer / depth).double() for layer in range(depth)])
        u = torch.einsum("lij,lmkj->lmki", couplings, w) + self.noise * eta  # (L, M, k, D): unit columns
        u_matrix = u.transpose(-1, -2).reshape(depth, width, d * k)  # U (D, k) row-major
        particles = torch.cat([u_matrix, w.reshape(depth, width, k * d)], -1)
        device = resolve_device("cpu" if device is None else device)
        return particles.to(dtype=resolve_dtype(dtype), device=device)


def _checked_field(field, x: torch.Tensor):
    """``field`` after one probe at ``(x, 0)``: it must return a finite tensor of ``x``'s shape."""
    check_callable(field, "field")
    check_field_value(field(x, 0.0), x, "field(x, t)")
    return field


def resnet_limit(
    field: Callable[[torch.Tensor, float], torch.Tensor],
    x: torch.Tensor,
    save_at: Sequence[float] | None = None,
    method: str = "dopri5",
    steps: int | None = None,
    rtol: float = 1e-9,
    atol: float = 1e-11,
) -> torch.Tensor:
    """``X(1)`` (or the stack at ``save_at``) of ``dX/dt = field(X, t)``, ``X(0) = x``, by ``integrate``.

    ``field(x, t)`` returns a tensor of ``x``'s shape; ``save_at``: non-decreasing times in [0, 1];
    ``method``, ``steps``, ``rtol``, ``atol`` as in ``dlpde.shared.integrate``. A solution that
    blows up is a ``NonFiniteResultError``.
    """
    check_tensor(x, "x")
    method, steps, rtol, atol = check_integration(method, steps, rtol, atol)
    if save_at is not None:
        save_at = check_times(save_at, "save_at", 0.0, 1.0)
    _checked_field(field, x)
    return _resnet_limit(field, x, save_at, method, steps, rtol, atol)


def _resnet_limit(field, x, save_at, method, steps, rtol, atol):
    path = integrate(
        lambda t, y: field(y, t),
        x,
        0.0,
        1.0,
        method=method,
        steps=steps,
        rtol=rtol,
        atol=atol,
        save_at=save_at,
    )
    return check_finite_result(path, "ResNet limit X(t)", hint="the field blows up; try method='dopri5'")


def resnet_limit_adjoint(
    field: Callable[[torch.Tensor, float], torch.Tensor],
    x: torch.Tensor,
    target: torch.Tensor,
    save_at: Sequence[float],
    method: str = "dopri5",
    steps: int | None = None,
    rtol: float = 1e-9,
    atol: float = 1e-11,
):
    """``(X, P)`` at the times ``save_at`` (increasing, in [0, 1]) for ``E = mean_b |X_b(1) - y_b|^2 / 2``.

    Forward ``dX/dt = F``, then the joint system ``(dX/dt, dP/dt) = (F, -(d_X F)^T P)`` backward from
    ``(X(1), (X(1) - y) / B)`` to 0 (``d_X F^T P`` by a vector-Jacobian product). ``x`` and
    ``target`` have shape ``(B, D)``; ``field(x, t)`` is differentiable in ``x`` and returns ``(B, D)``.
    """
    check_tensor(x, "x", dim=2)
    check_tensor(target, "target", shape=tuple(x.shape))
    check_same_device(x=x, target=target)
    method, steps, rtol, atol = check_integration(method, steps, rtol, atol)
    times = check_times(save_at, "save_at", 0.0, 1.0)
    _checked_field(field, x)
    end = _resnet_limit(field, x, None, method, steps, rtol, atol)
    batch, dim = x.shape

    def joint(t, y):
        state, adjoint = y[:, :dim], y[:, dim:]
        with torch.enable_grad():
            probe = state.detach().requires_grad_(True)
            value = field(probe, t)
            vjp = None  # a field that does not depend on x has d_X F = 0
            if value.requires_grad:
                (vjp,) = torch.autograd.grad(value, probe, adjoint, allow_unused=True)
        vjp = torch.zeros_like(probe) if vjp is None else vjp
        return torch.cat([value.detach(), -vjp], -1)

    start = torch.cat([end, (end - target.to(end)) / batch], -1)
    backward_times = [1.0, *sorted(times, reverse=True)]
    path = integrate(
        joint, start, 1.0, 0.0, method=method, steps=steps, rtol=rtol, atol=atol, save_at=backward_times
    )[1:].flip(0)
    check_finite_result(path, "ResNet limit adjoint (X, P)", hint="the field blows up; try method='dopri5'")
    return path[..., :dim], path[..., dim:]


def linear_block_moments(particles: torch.Tensor, dim: int, block_width: int) -> torch.Tensor:
    """Second moments ``S_l = mean_{j, i} z z^T`` of the units ``z = (u_i, w_i)`` of each layer.

    ``particles (L, M, 2 D k)`` (``MeanFieldResNet.particles``) -> ``(L, 2 D, 2 D)``. For linear blocks
    ``f(x) = U W x`` the layer field is ``A_l x`` with ``A_l = k S_l[:D, D:]`` (``k = block_width``),
    and ``S_l`` is all the training dynamics of the layer needs (``linear_resnet_training``).
    """
    dim = check_positive_int(dim, "dim")
    block_width = check_positive_int(block_width, "block_width")
    check_tensor(particles, "particles", dim=3, shape=(None, None, 2 * dim * block_width), finite=True)
    depth, width = particles.shape[:2]
    u = particles[..., : dim * block_width].reshape(depth, width, dim, block_width).transpose(-1, -2)
    w = particles[..., dim * block_width :].reshape(depth, width, block_width, dim)
    z = torch.cat([u, w], -1).reshape(depth, width * block_width, 2 * dim)
    return z.transpose(-1, -2) @ z / (width * block_width)


def linear_resnet_training(
    moments: torch.Tensor,
    x: torch.Tensor,
    target: torch.Tensor,
    block_width: int,
    time: float,
    step: float,
    readout: torch.Tensor | None = None,
) -> dict:
    """Full-batch mean-field training of a linear ResNet (``sigma = id``) written on the unit moments.

    ``moments (..., L, 2 D, 2 D)``: the second moments ``S_l`` of the units of each layer
    (``linear_block_moments`` of a finite network, or the law's moments for infinite width; leading
    dimensions are independent networks trained on the same data). The network is
    ``x_{l+1} = (I + A_l / L) x_l``, ``A_l = k S_l[:D, D:]``, the loss ``E = mean_b |R x_L - y_b|^2 / 2``
    (``readout R``, default ``I``). A unit ``z = (u, w)`` of layer ``l`` moves with the velocity
    ``-L M dE/dz = -H_l z``, ``H_l = [[0, G_l], [G_l^T, 0]]``, ``G_l = sum_b p_{l+1, b} x_{l, b}^T``, so
    one Euler step ``z <- (I - h H_l) z`` is exactly ``S_l <- (I - h H_l) S_l (I - h H_l)^T``: for a
    finite network this reproduces ``mean_field_sgd`` on ``MeanFieldResNet`` (``activation="linear"``)
    to rounding, for every width; with the law's moments it is the infinite-width (mean-field)
    training at depth ``L``, ``O(L D^3)`` a step.

    Returns ``{"losses": (..., steps), "maps": (..., steps + 1, D, D), "moments": (..., L, 2 D, 2 D)}``:
    the loss before each step (as ``mean_field_sgd`` records it), the end-to-end map
    ``prod_l (I + A_l / L)`` before each step and after the last, and the final moments;
    ``round(time / step)`` steps.
    """
    check_tensor(moments, "moments", dtype="floating", finite=True, nonempty=True)
    if moments.dim() < 3 or moments.shape[-1] % 2 or moments.shape[-2] != moments.shape[-1]:
        raise ValueError(f"moments must have shape (..., L, 2 D, 2 D), got {tuple(moments.shape)}")
    depth, size = moments.shape[-3], moments.shape[-1]
    dim = size // 2
    block_width = check_positive_int(block_width, "block_width")
    check_tensor(x, "x", shape=(None, dim), dtype="floating", finite=True, nonempty=True)
    if readout is None:
        readout = torch.eye(dim, dtype=x.dtype, device=x.device)
    check_tensor(readout, "readout", shape=(None, dim), dtype="floating", finite=True, nonempty=True)
    check_tensor(target, "target", shape=(x.shape[0], readout.shape[0]), dtype="floating", finite=True)
    check_same_device(moments=moments, x=x, target=target, readout=readout)
    time = check_positive(time, "time", allow_zero=True)
    step = check_positive(step, "step")
    x, target, readout = (t.to(moments.dtype) for t in (x, target, readout))
    identity = torch.eye(dim, dtype=moments.dtype, device=moments.device)
    kick = torch.eye(size, dtype=moments.dtype, device=moments.device).expand(moments.shape).clone()
    batch = x.shape[0]
    probe = torch.cat([x, identity])  # the last D rows carry the end-to-end map: x_L(e_i) = T e_i
    losses, maps = [], []
    for _ in range(int(round(time / step))):
        layers = identity + _layer_maps(moments, block_width, depth)  # (..., L, D, D)
        states = [probe.expand(*moments.shape[:-3], *probe.shape)]
        for layer in range(depth):
            states.append(states[-1] @ layers[..., layer, :, :].transpose(-1, -2))
        maps.append(states[-1][..., batch:, :].transpose(-1, -2))
        residual = states[-1][..., :batch, :] @ readout.T - target
        losses.append(0.5 * (residual**2).sum(-1).mean(-1))
        adjoint = residual @ readout / batch  # rows p_L
        grads = [None] * depth
        for layer in reversed(range(depth)):
            grads[layer] = adjoint.transpose(-1, -2) @ states[layer][..., :batch, :]  # sum_b p_{l+1} x_l^T
            adjoint = adjoint @ layers[..., layer, :, :]  # p_l = (I + A_l / L)^T p_{l+1}
        grads = torch.stack(grads, -3)
        kick[..., :dim, dim:] = -step * grads
        kick[..., dim:, :dim] = -step * grads.transpose(-1, -2)
        moments = kick @ moments @ kick.transpose(-1, -2)
    maps.append(_end_to_end(identity + _layer_maps(moments, block_width, depth), identity))
    check_finite_result(moments, "linear ResNet training moments", hint="lower step or time")
    empty = moments.new_zeros(moments.shape[:-3] + (0,))
    return {
        "losses": torch.stack(losses, -1) if losses else empty,
        "maps": torch.stack(maps, -3),
        "moments": moments,
    }


def _layer_maps(moments, block_width, depth):
    dim = moments.shape[-1] // 2
    return block_width * moments[..., :dim, dim:] / depth


def _end_to_end(layers, identity):
    out = identity
    for layer in range(layers.shape[-3]):
        out = layers[..., layer, :, :] @ out
    return out
