"""A small network-description language, mirroring neural-tangents' ``stax``.

One description gives three things:

- ``analytic_kernels(spec, x1, x2)``: the infinite-width NNGP and NTK (Neal 1996; Lee et al. 2018;
  Jacot et al. 2018; Arora et al. 2019 for convolutions), computed layer by layer;
- ``build_network(spec, input_shape, seed)``: the finite PyTorch network whose kernels converge
  to those as the widths grow;
- ``to_stax(spec)``: the equivalent neural-tangents model (for cross-checks).

Layers: ``Dense``, ``Conv`` (1-D/2-D, 'SAME'/'VALID'/'CIRCULAR'); activations with closed-form
kernels ``Relu``, ``LeakyRelu``, ``ABRelu``, ``Abs``, ``Sign``, ``Erf``, ``Sigmoid_like``, ``Gelu``,
``Sin``, ``Cos``, ``Rbf``, ``Exp``, ``Gaussian``, ``Hermite``; ``Elementwise`` (any activation,
Gauss-Hermite quadrature; ``ElementwiseNumerical`` is the same layer under neural-tangents' name);
``LayerNorm``, ``Dropout`` (inference); ``AvgPool``, ``SumPool``, ``GlobalAvgPool``,
``GlobalSumPool``, ``Flatten``, ``Identity``, ``FanOut``/``Parallel``/``FanInSum`` (residual
blocks; also ``FanInProd``, ``FanInConcat``), ``ConvTranspose``, ``ConvLocal``,
``GlobalSelfAttention``, composed with ``Serial``.

Conventions (those of neural-tangents): inputs are ``(N, d)`` for fully connected networks and
``(N, C, *spatial)`` (channels first) for convolutional ones; the input kernel is
``K_0(x, x')[s, s'] = sum_c x_c(s) x'_c(s') / C``. NTK parameterisation: ``z = (W_std /
sqrt(fan_in)) W h + b_std b`` with ``W, b ~ N(0, 1)``; standard parameterisation: ``z = W h + b``
with ``W ~ N(0, W_std^2 / fan_in)``, ``b ~ N(0, b_std^2)``. Recursions
(Dense, NTK parameterisation):

    Sigma_out = W_std^2 Sigma_in + b_std^2,      Theta_out = W_std^2 Theta_in + Sigma_out,

activation phi: ``Sigma_out = E[phi(u) phi(v)]``, ``Theta_out = E[phi'(u) phi'(v)] Theta_in``
with ``(u, v)`` centred Gaussian of covariance ``[[Sigma(x,x), Sigma(x,x')], [., Sigma(x',x')]]``.
Kernels of spatial layers carry both positions: ``(*batch, *spatial, *spatial)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from dlpde.shared import (
    check_callable,
    check_choice,
    check_int,
    check_positive,
    check_positive_int,
    check_probability,
    check_real,
    check_tensor,
    make_generator,
)

__all__ = [
    "Layer", "Dense", "Conv", "ConvTranspose", "ConvLocal", "Relu", "LeakyRelu", "ABRelu", "Abs", "Sign",
    "Erf", "Sigmoid_like", "Gelu", "Sin", "Cos", "Rbf", "Exp", "Gaussian", "Hermite", "Elementwise",
    "ElementwiseNumerical", "LayerNorm", "Dropout", "AvgPool", "SumPool", "GlobalAvgPool", "GlobalSumPool",
    "Flatten", "Identity", "FanOut", "Parallel", "FanInSum", "FanInProd", "FanInConcat", "Serial",
    "GlobalSelfAttention", "analytic_kernels", "build_network", "to_stax",
]

Padding = Literal["SAME", "VALID", "CIRCULAR"]
Parameterization = Literal["ntk", "standard"]


# --------------------------------------------------------------------------------------------
# Kernel state carried through the layers
# --------------------------------------------------------------------------------------------
class _Tape:
    """The variances ``Sigma(x, x)[s, s]`` met by the elementwise layers, in the order met.

    The kernels are computed in two passes. Pass 1 runs the spec on the self kernels
    ``K(x_i, x_i)`` (batch ``(N,)``, ``record``) and keeps the diagonal variances each
    elementwise layer needs, so they are computed once for all inputs. Pass 2 runs the spec on
    each block of pairs ``K(x1_i, x2_j)`` (batch ``(n1, n2)``) and ``replay``s them, sliced to the
    block's rows and columns."""

    def __init__(self, first: list, second: list | None = None, rows=None, cols=None):
        self.first, self.second = first, first if second is None else second
        self.rows, self.cols = rows, cols
        self.position = 0

    def record(self, variance: torch.Tensor) -> None:
        self.first.append(variance)

    def replay(self) -> tuple[torch.Tensor, torch.Tensor]:
        i = self.position
        self.position += 1
        return self.first[i][self.rows], self.second[i][self.cols]


@dataclasses.dataclass
class _State:
    """NNGP and NTK of a set of input pairs, shape ``(*batch, *spatial, *spatial)``.

    ``pairs``: a block of cross pairs (batch ``(n1, n2)``) or self pairs (batch ``(n,)``).
    ``ntk is None`` means the NTK is identically zero (before the first affine layer), or not
    wanted (``track_ntk`` False). The tensors belong to the state: layers update them in place.
    ``channels`` is the current number of channels of the finite network (used by the standard
    parameterisation). ``gaussian``: the pre-activations are Gaussian in the limit (after an
    affine layer and linear ones; not after an activation), as ``LayerNorm`` needs."""

    nngp: torch.Tensor
    ntk: torch.Tensor | None
    spatial: tuple[int, ...]
    channels: int
    pairs: bool
    tape: _Tape
    track_ntk: bool = True
    gaussian: bool = False

    def replace(self, **changes) -> _State:
        return dataclasses.replace(self, **changes)

    def copy(self) -> _State:
        return self.replace(nngp=self.nngp.clone(), ntk=None if self.ntk is None else self.ntk.clone())


def _variances(state: _State) -> tuple[torch.Tensor, torch.Tensor]:
    """``(var_left, var_right)``: ``Sigma(x, x)[s, s]`` and ``Sigma(x', x')[s', s']`` shaped to
    broadcast against ``state.nngp``; computed from the self block (pass 1, recorded) or replayed
    from the tape (pass 2)."""
    d = len(state.spatial)
    ones = (1,) * d
    if state.pairs:
        var1, var2 = state.tape.replay()
        if state.tape.rows == state.tape.cols and state.tape.second is state.tape.first:
            # a block on the diagonal of K(x, x): its pairs (i, i) take the recorded variances
            # exactly, so rho = 1 there (the self and cross recursions round differently, and
            # the arc-cosine step amplifies a difference delta near rho = 1 to sqrt(delta))
            n, size = var1.shape[0], math.prod(state.spatial)
            same = torch.diagonal(state.nngp.view(n, n, size, size), dim1=0, dim2=1)
            torch.diagonal(same, dim1=0, dim2=1).copy_(var1.reshape(n, size))
        return (var1.reshape(var1.shape[0], 1, *state.spatial, *ones),
                var2.reshape(1, var2.shape[0], *ones, *state.spatial))
    size = math.prod(state.spatial)
    n = state.nngp.shape[0]
    flat = state.nngp.reshape(n, size, size)
    var = torch.diagonal(flat, dim1=1, dim2=2).reshape(n, *state.spatial).clone()
    state.tape.record(var)
    return var.reshape(n, *state.spatial, *ones), var.reshape(n, *ones, *state.spatial)


def _spatial_op(state: _State, op: Callable, spatial, channels=None) -> _State:
    """A linear operation ``op(tensor) -> tensor`` applied to the NNGP and the NTK."""
    return state.replace(nngp=op(state.nngp), ntk=None if state.ntk is None else op(state.ntk),
                         spatial=tuple(spatial), channels=state.channels if channels is None else channels)


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------
class Layer:
    """A layer of the description language.

    ``kernel(state)`` maps the kernels of its input to those of its output;
    ``build(in_shape, generator, dtype, device) -> (module, out_shape)`` makes the finite layer
    (``in_shape`` excludes the batch: ``(d,)`` or ``(C, *spatial)``); ``to_stax(stax)`` returns
    the neural-tangents layer.
    """

    def kernel(self, state):  # pragma: no cover - interface
        raise NotImplementedError

    def build(self, in_shape, generator, dtype, device):  # pragma: no cover - interface
        raise NotImplementedError

    def to_stax(self, stax):  # pragma: no cover - interface
        raise NotImplementedError


def _set_real(layer, field, name, **bounds):
    """Check a real field of a frozen layer with ``check_real`` and store it as a float."""
    object.__setattr__(layer, field, check_real(getattr(layer, field), name, **bounds))


def _check_std(layer, field, name, allow_none=False):
    if getattr(layer, field) is None and allow_none:
        return
    _set_real(layer, field, name, minimum=0.0)


def _check_parameterization(value):
    check_choice(value, "parameterization", ("ntk", "standard"))


def _normal(shape, generator, dtype, device, std=1.0):
    # drawn on the generator's device in float64, so a seed gives the same network everywhere
    values = torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device)
    return (std * values).to(device=device, dtype=dtype)


class _AffineModule(nn.Module):
    """Shared by dense and convolutional layers: ``scale * op(x, W) + bias_scale * b``."""

    def __init__(self, weight, bias, scale, bias_scale):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)
        self.scale = scale
        self.bias_scale = bias_scale

    def _add_bias(self, z):
        if self.bias is None:
            return z
        return z + self.bias_scale * self.bias.reshape(1, -1, *([1] * (z.dim() - 2)))


class _DenseModule(_AffineModule):
    def forward(self, x):
        if x.dim() == 2:
            z = x @ self.weight.T
        else:  # acts on the channel axis of (N, C, *spatial)
            z = torch.einsum("oc,nc...->no...", self.weight, x)
        return self._add_bias(self.scale * z)


def _affine_update(state, layer, base, base_ntk, fan_in, scale, spatial, channels):
    """Kernels after an affine layer (dense or convolution), in place on ``base``/``base_ntk``
    (the sums over the layer's taps of the input NNGP/NTK, owned by the caller):
    ``Sigma' = W_std^2 scale base + b_std^2``; NTK ``Theta' = W_std^2 scale base_ntk + Sigma'``
    (ntk parameterisation) or ``fan_in scale base + W_std^2 scale base_ntk + [bias] 1``
    (standard)."""
    w2, b2 = layer.W_std**2 * scale, (layer.b_std or 0.0) ** 2
    ntk = None
    if state.track_ntk and layer.parameterization == "standard":
        ntk = base.mul(fan_in * scale)
        if base_ntk is not None:
            ntk.add_(base_ntk, alpha=w2)
        if layer.b_std is not None:
            ntk.add_(1.0)
    if w2 != 1.0:
        base.mul_(w2)
    if b2 != 0.0:
        base.add_(b2)
    if state.track_ntk and layer.parameterization == "ntk":
        if base_ntk is None:
            ntk = base.clone()
        else:
            ntk = base_ntk.mul_(w2).add_(base) if w2 != 1.0 else base_ntk.add_(base)
    return state.replace(nngp=base, ntk=ntk, spatial=tuple(spatial), channels=channels, gaussian=True)


@dataclasses.dataclass(frozen=True)
class Dense(Layer):
    """Fully connected layer with ``out_dim`` outputs (acts on channels of spatial inputs).

    NTK parameterisation: ``z = (W_std / sqrt(n_in)) W h + b_std b``; standard:
    ``z = W h + b`` with ``W ~ N(0, W_std^2 / n_in)``, ``b ~ N(0, b_std^2)``. ``b_std=None``: no
    bias. Kernels: ``Sigma' = W_std^2 Sigma + b_std^2``; NTK ``Theta' = W_std^2 Theta + Sigma'``
    (ntk) or ``n_in Sigma + W_std^2 Theta + [bias] 1`` (standard, as neural-tangents).
    """

    out_dim: int
    W_std: float = 1.0
    b_std: float | None = 0.0
    parameterization: Parameterization = "ntk"

    def __post_init__(self):
        object.__setattr__(self, "out_dim", check_positive_int(self.out_dim, "Dense: out_dim"))
        _check_std(self, "W_std", "Dense: W_std")
        _check_std(self, "b_std", "Dense: b_std", allow_none=True)
        _check_parameterization(self.parameterization)

    def kernel(self, state):
        return _affine_update(state, self, state.nngp, None if state.ntk is None else state.ntk,
                              state.channels, 1.0, state.spatial, self.out_dim)

    def build(self, in_shape, generator, dtype, device):
        fan_in = in_shape[0]
        ntk = self.parameterization == "ntk"
        weight = _normal((self.out_dim, fan_in), generator, dtype, device,
                         1.0 if ntk else self.W_std / math.sqrt(fan_in))
        bias = None if self.b_std is None else _normal((self.out_dim,), generator, dtype, device,
                                                       1.0 if ntk else self.b_std)
        module = _DenseModule(weight, bias, self.W_std / math.sqrt(fan_in) if ntk else 1.0,
                              (self.b_std or 0.0) if ntk else 1.0)
        return module, (self.out_dim, *in_shape[1:])

    def to_stax(self, stax):
        return stax.Dense(self.out_dim, W_std=self.W_std, b_std=self.b_std,
                          parameterization=self.parameterization)


def _same_padding(length: int, window: int, stride: int) -> tuple[int, int]:
    """Padding (low, high) of 'SAME' as in JAX/TensorFlow: output length ceil(length/stride)."""
    out = -(-length // stride)
    total = max((out - 1) * stride + window - length, 0)
    return total // 2, total - total // 2


def _pad_axis(x: torch.Tensor, axis: int, low: int, high: int, circular: bool) -> torch.Tensor:
    if low == 0 and high == 0:
        return x
    if circular:
        length = x.shape[axis]
        index = torch.arange(-low, length + high, device=x.device) % length
        return x.index_select(axis, index)
    shape_low, shape_high = list(x.shape), list(x.shape)
    shape_low[axis], shape_high[axis] = low, high
    return torch.cat([x.new_zeros(shape_low), x, x.new_zeros(shape_high)], dim=axis)


def _padding_amounts(padding, length, window, stride):
    return (0, 0) if padding == "VALID" else _same_padding(length, window, stride)


def _out_length(padding, length, window, stride):
    if padding == "VALID":
        if length < window:
            raise ValueError(f"window {window} is larger than the input ({length}) with VALID padding")
        return (length - window) // stride + 1
    return -(-length // stride)


def _shift_segments(length: int, offset: int, circular: bool):
    """``(out_start, in_start, size)`` runs with ``out[t] <- in[t + offset]`` for ``0 <= t < length``
    (zero outside for 'SAME'; wrapped for 'CIRCULAR')."""
    runs = []
    lo, hi = max(0, -offset), min(length, length - offset)
    if hi > lo:
        runs.append((lo, lo + offset, hi - lo))
    if circular and offset > 0:
        runs.append((length - offset, 0, offset))
    elif circular and offset < 0:
        runs.append((0, length + offset, -offset))
    return runs


def _diagonal_sum(x: torch.Tensor, axis1: int, axis2: int, window: int, stride: int,
                  padding: str) -> torch.Tensor:
    """``out[t, t'] = sum_a x_pad[t stride + a, t' stride + a]`` on two axes: ``window`` times the
    covariance of a convolution with i.i.d. filter taps (Arora et al. 2019). Stride 1 is done
    with one copy and in-place shifted adds (no padded copy); other strides pad."""
    length = x.shape[axis1]
    if stride == 1 and window <= length:
        if padding == "VALID":
            size = length - window + 1
            out = x.narrow(axis1, 0, size).narrow(axis2, 0, size).clone()
            for a in range(1, window):
                out.add_(x.narrow(axis1, a, size).narrow(axis2, a, size))
            return out
        low, _ = _same_padding(length, window, 1)
        out = x.clone()
        for a in range(window):
            offset = a - low
            if offset == 0:
                continue
            runs = _shift_segments(length, offset, padding == "CIRCULAR")
            for o1, i1, n1 in runs:
                for o2, i2, n2 in runs:
                    out.narrow(axis1, o1, n1).narrow(axis2, o2, n2).add_(
                        x.narrow(axis1, i1, n1).narrow(axis2, i2, n2))
        return out
    low, high = _padding_amounts(padding, length, window, stride)
    circular = padding == "CIRCULAR"
    x = _pad_axis(_pad_axis(x, axis1, low, high, circular), axis2, low, high, circular)
    out_len = _out_length(padding, length, window, stride)
    span = (out_len - 1) * stride + 1
    total = None
    for a in range(window):
        piece = x.narrow(axis1, a, span).narrow(axis2, a, span)
        if stride > 1:
            index = torch.arange(0, span, stride, device=x.device)
            piece = piece.index_select(axis1, index).index_select(axis2, index)
        total = piece.clone() if total is None else total.add_(piece)
    return total


def _window_average(x: torch.Tensor, axis: int, window: int, stride: int, padding: str):
    """Average pooling of one axis (window divided by its full size, as neural-tangents)."""
    length = x.shape[axis]
    low, high = _padding_amounts(padding, length, window, stride)
    x = _pad_axis(x, axis, low, high, padding == "CIRCULAR")
    return x.unfold(axis, window, stride).mean(-1)


def _as_tuple(value, d, name):
    if isinstance(value, int):
        return (value,) * d
    value = tuple(value)
    if len(value) != d or not all(isinstance(v, int) and v >= 1 for v in value):
        raise ValueError(f"{name} must be a positive int or {d} positive ints, got {value!r}")
    return value


class _ConvModule(_AffineModule):
    def __init__(self, weight, bias, scale, bias_scale, strides, padding):
        super().__init__(weight, bias, scale, bias_scale)
        self.strides = strides
        self.padding = padding

    def forward(self, x):
        d = x.dim() - 2
        for i in range(d):
            axis = 2 + i
            low, high = _padding_amounts(self.padding, x.shape[axis], self.weight.shape[2 + i],
                                         self.strides[i])
            x = _pad_axis(x, axis, low, high, self.padding == "CIRCULAR")
        conv = F.conv1d if d == 1 else F.conv2d
        return self._add_bias(self.scale * conv(x, self.weight, stride=self.strides))


@dataclasses.dataclass(frozen=True)
class Conv(Layer):
    """Convolution (1-D or 2-D, from the input) with ``out_chan`` channels and i.i.d. filter taps.

    ``z(s) = (W_std / sqrt(C f)) sum_{c, a} W[c, a] h_c(s + a) + b_std b`` (NTK parameterisation,
    ``f`` the filter size). Kernel: ``Sigma'[t, t'] = W_std^2 (1/f) sum_a Sigma[t + a, t' + a] +
    b_std^2`` per spatial axis pair, padding 'SAME' (zeros), 'VALID' or 'CIRCULAR' (periodic).
    """

    out_chan: int
    filter_shape: tuple[int, ...] | int = 3
    strides: tuple[int, ...] | int = 1
    padding: Padding = "SAME"
    W_std: float = 1.0
    b_std: float | None = 0.0
    parameterization: Parameterization = "ntk"

    def __post_init__(self):
        object.__setattr__(self, "out_chan", check_positive_int(self.out_chan, "Conv: out_chan"))
        check_choice(self.padding, "Conv: padding", ("SAME", "VALID", "CIRCULAR"))
        _check_std(self, "W_std", "Conv: W_std")
        _check_std(self, "b_std", "Conv: b_std", allow_none=True)
        _check_parameterization(self.parameterization)

    def _shapes(self, d):
        if d not in (1, 2):
            raise ValueError(f"Conv needs inputs with 1 or 2 spatial dimensions, got {d}")
        return (_as_tuple(self.filter_shape, d, "Conv: filter_shape"),
                _as_tuple(self.strides, d, "Conv: strides"))

    def kernel(self, state):
        d = len(state.spatial)
        filters, strides = self._shapes(d)
        fan_in = state.channels * math.prod(filters)

        def convolve(t):
            for i in range(d):
                t = _diagonal_sum(t, t.dim() - 2 * d + i, t.dim() - d + i, filters[i], strides[i],
                                  self.padding)
            return t

        spatial = [_out_length(self.padding, n, f, s) for n, f, s in zip(state.spatial, filters, strides)]
        base = convolve(state.nngp)
        base_ntk = None if state.ntk is None or not state.track_ntk else convolve(state.ntk)
        return _affine_update(state, self, base, base_ntk, fan_in, 1.0 / math.prod(filters), spatial,
                              self.out_chan)

    def build(self, in_shape, generator, dtype, device):
        channels, spatial = in_shape[0], in_shape[1:]
        filters, strides = self._shapes(len(spatial))
        fan_in = channels * math.prod(filters)
        ntk = self.parameterization == "ntk"
        weight = _normal((self.out_chan, channels, *filters), generator, dtype, device,
                         1.0 if ntk else self.W_std / math.sqrt(fan_in))
        bias = None if self.b_std is None else _normal((self.out_chan,), generator, dtype, device,
                                                       1.0 if ntk else self.b_std)
        module = _ConvModule(weight, bias, self.W_std / math.sqrt(fan_in) if ntk else 1.0,
                             (self.b_std or 0.0) if ntk else 1.0, strides, self.padding)
        out = [_out_length(self.padding, n, f, s) for n, f, s in zip(spatial, filters, strides)]
        return module, (self.out_chan, *out)

    def to_stax(self, stax):
        filters = self.filter_shape if isinstance(self.filter_shape, tuple) else None
        strides = self.strides if isinstance(self.strides, tuple) else None
        if filters is None or (strides is None and self.strides != 1):
            raise ValueError("to_stax needs Conv.filter_shape (and strides) as tuples, e.g. (3, 3)")
        return stax.Conv(self.out_chan, filters, strides, self.padding, W_std=self.W_std,
                         b_std=self.b_std, parameterization=self.parameterization)


class _ConvLocalModule(_AffineModule):
    def __init__(self, weight, bias, scale, bias_scale, strides, padding):
        super().__init__(weight, bias, scale, bias_scale)
        self.strides, self.padding = strides, padding

    def forward(self, x):
        d = x.dim() - 2
        filters = self.weight.shape[2:2 + d]
        for i in range(d):
            low, high = _padding_amounts(self.padding, x.shape[2 + i], filters[i], self.strides[i])
            x = _pad_axis(x, 2 + i, low, high, self.padding == "CIRCULAR")
        for i in range(d):
            x = x.unfold(2 + i, filters[i], self.strides[i])  # (N, C, *out, *filter)
        if d == 1:
            z = torch.einsum("ocat,ncta->not", self.weight, x)
        else:
            z = torch.einsum("ocabtu,nctuab->notu", self.weight, x)
        z = self.scale * z
        return z if self.bias is None else z + self.bias_scale * self.bias


@dataclasses.dataclass(frozen=True)
class ConvLocal(Conv):
    """Locally connected layer: a ``Conv`` whose filter (and bias) differ at every output
    position (neural-tangents' ``ConvLocal``). Different positions have independent weights, so
    the kernels are ``Conv``'s on the spatial diagonal (``t = t'``) and zero elsewhere. (Against
    neural-tangents 0.6.5: equal in 1-D, and in 2-D as a first layer or with square filters; after a
    shared ``Conv``, a non-square 2-D filter followed by an activation differs from it, and wide
    finite networks agree with this kernel, not with neural-tangents': tested.)"""

    def kernel(self, state):
        state = super().kernel(state)
        d = len(state.spatial)
        mask = None
        for i, n in enumerate(state.spatial):
            eye = torch.eye(n, dtype=state.nngp.dtype, device=state.nngp.device)
            eye = eye.reshape([n if j in (i, d + i) else 1 for j in range(2 * d)])
            mask = eye if mask is None else mask * eye
        nngp = state.nngp.mul_(mask)
        ntk = None if state.ntk is None else state.ntk.mul_(mask)
        return state.replace(nngp=nngp, ntk=ntk)

    def build(self, in_shape, generator, dtype, device):
        channels, spatial = in_shape[0], in_shape[1:]
        filters, strides = self._shapes(len(spatial))
        out = [_out_length(self.padding, n, f, s) for n, f, s in zip(spatial, filters, strides)]
        fan_in = channels * math.prod(filters)
        ntk = self.parameterization == "ntk"
        weight = _normal((self.out_chan, channels, *filters, *out), generator, dtype, device,
                         1.0 if ntk else self.W_std / math.sqrt(fan_in))
        bias = None if self.b_std is None else _normal((self.out_chan, *out), generator, dtype, device,
                                                       1.0 if ntk else self.b_std)
        module = _ConvLocalModule(weight, bias, self.W_std / math.sqrt(fan_in) if ntk else 1.0,
                                  (self.b_std or 0.0) if ntk else 1.0, strides, self.padding)
        return module, (self.out_chan, *out)

    def to_stax(self, stax):
        conv = super().to_stax(stax)  # checks the tuples
        del conv
        strides = self.strides if isinstance(self.strides, tuple) else None
        return stax.ConvLocal(self.out_chan, self.filter_shape, strides, self.padding, W_std=self.W_std,
                              b_std=self.b_std, parameterization=self.parameterization)


def _transpose_taps(length: int, window: int, stride: int, padding: str, dtype, device) -> torch.Tensor:
    """``M[a, t, s] = 1`` iff input position ``s`` reaches output ``t`` through tap ``a`` of a
    transposed convolution (JAX's ``lax.conv_transpose``, filter not flipped: the input dilated by
    ``stride``, padded by ``_conv_transpose_padding``, then correlated): ``t + a - low = s stride``."""
    if padding == "SAME":
        total = window + stride - 2
        low = window - 1 if stride > window - 1 else -(-total // 2)
    else:
        total = window + stride - 2 + max(window - stride, 0)
        low = window - 1
    out = (length - 1) * stride + 1 + total - window + 1
    taps = torch.zeros(window, out, length, dtype=dtype, device=device)
    for a in range(window):
        for s_in in range(length):
            t = s_in * stride + low - a
            if 0 <= t < out:
                taps[a, t, s_in] = 1.0
    return taps


class _ConvTransposeModule(_AffineModule):
    def __init__(self, weight, bias, scale, bias_scale, taps):
        super().__init__(weight, bias, scale, bias_scale)
        self.taps = taps  # one (window, out, in) tensor per spatial axis

    def forward(self, x):
        if len(self.taps) == 1:
            z = torch.einsum("oca,ats,ncs->not", self.weight, self.taps[0].to(x), x)
        else:
            z = torch.einsum("ocab,ats,bur,ncsr->notu", self.weight, self.taps[0].to(x),
                             self.taps[1].to(x), x)
        return self._add_bias(self.scale * z)


@dataclasses.dataclass(frozen=True)
class ConvTranspose(Layer):
    """Transposed convolution (1-D or 2-D) with ``out_chan`` channels, as neural-tangents'
    ``ConvTranspose`` (JAX's ``lax.conv_transpose``): ``z(t) = (W_std / sqrt(C f)) sum_{c, a}
    W[c, a] h_c(s) [t + a - low = s stride] + b_std b``, padding 'SAME' or 'VALID'. With the tap
    matrices ``M_a`` of each axis, ``Sigma' = W_std^2 (1/f) sum_a M_a Sigma M_a^T + b_std^2``
    (i.i.d. taps: only equal taps correlate); NTK as for ``Dense``."""

    temporaries = 2

    out_chan: int
    filter_shape: tuple[int, ...] | int = 3
    strides: tuple[int, ...] | int = 1
    padding: Literal["SAME", "VALID"] = "VALID"
    W_std: float = 1.0
    b_std: float | None = 0.0
    parameterization: Parameterization = "ntk"

    def __post_init__(self):
        object.__setattr__(self, "out_chan", check_positive_int(self.out_chan, "ConvTranspose: out_chan"))
        check_choice(self.padding, "ConvTranspose: padding", ("SAME", "VALID"))
        _check_std(self, "W_std", "ConvTranspose: W_std")
        _check_std(self, "b_std", "ConvTranspose: b_std", allow_none=True)
        _check_parameterization(self.parameterization)

    def _taps(self, spatial, dtype, device):
        d = len(spatial)
        if d not in (1, 2):
            raise ValueError(f"ConvTranspose needs inputs with 1 or 2 spatial dimensions, got {d}")
        filters = _as_tuple(self.filter_shape, d, "ConvTranspose: filter_shape")
        strides = _as_tuple(self.strides, d, "ConvTranspose: strides")
        return filters, [_transpose_taps(n, f, s, self.padding, dtype, device)
                         for n, f, s in zip(spatial, filters, strides)]

    def kernel(self, state):
        d = len(state.spatial)
        filters, taps = self._taps(state.spatial, state.nngp.dtype, state.nngp.device)

        def convolve(t):
            for i, m in enumerate(taps):
                a1, a2 = t.dim() - 2 * d + i, t.dim() - d + i
                moved = t.movedim((a1, a2), (-2, -1))
                moved = torch.einsum("ats,...sr,aur->...tu", m, moved, m)
                t = moved.movedim((-2, -1), (a1, a2))
            return t.contiguous()

        spatial = [m.shape[1] for m in taps]
        base = convolve(state.nngp)
        base_ntk = None if state.ntk is None or not state.track_ntk else convolve(state.ntk)
        return _affine_update(state, self, base, base_ntk, state.channels * math.prod(filters),
                              1.0 / math.prod(filters), spatial, self.out_chan)

    def build(self, in_shape, generator, dtype, device):
        channels, spatial = in_shape[0], in_shape[1:]
        filters, taps = self._taps(spatial, dtype, device)
        fan_in = channels * math.prod(filters)
        ntk = self.parameterization == "ntk"
        weight = _normal((self.out_chan, channels, *filters), generator, dtype, device,
                         1.0 if ntk else self.W_std / math.sqrt(fan_in))
        bias = None if self.b_std is None else _normal((self.out_chan,), generator, dtype, device,
                                                       1.0 if ntk else self.b_std)
        module = _ConvTransposeModule(weight, bias, self.W_std / math.sqrt(fan_in) if ntk else 1.0,
                                      (self.b_std or 0.0) if ntk else 1.0, taps)
        return module, (self.out_chan, *[m.shape[1] for m in taps])

    def to_stax(self, stax):
        filters = self.filter_shape if isinstance(self.filter_shape, tuple) else None
        strides = self.strides if isinstance(self.strides, tuple) else None
        if filters is None or (strides is None and self.strides != 1):
            raise ValueError("to_stax needs ConvTranspose.filter_shape (and strides) as tuples, e.g. (3, 3)")
        return stax.ConvTranspose(self.out_chan, filters, strides, self.padding, W_std=self.W_std,
                                  b_std=self.b_std, parameterization=self.parameterization)


class _SelfAttentionModule(nn.Module):
    def __init__(self, keys, values, out, bias, qk_std, ov_std, b_std):
        super().__init__()
        self.keys, self.values, self.out = nn.Parameter(keys), nn.Parameter(values), nn.Parameter(out)
        self.bias = None if bias is None else nn.Parameter(bias)
        self.qk_std, self.ov_std, self.b_std = qk_std, ov_std, b_std

    def forward(self, x):
        n, channels, spatial = x.shape[0], x.shape[1], x.shape[2:]
        h = x.reshape(n, channels, -1).transpose(1, 2)  # (N, S, C)
        keys = torch.einsum("nsc,hck->hnsk", h, self.keys)
        logits = keys @ keys.transpose(-1, -2) * (self.qk_std / (channels * self.keys.shape[-1]))
        heads = torch.softmax(logits, dim=-1) @ torch.einsum("nsc,hcv->hnsv", h, self.values)
        heads = heads.permute(1, 2, 3, 0).reshape(n, h.shape[1], -1)  # (N, S, values x heads)
        z = heads @ self.out * (self.ov_std / math.sqrt(heads.shape[-1] * channels))
        if self.bias is not None:
            z = z + self.b_std * self.bias
        return z.transpose(1, 2).reshape(n, -1, *spatial)


@dataclasses.dataclass(frozen=True)
class GlobalSelfAttention(Layer):
    """Multi-head dot-product self-attention over all positions, neural-tangents' variant with
    ``linear_scaling=True`` (tied key and query weights, logits divided by ``C n_chan_key``),
    softmax attention and no positional embedding (Hron et al. 2020, "Infinite attention").
    With ``G(x) = softmax_t(W_key_std W_query_std Sigma(x, x)[s, t])`` (the attention weights the
    finite network converges to) and ``o = W_out_std W_value_std``:
    ``Sigma'(x, x') = o^2 G(x) Sigma(x, x') G(x')^T + b_std^2``,
    ``Theta' = o^2 G(x) Theta G(x')^T + b_std^2 + 2 o^2 G(x) Sigma G(x')^T``."""

    n_chan_out: int
    n_chan_key: int
    n_chan_val: int
    n_heads: int
    W_key_std: float = 1.0
    W_value_std: float = 1.0
    W_query_std: float = 1.0
    W_out_std: float = 1.0
    b_std: float | None = None
    temporaries = 3

    def __post_init__(self):
        for field in ("n_chan_out", "n_chan_key", "n_chan_val", "n_heads"):
            object.__setattr__(self, field, check_positive_int(getattr(self, field),
                                                               f"GlobalSelfAttention: {field}"))
        for field in ("W_key_std", "W_value_std", "W_query_std", "W_out_std"):
            _check_std(self, field, f"GlobalSelfAttention: {field}")
        _check_std(self, "b_std", "GlobalSelfAttention: b_std", allow_none=True)

    def kernel(self, state):
        d = len(state.spatial)
        if d == 0:
            raise ValueError("GlobalSelfAttention needs spatial inputs")
        size = math.prod(state.spatial)
        qk, ov2, b2 = self.W_key_std * self.W_query_std, (self.W_out_std * self.W_value_std) ** 2, \
            (self.b_std or 0.0) ** 2
        batch = state.nngp.shape[:2] if state.pairs else state.nngp.shape[:1]

        def flat(t):
            return t.reshape(*batch, size, size)

        if state.pairs:
            g1, g2 = state.tape.replay()

            def weigh(t):
                return torch.einsum("ist,ijtu,jru->ijsr", g1, flat(t), g2)
        else:
            g1 = torch.softmax(flat(state.nngp) * qk, dim=-1)
            state.tape.record(g1)

            def weigh(t):
                return torch.einsum("ist,itu,iru->isr", g1, flat(t), g1)

        weighted = weigh(state.nngp)
        ntk = None
        if state.track_ntk:
            ntk = weighted.mul(2 * ov2)
            if state.ntk is not None:
                ntk.add_(weigh(state.ntk), alpha=ov2)
            if b2:
                ntk.add_(b2)
            ntk = ntk.reshape(state.nngp.shape)
        nngp = weighted.mul_(ov2).add_(b2).reshape(state.nngp.shape)
        return state.replace(nngp=nngp, ntk=ntk, channels=self.n_chan_out, gaussian=True)

    def build(self, in_shape, generator, dtype, device):
        if len(in_shape) < 2:
            raise ValueError("GlobalSelfAttention needs spatial inputs")
        channels = in_shape[0]
        keys = _normal((self.n_heads, channels, self.n_chan_key), generator, dtype, device)
        values = _normal((self.n_heads, channels, self.n_chan_val), generator, dtype, device)
        out = _normal((self.n_chan_val * self.n_heads, self.n_chan_out), generator, dtype, device)
        bias = None if self.b_std is None else _normal((self.n_chan_out,), generator, dtype, device)
        module = _SelfAttentionModule(keys, values, out, bias, self.W_key_std * self.W_query_std,
                                      self.W_out_std * self.W_value_std, self.b_std)
        return module, (self.n_chan_out, *in_shape[1:])

    def to_stax(self, stax):
        return stax.GlobalSelfAttention(self.n_chan_out, self.n_chan_key, self.n_chan_val, self.n_heads,
                                        linear_scaling=True, W_key_std=self.W_key_std,
                                        W_value_std=self.W_value_std, W_query_std=self.W_query_std,
                                        W_out_std=self.W_out_std, b_std=self.b_std,
                                        attention_mechanism="SOFTMAX", pos_emb_type="NONE")


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------
def _correlation(c, q1, q2):
    norm = torch.sqrt(q1 * q2).clamp_min(torch.finfo(c.dtype).tiny)
    return (c / norm).clamp(-1.0, 1.0), norm


class _ActivationModule(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)


class _Activation(Layer):
    """Elementwise layer: subclasses give ``function`` (torch) and ``expectations(c, q1, q2)
    -> (E[phi(u) phi(v)], E[phi'(u) phi'(v)])`` (``None`` for the second: ``phi' = 0`` almost
    everywhere). ``temporaries``: block-sized tensors the step holds beyond its input and output
    (for the ``max_memory`` bound)."""

    temporaries = 3

    def function(self, x):  # pragma: no cover - interface
        raise NotImplementedError

    def expectations(self, c, q1, q2):  # pragma: no cover - interface
        raise NotImplementedError

    def update(self, nngp, ntk, q1, q2):
        """``(Sigma', Theta')`` from the input NNGP ``nngp`` (may be overwritten), NTK ``ntk``
        (``None``: zero or not wanted; may be overwritten) and the broadcastable variances."""
        value, derivative = self.expectations(nngp, q1, q2)
        if ntk is None or derivative is None:
            return value, None
        return value, ntk.mul_(derivative)

    def kernel(self, state):
        if not state.gaussian:
            raise ValueError(f"{type(self).__name__} needs Gaussian pre-activations: put an affine layer "
                             "(Dense, Conv) before it (its kernel formula assumes them, as neural-tangents)")
        q1, q2 = _variances(state)
        nngp, ntk = self.update(state.nngp, state.ntk, q1, q2)
        return state.replace(nngp=nngp, ntk=ntk, gaussian=False)

    def build(self, in_shape, generator, dtype, device):
        return _ActivationModule(self.function), tuple(in_shape)


class _PiecewiseLinear(_Activation):
    """``phi(x) = a min(x, 0) + b max(x, 0)`` with slopes ``(a, b) = self.slopes()``. With
    ``rho = C / sqrt(q1 q2) = cos(theta)`` (Cho & Saul 2009; neural-tangents' ``ABRelu``):
    ``E[phi' phi'] = D = (a^2 + b^2)/2 - (a - b)^2 theta / (2 pi)``,
    ``E[phi phi] = D C + (a - b)^2 sqrt(q1 q2 - C^2) / (2 pi)``. ReLU: ``a, b = 0, 1``."""

    temporaries = 1

    def slopes(self) -> tuple[float, float]:  # pragma: no cover - interface
        raise NotImplementedError

    def function(self, x):
        a, b = self.slopes()
        return a * torch.clamp(x, max=0) + b * torch.clamp(x, min=0)

    def update(self, nngp, ntk, q1, q2):
        # fused in place with one block-sized temporary t: t = norm = sqrt(q1 q2), nngp <- rho =
        # Sigma / norm (rho = 1 exactly where q1 = q2 = Sigma: sqrt(v v) = v in IEEE arithmetic),
        # t <- D = (a^2 + b^2)/2 - k theta, Theta' = D Theta, t <- D rho,
        # nngp <- Sigma' = norm (D rho + k sqrt(1 - rho^2)) with norm = sqrt(q1) sqrt(q2) applied
        # as two broadcast (rank-one) factors, k = (a - b)^2 / (2 pi)
        a, b = self.slopes()
        k = (a - b) ** 2 / (2 * math.pi)
        t = torch.mul(q1, q2).sqrt_().clamp_min_(torch.finfo(nngp.dtype).tiny)
        rho = nngp.div_(t).clamp_(-1.0, 1.0)
        derivative = torch.arccos(rho, out=t).mul_(-k).add_((a * a + b * b) / 2)
        if ntk is not None:
            ntk.mul_(derivative)
        value = derivative.mul_(rho)
        sine = rho.mul_(rho).neg_().add_(1.0).clamp_min_(0.0).sqrt_()
        return sine.mul_(k).add_(value).mul_(q1.sqrt()).mul_(q2.sqrt()), ntk


@dataclasses.dataclass(frozen=True)
class Relu(_PiecewiseLinear):
    """``phi(x) = max(x, 0)``; arc-cosine kernels (Cho & Saul 2009):
    ``E[phi phi] = sqrt(q1 q2) (sin theta + (pi - theta) cos theta) / (2 pi)``,
    ``E[phi' phi'] = (pi - theta) / (2 pi)``."""

    def slopes(self):
        return 0.0, 1.0

    def function(self, x):
        return torch.relu(x)

    def to_stax(self, stax):
        return stax.Relu()


@dataclasses.dataclass(frozen=True)
class LeakyRelu(_PiecewiseLinear):
    """``phi(x) = max(x, a x)`` with slope ``a = negative_slope`` (``ABRelu(a, 1)``)."""

    negative_slope: float = 0.01

    def __post_init__(self):
        _set_real(self, "negative_slope", "LeakyRelu: negative_slope")

    def slopes(self):
        return self.negative_slope, 1.0

    def function(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def to_stax(self, stax):
        return stax.LeakyRelu(self.negative_slope)


@dataclasses.dataclass(frozen=True)
class ABRelu(_PiecewiseLinear):
    """``phi(x) = a min(x, 0) + b max(x, 0)`` (neural-tangents' ``ABRelu``)."""

    a: float
    b: float

    def __post_init__(self):
        _set_real(self, "a", "ABRelu: a")
        _set_real(self, "b", "ABRelu: b")

    def slopes(self):
        return self.a, self.b

    def to_stax(self, stax):
        return stax.ABRelu(self.a, self.b)


@dataclasses.dataclass(frozen=True)
class Abs(_PiecewiseLinear):
    """``phi(x) = |x|`` (``ABRelu(-1, 1)``): ``E[phi' phi'] = 1 - 2 theta / pi``."""

    def slopes(self):
        return -1.0, 1.0

    def function(self, x):
        return torch.abs(x)

    def to_stax(self, stax):
        return stax.Abs()


@dataclasses.dataclass(frozen=True)
class Sign(_Activation):
    """``phi(x) = sign(x)``: ``E[phi phi] = (2 / pi) arcsin(rho)``; ``phi' = 0`` almost everywhere,
    so the layer's NTK is zero (as neural-tangents and as autograd through the finite network)."""

    def function(self, x):
        return torch.sign(x)

    def expectations(self, c, q1, q2):
        rho, _ = _correlation(c, q1, q2)
        return rho.arcsin_().mul_(2 / math.pi), None

    def to_stax(self, stax):
        return stax.Sign()


@dataclasses.dataclass(frozen=True)
class Erf(_Activation):
    """``phi(x) = a erf(b x) + c``. Williams (1997):
    ``E[erf(bu) erf(bv)] = (2/pi) arcsin(2 b^2 C / sqrt((1 + 2 b^2 q1)(1 + 2 b^2 q2)))``,
    ``E[phi' phi'] = (4 a^2 b^2 / pi) / sqrt((1 + 2b^2 q1)(1 + 2b^2 q2) - 4 b^4 C^2)``."""

    a: float = 1.0
    b: float = 1.0
    c: float = 0.0

    def __post_init__(self):
        for name in ("a", "b", "c"):
            _set_real(self, name, f"Erf: {name}")

    def function(self, x):
        return self.a * torch.erf(self.b * x) + self.c

    def expectations(self, c, q1, q2):
        b2 = self.b**2
        product = (1 + 2 * b2 * q1) * (1 + 2 * b2 * q2)
        ratio = (2 * b2 * c / torch.sqrt(product)).clamp(-1.0, 1.0)
        value = self.a**2 * (2 / math.pi) * torch.arcsin(ratio) + self.c**2
        derivative = (4 * self.a**2 * b2 / math.pi) / torch.sqrt(product - 4 * b2 * b2 * c * c)
        return value, derivative

    def to_stax(self, stax):
        return stax.Erf(self.a, self.b, self.c)


def Sigmoid_like() -> Erf:  # noqa: N802 - neural-tangents' name
    """``phi(x) = erf(x / 2.4020563531719796) / 2 + 1/2``, close to the logistic sigmoid (least
    squares on [-5, 5]): ``Erf(0.5, 1 / 2.4020563531719796, 0.5)`` as neural-tangents."""
    return Erf(0.5, 1 / 2.4020563531719796, 0.5)


@dataclasses.dataclass(frozen=True)
class Gelu(_Activation):
    """``phi(x) = x Phi(x)`` (exact GELU, ``Phi`` the standard normal CDF). Tsuchida et al. (2020),
    as neural-tangents: with ``P = q1 q2``, ``P1 = (1 + q1)(1 + q2)``, ``delta = sqrt(P1 - C^2)``,
    ``alpha = arctan2(C, delta)``:
    ``E[phi phi] = C/4 + ((C^2 + P delta^2) / (P1 delta) + C alpha) / (2 pi)``,
    ``E[phi' phi'] = 1/4 + alpha / (2 pi) + C (1/delta^2 + (1 - P)/P1 + 1) / (2 pi delta)``."""

    temporaries = 5

    def function(self, x):
        return F.gelu(x)

    def expectations(self, c, q1, q2):
        product, product_plus_1 = q1 * q2, (1 + q1) * (1 + q2)
        delta_squared = (product_plus_1 - c * c).clamp_min_(0.0)
        delta = delta_squared.sqrt()
        angle = torch.atan2(c, delta)
        value = ((c * c + product * delta_squared) / (product_plus_1 * delta) + c * angle) / (2 * math.pi)
        value.add_(c, alpha=0.25)
        derivative = (1 / delta_squared + (1 - product) / product_plus_1 + 1).mul_(c / delta / (2 * math.pi))
        derivative.add_(angle, alpha=1 / (2 * math.pi)).add_(0.25)
        return value, derivative

    def to_stax(self, stax):
        return stax.Gelu(approximate=False)


@dataclasses.dataclass(frozen=True)
class Sin(_Activation):
    """``phi(x) = a sin(b x + c)``: with ``s = q1 + q2``,
    ``E[phi phi] = (a^2/2) (exp(-b^2 (s/2 - C)) - cos(2c) exp(-b^2 (s/2 + C)))``,
    ``E[phi' phi'] = (a^2 b^2/2) (exp(-b^2 (s/2 - C)) + cos(2c) exp(-b^2 (s/2 + C)))``."""

    a: float = 1.0
    b: float = 1.0
    c: float = 0.0

    def __post_init__(self):
        for name in ("a", "b", "c"):
            _set_real(self, name, f"{type(self).__name__}: {name}")

    def _phase(self):
        return self.c

    def function(self, x):
        return self.a * torch.sin(self.b * x + self._phase())

    def expectations(self, c, q1, q2):
        b2, half = self.b**2, self.a**2 / 2
        half_sum = (q1 + q2) / 2
        same = torch.exp(b2 * (c - half_sum))
        opposite = torch.exp(-b2 * (c + half_sum)).mul_(math.cos(2 * self._phase()))
        return half * (same - opposite), (half * b2) * (same + opposite)

    def to_stax(self, stax):
        return stax.Sin(self.a, self.b, self.c)


@dataclasses.dataclass(frozen=True)
class Cos(Sin):
    """``phi(x) = a cos(b x + c) = a sin(b x + c + pi/2)`` (kernels of ``Sin`` with that phase)."""

    def _phase(self):
        return self.c + math.pi / 2

    def function(self, x):
        return self.a * torch.cos(self.b * x + self.c)

    def to_stax(self, stax):
        return stax.Cos(self.a, self.b, self.c)


@dataclasses.dataclass(frozen=True)
class Rbf(_Activation):
    """``phi(x) = sqrt(2) sin(sqrt(2 gamma) x + pi/4)``, whose NNGP is the RBF kernel
    ``exp(-gamma (q1 + q2 - 2 C))``; ``E[phi' phi'] = 2 gamma exp(-gamma (q1 + q2 - 2 C))``."""

    gamma: float = 1.0

    def __post_init__(self):
        _set_real(self, "gamma", "Rbf: gamma", minimum=0.0, strict_minimum=True)

    def function(self, x):
        return math.sqrt(2) * torch.sin(math.sqrt(2 * self.gamma) * x + math.pi / 4)

    def expectations(self, c, q1, q2):
        value = torch.exp(self.gamma * (2 * c - q1 - q2))
        return value, 2 * self.gamma * value

    def to_stax(self, stax):
        return stax.Rbf(self.gamma)


@dataclasses.dataclass(frozen=True)
class Exp(_Activation):
    """``phi(x) = a exp(b x)``: ``E[phi phi] = a^2 exp(b^2 ((q1 + q2)/2 + C))``,
    ``E[phi' phi'] = b^2 E[phi phi]``."""

    a: float = 1.0
    b: float = 1.0

    def __post_init__(self):
        _set_real(self, "a", "Exp: a")
        _set_real(self, "b", "Exp: b")

    def function(self, x):
        return self.a * torch.exp(self.b * x)

    def expectations(self, c, q1, q2):
        value = torch.exp(self.b**2 * ((q1 + q2) / 2 + c)).mul_(self.a**2)
        return value, self.b**2 * value

    def to_stax(self, stax):
        return stax.Exp(self.a, self.b)


@dataclasses.dataclass(frozen=True)
class Gaussian(_Activation):
    """``phi(x) = a exp(b x^2)``: with ``det = (1 - 2b q1)(1 - 2b q2) - 4 b^2 C^2``,
    ``E[phi phi] = a^2 / sqrt(det)``, ``E[phi' phi'] = 4 a^2 b^2 C / det^(3/2)``. Finite only
    while ``1 - 4 b q > 0`` for every variance ``q`` met (always for ``b <= 0``)."""

    a: float = 1.0
    b: float = -1.0

    def __post_init__(self):
        _set_real(self, "a", "Gaussian: a")
        _set_real(self, "b", "Gaussian: b")

    def function(self, x):
        return self.a * torch.exp(self.b * x * x)

    def expectations(self, c, q1, q2):
        b = self.b
        if b > 0 and float(torch.max(q1.max(), q2.max())) * 4 * b >= 1:
            raise ValueError(f"Gaussian(b={b}): E[phi^2] is infinite for pre-activation variances "
                             f">= 1/(4b) = {1 / (4 * b):g}; make b smaller or the variances smaller")
        root = ((1 - 2 * b * q1) * (1 - 2 * b * q2) - 4 * b * b * c * c).clamp_min_(0.0).sqrt_()
        value = (self.a**2) / root
        return value, (4 * b * b) * c * value / (root * root)

    def to_stax(self, stax):
        return stax.Gaussian(self.a, self.b)


@dataclasses.dataclass(frozen=True)
class Hermite(_Activation):
    """Normalised probabilists' Hermite polynomial ``phi = He_n / sqrt(n!)`` (``n = degree``).
    For unit-variance pre-activations (``q1 = q2 = 1``; e.g. after ``LayerNorm``):
    ``E[phi phi] = C^n``, ``E[phi' phi'] = n C^(n-1)`` (``phi' = sqrt(n) He_(n-1)/sqrt((n-1)!)``),
    as neural-tangents. Other variances are refused (the formula would be wrong there)."""

    degree: int = 1

    def __post_init__(self):
        object.__setattr__(self, "degree", check_int(self.degree, "Hermite: degree", minimum=0))

    def function(self, x):
        previous, current = torch.ones_like(x), x
        if self.degree == 0:
            return previous
        for k in range(1, self.degree):
            previous, current = current, x * current - k * previous
        return current / math.sqrt(math.factorial(self.degree))

    def expectations(self, c, q1, q2):
        for q in (q1, q2):
            if float((q - 1).abs().max()) > 1e-6:
                raise ValueError("Hermite assumes unit-variance pre-activations (put LayerNorm or a "
                                 "W_std=1, b_std=0 Dense layer on unit-norm inputs before it); got "
                                 f"variances in [{float(q.min()):g}, {float(q.max()):g}]")
        n = self.degree
        if n == 0:
            return torch.ones_like(c), None
        return c.pow(n), n * c.pow(n - 1)

    def to_stax(self, stax):
        return stax.Hermite(self.degree)


_NAMED = {
    "tanh": (torch.tanh, "tanh"),
    "sin": (torch.sin, "sin"),
    "sigmoid": (torch.sigmoid, "sigmoid"),
    "softplus": (F.softplus, "softplus"),
    "silu": (F.silu, "silu"),
    "gelu": (F.gelu, "gelu"),
}


def _jax_function(name):
    import jax

    return {"tanh": jax.numpy.tanh, "sin": jax.numpy.sin, "sigmoid": jax.nn.sigmoid,
            "softplus": jax.nn.softplus, "silu": jax.nn.silu,
            "gelu": lambda x: jax.nn.gelu(x, approximate=False)}[name]


@dataclasses.dataclass(frozen=True)
class Elementwise(_Activation):
    """Any elementwise activation; its kernels by 2-D Gauss-Hermite quadrature of order ``degree``.

    ``function``: one of 'tanh', 'sin', 'sigmoid', 'softplus', 'silu', 'gelu', or a torch
    callable (its derivative is taken by autograd). With ``u = sqrt(q1) z1``,
    ``v = sqrt(q2) (rho z1 + sqrt(1 - rho^2) z2)``:
    ``E[phi(u) phi(v)] ~ sum_ij w_i w_j phi(u_i) phi(v_ij)`` (error decays fast for smooth phi).
    """

    function_name: str | Callable = "tanh"
    degree: int = 48

    def __post_init__(self):
        if isinstance(self.function_name, str):
            check_choice(self.function_name, "Elementwise: function", sorted(_NAMED))
        else:
            check_callable(self.function_name, "Elementwise: function")
        object.__setattr__(self, "degree", check_int(self.degree, "Elementwise: degree", minimum=2))

    def function(self, x):
        fn = _NAMED[self.function_name][0] if isinstance(self.function_name, str) else self.function_name
        return fn(x)

    def _derivative(self, x):
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.function(x).sum(), x)
        return grad

    def expectations(self, c, q1, q2):
        import numpy as np

        nodes, weights = np.polynomial.hermite.hermgauss(self.degree)
        nodes = torch.as_tensor(nodes * math.sqrt(2.0), dtype=c.dtype, device=c.device)
        weights = torch.as_tensor(weights / math.sqrt(math.pi), dtype=c.dtype, device=c.device)
        rho, _ = _correlation(c, q1, q2)
        s1, s2 = torch.sqrt(q1), torch.sqrt(q2)
        orth = torch.sqrt((1 - rho * rho).clamp_min(0)).unsqueeze(-1)
        s2e, rhoe = s2.unsqueeze(-1), rho.unsqueeze(-1)
        value = torch.zeros_like(c)
        derivative = torch.zeros_like(c)
        for z, w in zip(nodes, weights):
            u = s1 * z
            v = s2e * (rhoe * z + orth * nodes)
            phi_v = (self.function(v) * weights).sum(-1)
            dphi_v = (self._derivative(v) * weights).sum(-1)
            value = value + w * self.function(u) * phi_v
            derivative = derivative + w * self._derivative(u) * dphi_v
        return value, derivative

    def to_stax(self, stax):
        if not isinstance(self.function_name, str):
            raise ValueError("to_stax supports Elementwise only with a named function")
        return stax.ElementwiseNumerical(_jax_function(self.function_name), deg=self.degree)


# neural-tangents' name for the same layer (its ``stax.Elementwise`` takes a closed-form NNGP instead)
ElementwiseNumerical = Elementwise


class _LayerNormModule(nn.Module):
    def __init__(self, eps):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        centred = x - x.mean(dim=1, keepdim=True)
        return centred / torch.sqrt(self.eps + centred.square().mean(dim=1, keepdim=True))


@dataclasses.dataclass(frozen=True)
class LayerNorm(Layer):
    """Normalisation over the channels (features) at each position:
    ``h = (z - mean_c z) / sqrt(eps + var_c z)`` (neural-tangents' ``LayerNorm`` with its default
    ``axis=-1``, the channel axis). For Gaussian ``z`` (after ``Dense``/``Conv``) the infinite-width
    kernels are ``Sigma' = Sigma / sqrt((eps + q1)(eps + q2))``, ``Theta' = Theta /
    sqrt((eps + q1)(eps + q2))`` (``q`` the variances ``Sigma(x, x)[s, s]``)."""

    eps: float = 1e-12
    temporaries = 1

    def __post_init__(self):
        _set_real(self, "eps", "LayerNorm: eps", minimum=0.0)

    def kernel(self, state):
        if not state.gaussian:
            raise ValueError("LayerNorm needs Gaussian inputs: put an affine layer (Dense, Conv) before it")
        q1, q2 = _variances(state)
        factor = torch.mul(q1 + self.eps, q2 + self.eps).rsqrt_()
        nngp = state.nngp.mul_(factor)
        ntk = None if state.ntk is None else state.ntk.mul_(factor)
        return state.replace(nngp=nngp, ntk=ntk)

    def build(self, in_shape, generator, dtype, device):
        return _LayerNormModule(self.eps), tuple(in_shape)

    def to_stax(self, stax):
        return stax.LayerNorm(axis=-1, eps=self.eps)


@dataclasses.dataclass(frozen=True)
class Dropout(Layer):
    """Dropout with keep probability ``rate`` (neural-tangents' convention), inference mode
    (``mode='test'``): the finite layer is the identity and so are its kernels. Training mode
    (random masks, kernel diagonal times ``1/rate``) is not provided: its finite network would
    draw masks in ``forward``, outside an explicit generator."""

    rate: float = 1.0
    mode: str = "test"

    def __post_init__(self):
        object.__setattr__(self, "rate", check_probability(self.rate, "Dropout: rate", open_low=True))
        check_choice(self.mode, "Dropout: mode", ("test", "train"))
        if self.mode == "train":
            raise NotImplementedError("Dropout: only mode='test' (the inference kernel) is implemented")

    def kernel(self, state):
        return state

    def build(self, in_shape, generator, dtype, device):
        return nn.Identity(), tuple(in_shape)

    def to_stax(self, stax):
        return stax.Dropout(self.rate, mode="test")


# --------------------------------------------------------------------------------------------
# Pooling, flattening, branching
# --------------------------------------------------------------------------------------------
class _PoolModule(nn.Module):
    def __init__(self, window, strides, padding):
        super().__init__()
        self.window, self.strides, self.padding = window, strides, padding

    def forward(self, x):
        for i in range(x.dim() - 2):
            x = _window_average(x, 2 + i, self.window[i], self.strides[i], self.padding)
        return x


@dataclasses.dataclass(frozen=True)
class AvgPool(Layer):
    """Average pooling over ``window_shape`` (strides default to the window), divided by the
    full window size (zeros counted at 'SAME' edges, as neural-tangents' default)."""

    window_shape: tuple[int, ...] | int = 2
    strides: tuple[int, ...] | int | None = None
    padding: Padding = "VALID"

    def __post_init__(self):
        check_choice(self.padding, f"{type(self).__name__}: padding", ("SAME", "VALID", "CIRCULAR"))

    def _shapes(self, d):
        name = type(self).__name__
        if d < 1:
            raise ValueError(f"{name} needs spatial inputs")
        window = _as_tuple(self.window_shape, d, f"{name}: window_shape")
        strides = window if self.strides is None else _as_tuple(self.strides, d, f"{name}: strides")
        return window, strides

    def kernel(self, state):
        d = len(state.spatial)
        window, strides = self._shapes(d)

        def pool(t):
            for i in range(d):
                t = _window_average(t, t.dim() - 2 * d + i, window[i], strides[i], self.padding)
                t = _window_average(t, t.dim() - d + i, window[i], strides[i], self.padding)
            return t

        spatial = [_out_length(self.padding, n, w, s) for n, w, s in zip(state.spatial, window, strides)]
        return _spatial_op(state, pool, spatial)

    def build(self, in_shape, generator, dtype, device):
        window, strides = self._shapes(len(in_shape) - 1)
        out = [_out_length(self.padding, n, w, s) for n, w, s in zip(in_shape[1:], window, strides)]
        return _PoolModule(window, strides, self.padding), (in_shape[0], *out)

    def _stax_arguments(self):
        d = len(self.window_shape) if isinstance(self.window_shape, tuple) else None
        if d is None:
            raise ValueError(f"to_stax needs {type(self).__name__}.window_shape as a tuple, e.g. (2, 2)")
        strides = None if self.strides is None else _as_tuple(self.strides, d, "strides")
        return self.window_shape, strides or self.window_shape, self.padding

    def to_stax(self, stax):
        return stax.AvgPool(*self._stax_arguments())


class _SumPoolModule(_PoolModule):
    def forward(self, x):
        return super().forward(x) * math.prod(self.window)


@dataclasses.dataclass(frozen=True)
class SumPool(AvgPool):
    """Sum pooling over ``window_shape``: ``AvgPool`` times the window size ``w = prod(window)``
    (zeros at 'SAME' edges), so the kernels are ``AvgPool``'s times ``w^2``."""

    def kernel(self, state):
        state = super().kernel(state)
        scale = math.prod(self._shapes(len(state.spatial))[0]) ** 2
        state.nngp.mul_(scale)
        if state.ntk is not None:
            state.ntk.mul_(scale)
        return state

    def build(self, in_shape, generator, dtype, device):
        module, out_shape = super().build(in_shape, generator, dtype, device)
        return _SumPoolModule(module.window, module.strides, module.padding), out_shape

    def to_stax(self, stax):
        return stax.SumPool(*self._stax_arguments())


class _GlobalPoolModule(nn.Module):
    def __init__(self, reduce: str):
        super().__init__()
        self.reduce = reduce

    def forward(self, x):
        return getattr(x, self.reduce)(dim=tuple(range(2, x.dim())))


class _GlobalPool(Layer):
    """Reduction (``_reduce``: ``"mean"`` or ``"sum"``) over all positions, of the kernel over
    both position axes."""

    _reduce = "mean"

    def kernel(self, state):
        d = len(state.spatial)
        if d == 0:
            raise ValueError(f"{type(self).__name__} needs spatial inputs")

        def pool(t):
            return getattr(t, self._reduce)(dim=tuple(range(t.dim() - 2 * d, t.dim())))

        return _spatial_op(state, pool, ())

    def build(self, in_shape, generator, dtype, device):
        if len(in_shape) < 2:
            raise ValueError(f"{type(self).__name__} needs spatial inputs")
        return _GlobalPoolModule(self._reduce), (in_shape[0],)

    def to_stax(self, stax):
        return getattr(stax, type(self).__name__)()


@dataclasses.dataclass(frozen=True)
class GlobalAvgPool(_GlobalPool):
    """Mean over all positions: ``Sigma' = mean_{s, s'} Sigma[s, s']``."""

    _reduce = "mean"


@dataclasses.dataclass(frozen=True)
class GlobalSumPool(_GlobalPool):
    """Sum over all positions: ``Sigma' = sum_{s, s'} Sigma[s, s']``."""

    _reduce = "sum"


class _FlattenModule(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1)


@dataclasses.dataclass(frozen=True)
class Flatten(Layer):
    """Reshape ``(C, *spatial)`` to ``C * prod(spatial)`` features: ``Sigma' = mean_s Sigma[s, s]``
    (the next dense layer normalises by the new fan-in)."""

    def kernel(self, state):
        d = len(state.spatial)
        if d == 0:
            return state
        size = math.prod(state.spatial)

        def trace(t):
            flat = t.reshape(*t.shape[:t.dim() - 2 * d], size, size)
            return torch.diagonal(flat, dim1=-2, dim2=-1).mean(-1)

        return _spatial_op(state, trace, (), channels=state.channels * size)

    def build(self, in_shape, generator, dtype, device):
        return _FlattenModule(), (math.prod(in_shape),)

    def to_stax(self, stax):
        return stax.Flatten()


@dataclasses.dataclass(frozen=True)
class Identity(Layer):
    """``phi(x) = x`` (the skip branch of a residual block)."""

    def kernel(self, state):
        return state

    def build(self, in_shape, generator, dtype, device):
        return nn.Identity(), tuple(in_shape)

    def to_stax(self, stax):
        return stax.Identity()


class _FanOutModule(nn.Module):
    def __init__(self, copies):
        super().__init__()
        self.copies = copies

    def forward(self, x):
        return (x,) * self.copies


@dataclasses.dataclass(frozen=True)
class FanOut(Layer):
    """Send the input to ``copies`` branches (a tuple), to be followed by ``Parallel``."""

    copies: int = 2

    def __post_init__(self):
        object.__setattr__(self, "copies", check_positive_int(self.copies, "FanOut: copies"))

    def kernel(self, state):
        # each branch updates its kernels in place, so all but the first get a copy
        return (state,) + tuple(state.copy() for _ in range(self.copies - 1))

    def build(self, in_shape, generator, dtype, device):
        return _FanOutModule(self.copies), (tuple(in_shape),) * self.copies

    def to_stax(self, stax):
        return stax.FanOut(self.copies)


class _ParallelModule(nn.Module):
    def __init__(self, modules):
        super().__init__()
        self.branches = nn.ModuleList(modules)

    def forward(self, inputs):
        return tuple(m(x) for m, x in zip(self.branches, inputs))


class Parallel(Layer):
    """Apply layer ``i`` to branch ``i`` (after ``FanOut``)."""

    def __init__(self, *layers: Layer):
        for layer in layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"Parallel takes layers, got {type(layer).__name__}")
        self.layers = tuple(layers)

    def __repr__(self):
        return f"Parallel({', '.join(map(repr, self.layers))})"

    def _check(self, branches):
        if not isinstance(branches, tuple) or len(branches) != len(self.layers):
            raise ValueError(f"Parallel with {len(self.layers)} layers needs as many branches (FanOut)")

    def kernel(self, state):
        self._check(state)
        return tuple(layer.kernel(s) for layer, s in zip(self.layers, state))

    def build(self, in_shape, generator, dtype, device):
        self._check(in_shape)
        built = [layer.build(s, generator, dtype, device) for layer, s in zip(self.layers, in_shape)]
        return _ParallelModule([m for m, _ in built]), tuple(s for _, s in built)

    def to_stax(self, stax):
        return stax.parallel(*[layer.to_stax(stax) for layer in self.layers])


class _FanInSumModule(nn.Module):
    def forward(self, inputs):
        return sum(inputs[1:], inputs[0])


@dataclasses.dataclass(frozen=True)
class FanInSum(Layer):
    """Sum the branches; kernels add (the branches' parameters are independent)."""

    def kernel(self, state):
        if not isinstance(state, tuple):
            raise ValueError("FanInSum needs branches (FanOut, Parallel) before it")
        if len({s.spatial for s in state}) != 1 or len({s.channels for s in state}) != 1:
            raise ValueError("FanInSum: branches have different shapes")
        nngp, ntk = state[0].nngp, state[0].ntk
        for branch in state[1:]:
            nngp = nngp.add_(branch.nngp)
            if branch.ntk is not None:
                ntk = branch.ntk if ntk is None else ntk.add_(branch.ntk)
        return state[0].replace(nngp=nngp, ntk=ntk, gaussian=all(s.gaussian for s in state))

    def build(self, in_shape, generator, dtype, device):
        if len(set(in_shape)) != 1:
            raise ValueError(f"FanInSum: branches have different shapes {in_shape}")
        return _FanInSumModule(), in_shape[0]

    def to_stax(self, stax):
        return stax.FanInSum()


def _check_branches(state, name):
    if not isinstance(state, tuple):
        raise ValueError(f"{name} needs branches (FanOut, Parallel) before it")
    if len({s.spatial for s in state}) != 1:
        raise ValueError(f"{name}: branches have different spatial shapes")


class _FanInProdModule(nn.Module):
    def forward(self, inputs):
        out = inputs[0]
        for x in inputs[1:]:
            out = out * x
        return out


@dataclasses.dataclass(frozen=True)
class FanInProd(Layer):
    """Multiply the branches elementwise. Independent branches: ``Sigma' = prod_i Sigma_i``,
    ``Theta' = sum_i Theta_i prod_{j != i} Sigma_j`` (neural-tangents' ``FanInProd``). The
    branches must be independent in the limit: each ends with its own affine layer (or is the
    ``Identity`` of a Gaussian input), not two activations of the same pre-activation. The
    product is not Gaussian."""

    def kernel(self, state):
        _check_branches(state, "FanInProd")
        if len({s.channels for s in state}) != 1:
            raise ValueError("FanInProd: branches have different shapes")
        nngp, ntk = state[0].nngp, state[0].ntk
        for branch in state[1:]:
            if ntk is not None:
                ntk = ntk.mul_(branch.nngp)
            if branch.ntk is not None:
                term = branch.ntk.mul_(nngp)
                ntk = term if ntk is None else ntk.add_(term)
            nngp = nngp.mul_(branch.nngp)
        return state[0].replace(nngp=nngp, ntk=ntk, gaussian=len(state) == 1 and state[0].gaussian)

    def build(self, in_shape, generator, dtype, device):
        if len(set(in_shape)) != 1:
            raise ValueError(f"FanInProd: branches have different shapes {in_shape}")
        return _FanInProdModule(), in_shape[0]

    def to_stax(self, stax):
        return stax.FanInProd()


class _FanInConcatModule(nn.Module):
    def forward(self, inputs):
        return torch.cat(inputs, dim=1)


@dataclasses.dataclass(frozen=True)
class FanInConcat(Layer):
    """Concatenate the branches along the channels (neural-tangents' ``FanInConcat(axis=-1)``):
    the kernels are the channel-weighted means ``sum_i C_i K_i / sum_i C_i`` (plain means when
    all ``C_i`` are equal, as neural-tangents); the result counts as non-Gaussian, as there."""

    def kernel(self, state):
        _check_branches(state, "FanInConcat")
        widths = [s.channels for s in state]
        if len(set(widths)) == 1:
            widths = [1] * len(widths)
        total = sum(widths)
        nngp = state[0].nngp.mul_(widths[0] / total)
        ntk = None if state[0].ntk is None else state[0].ntk.mul_(widths[0] / total)
        for width, branch in zip(widths[1:], state[1:]):
            nngp.add_(branch.nngp, alpha=width / total)
            if branch.ntk is not None and ntk is None:
                ntk = branch.ntk.mul_(width / total)
            elif branch.ntk is not None:
                ntk.add_(branch.ntk, alpha=width / total)
        return state[0].replace(nngp=nngp, ntk=ntk, channels=sum(s.channels for s in state), gaussian=False)

    def build(self, in_shape, generator, dtype, device):
        if len({tuple(s[1:]) for s in in_shape}) != 1:
            raise ValueError(f"FanInConcat: branches have different spatial shapes {in_shape}")
        return _FanInConcatModule(), (sum(s[0] for s in in_shape), *in_shape[0][1:])

    def to_stax(self, stax):
        return stax.FanInConcat(axis=-1)


class _SerialModule(nn.Module):
    def __init__(self, modules):
        super().__init__()
        self.layers = nn.ModuleList(modules)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class Serial(Layer):
    """Composition ``Serial(l1, l2, ...)``: ``l1`` first. Nested ``Serial`` are allowed."""

    def __init__(self, *layers: Layer):
        if not layers:
            raise ValueError("Serial needs at least one layer")
        for layer in layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"Serial takes layers, got {type(layer).__name__}")
        self.layers = tuple(layers)

    def __repr__(self):
        return f"Serial({', '.join(map(repr, self.layers))})"

    def kernel(self, state):
        for layer in self.layers:
            state = layer.kernel(state)
        return state

    def build(self, in_shape, generator, dtype, device):
        modules = []
        for layer in self.layers:
            module, in_shape = layer.build(in_shape, generator, dtype, device)
            modules.append(module)
        return _SerialModule(modules), in_shape

    def to_stax(self, stax):
        return stax.serial(*[layer.to_stax(stax) for layer in self.layers])


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------
def _as_spec(spec) -> Layer:
    if isinstance(spec, Layer):
        return spec
    if isinstance(spec, (list, tuple)):
        return Serial(*spec)
    raise TypeError(f"spec must be a Layer or a list of layers, got {type(spec).__name__}")


def _check_inputs(x, name):
    check_tensor(x, name, dim=(2, 3, 4))


def _input_state(xa, xb, tape, track_ntk):
    """The input kernel ``K_0 = sum_c x_c(s) x'_c(s') / C``: self pairs if ``xb is None``."""
    channels = xa.shape[1]
    spatial = tuple(xa.shape[2:])
    size = math.prod(spatial)
    a = xa.reshape(xa.shape[0], channels, size)
    if xb is None:
        k = torch.einsum("ncs,nct->nst", a, a).reshape(xa.shape[0], *spatial, *spatial)
    elif size == 1:
        k = a[:, :, 0] @ xb.reshape(xb.shape[0], channels).T
    else:
        b = xb.reshape(xb.shape[0], channels, size)
        k = torch.einsum("ncs,mct->nmst", a, b).reshape(xa.shape[0], xb.shape[0], *spatial, *spatial)
    k.mul_(1.0 / channels)
    return _State(k, None, spatial, channels, xb is not None, tape, track_ntk)


def _run(spec, state):
    out = spec.kernel(state)
    if isinstance(out, tuple):
        raise ValueError("the spec ends with several branches; close them with FanInSum")
    return out


def _record_variances(spec, x, rows, track_ntk):
    """Pass 1: the variances of every elementwise layer for all inputs, ``rows`` at a time."""
    records = None
    for i in range(0, x.shape[0], rows):
        tape = _Tape([])
        _run(spec, _input_state(x[i:i + rows], None, tape, track_ntk))
        records = tape.first if records is None else [
            torch.cat([old, new]) for old, new in zip(records, tape.first)]
    return records


def _extra_copies(spec) -> int:
    """How many block-sized tensors beyond (NNGP, NTK, one temporary, one layer output) a spec
    holds at once: the copies made by ``FanOut`` and the quadrature nodes of ``Elementwise``."""
    if isinstance(spec, (Serial, Parallel)):
        inner = [_extra_copies(layer) for layer in spec.layers]
        fanouts = sum(2 * (layer.copies - 1) for layer in spec.layers if isinstance(layer, FanOut))
        return fanouts + max(inner, default=0)
    if isinstance(spec, Elementwise):
        return 4 * spec.degree
    return getattr(spec, "temporaries", 0)


def _largest_spatial(spec, spatial):
    """``(largest, out)``: an upper bound on the spatial shape inside ``spec`` and on its output
    (only ``ConvTranspose`` enlarges it; the other layers keep or shrink it)."""
    if isinstance(spec, Serial):
        largest = spatial
        for layer in spec.layers:
            inner, spatial = _largest_spatial(layer, spatial)
            largest = max(largest, inner, key=math.prod)
        return largest, spatial
    if isinstance(spec, Parallel):
        shapes = [_largest_spatial(layer, spatial) for layer in spec.layers]
        return (max([spatial] + [inner for inner, _ in shapes], key=math.prod),
                max([out for _, out in shapes] or [spatial], key=math.prod))
    if isinstance(spec, ConvTranspose) and len(spatial) in (1, 2):
        filters = _as_tuple(spec.filter_shape, len(spatial), "ConvTranspose: filter_shape")
        strides = _as_tuple(spec.strides, len(spatial), "ConvTranspose: strides")
        out = tuple(n * s + f + s for n, f, s in zip(spatial, filters, strides))
        return out, out
    return spatial, spatial


def _map_blocks(work, blocks, device):
    """``work(block)`` for every block. On the CPU the blocks are spread over
    ``torch.get_num_threads()`` threads, each running its elementwise passes single-threaded
    (block-sized operations are too small for intra-op threads: their barriers cost more than
    the work, badly so on a loaded machine); the setting is restored on return."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1 or len(blocks) < 2:
        for item in blocks:
            work(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(min(threads, len(blocks))) as pool:
            for _ in pool.map(work, blocks):
                pass
    finally:
        torch.set_num_threads(threads)


# Default block of input pairs. Spatial kernels: 2^18 entries per block (smaller blocks pay the
# per-block overhead: a two-conv CNN on 8 x 8 images took 1.5 / 1.8 / 3.5 s at 2^18 / 2^16 / 2^15).
# Fully connected: 2^17 bytes per array, which stays in the L2 cache and adds no measurable peak
# memory (depth-3 ReLU, 4096 x 4096, one thread: float64 1.29 s and +12 MiB at 2^18 entries,
# 0.93 s and +0 MiB at 2^17 bytes; float32 0.64 s and +6 MiB against 0.38 s and +0 MiB).
_SPEED_BLOCK_ENTRIES = 1 << 18
_SPEED_BLOCK_BYTES_FC = 1 << 17


def analytic_kernels(spec, x1: torch.Tensor, x2: torch.Tensor | None = None,
                     batch_size: int | None = None, *, get: str = "both",
                     max_memory: float | None = None):
    """Infinite-width ``(nngp, ntk)`` of the network described by ``spec`` between ``x1`` and ``x2``.

    Args:
        spec: a ``Layer`` (e.g. ``Serial(Dense(512), Relu(), Dense(1))``) or a list of layers.
        x1: ``(N1, d)`` or ``(N1, C, *spatial)``; x2: the same with ``N2`` rows (default ``x1``).
        batch_size: compute the ``(N1, N2)`` result in blocks of at most ``batch_size`` x
            ``batch_size`` input pairs (default: chosen from ``max_memory`` and the cache).
        get: ``"both"`` returns ``(nngp, ntk)``; ``"nngp"`` or ``"ntk"`` returns that kernel only
            (``"nngp"`` skips the NTK recursion).
        max_memory: bound in bytes on the memory the call allocates, returned kernels included;
            the blocks of pairs are sized to fit (a ``ValueError`` names the minimum if it is too
            small). A block holds ``~(4 + copies) batch^2 prod(spatial)^2`` entries.

    The self kernels ``K(x, x)`` (the variances the activations need) are computed once per
    input (pass 1); the cross kernel block by block (pass 2), only the blocks on and above the
    diagonal when ``x2 is None`` (the kernel is symmetric), with the arc-cosine steps fused in
    place.

    Returns ``(nngp, ntk)`` (or one of them, see ``get``), each ``(N1, N2)`` (followed by
    ``(*spatial, *spatial)`` if the spec ends on a spatial layer), in the dtype and on the device
    of ``x1``: the kernel of one output (the output kernel is this times the identity).
    """
    spec = _as_spec(spec)
    _check_inputs(x1, "x1")
    if x2 is not None:
        _check_inputs(x2, "x2")
        if x2.shape[1:] != x1.shape[1:] or x2.dtype != x1.dtype or x2.device != x1.device:
            raise ValueError(f"x2 must match x1 in per-sample shape, dtype and device: "
                             f"{tuple(x2.shape)} {x2.dtype} {x2.device} vs {tuple(x1.shape)} "
                             f"{x1.dtype} {x1.device}")
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    check_choice(get, "get", ("both", "nngp", "ntk"))
    if max_memory is not None:
        max_memory = check_positive(max_memory, "max_memory")
    track_ntk = get != "nngp"
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    entries = math.prod(_largest_spatial(spec, tuple(x1.shape[2:]))[0]) ** 2  # per pair
    itemsize = x1.element_size()
    per_pair = itemsize * entries * (4 + _extra_copies(spec))
    budget = _SPEED_BLOCK_BYTES_FC // itemsize if entries == 1 else _SPEED_BLOCK_ENTRIES // entries
    block = max(1, math.isqrt(budget)) if batch_size is None else batch_size
    if max_memory is not None:
        kept = (2 if get == "both" else 1) * n1 * n2 * itemsize * entries  # upper bound on the output
        room = max_memory - kept - 2 * (n1 + n2) * itemsize * math.isqrt(entries) * 16
        if room < per_pair:
            raise ValueError(f"max_memory={max_memory:g} bytes is too small for these inputs: the "
                             f"kernels alone need about {kept + per_pair:.3g} bytes")
        block = min(block, max(1, math.isqrt(int(room // per_pair))))
    records1 = _record_variances(spec, x1, block * block, track_ntk)
    records2 = records1 if x2 is None else _record_variances(spec, x2, block * block, track_ntk)
    other = x1 if x2 is None else x2

    def compute(rows, cols):
        out = _run(spec, _input_state(x1[rows], other[cols], _Tape(records1, records2, rows, cols),
                                      track_ntk))
        ntk = out.ntk if out.ntk is not None or not track_ntk else torch.zeros_like(out.nngp)
        return {"both": (out.nngp, ntk), "nngp": (out.nngp,), "ntk": (ntk,)}[get]

    if n1 <= block and n2 <= block:
        result = compute(slice(0, n1), slice(0, n2))
    else:
        symmetric = x2 is None
        blocks = [(slice(i, min(i + block, n1)), slice(j, min(j + block, n2)))
                  for i in range(0, n1, block) for j in range(i if symmetric else 0, n2, block)]
        parts = compute(*blocks[0])
        result = tuple(p.new_empty((n1, n2, *p.shape[2:])) for p in parts)

        def store(rows, cols, parts):
            for target, part in zip(result, parts):
                target[rows, cols] = part
                if symmetric and rows != cols:
                    d = (part.dim() - 2) // 2
                    target[cols, rows] = part.permute(1, 0, *range(2 + d, 2 + 2 * d), *range(2, 2 + d))

        store(*blocks[0], parts)
        del parts  # the first block's kernels are stored: free them before the others
        _map_blocks(lambda rows_cols: store(*rows_cols, compute(*rows_cols)), blocks[1:], x1.device)
    return result if get == "both" else result[0]


def build_network(spec, input_shape: Sequence[int], seed: int | torch.Generator = 0,
                  dtype: torch.dtype = torch.float32, device="cpu") -> nn.Module:
    """The finite PyTorch network described by ``spec`` for inputs of per-sample shape
    ``input_shape`` (``(d,)`` or ``(C, *spatial)``); parameters drawn from ``seed``.

    The weights are drawn in float64 from a CPU generator, so a seed gives the same network in
    every dtype and on every device.
    """
    spec = _as_spec(spec)
    input_shape = tuple(int(s) for s in input_shape)
    if not 1 <= len(input_shape) <= 3:
        raise ValueError(f"input_shape must be (d,) or (C, *spatial), got {input_shape}")
    generator = make_generator(seed, "cpu")
    module, out_shape = spec.build(input_shape, generator, dtype, torch.device(device))
    if isinstance(out_shape, tuple) and out_shape and isinstance(out_shape[0], tuple):
        raise ValueError("the spec ends with several branches; close them with FanInSum")
    return module


def to_stax(spec):
    """The equivalent neural-tangents model ``(init_fn, apply_fn, kernel_fn)`` (imports
    neural_tangents here; it uses channels-last inputs ``(N, *spatial, C)``)."""
    spec = _as_spec(spec)
    try:
        from neural_tangents import stax
    except ImportError as error:
        raise ImportError("to_stax needs neural-tangents (the 'nt' extra, in its own environment: "
                          "pip install 'dlpde[nt]')") from error
    return spec.to_stax(stax)
