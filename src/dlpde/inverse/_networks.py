"""Unrolled networks for any operator (proximal gradient, learned primal-dual) and the
pixel-to-pixel baselines (DnCNN, U-Net), all randomly initialised from an explicit generator."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dlpde.shared import check_bool, check_choice, check_int, check_positive, check_positive_int, check_tensor

from ._checks import check_generator, check_operator, check_shape
from ._operators import LinearOperator
from ._solvers import _project_unit_ball, image_divergence, image_gradient, soft_threshold

__all__ = ["UnrolledProximalGradient", "LearnedPrimalDual", "DnCNN", "UNet", "haar_transform",
           "inverse_haar_transform", "PRIORS"]

PRIORS = ("l1", "wavelet", "tv")


def _init_conv(module: nn.Module, generator: torch.Generator | None) -> None:
    """He-normal initialisation of every convolution from ``generator`` (biases zero)."""
    generator = check_generator(generator, allow_none=True)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_in = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
            with torch.no_grad():
                w = torch.randn(m.weight.shape, generator=generator, dtype=torch.float64)
                m.weight.copy_(w * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.zero_()


def _check_haar(x, name, levels):
    check_tensor(x, name, min_dim=2, finite=False)
    levels = check_int(levels, "levels", minimum=0, maximum=30)
    if x.shape[-2] % 2**levels or x.shape[-1] % 2**levels:
        raise ValueError(f"{name} (..., H, W) needs H and W divisible by 2^levels = {2**levels}, "
                         f"got {tuple(x.shape)}")
    return levels


def haar_transform(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Orthonormal 2-D Haar wavelet transform of (..., H, W), H and W divisible by 2^levels;
    coefficients stored in place (approximation in the top-left corner)."""
    levels = _check_haar(x, "x", levels)
    out = x.clone()
    h, w = x.shape[-2:]
    for _ in range(levels):
        block = out[..., :h, :w]
        a, b = block[..., 0::2, :], block[..., 1::2, :]
        rows = torch.cat([(a + b) / math.sqrt(2), (a - b) / math.sqrt(2)], -2)
        a, b = rows[..., 0::2], rows[..., 1::2]
        out = out.clone()
        out[..., :h, :w] = torch.cat([(a + b) / math.sqrt(2), (a - b) / math.sqrt(2)], -1)
        h, w = h // 2, w // 2
    return out


def inverse_haar_transform(c: torch.Tensor, levels: int) -> torch.Tensor:
    """Inverse (= transpose) of ``haar_transform``."""
    levels = _check_haar(c, "c", levels)
    out = c.clone()
    sizes = [(c.shape[-2] >> k, c.shape[-1] >> k) for k in range(levels)]
    for h, w in reversed(sizes):
        block = out[..., :h, :w]
        lo, hi = block[..., : w // 2], block[..., w // 2:]
        cols = torch.stack([(lo + hi) / math.sqrt(2), (lo - hi) / math.sqrt(2)], -1).flatten(-2)
        lo, hi = cols[..., : h // 2, :], cols[..., h // 2:, :]
        rows = torch.stack([(lo + hi) / math.sqrt(2), (lo - hi) / math.sqrt(2)], -2).flatten(-3, -2)
        out = out.clone()
        out[..., :h, :w] = rows
    return out


def _prox(prior: str, z: torch.Tensor, threshold, levels: int, inner: int) -> torch.Tensor:
    """prox of threshold * R at z: R = ||z||_1, ||Haar z||_1 (detail coefficients), or TV(z)
    (by ``inner`` iterations of Chambolle's dual projection algorithm, 2004)."""
    if prior == "l1":
        return soft_threshold(z, threshold)
    if prior == "wavelet":
        c = haar_transform(z, levels)
        h, w = z.shape[-2] >> levels, z.shape[-1] >> levels
        shrunk = soft_threshold(c, threshold)
        shrunk[..., :h, :w] = c[..., :h, :w]
        return inverse_haar_transform(shrunk, levels)
    p = torch.zeros_like(image_gradient(z))
    step = 1.0 / 8.0
    for _ in range(inner):
        p = _project_unit_ball(p + step * image_gradient(image_divergence(p) - z / threshold), 1.0)
    return z - threshold * image_divergence(p)


class UnrolledProximalGradient(nn.Module):
    """Proximal gradient descent for min_x 1/2 ||A x - y||^2 + lambda R(x), unrolled over
    ``stages`` with per-stage step sizes and thresholds learned ("keep the fidelity term, learn
    the hyperparameters"):

        x_{k+1} = prox_{theta_k R}( x_k - gamma_k A^T (A x_k - y) ),   x_0 = A^T y,

    ``prior``: ``"l1"`` (soft thresholding), ``"wavelet"`` (orthonormal Haar, ``levels``
    levels), ``"tv"`` (``inner`` iterations of Chambolle's projection). ``learn``: subset of
    ``("step", "threshold")``; the others stay at their initial values gamma = 1 / ||A||^2 and
    theta = ``threshold`` * gamma. Works for any ``LinearOperator``; measurements ``y``
    (B, *output_shape) -> estimates (B, *input_shape).
    """

    def __init__(self, operator: LinearOperator, prior: str = "tv", stages: int = 10,
                 learn=("step", "threshold"), threshold: float = 0.05, operator_norm: float | None = None,
                 levels: int = 3, inner: int = 10, input_shape=None):
        super().__init__()
        check_operator(operator)
        check_choice(prior, "prior", PRIORS)
        if isinstance(learn, str) or not isinstance(learn, (tuple, list, set)):
            raise TypeError(f"learn must be a tuple drawn from ('step', 'threshold'), got {learn!r}")
        unknown = [v for v in learn if v not in ("step", "threshold")]
        if unknown:
            raise ValueError(f"learn may contain 'step' and 'threshold', got {unknown!r}")
        stages = check_positive_int(stages, "stages", maximum=1000)
        threshold = check_positive(threshold, "threshold")
        levels = check_int(levels, "levels", minimum=0, maximum=30)
        inner = check_positive_int(inner, "inner", maximum=10000)
        if input_shape is not None:
            input_shape = check_shape(input_shape)
        self.operator, self.prior, self.stages = operator, prior, stages
        self.levels, self.inner = levels, inner
        if operator_norm is not None:
            operator_norm = check_positive(operator_norm, "operator_norm")
        norm = operator_norm if operator_norm is not None else operator.norm(input_shape)
        if norm == 0:
            raise ValueError("the operator is zero (||A|| = 0)")
        step = 1.0 / norm**2
        log_steps = torch.full((stages,), math.log(step), dtype=torch.float32)
        log_thresholds = torch.full((stages,), math.log(threshold * step), dtype=torch.float32)
        self.log_steps = nn.Parameter(log_steps, requires_grad="step" in learn)
        self.log_thresholds = nn.Parameter(log_thresholds, requires_grad="threshold" in learn)

    def forward(self, y: torch.Tensor, return_all: bool = False):
        check_tensor(y, "y")
        x = self.operator.adjoint(y)
        if self.prior == "tv" and x.dim() < 2:
            raise ValueError(f"the TV prior needs images: A^T y has shape {tuple(x.shape)}")
        if self.prior == "wavelet":
            _check_haar(x, "A^T y", self.levels)
        outputs = []
        for k in range(self.stages):
            z = x - self.log_steps[k].exp() * self.operator.adjoint(self.operator.forward(x) - y)
            x = _prox(self.prior, z, self.log_thresholds[k].exp(), self.levels, self.inner)
            outputs.append(x)
        return outputs if return_all else x


def _conv_block(channels_in, channels_out, hidden, depth):
    layers = [nn.Conv2d(channels_in, hidden, 3, padding=1), nn.PReLU(hidden)]
    for _ in range(depth - 2):
        layers += [nn.Conv2d(hidden, hidden, 3, padding=1), nn.PReLU(hidden)]
    layers.append(nn.Conv2d(hidden, channels_out, 3, padding=1))
    return nn.Sequential(*layers)


class LearnedPrimalDual(nn.Module):
    """Learned primal-dual reconstruction (Adler & Oktem 2018) for any image operator:

        h_{k+1} = h_k + Gamma_k(h_k, A f_k^{(1)}, y)        (dual, in measurement space)
        f_{k+1} = f_k + Lambda_k(f_k, A^T h_{k+1}^{(1)})    (primal, in image space)

    with small CNNs Gamma_k, Lambda_k (``depth`` conv layers, ``hidden`` channels), ``memory``
    channels in each space, ``iterations`` unrolled steps, f_0 = 0, h_0 = 0. The operator is
    rescaled by 1 / ||A|| inside (measurements likewise). y: (B, *output_shape) (2-D
    measurements, e.g. sinograms) -> (B, *input_shape).
    """

    def __init__(self, operator: LinearOperator, iterations: int = 10, memory: int = 5,
                 hidden: int = 32, depth: int = 3, operator_norm: float | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        check_operator(operator)
        iterations = check_positive_int(iterations, "iterations", maximum=1000)
        memory = check_positive_int(memory, "memory", maximum=1024)
        hidden = check_positive_int(hidden, "hidden", maximum=4096)
        depth = check_int(depth, "depth", minimum=2, maximum=100)
        if operator_norm is not None:
            operator_norm = check_positive(operator_norm, "operator_norm")
        norm = operator_norm if operator_norm is not None else operator.norm()
        if norm == 0:
            raise ValueError("the operator is zero (||A|| = 0)")
        self.operator, self.iterations, self.memory = operator, iterations, memory
        self.scale = 1.0 / norm
        self.dual = nn.ModuleList(_conv_block(memory + 2, memory, hidden, depth) for _ in range(iterations))
        self.primal = nn.ModuleList(_conv_block(memory + 1, memory, hidden, depth)
                                    for _ in range(iterations))
        _init_conv(self, generator)
        for block in [*self.dual, *self.primal]:  # start close to the identity update
            with torch.no_grad():
                block[-1].weight.mul_(0.1)

    def forward(self, y: torch.Tensor, initial: torch.Tensor | None = None) -> torch.Tensor:
        check_tensor(y, "y", min_dim=3)
        y = y * self.scale
        batch = y.shape[0]
        image_shape = self.operator.adjoint(y[:1]).shape[1:]
        f = y.new_zeros((batch, self.memory, *image_shape))
        if initial is not None:
            check_tensor(initial, "initial", shape=(batch, *image_shape), dtype=y.dtype)
            f = f + initial[:, None]
        h = y.new_zeros((batch, self.memory, *y.shape[1:]))
        for k in range(self.iterations):
            projected = self.operator.forward(f[:, 0]) * self.scale
            h = h + self.dual[k](torch.cat([h, projected[:, None], y[:, None]], 1))
            back = self.operator.adjoint(h[:, 0]) * self.scale
            f = f + self.primal[k](torch.cat([f, back[:, None]], 1))
        return f[:, 0]


def _check_images(y, module: nn.Module):
    """(B, H, W) images in the dtype of the network's parameters."""
    dtype = next(module.parameters()).dtype
    check_tensor(y, "y", dim=3, dtype=dtype, finite=False)


class DnCNN(nn.Module):
    """DnCNN (Zhang et al. 2017): residual learning x = y - R(y), R a stack of ``depth`` 3x3
    convolutions (``width`` channels, batch norm and ReLU inside). Images (B, H, W)."""

    def __init__(self, depth: int = 17, width: int = 64, batch_norm: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__()
        depth = check_int(depth, "depth", minimum=2, maximum=200)
        width = check_positive_int(width, "width", maximum=1024)
        check_bool(batch_norm, "batch_norm")
        layers = [nn.Conv2d(1, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(width, width, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU())
        layers.append(nn.Conv2d(width, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)
        _init_conv(self, generator)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        _check_images(y, self)
        return y - self.body(y[:, None])[:, 0]


class UNet(nn.Module):
    """A small U-Net (Ronneberger et al. 2015) for image-to-image restoration: ``levels``
    down-sampling steps (max-pool), two 3x3 conv + ReLU per level, ``width`` channels doubled per
    level, transposed-conv up-sampling, skip connections by concatenation, residual output
    x = y + U(y). Images (B, H, W) of any size (reflect-padded to a multiple of 2^levels)."""

    def __init__(self, levels: int = 2, width: int = 16, generator: torch.Generator | None = None):
        super().__init__()
        levels = check_positive_int(levels, "levels", maximum=8)
        width = check_positive_int(width, "width", maximum=1024)

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())

        widths = [width * 2**k for k in range(levels + 1)]
        self.levels = levels
        self.down = nn.ModuleList([block(1, widths[0])] + [block(widths[k], widths[k + 1])
                                                           for k in range(levels)])
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[k + 1], widths[k], 2, stride=2)
                                for k in reversed(range(levels)))
        self.merge = nn.ModuleList(block(2 * widths[k], widths[k]) for k in reversed(range(levels)))
        self.head = nn.Conv2d(widths[0], 1, 1)
        _init_conv(self, generator)
        with torch.no_grad():
            self.head.weight.mul_(0.1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        _check_images(y, self)
        multiple = 2**self.levels
        h, w = y.shape[-2:]
        if min(h, w) < multiple:
            raise ValueError(f"y (B, H, W) must be at least {multiple} pixels on each side for a "
                             f"{self.levels}-level U-Net, got {tuple(y.shape)}")
        pad_h, pad_w = (-h) % multiple, (-w) % multiple
        x = F.pad(y[:, None], (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else y[:, None]
        skips = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            x = merge(torch.cat([up(x), skip], 1))
        return y + self.head(x)[:, 0, :h, :w]
