"""Diagnostics of training in the lazy and feature-learning regimes, and the neural tangent
hierarchy around the lazy limit.

- ``relative_kernel_drift``: ``|K_t - K_0|_F / |K_0|_F``;
- ``relative_weight_movement``: ``|w_t - w_0| / |w_0|``;
- ``linearization_distance``: ``|f_t - f^lin_t| / |f^lin_t|`` on the same points;
- ``kernel_target_alignment``: ``y^T K y / (|K|_F |y|^2)`` (Cristianini et al. 2002);
- ``kernel_velocity``: ``dTheta/dt`` under gradient flow, exactly, by a JVP of the empirical
  NTK along the gradient-flow velocity ``dw/dt = -s (1/N) J(X)^T (f(X) - y)``;
- ``third_order_kernel``: ``T(a, b, c) = J_b^T H_a J_c`` (``H_a`` the parameter Hessian of the
  output at ``x_a``), whence the level-3 kernel ``Theta_3(a, b, c) = T(a, b, c) + T(b, a, c)`` of
  the neural tangent hierarchy (Huang & Yau 2020; Dyer & Gur-Ari 2020);
- ``perturbative_dynamics``: gradient descent in function space with the NTK frozen (lazy;
  identical to training the linearised model) and with ``Theta_3`` frozen (the hierarchy
  truncated at level 3: the first-order correction in ``1/alpha``).
"""

from __future__ import annotations

import torch
from torch import func as tfunc

from dlpde.shared import check_finite_result, check_same_device, check_tensor
from dlpde.shared.tangent import _outputs_2d, _per_sample_jacobian, empirical_ntk, functional_model

__all__ = [
    "relative_kernel_drift", "relative_weight_movement", "linearization_distance",
    "kernel_target_alignment", "kernel_velocity", "third_order_kernel", "perturbative_dynamics",
]


def _nonzero_norm(value: torch.Tensor, name: str) -> torch.Tensor:
    norm = torch.linalg.norm(value)
    if not bool(norm > 0):
        raise ValueError(f"{name} must not be zero (the ratio is relative to its norm)")
    return norm


def _finite_ratio(ratio: torch.Tensor, what: str) -> float:
    check_finite_result(ratio, what, hint="the inputs overflow the dtype; rescale them")
    return float(ratio)


def relative_kernel_drift(kernel_t: torch.Tensor, kernel_0: torch.Tensor) -> float:
    """``|K_t - K_0|_F / |K_0|_F`` for kernels of one shape ``(N1, N2)``; ``K_0`` nonzero."""
    check_tensor(kernel_t, "kernel_t", dim=2)
    check_tensor(kernel_0, "kernel_0", dim=2)
    check_same_device(kernel_t=kernel_t, kernel_0=kernel_0)
    if kernel_t.shape != kernel_0.shape:
        raise ValueError(f"kernels differ in shape: {tuple(kernel_t.shape)} vs {tuple(kernel_0.shape)}")
    norm = _nonzero_norm(kernel_0, "kernel_0")
    return _finite_ratio(torch.linalg.norm(kernel_t - kernel_0) / norm, "relative kernel drift")


def _check_params(params, name: str) -> dict:
    if not isinstance(params, dict) or not params:
        raise TypeError(f"{name} must be a non-empty dict of tensors, got {type(params).__name__}")
    for key, value in params.items():
        check_tensor(value, f"{name}[{key!r}]", nonempty=False)
    return params


def relative_weight_movement(params_t: dict, params_0: dict) -> float:
    """``|w_t - w_0| / |w_0|`` over all parameters (dicts of tensors, same names and shapes;
    ``w_0`` nonzero)."""
    _check_params(params_t, "params_t")
    _check_params(params_0, "params_0")
    if params_t.keys() != params_0.keys():
        raise ValueError("params_t and params_0 must have the same names")
    for k in params_0:
        if params_t[k].shape != params_0[k].shape:
            raise ValueError(f"params_t[{k!r}] has shape {tuple(params_t[k].shape)}, params_0[{k!r}] "
                             f"{tuple(params_0[k].shape)}")
        check_same_device(params_t=params_t[k], params_0=params_0[k])
    moved = sum(float(((params_t[k] - params_0[k]).double() ** 2).sum()) for k in params_0)
    size = sum(float((params_0[k].double() ** 2).sum()) for k in params_0)
    if not size > 0:
        raise ValueError("params_0 must not be all zero (the movement is relative to |w_0|)")
    return _finite_ratio(torch.tensor((moved / size) ** 0.5), "relative weight movement")


def linearization_distance(outputs: torch.Tensor, linear_outputs: torch.Tensor) -> float:
    """``|f - f_lin| / |f_lin|`` (Euclidean norms over all given outputs); 0 when the two agree
    exactly (so at initialisation, where both are zero), else ``f_lin`` must be nonzero."""
    check_tensor(outputs, "outputs")
    check_tensor(linear_outputs, "linear_outputs")
    check_same_device(outputs=outputs, linear_outputs=linear_outputs)
    if outputs.shape != linear_outputs.shape:
        raise ValueError(f"outputs and linear_outputs must have the same shape, got {tuple(outputs.shape)} "
                         f"and {tuple(linear_outputs.shape)}")
    difference = torch.linalg.norm(outputs - linear_outputs)
    if not bool(difference > 0):
        return 0.0
    norm = _nonzero_norm(linear_outputs, "linear_outputs")
    return _finite_ratio(difference / norm, "linearization distance")


def kernel_target_alignment(kernel: torch.Tensor, y: torch.Tensor) -> float:
    """``A(K, y) = y^T K y / (|K|_F |y|^2)`` in ``[-1, 1]`` (1: K is proportional to ``y y^T``);
    for ``y (N, K)`` the columns are summed: ``tr(Y^T K Y) / (|K|_F |Y|_F^2)``. ``kernel`` is
    ``(N, N)``, ``y`` ``(N,)`` or ``(N, K)``, both nonzero."""
    check_tensor(kernel, "kernel", dim=2)
    n = kernel.shape[0]
    if kernel.shape[1] != n:
        raise ValueError(f"kernel must be square (N, N), got {tuple(kernel.shape)}")
    check_tensor(y, "y", dim=(1, 2))
    check_same_device(kernel=kernel, y=y)
    if y.shape[0] != n:
        raise ValueError(f"y must have {n} rows (one per kernel row), got shape {tuple(y.shape)}")
    y = y.reshape(n, -1).to(kernel.dtype)
    norm = _nonzero_norm(kernel, "kernel") * _nonzero_norm(y, "y") ** 2
    return _finite_ratio(torch.einsum("ik,ij,jk->", y, kernel, y) / norm, "kernel-target alignment")


def _gradient_flow_velocity(f, params, x_train, y_train, loss_scale):
    outputs = f(params, x_train)
    residual = (outputs - y_train.reshape(outputs.shape)).detach()
    _, pullback = tfunc.vjp(lambda p: f(p, x_train), params)
    (velocity,) = pullback(-loss_scale * residual / residual.numel())
    return velocity


def kernel_velocity(model, x_train: torch.Tensor, y_train: torch.Tensor, x1: torch.Tensor | None = None,
                    x2: torch.Tensor | None = None, params=None, loss_scale: float = 1.0,
                    trace_outputs: bool = True) -> torch.Tensor:
    """Exact ``dTheta(x1, x2)/dt`` at the current parameters for gradient flow on
    ``L = (s/2N) sum (f(X) - y)^2`` (``s = loss_scale``, ``N = y.numel()``):

        dTheta/dt = D_w Theta [dw/dt],   dw/dt = -(s/N) J(X)^T (f(X) - y),

    a forward-mode derivative (JVP) of the empirical NTK along the velocity, so no finite
    difference. ``x1`` defaults to ``x_train``, ``x2`` to ``x1``. For ``AlphaScaled`` models
    ``loss_scale = 1/alpha^2``. Shape as ``empirical_ntk``.
    """
    f, params = functional_model(model, params)
    f = _outputs_2d(f)
    x1 = x_train if x1 is None else x1
    velocity = _gradient_flow_velocity(f, params, x_train, y_train, loss_scale)

    def kernel(p):
        return empirical_ntk(f, x1, x2, params=p, method="jacobian", trace_outputs=trace_outputs)

    return tfunc.jvp(kernel, (params,), (velocity,))[1]


def _flat_jacobian(f, params, x):
    jac = _per_sample_jacobian(f, params, x)
    return torch.cat([j.reshape(x.shape[0], -1) for j in jac.values()], 1)  # scalar outputs


def third_order_kernel(model, x_points: torch.Tensor, x_train: torch.Tensor, params=None,
                       chunk_size: int = 16) -> torch.Tensor:
    """``T[a, b, c] = J(x_b)^T H(x_a) J(x_c)`` for ``a, b`` in ``x_points`` and ``c`` in
    ``x_train``, shape ``(P, P, N)``, for models with one output. ``H(x_a)`` is the Hessian of
    the output in the parameters; ``H(x_a) J(x_c)`` is a JVP of the Jacobian (forward over
    reverse), done ``chunk_size`` training points at a time.

    The level-3 kernel of the hierarchy is ``Theta_3(a, b, c) = T[a, b, c] + T[b, a, c]`` and
    ``dTheta(a, b)/dt = -(1/N) sum_c Theta_3(a, b, c) (f(x_c) - y_c)`` under gradient flow.
    """
    f, params = functional_model(model, params)
    f = _outputs_2d(f)
    with torch.no_grad():
        if f(params, x_points[:1]).shape[-1] != 1:
            raise ValueError("third_order_kernel supports models with one output")
    jac_points = _flat_jacobian(f, params, x_points)  # (P, n_params)
    tangents = {k: v.squeeze(1) for k, v in _per_sample_jacobian(f, params, x_train).items()}

    def hessian_times(tangent):
        return tfunc.jvp(lambda p: _flat_jacobian(f, p, x_points), (params,), (tangent,))[1]

    pieces = []
    for start in range(0, x_train.shape[0], chunk_size):
        chunk = {k: v[start:start + chunk_size] for k, v in tangents.items()}
        hj = tfunc.vmap(hessian_times)(chunk)  # (c, a, n_params)
        pieces.append(torch.einsum("cap,bp->abc", hj, jac_points))
    return torch.cat(pieces, 2)


def perturbative_dynamics(model, x_train: torch.Tensor, y_train: torch.Tensor, steps: int,
                          learning_rate: float, alpha: float = 1.0, x_test: torch.Tensor | None = None,
                          params=None, record_every: int = 1) -> dict:
    """Outputs of the alpha-scaled model ``g = alpha (f(w) - f(w_0))`` trained by gradient descent
    on ``(1/(2 N alpha^2)) sum (g(X) - y)^2``, predicted in function space around the lazy limit.

    With ``r = g(X) - y`` and step ``eta``, on train points then test points ``a``:

        lazy:      g(a) <- g(a) - (eta/N) sum_c Theta(a, c) r_c,  Theta frozen at w_0
                   (exactly the linearised model trained by the same gradient descent);
        corrected: the same plus (eta^2 / (2 alpha N^2)) sum_{c,d} r_c r_d T(a, c, d), and
                   Theta(a, b) <- Theta(a, b) - (eta / (alpha N)) sum_c r_c Theta_3(a, b, c),
                   Theta_3 frozen at w_0 (neural tangent hierarchy truncated at level 3; the
                   ``eta^2`` term is the discrete-step counterpart of the Hessian, so the result
                   matches gradient descent, not only gradient flow, to first order in 1/alpha).

    The network's deviation from ``lazy`` is O(1/alpha); from ``corrected``, O(1/alpha^2).
    Returns ``{"steps": (R,), "lazy": (R, P), "corrected": (R, P)}`` with ``P`` = train points
    followed by test points, recorded every ``record_every`` steps and at the end.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    f, params = functional_model(model, params)
    points = x_train if x_test is None else torch.cat([x_train, x_test])
    n = x_train.shape[0]
    ntk = empirical_ntk(f, points, x_train, params=params, method="jacobian").detach()  # (P, n)
    t = third_order_kernel(f, points, x_train, params=params).detach()  # (P, P, n)
    theta3_train = t[:, :n, :] + t[:n, :, :].transpose(0, 1)  # (P, n, n): Theta_3(a, b, c), b in train
    t_train = t[:, :n, :]  # T(a, c, d), c, d in train
    y = y_train.reshape(n).to(ntk)
    lazy = torch.zeros(points.shape[0], dtype=ntk.dtype, device=ntk.device)
    corrected, theta = lazy.clone(), ntk.clone()
    recorded_steps, lazy_rows, corrected_rows = [], [], []
    for step in range(steps + 1):
        if step % record_every == 0 or step == steps:
            recorded_steps.append(step)
            lazy_rows.append(lazy.clone())
            corrected_rows.append(corrected.clone())
        if step == steps:
            break
        r_lazy = lazy[:n] - y
        lazy = lazy - learning_rate / n * (ntk @ r_lazy)
        r = corrected[:n] - y
        second = torch.einsum("acd,c,d->a", t_train, r, r)
        corrected = (corrected - learning_rate / n * (theta @ r)
                     + learning_rate**2 / (2 * alpha * n * n) * second)
        theta = theta - learning_rate / (alpha * n) * torch.einsum("abc,c->ab", theta3_train, r)
    return {"steps": torch.tensor(recorded_steps), "lazy": torch.stack(lazy_rows),
            "corrected": torch.stack(corrected_rows)}
