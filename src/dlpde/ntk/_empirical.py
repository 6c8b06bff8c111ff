"""Taylor models and Monte Carlo kernels of finite networks, and the structured NTK fast path of
fully connected networks built by ``build_network``.

The empirical kernels themselves (``empirical_ntk``, ``empirical_nngp``, ``ntk_vector_product``,
``functional_model``, ``flatten_parameters``) live in ``dlpde.shared.tangent``, shared by the
threads, and are re-exported here. ``"structured"`` (registered below): with ``delta_l = df/dz_l``
the backpropagated signal at the pre-activations of dense layer ``l`` and ``h_{l-1}`` its input,

    Theta(x, x') = sum_l <delta_l(x), delta_l(x')> (c_l^2 <h_{l-1}(x), h_{l-1}(x')> + s_l^2)

(``c_l``, ``s_l`` the layer's weight and bias multipliers), which never forms a Jacobian of size
``P`` and costs ``N1 N2 K sum_l width_l`` instead of ``N1 N2 K P``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import func as tfunc

from dlpde.shared import (
    check_choice,
    check_finite_result,
    check_int,
    check_positive_int,
    check_same_device,
    check_tensor,
)
from dlpde.shared.tangent import (
    _METHODS,
    empirical_nngp,
    empirical_ntk,
    flatten_parameters,
    functional_model,
    ntk_vector_product,
    register_structured_path,
)

__all__ = [
    "functional_model", "empirical_ntk", "empirical_nngp", "ntk_vector_product", "linearize",
    "second_order_taylor", "flatten_parameters", "monte_carlo_kernel",
]


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


@register_structured_path
def _fully_connected_path(model, x):
    """The structured block of a fully connected ``build_network`` model on ``(N, d)`` inputs."""
    layers = _dense_layers(model) if isinstance(x, torch.Tensor) and x.dim() == 2 else None
    if layers is None:
        return None
    return lambda params, xa, xb, trace: _structured_block(layers, params, xa, xb, trace)


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


def _replayable(template, seed) -> bool:
    """Whether ``build_network`` drew the parameters of ``template`` (from ``seed``) as consecutive
    float64 standard normal draws of the seed's CPU generator, one per parameter in the order of
    ``named_parameters``, cast to their dtype (what ``Dense`` and ``Conv`` do in the NTK
    parameterisation), and the network has no buffers: checked bit for bit on the template, after
    which any network of the spec is drawn without building its modules (``_replay_parameters``)."""
    from dlpde.shared import make_generator

    if any(True for _ in template.buffers()):
        return False
    generator = make_generator(seed, "cpu")
    for p in template.parameters():
        draw = torch.randn(p.shape, generator=generator, dtype=torch.float64)
        if not torch.equal(draw.to(dtype=p.dtype, device=p.device), p.detach()):
            return False
    return True


def _replay_parameters(template, seeds) -> dict:
    """The stacked parameters ``{name: (len(seeds), *shape)}`` of the networks ``build_network``
    draws from ``seeds`` (for a ``template`` where ``_replayable`` holds): the same draws, without
    building modules (a CPU generator per seed, as ``make_generator``)."""
    named = list(template.named_parameters())
    cpu64 = all(v.dtype == torch.float64 and v.device.type == "cpu" for _, v in named)
    stacked = {k: torch.empty((len(seeds), *v.shape), dtype=torch.float64 if cpu64 else v.dtype)
               for k, v in named}
    generator = torch.Generator(device="cpu")
    for i, seed in enumerate(seeds):
        generator.manual_seed(seed)
        for k, v in named:
            if cpu64:
                torch.randn(v.shape, generator=generator, dtype=torch.float64, out=stacked[k][i])
            else:
                stacked[k][i].copy_(torch.randn(v.shape, generator=generator, dtype=torch.float64))
    return {k: value.to(template.get_parameter(k).device) for k, value in stacked.items()}


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
    parameters (``torch.func.vmap``; default ``2^19 / parameters`` networks, clamped to [1, 256]).
    Where every parameter is a unit normal draw (the NTK parameterisation of ``Dense`` and
    ``Conv``; checked bit for bit on the first network), the parameters of the others are drawn
    from their seeds directly, in the same order, without building their modules, which cost ~1
    ms each; otherwise each network is built. Each kernel is accumulated in float64 (running mean
    and sum of squared deviations, merged batch by batch as Chan et al.'s update of Welford's), so
    the memory is ``sample_batch`` networks and kernels plus ``O(N1 N2)`` whatever ``n_samples``;
    float32 inputs evaluate float32 networks (the same draws, rounded) with float64 accumulation.
    Measured on 2 shared CPU cores (``get="ntk"``, 6 inputs, width 8 / 64): depth-2 FC 8500 /
    1600 networks/s in float64 (1400 / 550 before the direct draws and batch merges), depth-2 1-D
    CNN 4900 / 560 in float32 (810 / 210).
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
    done, template, replay, seeds = 0, None, None, None

    def draw(seed):
        return build_network(spec, tuple(x1.shape[1:]), seed, x1.dtype, x1.device)

    while done < n_samples:
        if template is None:
            first = spawn_seed(generator)
            template = draw(first)
            with torch.no_grad():
                probe = template(x1[:1])
            if probe.dim() not in (1, 2):
                raise ValueError("the network's outputs must be (N,) or (N, K), got "
                                 f"{tuple(probe.shape)}: end the spec with a readout (e.g. GlobalAvgPool() "
                                 "or Flatten(), then Dense)")
            if sample_batch is None:
                size = sum(p.numel() for p in template.parameters())
                sample_batch = min(256, max(1, 2**19 // max(size, 1)))
            replay = _replayable(template, first)
            f, _ = functional_model(template)
            seeds = [first]
        count = min(sample_batch, n_samples - done)
        seeds += [spawn_seed(generator) for _ in range(count - len(seeds))]
        if replay:
            stacked = _replay_parameters(template, seeds)
        else:
            stacked, _ = tfunc.stack_module_state([draw(s) for s in seeds])
            stacked = {k: v.detach() for k, v in stacked.items()}
        seeds = []
        for name in names:
            if name == "nngp":
                with torch.no_grad():
                    values = tfunc.vmap(lambda p: nngp_of(f, p))(stacked)
            else:
                values = tfunc.vmap(lambda p: empirical_ntk(template, x1, x2, params=p, method=method,
                                                            batch_size=batch_size))(stacked).detach()
            # merge the batch's mean and sum of squared deviations into the running ones (Chan et
            # al.'s pairwise update of Welford's, in float64)
            values = values.double()
            batch_mean = values.mean(0)
            delta = batch_mean - mean[name]
            total = done + count
            mean[name] += delta * (count / total)
            squares[name] += (values - batch_mean).square().sum(0) + delta.square() * (done * count / total)
        done += count
    result = {"n_samples": n_samples}
    for name in names:
        check_finite_result(mean[name], f"Monte Carlo {name}", hint="the networks overflow; rescale x1")
        result[name] = mean[name].to(x1.dtype)
        result[f"{name}_standard_error"] = (squares[name] / ((n_samples - 1) * n_samples)).sqrt().to(x1.dtype)
    return result
