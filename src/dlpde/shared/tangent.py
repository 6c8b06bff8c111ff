"""Empirical (finite-width) tangent kernels of any PyTorch model, through torch.func.

Shared by the threads (``dlpde.ntk`` re-exports them; ``dlpde.meanfield.coordinate_check`` uses
``empirical_ntk``).

A *model* is an ``nn.Module`` (its parameters are used unless ``params`` is given) or a function
``f(params, x)`` of a dict of tensors. Outputs are ``(N,)`` or ``(N, K)``. With ``J(x)`` the
Jacobian of the outputs at ``x`` with respect to all parameters:

    NTK   Theta(x, x')_{k l} = sum_p J(x)_{k p} J(x')_{l p}          (Jacot et al. 2018)
    NNGP  K(x, x')_{k l}     = f_k(x) f_l(x')                        (one draw of the prior)

``trace_outputs=True`` returns the mean over ``k = l`` (neural-tangents' ``trace_axes=(-1,)``),
an ``(N1, N2)`` matrix; ``False`` returns the full ``(N1 K, N2 K)`` matrix with row ``n K + k``
(the ordering of ``y.reshape(-1)`` for targets ``y`` of shape ``(N, K)``). Two methods (Novak et
al. 2022): ``"jacobian"`` contracts per-sample Jacobians (``vmap(jacrev)``), ``"ntk_vp"`` applies
``Theta`` to basis vectors as ``J(x1) (J(x2)^T v)`` (a VJP then a JVP) and never stores a
Jacobian; ``"structured"`` is a fast path that a thread registers for the models it builds
(``register_structured_path``; ``dlpde.ntk`` registers fully connected networks built from
``Dense`` and activation layers by ``build_network``): with ``delta_l = df/dz_l`` the backpropagated signal at
the pre-activations of dense layer ``l`` and ``h_{l-1}`` its input,

    Theta(x, x') = sum_l <delta_l(x), delta_l(x')> (c_l^2 <h_{l-1}(x), h_{l-1}(x')> + s_l^2)

(``c_l``, ``s_l`` the layer's weight and bias multipliers), which never forms a Jacobian of size
``P`` and costs ``N1 N2 K sum_l width_l`` instead of ``N1 N2 K P``. ``"auto"`` takes the
structured path when it applies, else the Jacobians when one block of them fits ``max_memory``
bytes, else NTK-vector products.
``batch_size`` splits both inputs into blocks, bounding the memory.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import func as tfunc
from torch import nn

from .checks import check_callable, check_tensor

__all__ = ["functional_model", "flatten_parameters", "empirical_ntk", "empirical_nngp",
           "ntk_vector_product", "register_structured_path"]

_METHODS = ("jacobian", "ntk_vp", "structured", "auto")
# Structured fast paths: finder(model, x) -> block(params, xa, xb, trace) or None when it does not apply.
_STRUCTURED_PATHS: list[Callable] = []


def register_structured_path(finder: Callable) -> Callable:
    """Register ``finder(model, x)``, which returns a function ``block(params, xa, xb,
    trace_outputs)`` computing an NTK block of ``model`` without Jacobians, or ``None`` when
    ``model`` is not of its kind; ``empirical_ntk(method="auto" | "structured")`` uses the first
    that applies. Returns ``finder`` (usable as a decorator)."""
    check_callable(finder, "finder")
    if finder not in _STRUCTURED_PATHS:
        _STRUCTURED_PATHS.append(finder)
    return finder


def _structured_path(model, x):
    for finder in _STRUCTURED_PATHS:
        block = finder(model, x)
        if block is not None:
            return block
    return None


def functional_model(model, params=None) -> tuple[Callable, dict]:
    """``(f, params)`` with ``f(params, x)`` pure: from an ``nn.Module`` (detached copies of its
    parameters unless ``params`` is given; buffers are held fixed) or a function with ``params``."""
    if isinstance(model, nn.Module):
        buffers = dict(model.named_buffers())
        if params is None:
            params = {k: v.detach() for k, v in model.named_parameters()}

        def f(p, x):
            return tfunc.functional_call(model, (p, buffers), (x,))

        return f, dict(params)
    if callable(model):
        if params is None:
            raise ValueError("params must be given when model is a function f(params, x)")
        if not isinstance(params, dict) or not all(isinstance(v, torch.Tensor) for v in params.values()):
            raise TypeError("params must be a dict of tensors")
        return model, dict(params)
    raise TypeError(f"model must be an nn.Module or a function f(params, x), got {type(model).__name__}")


def flatten_parameters(params: dict) -> torch.Tensor:
    """All parameters as one vector (in the dict's order): a non-empty dict of floating tensors of
    one dtype and device."""
    if not isinstance(params, dict) or not params:
        raise TypeError(f"params must be a non-empty dict of tensors, got {type(params).__name__}")
    for key, value in params.items():
        check_tensor(value, f"params[{key!r}]", nonempty=False, finite=False)
    if len({(v.dtype, v.device) for v in params.values()}) > 1:
        raise ValueError("params must share one dtype and device, got "
                         + ", ".join(f"{k}: {v.dtype} on {v.device}" for k, v in params.items()))
    return torch.cat([p.reshape(-1) for p in params.values()])


def _check_x(x, name, like=None):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, ...) with N >= 1, got {tuple(x.shape)}")
    if like is not None and (x.shape[1:] != like.shape[1:] or x.device != like.device):
        raise ValueError(f"{name} must match x1 in per-sample shape and device, got "
                         f"{tuple(x.shape)} on {x.device} vs {tuple(like.shape)} on {like.device}")


def _outputs_2d(f):
    """Wrap ``f`` so that its output is ``(N, K)``."""
    def g(p, x):
        out = f(p, x)
        if out.dim() == 1:
            return out.unsqueeze(-1)
        if out.dim() != 2:
            raise ValueError(f"model outputs must be (N,) or (N, K), got {tuple(out.shape)}")
        return out
    return g


def _per_sample_jacobian(f, params, x):
    """dict name -> ``(B, K, *param_shape)``."""
    def single(p, row):
        return f(p, row.unsqueeze(0)).squeeze(0)

    return tfunc.vmap(tfunc.jacrev(single), in_dims=(None, 0))(params, x)


def _contract(j1, j2, trace):
    total = None
    for name in j1:
        a = j1[name].flatten(2)
        b = j2[name].flatten(2)
        if trace:
            part = torch.einsum("nkp,mkp->nm", a, b) / a.shape[1]
        else:
            part = torch.einsum("nkp,mlp->nkml", a, b)
        total = part if total is None else total + part
    return total


def ntk_vector_product(model, x1: torch.Tensor, x2: torch.Tensor, vectors: torch.Tensor,
                       params=None) -> torch.Tensor:
    """``Theta(x1, x2) v = J(x1) (J(x2)^T v)`` without forming a Jacobian.

    ``vectors``: ``(N2, K)`` (one vector) or ``(V, N2, K)`` (a batch); returns ``(N1, K)`` or
    ``(V, N1, K)``.
    """
    f, params = functional_model(model, params)
    f = _outputs_2d(f)
    single = vectors.dim() == 2
    v = vectors.unsqueeze(0) if single else vectors
    _, pullback = tfunc.vjp(lambda p: f(p, x2), params)

    def apply(cotangent):
        (tangent,) = pullback(cotangent)
        return tfunc.jvp(lambda p: f(p, x1), (params,), (tangent,))[1]

    out = tfunc.vmap(apply)(v)
    return out[0] if single else out


def _ntk_block_vp(f, params, xa, xb, trace):
    """Block of the NTK by NTK-vector products with the basis vectors of the outputs at xb."""
    with torch.no_grad():
        k = f(params, xb[:1]).shape[-1]
    nb = xb.shape[0]
    eye = torch.eye(nb * k, dtype=xa.dtype, device=xa.device).reshape(nb * k, nb, k)
    if trace:  # only the k = l entries: basis vectors e_{m,l}, keep output l at xa
        _, pullback = tfunc.vjp(lambda p: f(p, xb), params)

        def apply(cotangent):
            (tangent,) = pullback(cotangent)
            return tfunc.jvp(lambda p: f(p, xa), (params,), (tangent,))[1]

        columns = tfunc.vmap(apply)(eye).reshape(nb, k, xa.shape[0], k)  # (m, l, n, k')
        diagonal = torch.diagonal(columns, dim1=1, dim2=3)  # (m, n, l)
        return diagonal.mean(-1).T
    columns = ntk_vector_product(lambda p, x: f(p, x), xa, xb, eye, params=params)  # (m l, n, k)
    return columns.reshape(nb * k, xa.shape[0] * k).T


def _resolve_method(method, model, params, batch, k, itemsize, max_memory, x):
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    structured = _structured_path(model, x)
    if method == "structured" and structured is None:
        raise ValueError("method='structured' needs a model with a structured path (fully connected "
                         "networks from dlpde.ntk.build_network) and (N, d) inputs")
    if method == "auto" and structured is not None:
        method = "structured"
    if method != "auto":
        return method, structured
    n_params = sum(p.numel() for p in params.values())
    return ("jacobian" if 2 * batch * k * n_params * itemsize <= max_memory else "ntk_vp"), None


def empirical_ntk(model, x1: torch.Tensor, x2: torch.Tensor | None = None, params=None,
                  method: str = "auto", trace_outputs: bool = True, batch_size: int | None = None,
                  max_memory: int = 2**30) -> torch.Tensor:
    """The empirical NTK ``Theta(x1, x2) = J(x1) J(x2)^T`` of a finite model.

    Args:
        model: ``nn.Module`` or ``f(params, x)``; outputs ``(N,)`` or ``(N, K)``.
        x1: ``(N1, *event)``; x2: ``(N2, *event)`` (default ``x1``; then only blocks on and above
            the diagonal are computed).
        params: dict of parameters (default: the module's).
        method: ``"jacobian"``, ``"ntk_vp"``, ``"structured"`` (models with a registered
            structured path: fully connected networks from ``dlpde.ntk.build_network``) or
            ``"auto"`` (structured when it applies, else Jacobians when the two Jacobian blocks,
            ``2 batch K P`` numbers, fit ``max_memory`` bytes, else ntk_vp).
        trace_outputs: ``True`` -> ``(N1, N2)`` mean over outputs; ``False`` -> ``(N1 K, N2 K)``.
        batch_size: rows of x1 and x2 per block (``None``: all at once).
    """
    _check_x(x1, "x1")
    symmetric = x2 is None
    if not symmetric:
        _check_x(x2, "x2", like=x1)
    x2 = x1 if symmetric else x2
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    original = model
    f, params = functional_model(model, params)
    f = _outputs_2d(f)
    with torch.no_grad():
        k = f(params, x1[:1]).shape[-1]
    b = batch_size or max(x1.shape[0], x2.shape[0])
    itemsize = torch.finfo(x1.dtype).bits // 8 if x1.is_floating_point() else 4
    method, structured = _resolve_method(method, original, params, b, k, itemsize, max_memory, x1)

    def block(i, j, jac_i=None):
        xa, xb = x1[i:i + b], x2[j:j + b]
        if method == "jacobian":
            ja = jac_i if jac_i is not None else _per_sample_jacobian(f, params, xa)
            jb = ja if (symmetric and i == j) else _per_sample_jacobian(f, params, xb)
            out = _contract(ja, jb, trace_outputs)
            return out if trace_outputs else out.reshape(xa.shape[0] * k, xb.shape[0] * k)
        if method == "structured":
            out = structured(params, xa, xa if (symmetric and i == j) else xb, trace_outputs)
            return out if trace_outputs else out.reshape(xa.shape[0] * k, xb.shape[0] * k)
        return _ntk_block_vp(f, params, xa, xb, trace_outputs)

    blocks = {}
    for i in range(0, x1.shape[0], b):
        jac_i = _per_sample_jacobian(f, params, x1[i:i + b]) if method == "jacobian" else None
        for j in range(0, x2.shape[0], b):
            blocks[i, j] = blocks[j, i].T if (symmetric and j < i) else block(i, j, jac_i)
    rows = [torch.cat([blocks[i, j] for j in range(0, x2.shape[0], b)], 1)
            for i in range(0, x1.shape[0], b)]
    return torch.cat(rows, 0)


def empirical_nngp(model, x1: torch.Tensor, x2: torch.Tensor | None = None, params=None,
                   trace_outputs: bool = True) -> torch.Tensor:
    """``f(x1) f(x2)^T`` of one finite network: ``(N1, N2)`` mean over outputs, or the full
    ``(N1 K, N2 K)``. Averaged over initialisations it converges to the analytic NNGP."""
    _check_x(x1, "x1")
    if x2 is not None:
        _check_x(x2, "x2", like=x1)
    f, params = functional_model(model, params)
    f = _outputs_2d(f)
    a = f(params, x1)
    b = a if x2 is None else f(params, x2)
    if trace_outputs:
        return a @ b.T / a.shape[1]
    return torch.einsum("nk,ml->nkml", a, b).reshape(a.numel(), b.numel())
