"""Small building blocks shared by the networks of the symmetry thread.

Every parameter is drawn from an explicit ``torch.Generator`` on the CPU (modules are built on
the CPU in the requested dtype and moved with ``.to(device)``), so the same seed gives the same
network on every device. ``torch.nn.utils.skip_init`` keeps construction from touching the
global random number generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from dlpde.shared import check_positive_int, make_generator

_ACTIVATIONS = {"tanh": nn.Tanh, "silu": nn.SiLU, "gelu": nn.GELU, "softplus": nn.Softplus}


def as_generator(generator) -> torch.Generator:
    """A CPU generator from a seed or a generator (parameters are always drawn on the CPU)."""
    generator = make_generator(generator, "cpu")
    if generator.device.type != "cpu":
        raise ValueError("parameter initialisation needs a CPU generator (or an int seed)")
    return generator


def random_tensor(shape, generator: torch.Generator, dtype: torch.dtype, scale: float = 1.0):
    """``scale * N(0, 1)`` entries drawn in float64 from ``generator`` and cast to ``dtype``."""
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype)


def linear(in_features: int, out_features: int, generator: torch.Generator, dtype: torch.dtype,
           scale: float = 1.0, bias: bool = True) -> nn.Linear:
    """``nn.Linear`` with LeCun-normal weights ``N(0, scale^2 / in_features)`` and zero bias."""
    layer = torch.nn.utils.skip_init(nn.Linear, in_features, out_features, bias=bias, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(random_tensor(layer.weight.shape, generator, dtype,
                                         scale / math.sqrt(max(1, in_features))))
        if bias:
            layer.bias.zero_()
    return layer


def activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]()


def mlp(sizes: Sequence[int], generator: torch.Generator, dtype: torch.dtype, activation_name="tanh",
        final_scale: float = 1.0) -> nn.Sequential:
    """A multilayer perceptron ``sizes[0] -> ... -> sizes[-1]`` acting on the last dimension.

    Hidden layers use ``activation_name``; the last layer is linear with weights scaled by
    ``final_scale`` (0 makes the network start as the zero function).
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"an MLP needs at least two positive layer sizes, got {sizes}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        layers.append(linear(a, b, generator, dtype, scale=final_scale if last else 1.0))
        if not last:
            layers.append(activation(activation_name))
    return nn.Sequential(*layers)


def check_sizes(sizes, name: str) -> tuple[int, ...]:
    """A sequence of positive ints (hidden widths), as a tuple."""
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise TypeError(f"{name} must be a sequence of positive ints, got {sizes!r}")
    return tuple(check_positive_int(s, f"each of {name}") for s in sizes)
