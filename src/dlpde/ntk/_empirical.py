"""Empirical (finite-width) kernels and Taylor models of any PyTorch model, through torch.func.

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
Jacobian; ``"structured"`` is the fully connected fast path (networks built from ``Dense`` and
activation layers by ``build_network``): with ``delta_l = df/dz_l`` the backpropagated signal at
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

from dlpde.shared import (
    check_choice,
    check_finite_result,
    check_int,
    check_positive_int,
    check_same_device,
    check_tensor,
)

__all__ = [
    "functional_model", "empirical_ntk", "empirical_nngp", "ntk_vector_product", "linearize",
    "second_order_taylor", "flatten_parameters", "monte_carlo_kernel",
]

_METHODS = ("jacobian", "ntk_vp", "structured", "auto")


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


def _dense_layers(model):
    """The layers of a fully connected network built by ``build_network`` (else ``None``)."""
    from ._spec import _ActivationModule, _DenseModule, _SerialModule

    if not isinstance(model, _SerialModule):
        return None
    layers = list(model.layers)
    if not all(isinstance(m, (_DenseModule, _ActivationModule)) for m in layers):
        return None
    return layers if any(isinstance(m, _DenseModule) for m in layers) else None


def _structured_block(layers, params, xa, xb, trace):
    """Fully connected NTK block from backpropagated signals and layer inputs (see module doc)."""
    from ._spec import _DenseModule

    dense = [i for i, m in enumerate(layers) if isinstance(m, _DenseModule)]

    def forward(x, probes):
        h, inputs = x, []
        for i, module in enumerate(layers):
            if i in dense:
                inputs.append(h)
                z = module.scale * (params[f"layers.{i}.weight"] @ h)
                if module.bias is not None:
                    z = z + module.bias_scale * params[f"layers.{i}.bias"]
                h = z + probes[dense.index(i)]
            else:
                h = module.function(h)
        return h, inputs

    def signals(x):
        zeros = tuple(x.new_zeros(params[f"layers.{i}.weight"].shape[0]) for i in dense)
        deltas = tfunc.jacrev(lambda p: forward(x, p)[0])(zeros)  # per layer (K, width)
        return deltas, forward(x, zeros)[1]

    deltas_a, inputs_a = tfunc.vmap(signals)(xa)
    deltas_b, inputs_b = (deltas_a, inputs_a) if xb is xa else tfunc.vmap(signals)(xb)
    total = None
    for j, i in enumerate(dense):
        module = layers[i]
        gram = module.scale**2 * inputs_a[j] @ inputs_b[j].T
        if module.bias is not None:
            gram = gram + module.bias_scale**2
        if trace:
            part = torch.einsum("nkw,mkw->nm", deltas_a[j], deltas_b[j]) / deltas_a[j].shape[1] * gram
        else:
            part = torch.einsum("nkw,mlw->nkml", deltas_a[j], deltas_b[j]) * gram[:, None, :, None]
        total = part if total is None else total + part
    return total


def _resolve_method(method, model, params, batch, k, itemsize, max_memory, x):
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    structured = x.dim() == 2 and _dense_layers(model) is not None
    if method == "structured" and not structured:
        raise ValueError("method='structured' needs a fully connected network from build_network "
                         "and (N, d) inputs")
    if method != "auto":
        return method
    if structured:
        return "structured"
    n_params = sum(p.numel() for p in params.values())
    return "jacobian" if 2 * batch * k * n_params * itemsize <= max_memory else "ntk_vp"


def empirical_ntk(model, x1: torch.Tensor, x2: torch.Tensor | None = None, params=None,
                  method: str = "auto", trace_outputs: bool = True, batch_size: int | None = None,
                  max_memory: int = 2**30) -> torch.Tensor:
    """The empirical NTK ``Theta(x1, x2) = J(x1) J(x2)^T`` of a finite model.

    Args:
        model: ``nn.Module`` or ``f(params, x)``; outputs ``(N,)`` or ``(N, K)``.
        x1: ``(N1, *event)``; x2: ``(N2, *event)`` (default ``x1``; then only blocks on and above
            the diagonal are computed).
        params: dict of parameters (default: the module's).
        method: ``"jacobian"``, ``"ntk_vp"``, ``"structured"`` (fully connected networks from
            ``build_network``) or ``"auto"`` (structured when it applies, else Jacobians when the
            two Jacobian blocks, ``2 batch K P`` numbers, fit ``max_memory`` bytes, else ntk_vp).
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
    method = _resolve_method(method, original, params, b, k, itemsize, max_memory, x1)

    def block(i, j, jac_i=None):
        xa, xb = x1[i:i + b], x2[j:j + b]
        if method == "jacobian":
            ja = jac_i if jac_i is not None else _per_sample_jacobian(f, params, xa)
            jb = ja if (symmetric and i == j) else _per_sample_jacobian(f, params, xb)
            out = _contract(ja, jb, trace_outputs)
            return out if trace_outputs else out.reshape(xa.shape[0] * k, xb.shape[0] * k)
        if method == "structured":
            out = _structured_block(_dense_layers(original), params, xa, xa if (symmetric and i == j) else xb,
                                    trace_outputs)
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


def _difference(params, params0):
    if params.keys() != params0.keys():
        raise ValueError("params and params0 must have the same names")
    return {k: params[k] - params0[k] for k in params0}


def linearize(model, params0=None) -> Callable:
    """The first-order Taylor model around ``params0`` (Lee et al. 2019):

        f_lin(params, x) = f(params0, x) + J(params0, x) (params - params0),

    a function ``f_lin(params, x)`` computed by one JVP (differentiable in ``params``)."""
    f, params0 = functional_model(model, params0)
    params0 = {k: v.detach() for k, v in params0.items()}

    def f_lin(params, x):
        out, tangent_out = tfunc.jvp(lambda p: f(p, x), (params0,), (_difference(params, params0),))
        return out + tangent_out

    return f_lin


def second_order_taylor(model, params0=None) -> Callable:
    """The second-order Taylor model around ``params0`` (Dyer & Gur-Ari 2020):

        f_2(params, x) = f(params0, x) + J dp + (1/2) dp^T H(params0, x) dp,  dp = params - params0,

    by a JVP nested in a JVP (forward over forward)."""
    f, params0 = functional_model(model, params0)
    params0 = {k: v.detach() for k, v in params0.items()}

    def f_2(params, x):
        delta = _difference(params, params0)

        def directional(p):
            return tfunc.jvp(lambda q: f(q, x), (p,), (delta,))[1]

        first, second = tfunc.jvp(directional, (params0,), (delta,))
        return f(params0, x) + first + 0.5 * second

    return f_2


def _kernel_names(get) -> tuple[str, ...]:
    names = (get,) if isinstance(get, str) else get
    if not isinstance(names, (tuple, list)) or not names:
        raise TypeError(f"get must be 'nngp', 'ntk' or a tuple of them, got {get!r}")
    for name in names:
        check_choice(name, "get entry", ("nngp", "ntk"))
    if len(set(names)) != len(names):
        raise ValueError(f"get must not repeat a kernel, got {get!r}")
    return tuple(names)


def monte_carlo_kernel(spec, x1: torch.Tensor, x2: torch.Tensor | None = None, n_samples: int = 64,
                       seed: int | torch.Generator = 0, get: str | tuple = ("nngp", "ntk"),
                       batch_size: int | None = None, method: str = "auto",
                       sample_batch: int | None = None) -> dict:
    """Monte Carlo estimate of the infinite-width kernels of ``spec`` from finite networks
    (neural-tangents' ``monte_carlo_kernel_fn``): the empirical NNGP ``f(x1) f(x2)^T / K`` and
    NTK ``J(x1) J(x2)^T / K`` (means over the ``K`` outputs) averaged over ``n_samples``
    independently initialised networks built by ``build_network(spec, ...)``.

    The networks are drawn from seeds spawned from ``seed`` (network ``s`` is the same whatever
    ``sample_batch``) and evaluated ``sample_batch`` at a time, vectorised over their stacked
    parameters (``torch.func.vmap``; default ``2^17 / parameters`` networks, clamped to [1, 64]:
    vectorising pays where the per-network overhead dominates, measured 6-8x faster at width
    32, and not for large networks, 1.6x slower at width 512). Each kernel is accumulated in
    float64 (running mean and sum of squared deviations, Welford), so the memory is
    ``sample_batch`` networks and kernels plus ``O(N1 N2)`` whatever ``n_samples``.
    ``batch_size`` blocks the inputs (rows of ``x1`` and ``x2`` per NTK block and per forward
    pass); ``method`` is ``empirical_ntk``'s. At finite width the mean differs from
    ``analytic_kernels`` by ``O(1/width)`` (what ``ntk.convergence`` measures) plus the Monte
    Carlo error.

    Returns ``{"nngp": (N1, N2), "nngp_standard_error": (N1, N2), "ntk": ..., "ntk_standard_error":
    ..., "n_samples": n_samples}`` (the kernels in ``get``) in the dtype of ``x1``; the standard
    error is ``std / sqrt(n_samples)`` entry by entry (unbiased ``std``).
    """
    from dlpde.shared import make_generator, spawn_seed

    from ._spec import Layer, build_network

    layers = spec if isinstance(spec, (list, tuple)) else [spec]
    if not layers or not all(isinstance(layer, Layer) for layer in layers):
        raise TypeError(f"spec must be a Layer or a non-empty list of layers, got {type(spec).__name__}")
    check_tensor(x1, "x1", dim=(2, 3, 4))
    if x2 is not None:
        check_tensor(x2, "x2", dim=x1.dim())
        if x2.shape[1:] != x1.shape[1:] or x2.dtype != x1.dtype:
            raise ValueError(f"x2 must match x1 in per-sample shape and dtype: {tuple(x2.shape)} {x2.dtype} "
                             f"vs {tuple(x1.shape)} {x1.dtype}")
        check_same_device(x1=x1, x2=x2)
    n_samples = check_int(n_samples, "n_samples", minimum=2)
    names = _kernel_names(get)
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    check_choice(method, "method", _METHODS)
    if sample_batch is not None:
        sample_batch = check_positive_int(sample_batch, "sample_batch")
    generator = make_generator(seed, "cpu")
    xb = x1 if x2 is None else x2
    chunk = batch_size or max(x1.shape[0], xb.shape[0])

    def nngp_of(f, p):
        def outputs(x):
            out = torch.cat([f(p, x[i:i + chunk]) for i in range(0, x.shape[0], chunk)])
            return out.reshape(out.shape[0], -1)

        a = outputs(x1)
        b = a if x2 is None else outputs(x2)
        return a @ b.T / a.shape[1]

    mean = {name: torch.zeros(x1.shape[0], xb.shape[0], dtype=torch.float64, device=x1.device)
            for name in names}
    squares = {name: torch.zeros_like(value) for name, value in mean.items()}
    done = 0
    def draw():
        return build_network(spec, tuple(x1.shape[1:]), spawn_seed(generator), x1.dtype, x1.device)

    while done < n_samples:
        nets = [draw()]
        if sample_batch is None:
            size = sum(p.numel() for p in nets[0].parameters())
            sample_batch = min(64, max(1, 2**17 // max(size, 1)))
        nets += [draw() for _ in range(min(sample_batch, n_samples - done) - 1)]
        with torch.no_grad():
            probe = nets[0](x1[:1])
        if probe.dim() not in (1, 2):
            raise ValueError(f"the network's outputs must be (N,) or (N, K), got {tuple(probe.shape)}: end "
                             "the spec with a readout (e.g. GlobalAvgPool() or Flatten(), then Dense)")
        stacked, _ = tfunc.stack_module_state(nets)
        stacked = {k: v.detach() for k, v in stacked.items()}
        f, _ = functional_model(nets[0])
        for name in names:
            if name == "nngp":
                with torch.no_grad():
                    values = tfunc.vmap(lambda p: nngp_of(f, p))(stacked)
            else:
                values = tfunc.vmap(lambda p: empirical_ntk(nets[0], x1, x2, params=p, method=method,
                                                            batch_size=batch_size))(stacked).detach()
            for i, value in enumerate(values.double()):
                delta = value - mean[name]
                mean[name] += delta / (done + i + 1)
                squares[name] += delta * (value - mean[name])
        done += len(nets)
    result = {"n_samples": n_samples}
    for name in names:
        check_finite_result(mean[name], f"Monte Carlo {name}", hint="the networks overflow; rescale x1")
        result[name] = mean[name].to(x1.dtype)
        result[f"{name}_standard_error"] = (squares[name] / ((n_samples - 1) * n_samples)).sqrt().to(x1.dtype)
    return result
