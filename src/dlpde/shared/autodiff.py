"""Derivatives of batched functions, written once.

Convention: a *batched scalar function* ``f`` maps ``x`` of shape ``(B, *event)`` to ``(B,)``,
and row ``b`` of the output depends on row ``b`` of the input only. A *batched vector field*
``v`` maps ``(B, *event)`` to ``(B, *event)`` with the same independence. Derivatives are taken
with respect to the event dimensions; ``D = prod(event)`` below.

- ``gradient``: reverse mode (``torch.autograd``), differentiable (``create_graph=True``).
- ``hessian_vector_product``: reverse-over-reverse.
- ``laplacian`` and ``divergence``: forward-over-reverse / forward mode through ``torch.func``
  (exact: ``D`` Jacobian-vector products; Hutchinson: ``n_samples`` of them with Rademacher
  probes, an unbiased estimate ``E[z^T H z] = tr H``). The results stay connected to the
  autograd graph of any parameters ``f`` closes over, so they can enter a training loss.
- ``jacobian``: per-sample Jacobians by ``torch.func.vmap(jacrev)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import func as tfunc
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from .checks import check_bool, check_callable, check_choice, check_positive_int, check_tensor

__all__ = ["gradient", "hessian_vector_product", "divergence", "laplacian", "jacobian"]


def _check_batched(x: torch.Tensor, name: str = "x") -> None:
    check_tensor(x, name, finite=False)
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (batch, *event) with at least 2 dims, got {tuple(x.shape)}")


def _requiring_grad(x: torch.Tensor) -> torch.Tensor:
    return x if x.requires_grad else x.detach().requires_grad_(True)


def _check_scalar_output(y: torch.Tensor, batch: int, what: str = "f") -> None:
    if y.shape != (batch,):
        raise ValueError(f"{what} must map (batch, *event) to (batch,), got output shape {tuple(y.shape)}")


def gradient(f: Callable, x: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """``grad_x f(x)`` for a batched scalar function; shape ``(B, *event)`` like ``x``.

    With ``create_graph=True`` (the default) the result can itself be differentiated, e.g. in a
    PDE-residual loss.
    """
    check_callable(f, "f")
    _check_batched(x)
    check_bool(create_graph, "create_graph")
    x = _requiring_grad(x)
    with torch.enable_grad():
        y = f(x)
        _check_scalar_output(y, x.shape[0])
        if not y.requires_grad:  # f does not depend on x
            return torch.zeros_like(x)
        (g,) = torch.autograd.grad(y.sum(), x, create_graph=create_graph, allow_unused=True,
                                   materialize_grads=True)
    return g


def hessian_vector_product(f: Callable, x: torch.Tensor, v: torch.Tensor, create_graph: bool = True):
    """``(Hess_x f)(x) v`` per batch row, shape ``(B, *event)``; ``v`` has the shape of ``x``."""
    check_callable(f, "f")
    _check_batched(x)
    check_tensor(v, "v", shape=tuple(x.shape), finite=False, nonempty=False)
    check_bool(create_graph, "create_graph")
    x = _requiring_grad(x)
    with torch.enable_grad():
        y = f(x)
        _check_scalar_output(y, x.shape[0])
        if not y.requires_grad:
            return torch.zeros_like(x)
        (g,) = torch.autograd.grad(y.sum(), x, create_graph=True, allow_unused=True, materialize_grads=True)
        if not g.requires_grad:  # f is linear in x
            return torch.zeros_like(x)
        (hv,) = torch.autograd.grad((g * v).sum(), x, create_graph=create_graph, allow_unused=True,
                                    materialize_grads=True)
    return hv


def _basis(x: torch.Tensor) -> torch.Tensor:
    """One-hot tangents, shape ``(D, B, *event)``; tangent ``i`` is ``e_i`` in every batch row."""
    dim = math.prod(x.shape[1:])
    eye = torch.eye(dim, dtype=x.dtype, device=x.device)
    return eye.reshape(dim, 1, *x.shape[1:]).expand(dim, *x.shape)


def _rademacher(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Rademacher probes drawn on the generator's device (a CPU generator gives the same probes
    whatever the device of ``like``), then moved to ``like``'s device and dtype."""
    device = generator.device if generator is not None else like.device
    bits = torch.randint(0, 2, shape, generator=generator, device=device)
    return (2 * bits - 1).to(device=like.device, dtype=like.dtype)


def _check_method(method: str, n_samples: int, methods=("exact", "hutchinson")) -> None:
    check_choice(method, "method", methods)
    check_positive_int(n_samples, "n_samples")


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _check_chunk(chunk_size) -> None:
    if chunk_size is not None:
        check_positive_int(chunk_size, "chunk_size")


def _trace_of_linear_map(apply: Callable, x: torch.Tensor, method: str, n_samples: int,
                         generator, chunk_size: int | None):
    """Return ``(tr J, primal)`` for ``apply(tangent) = (primal, J tangent)``."""
    batch_dims = tuple(range(1, x.dim()))
    if method == "exact":
        tangents = _basis(x)
    else:
        tangents = _rademacher((n_samples, *x.shape), x, generator)

    def contract(tangent):
        primal, jv = apply(tangent)
        if jv.shape != tangent.shape:
            raise ValueError(f"the map must send (batch, *event) to the same shape {tuple(x.shape)}, got "
                             f"{tuple(jv.shape)}")
        return primal, (jv * tangent).sum(dim=batch_dims)

    primals, traces = tfunc.vmap(contract, chunk_size=chunk_size)(tangents)
    total = traces.sum(0) if method == "exact" else traces.mean(0)
    return total, primals[0]


def divergence(v: Callable, x: torch.Tensor, method: str = "exact", n_samples: int = 1,
               generator: torch.Generator | None = None, chunk_size: int | None = None):
    """``div v(x) = sum_i d v_i / d x_i`` per batch row, shape ``(B,)``.

    ``method="exact"`` uses ``D`` forward-mode products; ``"hutchinson"`` the unbiased estimate
    ``mean_k z_k^T (Dv) z_k`` with ``n_samples`` Rademacher probes drawn from ``generator``.
    """
    check_callable(v, "v")
    _check_batched(x)
    _check_method(method, n_samples)
    _check_generator(generator)
    _check_chunk(chunk_size)

    def apply(tangent):
        return tfunc.jvp(v, (x,), (tangent,))

    div, _ = _trace_of_linear_map(apply, x, method, n_samples, generator, chunk_size)
    return div


def laplacian(f: Callable, x: torch.Tensor, method: str = "exact", n_samples: int = 1,
              generator: torch.Generator | None = None, return_gradient: bool = False,
              chunk_size: int | None = None):
    """``Lap f(x) = tr Hess f(x)`` per batch row, shape ``(B,)``.

    Methods:
    - ``"exact"``: forward-over-reverse, ``D`` Hessian-vector products vectorised by ``torch.func``
      (``f`` must be composable with ``torch.func``: no in-place ops on inputs, no ``.item()``).
    - ``"hutchinson"``: ``n_samples`` Hessian-vector products with Rademacher probes (unbiased,
      variance ``2 ||H||_F^2 - 2 sum_i H_ii^2`` per probe).
    - ``"forward"``: the forward Laplacian (Li et al., Nature Machine Intelligence 2024): one
      forward pass of ``Jet`` triples ``(value, gradient, Laplacian)`` through ``f``, with rules
      for linear layers, elementwise activations, sums, products, powers, norms, ``slogdet`` and
      the structural operations; no backward pass and no Hessian-vector products. An operation
      without a rule raises ``ForwardLaplacianError`` (a ``NotImplementedError``) instead of a
      wrong number; threads add rules with ``register_forward_rule``.

    ``return_gradient=True`` also returns ``grad f(x)`` (shape of ``x``), which every method
    computes anyway. ``chunk_size``: tangents per ``vmap`` chunk (exact, Hutchinson) or batch
    rows per forward pass (forward), to bound memory.
    """
    _check_batched(x)
    _check_method(method, n_samples, ("exact", "hutchinson", "forward"))
    check_callable(f, "f")
    _check_generator(generator)
    check_bool(return_gradient, "return_gradient")
    _check_chunk(chunk_size)
    if method == "forward":
        lap, grad = _forward_laplacian(f, x, chunk_size)
        return (lap, grad) if return_gradient else lap
    grad_f = tfunc.grad(lambda y: f(y).sum())

    def apply(tangent):
        return tfunc.jvp(grad_f, (x,), (tangent,))

    lap, grad = _trace_of_linear_map(apply, x, method, n_samples, generator, chunk_size)
    return (lap, grad) if return_gradient else lap


def jacobian(f: Callable, x: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Per-sample Jacobian of a batched map ``(B, *event) -> (B, *out)``: shape ``(B, *out, *event)``."""
    check_callable(f, "f")
    _check_batched(x)
    _check_chunk(chunk_size)

    def single(row):
        return f(row.unsqueeze(0)).squeeze(0)

    return tfunc.vmap(tfunc.jacrev(single), chunk_size=chunk_size)(x)


# -- forward Laplacian ---------------------------------------------------------------------------
class ForwardLaplacianError(NotImplementedError):
    """An operation that the forward Laplacian has no rule for (rather than a wrong number)."""


_FORWARD_RULES: dict = {}


def register_forward_rule(*functions):
    """Register ``rule(func, args, kwargs)`` as the forward-Laplacian rule of ``functions`` (torch
    functions or ``torch.Tensor`` methods). A rule receives the arguments with ``Jet`` inputs and
    returns the result built from ``Jet`` arithmetic (or from ``Jet(value, gradient, laplacian)``).
    Threads register rules for their own custom operations here; shared never imports them."""

    def decorate(rule):
        for function in functions:
            _FORWARD_RULES[function] = rule
        return rule

    return decorate


def _plain(t):
    return t._value if isinstance(t, Jet) else t


class Jet(torch.Tensor):
    """A tensor carrying its first derivatives and Laplacian with respect to ``D`` input coordinates.

    ``Jet`` *is* its value (a ``torch.Tensor`` subclass, so existing module code runs unchanged);
    ``jet.gradient`` has shape ``(D, *value.shape)`` (``d value / d x_k``) and ``jet.laplacian``
    the shape of the value (``sum_k d^2 value / d x_k^2``). Every torch operation on a ``Jet``
    goes through ``__torch_function__`` to a rule of the forward Laplacian (Li et al., Nature
    Machine Intelligence 2024): for ``h = W x + b``: ``grad h = W grad x``, ``Lap h = W Lap x``;
    for an elementwise ``y = s(h)``: ``grad y = s'(h) grad h``, ``Lap y = s''(h) |grad h|^2 + s'(h)
    Lap h``; for a product: ``Lap(a b) = b Lap a + a Lap b + 2 grad a . grad b``; for
    ``log|det A|`` with ``B = A^{-1}``: ``grad = tr(B grad A)``, ``Lap = tr(B Lap A) -
    sum_k tr((B d_k A)^2)``; structural and linear operations (indexing, reshapes, sums, means,
    concatenation) act on each part (the gradient through ``torch.func.vmap``). An operation
    without a rule raises ``ForwardLaplacianError``.
    """

    @staticmethod
    def __new__(cls, value: torch.Tensor, gradient: torch.Tensor, laplacian: torch.Tensor):
        with torch._C.DisableTorchFunctionSubclass():
            jet = value.as_subclass(cls)
        jet._value, jet.gradient, jet.laplacian = value, gradient, laplacian
        jet.is_input = False
        return jet

    def __init__(self, *args, **kwargs):
        pass

    def __repr__(self):
        return f"Jet(value={self._value!r}, coordinates={self.gradient.shape[0]})"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rule = _FORWARD_RULES.get(func)
        if rule is not None:
            return rule(func, args, kwargs)
        if getattr(func, "__name__", "") in _METADATA_NAMES:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*tree_map(_plain, args), **tree_map(_plain, kwargs))
        name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
        raise ForwardLaplacianError(
            f"the forward Laplacian has no rule for {name}; use method='exact' (or register a rule with "
            "dlpde.shared.autodiff.register_forward_rule)")


_METADATA_NAMES = {"dim", "size", "numel", "is_floating_point", "is_complex", "__len__", "ndimension",
                   "__get__", "nelement", "is_contiguous", "element_size", "get_device", "__format__",
                   "stride", "data_ptr", "__bool__", "__hash__"}


def _constant(t: torch.Tensor) -> torch.Tensor:
    """A constant's derivatives: zeros (floating tensors only; indices and masks stay as they are)."""
    return torch.zeros_like(t) if isinstance(t, torch.Tensor) and t.is_floating_point() else t


def _shift(dim):
    """A dimension of the value as a dimension of the gradient (which has ``D`` in front)."""
    return dim + 1 if dim >= 0 else dim


def _shift_dims(dim):
    return tuple(_shift(d) for d in dim) if isinstance(dim, (tuple, list)) else _shift(dim)


def _argument(args, kwargs, position, name, default=None):
    return args[position] if len(args) > position else kwargs.get(name, default)


def _sizes(args, start=1):
    rest = args[start:]
    if len(rest) == 1 and isinstance(rest[0], (tuple, list, torch.Size)):
        return tuple(rest[0])
    return tuple(rest)


def _fast_reduce(func, jet, args, kwargs):
    dim = _argument(args, kwargs, 1, "dim")
    keepdim = _argument(args, kwargs, 2, "keepdim", False)
    if dim is None or kwargs.get("dtype") is not None:
        return None
    return func(jet.gradient, _shift_dims(dim), keepdim)


def _fast_getitem(func, jet, args, kwargs):
    index = args[1] if isinstance(args[1], tuple) else (args[1],)
    advanced = [i for i, item in enumerate(index)
                if isinstance(item, (torch.Tensor, list, int)) and not isinstance(item, bool)]
    if any(isinstance(item, torch.Tensor) and item.dtype == torch.bool for item in index):
        return None
    if advanced and advanced[-1] - advanced[0] + 1 != len(advanced):
        return None  # separated advanced indices would move the D axis
    return jet.gradient[(slice(None), *index)]


def _fast_expand(func, jet, args, kwargs):
    sizes = _sizes(args)
    if len(sizes) != jet._value.dim():
        return None
    return jet.gradient.expand(jet.gradient.shape[0], *sizes)


_FAST_LINEAR = {
    torch.Tensor.unsqueeze: lambda f, j, a, k: j.gradient.unsqueeze(_shift(_argument(a, k, 1, "dim"))),
    torch.Tensor.squeeze: lambda f, j, a, k: (j.gradient.squeeze(_shift_dims(_argument(a, k, 1, "dim")))
                                              if _argument(a, k, 1, "dim") is not None else None),
    torch.Tensor.reshape: lambda f, j, a, k: j.gradient.reshape(j.gradient.shape[0], *_sizes(a)),
    torch.Tensor.view: lambda f, j, a, k: (j.gradient.reshape(j.gradient.shape[0], *_sizes(a))
                                           if not isinstance(a[1], torch.dtype) else None),
    torch.Tensor.flatten: lambda f, j, a, k: j.gradient.flatten(
        _shift(_argument(a, k, 1, "start_dim", 0)), _shift(_argument(a, k, 2, "end_dim", -1))),
    torch.Tensor.transpose: lambda f, j, a, k: j.gradient.transpose(_shift(a[1]), _shift(a[2])),
    torch.Tensor.narrow: lambda f, j, a, k: j.gradient.narrow(_shift(a[1]), a[2], a[3]),
    torch.Tensor.sum: _fast_reduce, torch.Tensor.mean: _fast_reduce,
    torch.Tensor.__getitem__: _fast_getitem, torch.Tensor.expand: _fast_expand,
    torch.Tensor.__neg__: lambda f, j, a, k: -j.gradient,
}


def _fast_concatenate(func, args, kwargs):
    tensors = list(args[0])
    dim = _argument(args, kwargs, 1, "dim", 0)
    jets = [t for t in tensors if isinstance(t, Jet)]
    count = jets[0].gradient.shape[0]
    value = func([_plain(t) for t in tensors], dim)
    lap = func([t.laplacian if isinstance(t, Jet) else torch.zeros_like(t) for t in tensors], dim)
    grads = [t.gradient if isinstance(t, Jet) else t.new_zeros(()).expand(count, *t.shape) for t in tensors]
    return Jet(value, func(grads, _shift(dim)), lap)


def _linear_rule(func, args, kwargs):
    """Operations affine in their ``Jet`` arguments, constants entering the value only."""
    fast = _FAST_LINEAR.get(func)
    if fast is not None and isinstance(args[0], Jet):
        grad = fast(func, args[0], args, kwargs)
        if grad is not None:
            jet = args[0]
            rest = args[1:]
            return Jet(func(jet._value, *rest, **kwargs), grad, func(jet.laplacian, *rest, **kwargs))
    if func in (torch.cat, torch.concat, torch.stack) and not kwargs.get("out") and \
            all(isinstance(t, torch.Tensor) for t in args[0]):
        return _fast_concatenate(func, args, kwargs)
    leaves, spec = tree_flatten((args, kwargs))
    jets = [i for i, leaf in enumerate(leaves) if isinstance(leaf, Jet)]

    def call(replace):
        new = [replace(i, leaf) for i, leaf in enumerate(leaves)]
        a, k = tree_unflatten(new, spec)
        return func(*a, **k)

    value = call(lambda i, leaf: _plain(leaf))
    lap = call(lambda i, leaf: leaf.laplacian if isinstance(leaf, Jet) else _constant(leaf))

    def tangent(*grads):
        lookup = dict(zip(jets, grads))
        return call(lambda i, leaf: lookup[i] if i in lookup else _constant(leaf))

    grad = tfunc.vmap(tangent)(*[leaves[i].gradient for i in jets])
    if isinstance(value, (tuple, list)):
        return type(value)(Jet(v, g, la) for v, g, la in zip(value, grad, lap))
    return Jet(value, grad, lap)


_LINEAR_FUNCTIONS = [
    torch.Tensor.__getitem__, torch.Tensor.unsqueeze, torch.unsqueeze, torch.Tensor.squeeze, torch.squeeze,
    torch.Tensor.reshape, torch.reshape, torch.Tensor.view, torch.Tensor.flatten, torch.flatten,
    torch.Tensor.transpose, torch.transpose, torch.Tensor.permute, torch.permute, torch.Tensor.expand,
    torch.Tensor.expand_as, torch.Tensor.narrow, torch.narrow, torch.cat, torch.concat, torch.stack,
    torch.Tensor.sum, torch.sum, torch.Tensor.mean, torch.mean, torch.Tensor.contiguous, torch.Tensor.clone,
    torch.clone, torch.Tensor.movedim, torch.movedim, torch.Tensor.diagonal, torch.diagonal,
    torch.Tensor.select, torch.select, torch.Tensor.index_select, torch.index_select, torch.Tensor.unbind,
    torch.unbind, torch.Tensor.split, torch.split, torch.Tensor.chunk, torch.Tensor.mT.__get__,
    torch.Tensor.T.__get__, torch.Tensor.triu, torch.triu, torch.Tensor.tril, torch.tril, torch.where,
    torch.Tensor.repeat, torch.Tensor.roll, torch.roll, torch.Tensor.to, torch.Tensor.flip, torch.flip,
    torch.Tensor.__neg__, torch.neg, torch.Tensor.neg, torch.Tensor.take_along_dim, torch.take_along_dim,
    torch.Tensor.gather, torch.gather,
]
register_forward_rule(*_LINEAR_FUNCTIONS)(_linear_rule)


def _sub_rank(jet: Jet, rank: int) -> torch.Tensor:
    """The gradient ``(D, *shape)`` viewed with ``rank - jet.dim()`` leading ones after ``D`` so that it
    broadcasts like the value against tensors of ``rank`` dimensions."""
    g = jet.gradient
    extra = rank - jet._value.dim()
    return g.reshape(g.shape[0], *([1] * extra), *g.shape[1:]) if extra > 0 else g


def _rank(*ts) -> int:
    return max(_plain(t).dim() if isinstance(t, torch.Tensor) else 0 for t in ts)


def _add(a, b, sign: float = 1.0):
    if not isinstance(b, Jet):
        value = a._value + sign * b
        return _broadcast(value, _sub_rank(a, value.dim()), a.laplacian)
    if not isinstance(a, Jet):
        value = a + sign * b._value
        return _broadcast(value, sign * _sub_rank(b, value.dim()), sign * b.laplacian)
    rank = _rank(a, b)
    return _broadcast(a._value + sign * b._value, _sub_rank(a, rank) + sign * _sub_rank(b, rank),
                      a.laplacian + sign * b.laplacian)


def _broadcast(value: torch.Tensor, grad: torch.Tensor, lap: torch.Tensor) -> Jet:
    """A ``Jet`` whose gradient and Laplacian are expanded to the value's (broadcast) shape."""
    shape = tuple(value.shape)
    if tuple(grad.shape[1:]) != shape:
        grad = grad.expand(grad.shape[0], *shape)
    if tuple(lap.shape) != shape:
        lap = lap.expand(shape)
    return Jet(value, grad, lap)


def _mul(a, b):
    if not isinstance(a, Jet):
        a, b = b, a
    if not isinstance(b, Jet):
        rank = _rank(a, b)
        return Jet(a._value * b, _sub_rank(a, rank) * b, a.laplacian * b)
    rank = _rank(a, b)
    ga, gb = _sub_rank(a, rank), _sub_rank(b, rank)
    cross = (ga * gb).sum(0) if ga.shape != gb.shape else torch.einsum("k...,k...->...", ga, gb)
    return Jet(a._value * b._value, ga * b._value + a._value * gb,
               a.laplacian * b._value + a._value * b.laplacian + 2 * cross)


def _elementwise(jet: Jet, value, first, second) -> Jet:
    """``s(h)`` from ``value = s(h)``, ``first = s'(h)``, ``second = s''(h)``."""
    g = jet.gradient
    return Jet(value, first * g, second * torch.einsum("k...,k...->...", g, g) + first * jet.laplacian)


def _reciprocal(b: Jet) -> Jet:
    r = 1.0 / b._value
    return _elementwise(b, r, -r * r, 2 * r * r * r)


def _pow(a, exponent):
    if isinstance(exponent, Jet):
        raise ForwardLaplacianError("the forward Laplacian supports powers with constant exponents only")
    if not isinstance(a, Jet):
        raise ForwardLaplacianError("the forward Laplacian does not support c ** x")
    h = a._value
    if isinstance(exponent, (int, float)) and exponent == 2:
        return _elementwise(a, h * h, 2 * h, torch.full_like(h, 2.0))
    return _elementwise(a, h**exponent, exponent * h ** (exponent - 1),
                        exponent * (exponent - 1) * h ** (exponent - 2))


@register_forward_rule(torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__)
def _add_rule(func, args, kwargs):
    a, b = args[0], args[1]
    alpha = kwargs.get("alpha", 1)
    return _add(a, b if alpha == 1 else b * alpha)


@register_forward_rule(torch.sub, torch.Tensor.sub, torch.Tensor.__sub__)
def _sub_rule(func, args, kwargs):
    return _add(args[0], args[1], -1.0)


@register_forward_rule(torch.Tensor.__rsub__, torch.rsub)
def _rsub_rule(func, args, kwargs):
    return _add(args[1], args[0], -1.0)


@register_forward_rule(torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__)
def _mul_rule(func, args, kwargs):
    return _mul(args[0], args[1])


@register_forward_rule(torch.div, torch.Tensor.div, torch.Tensor.__truediv__, torch.true_divide)
def _div_rule(func, args, kwargs):
    a, b = args[0], args[1]
    if kwargs.get("rounding_mode") is not None:
        raise ForwardLaplacianError("the forward Laplacian does not support rounded division")
    if not isinstance(b, Jet):
        return _mul(a, 1.0 / b)
    return _mul(a, _reciprocal(b))


@register_forward_rule(torch.Tensor.__rtruediv__)
def _rdiv_rule(func, args, kwargs):
    return _mul(args[1], _reciprocal(args[0]))


@register_forward_rule(torch.pow, torch.Tensor.pow, torch.Tensor.__pow__)
def _pow_rule(func, args, kwargs):
    return _pow(args[0], args[1])


@register_forward_rule(torch.square, torch.Tensor.square)
def _square_rule(func, args, kwargs):
    return _pow(args[0], 2)


def _unary(derivatives):
    def rule(func, args, kwargs):
        (jet,) = args[:1]
        value, first, second = derivatives(jet._value, *args[1:], **kwargs)
        return _elementwise(jet, value, first, second)

    return rule


def _tanh(h):
    t = torch.tanh(h)
    return t, 1 - t * t, -2 * t * (1 - t * t)


def _exp(h):
    e = torch.exp(h)
    return e, e, e


def _log(h):
    r = 1.0 / h
    return torch.log(h), r, -r * r


def _log1p(h):
    r = 1.0 / (1 + h)
    return torch.log1p(h), r, -r * r


def _sqrt(h):
    s = torch.sqrt(h)
    return s, 0.5 / s, -0.25 / (s * h)


def _abs(h):
    return torch.abs(h), torch.sign(h), torch.zeros_like(h)


def _sigmoid(h):
    s = torch.sigmoid(h)
    return s, s * (1 - s), s * (1 - s) * (1 - 2 * s)


def _silu(h, inplace=False):
    s = torch.sigmoid(h)
    first = s * (1 + h * (1 - s))
    return h * s, first, s * (1 - s) * (2 + h * (1 - 2 * s))


def _softplus(h, beta=1.0, threshold=20.0):
    s = torch.sigmoid(beta * h)
    return torch.nn.functional.softplus(h, beta, threshold), s, beta * s * (1 - s)


def _sin(h):
    return torch.sin(h), torch.cos(h), -torch.sin(h)


def _cos(h):
    return torch.cos(h), -torch.sin(h), -torch.cos(h)


def _reciprocal_value(h):
    r = 1.0 / h
    return r, -r * r, 2 * r * r * r


def _gelu(h, approximate="none"):
    if approximate != "none":
        raise ForwardLaplacianError("the forward Laplacian supports the exact GELU only")
    density = torch.exp(-0.5 * h * h) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + torch.erf(h / math.sqrt(2)))
    return h * cdf, cdf + h * density, density * (2 - h * h)


for _functions, _derivatives in (
        ((torch.tanh, torch.Tensor.tanh, torch.nn.functional.tanh), _tanh),
        ((torch.exp, torch.Tensor.exp), _exp), ((torch.log, torch.Tensor.log), _log),
        ((torch.log1p, torch.Tensor.log1p), _log1p), ((torch.sqrt, torch.Tensor.sqrt), _sqrt),
        ((torch.abs, torch.Tensor.abs, torch.Tensor.__abs__), _abs),
        ((torch.sigmoid, torch.Tensor.sigmoid, torch.nn.functional.sigmoid), _sigmoid),
        ((torch.nn.functional.silu,), _silu), ((torch.nn.functional.softplus,), _softplus),
        ((torch.sin, torch.Tensor.sin), _sin), ((torch.cos, torch.Tensor.cos), _cos),
        ((torch.reciprocal, torch.Tensor.reciprocal), _reciprocal_value),
        ((torch.nn.functional.gelu,), _gelu)):
    register_forward_rule(*_functions)(_unary(_derivatives))


@register_forward_rule(torch.sign, torch.Tensor.sign, torch.Tensor.detach, torch.detach,
                       torch.zeros_like, torch.ones_like, torch.full_like, torch.empty_like,
                       torch.isfinite, torch.isnan, torch.Tensor.__eq__, torch.Tensor.__ne__,
                       torch.Tensor.__lt__, torch.Tensor.__le__, torch.Tensor.__gt__, torch.Tensor.__ge__,
                       torch.Tensor.argmax, torch.argmax, torch.Tensor.argmin, torch.argmin)
def _constant_rule(func, args, kwargs):
    """Piecewise-constant functions and constructors: plain tensors (zero derivatives)."""
    return func(*tree_map(_plain, args), **tree_map(_plain, kwargs))


@register_forward_rule(torch.nn.functional.linear)
def _linear_layer_rule(func, args, kwargs):
    x, weight = args[0], args[1]
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    if isinstance(weight, Jet) or isinstance(bias, Jet):
        raise ForwardLaplacianError("the forward Laplacian needs constant Linear weights")
    return Jet(torch.nn.functional.linear(x._value, weight, bias), x.gradient @ weight.T,
               x.laplacian @ weight.T)


@register_forward_rule(torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__)
def _matmul_rule(func, args, kwargs):
    a, b = args[0], args[1]
    if isinstance(b, Jet) and not isinstance(a, Jet):
        return Jet(a @ b._value, tfunc.vmap(lambda g: a @ g)(b.gradient), a @ b.laplacian)
    if not isinstance(b, Jet):
        return Jet(a._value @ b, a.gradient @ b, a.laplacian @ b)
    ga, gb = a.gradient, b.gradient
    cross = tfunc.vmap(torch.matmul)(ga, gb).sum(0)
    return Jet(a._value @ b._value, ga @ b._value + a._value @ gb,
               a.laplacian @ b._value + a._value @ b.laplacian + 2 * cross)


@register_forward_rule(torch.Tensor.prod, torch.prod)
def _prod_rule(func, args, kwargs):
    jet = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    if dim is None:
        jet, dim = jet.reshape(-1), 0
    factors = jet.unbind(dim)
    result = factors[0]
    for factor in factors[1:]:
        result = result * factor
    return result.unsqueeze(dim) if keepdim else result


@register_forward_rule(torch.Tensor.amax, torch.amax)
def _amax_rule(func, args, kwargs):
    jet = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    if not isinstance(dim, int):
        raise ForwardLaplacianError("the forward Laplacian supports amax over one dimension")
    index = jet._value.argmax(dim, keepdim=True)
    picked = jet.take_along_dim(index, dim)
    return picked if keepdim else picked.squeeze(dim)


@register_forward_rule(torch.linalg.vector_norm, torch.norm, torch.Tensor.norm)
def _norm_rule(func, args, kwargs):
    jet = args[0]
    order = args[1] if len(args) > 1 else kwargs.get("ord", kwargs.get("p", 2))
    dim = args[2] if len(args) > 2 else kwargs.get("dim")
    keepdim = args[3] if len(args) > 3 else kwargs.get("keepdim", False)
    if order not in (2, 2.0, "fro") or kwargs.get("dtype") is not None:
        raise ForwardLaplacianError("the forward Laplacian supports the Euclidean norm only")
    return torch.sqrt((jet * jet).sum(dim, keepdim=keepdim) if dim is not None else (jet * jet).sum())


@register_forward_rule(torch.linalg.slogdet, torch.slogdet, torch.Tensor.slogdet)
def _slogdet_rule(func, args, kwargs):
    """``log|det A|``: ``grad_k = tr(B d_k A)``, ``Lap = tr(B Lap A) - sum_k tr((B d_k A)^2)``."""
    a = args[0]
    sign, log_abs = torch.linalg.slogdet(a._value)
    inverse = torch.linalg.inv(a._value)
    transposed = inverse.transpose(-1, -2)
    products = inverse @ a.gradient  # (D, ..., n, n): B d_k A
    grad = (transposed * a.gradient).sum((-1, -2))
    second = (products * products.transpose(-1, -2)).sum((-1, -2)).sum(0)
    lap = (transposed * a.laplacian).sum((-1, -2)) - second
    return torch.return_types.slogdet((sign, Jet(log_abs, grad, lap)))


def _forward_laplacian(f: Callable, x: torch.Tensor, chunk_size: int | None):
    """``(Lap f, grad f)`` by one forward pass of ``Jet``s through ``f`` (``chunk_size`` rows at a time)."""
    if chunk_size is not None and chunk_size < x.shape[0]:
        parts = [_forward_laplacian(f, chunk, None) for chunk in x.split(chunk_size)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    x = x.detach()
    tangents = _basis(x)
    jet = Jet(x, tangents, torch.zeros_like(x))
    jet.is_input = True  # gradient = identity, Laplacian = 0: group_mean may go local
    out = f(jet)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (x.shape[0],):
        raise ValueError(f"f must map (batch, *event) to (batch,), got {type(out).__name__} "
                         f"{tuple(getattr(out, 'shape', ()))}")
    if not isinstance(out, Jet):  # f does not depend on x
        return torch.zeros_like(out), torch.zeros_like(x)
    grad = out.gradient.transpose(0, 1).reshape(x.shape)
    return out.laplacian, grad


def group_mean(fn: Callable, x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """``mean_g fn(x[:, groups])[:, g]``: the mean over groups of particles of a function that acts on
    each group separately, shape ``(B, *F)``.

    ``x``: positions ``(B, N, d)``; ``groups``: particle indices ``(G, k)`` (``k = 1``: one-body,
    ``k = 2``: pairs); ``fn`` maps ``(B, G, k, d)`` to ``(B, G, *F)``, output ``g`` depending on the
    positions of group ``g`` only. On a plain tensor this is exactly ``fn(x[:, groups]).mean(1)``.
    Inside the forward Laplacian (``x`` the input ``Jet``) each group's derivatives are carried
    with respect to its own ``k d`` coordinates only (LapNet's sparsity: ``N d / (k d)`` times less
    work than dense gradients) and scattered into the ``N d`` coordinates after the mean; the
    Laplacian of the mean is the mean of the groups' local Laplacians.
    """
    if not (isinstance(x, Jet) and getattr(x, "is_input", False)):
        return fn(x[:, groups]).mean(1)
    value = x._value
    batch, n, d = value.shape
    n_groups, k = groups.shape
    local = value[:, groups]  # (B, G, k, d)
    basis = torch.eye(k * d, dtype=value.dtype, device=value.device).reshape(k * d, 1, 1, k, d)
    out = fn(Jet(local, basis.expand(k * d, batch, n_groups, k, d), torch.zeros_like(local)))
    if not isinstance(out, Jet):
        return out.mean(1)
    features = out._value.shape[2:]
    local_grad = (out.gradient / n_groups).reshape(k, d, batch, n_groups, *features)
    dense = local_grad.new_zeros(n, d, batch, *features)
    for member in range(k):
        dense.index_add_(0, groups[:, member], local_grad[member].movedim(2, 0))
    return Jet(out._value.mean(1), dense.reshape(n * d, batch, *features), out.laplacian.mean(1))
