"""Two-layer mean-field networks as particle systems: fully connected and convolutional.

Both are ``f(x) = (1/n) sum_i a_i phi(x; w_i)``: one particle ``theta_i = (a_i, w_i)`` per hidden
unit (per channel for the CNN), stored as row ``i`` of the ``(n, p)`` tensor ``particles`` with the
output weight ``a_i`` in column 0. The CNN differs only in its feature map ``phi``: the
patch-averaged unit ``(1/P) sum_p sigma(<w, P_p x> + b)``. Training (``_dynamics.py``) is the same
for both, which is what makes the CNN a two-layer mean-field model.
"""

from __future__ import annotations

import torch
from torch import nn

from dlpde.shared import (
    check_bool,
    check_int,
    check_positive,
    check_positive_int,
    check_same_device,
    check_tensor,
    make_generator,
    resolve_device,
    resolve_dtype,
)

from ._activations import resolve_activation
from ._fused import FusedSquaredLoss, _one_intra_op_thread, fused_squared_loss

__all__ = ["TwoLayerMeanField", "MeanFieldCNN"]


def _positive_int(name, value):
    return check_positive_int(value, name)


def _nonnegative(name, value):
    return check_positive(value, name, allow_zero=True)


class _TwoLayerParticles(nn.Module):
    """Shared part of the two-layer models: output weights in column 0 of ``particles``."""

    def __init__(self, particles: torch.Tensor, fixed_output: bool, activation):
        super().__init__()
        self.activation = resolve_activation(activation)
        self.fixed_output = bool(fixed_output)
        self.particles = nn.Parameter(particles)
        mask = torch.ones(particles.shape[-1], dtype=particles.dtype, device=particles.device)
        if self.fixed_output:
            mask[0] = 0.0
        self.register_buffer("trainable_mask", mask)

    @property
    def mean_field_scale(self) -> int:
        """The number of particles ``n`` the output averages over (the step on each is scaled by it)."""
        return self.particles.shape[0]

    @property
    def output_weights(self) -> torch.Tensor:
        return self.particles[:, 0]

    def set_particles(self, particles: torch.Tensor) -> None:
        """Replace the particles (same shape); e.g. to evaluate a saved state of a trajectory."""
        if particles.shape != self.particles.shape:
            raise ValueError(
                f"particles must have shape {tuple(self.particles.shape)}, got {tuple(particles.shape)}"
            )
        with torch.no_grad():
            self.particles.copy_(particles)

    def unit_outputs(self, x: torch.Tensor, particles: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, particles: torch.Tensor | None = None) -> torch.Tensor:
        """``f(x) = (1/n) sum_i a_i phi(x; w_i)``, shape ``(B,)``."""
        particles = self.particles if particles is None else particles
        return self.unit_outputs(x, particles) @ particles[:, 0] / particles.shape[0]

    def _check_input(self, x, event_dims, name):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != len(event_dims) + 1 or tuple(x.shape[1:]) != tuple(event_dims):
            raise ValueError(
                f"x must have shape (batch, {', '.join(map(str, event_dims))}) for this {name}, "
                f"got {tuple(x.shape)}"
            )
        if x.dtype != self.particles.dtype or x.device != self.particles.device:
            raise ValueError(
                f"x must be {self.particles.dtype} on {self.particles.device} like the particles, "
                f"got {x.dtype} on {x.device}"
            )


def _initial_particles(
    n, width, fixed_output, bias, input_scale, output_scale, bias_scale, generator, dtype, device
):
    """Rows ``(a, w, b)``: ``a ~ N(0, output_scale^2)`` (``= output_scale`` when fixed),
    ``w ~ N(0, input_scale^2 / width I)``, ``b ~ N(0, bias_scale^2)``; drawn on the CPU in float64."""
    _positive_int("n", n)
    check_bool(fixed_output, "fixed_output")
    check_bool(bias, "bias")
    for name, value in (
        ("input_scale", input_scale),
        ("output_scale", output_scale),
        ("bias_scale", bias_scale),
    ):
        _nonnegative(name, value)
    generator = make_generator(0 if generator is None else generator, "cpu")
    a = (
        torch.full((n, 1), float(output_scale), dtype=torch.float64)
        if fixed_output
        else output_scale * torch.randn(n, 1, generator=generator, dtype=torch.float64)
    )
    w = input_scale / width**0.5 * torch.randn(n, width, generator=generator, dtype=torch.float64)
    columns = [a, w]
    if bias:
        columns.append(bias_scale * torch.randn(n, 1, generator=generator, dtype=torch.float64))
    device = resolve_device("cpu" if device is None else device)
    return torch.cat(columns, 1).to(dtype=resolve_dtype(dtype), device=device)


class TwoLayerMeanField(_TwoLayerParticles):
    """``f(x) = (1/n) sum_{i=1}^n a_i sigma(<w_i, x> + b_i)``, a system of ``n`` particles.

    Particle ``i`` is row ``i`` of ``particles``, shape ``(n, 1 + d (+1))``: ``(a_i, w_i, b_i)``
    (``b_i`` only with ``bias=True``). With ``fixed_output=True`` the output weights are frozen
    (the setting of Mei, Montanari & Nguyen 2018 with ``a_i = output_scale``). Initial particles
    are i.i.d.: ``a ~ N(0, output_scale^2)``, ``w ~ N(0, input_scale^2 / d I_d)``,
    ``b ~ N(0, bias_scale^2)``, drawn from ``generator`` (a seed or CPU generator; default 0).
    Train it with ``mean_field_gradient_flow`` or ``mean_field_sgd``: in mean-field time ``t`` each
    particle moves as ``d theta_i/dt = -n grad_i R = 2 E[(y - f(x)) grad sigma_*(x; theta_i)]`` for the
    risk ``R = E (y - f)^2`` (no 1/2), so the empirical measure follows the distributional dynamics
    ``d_t rho = 2 div(rho grad Psi)``, ``Psi = V + int U d rho`` of Mei, Montanari & Nguyen (2018) with
    ``xi = 1``; an SGD step of size ``s`` advances ``t`` by ``s`` (noise and penalty: ``_dynamics.py``).

    Args:
        n: number of particles (hidden units). d: input dimension.
        activation: name (``relu``, ``tanh``, ``sigmoid``, ``erf``, ``linear``), a callable, a
            ``PiecewiseLinearActivation`` or a ``GaussianWellActivation``.
    """

    def __init__(
        self,
        n: int,
        d: int,
        activation="relu",
        fixed_output: bool = False,
        bias: bool = True,
        *,
        input_scale: float = 1.0,
        output_scale: float = 1.0,
        bias_scale: float = 0.0,
        generator=None,
        dtype=None,
        device=None,
    ):
        _positive_int("d", d)
        particles = _initial_particles(
            n, d, fixed_output, bias, input_scale, output_scale, bias_scale, generator, dtype, device
        )
        super().__init__(particles, fixed_output, activation)
        self.d, self.bias = d, bool(bias)
        self._fused_workspace: dict = {}  # buffers of squared_loss, reused across steps

    def __repr__(self):
        return (
            f"TwoLayerMeanField(n={self.mean_field_scale}, d={self.d}, fixed_output={self.fixed_output}, "
            f"bias={self.bias})"
        )

    @property
    def input_weights(self) -> torch.Tensor:
        return self.particles[:, 1 : 1 + self.d]

    @property
    def biases(self) -> torch.Tensor | None:
        return self.particles[:, -1] if self.bias else None

    def squared_loss(self, x: torch.Tensor, y: torch.Tensor, block: int | None = None, *,
                     set_grad: bool = False) -> torch.Tensor:
        """``(1/B) sum_b (y_b - f(x_b))^2`` as a 0-d tensor, differentiable in ``particles``.

        The same value and gradient as ``((y - model(x)) ** 2).mean()`` through autograd, computed
        together over blocks of ``block`` particles (default: about 2^15 / B on the CPU, all of
        them on a GPU) with the gradient in closed form, one GEMM per block (``_fused.py``). The
        blocks' activations and slopes (``2 B n`` numbers, up to 512 MiB, else recomputed) live in a
        workspace kept on the model and reused by every step, so a step allocates only the gradient.
        This is the loss of ``mean_field_sgd`` for online SGD on the
        squared loss: ``mean_field_sgd(model, lambda k: model.squared_loss(*sample(k)), ...)``.

        ``set_grad=True`` skips autograd: the gradient is added to ``particles.grad`` at once and
        the loss is returned detached (the form ``dlpde.shared.train`` accepts from a loss that
        supplies its own gradient; it saves the autograd round trip that dominates a step at
        ``n ~ 10^3``).
        """
        self._check_input(x, (self.d,), "TwoLayerMeanField")
        check_tensor(y, "y", dim=1, shape=(x.shape[0],), dtype=self.particles.dtype)
        check_same_device(x=x, y=y)
        if block is not None:
            block = check_positive_int(block, "block")
        if check_bool(set_grad, "set_grad"):
            particles = self.particles
            with _one_intra_op_thread():
                loss, grad = fused_squared_loss(self.activation, particles.detach(), x, y, self.d, self.bias,
                                                block, True, self._fused_workspace)
            if particles.grad is None:
                particles.grad = grad
            else:
                particles.grad.add_(grad)
            return loss
        return FusedSquaredLoss.apply(
            self.particles, x, y, self.activation, self.d, self.bias, block, self._fused_workspace
        )

    def unit_outputs(self, x: torch.Tensor, particles: torch.Tensor | None = None) -> torch.Tensor:
        """``sigma(<w_i, x_b> + b_i)``, shape ``(B, n)``; ``x`` of shape ``(B, d)``."""
        self._check_input(x, (self.d,), "TwoLayerMeanField")
        particles = self.particles if particles is None else particles
        pre = x @ particles[:, 1 : 1 + self.d].T
        if self.bias:
            pre = pre + particles[:, -1]
        return self.activation(pre)


class MeanFieldCNN(_TwoLayerParticles):
    """Two-layer mean-field CNN ``f(x) = (1/M) sum_m a_m (1/P) sum_p sigma(<w_m, P_p x> + b_m)``.

    ``P_p x`` is the ``p``-th of the ``P`` patches (``kernel_size x kernel_size``, all input
    channels; ``stride``, ``padding`` as in ``conv2d``) of an image ``x`` of shape
    ``(in_channels, height, width)``; the filters ``w_m`` are shared over patches. Channels are the
    particles, rows ``(a_m, w_m, b_m)`` of ``particles`` with ``w_m`` flattened in ``conv2d``
    order (channel, row, column). It is a two-layer mean-field model with the patch-averaged
    feature map ``phi(x; w) = (1/P) sum_p sigma(<w, P_p x> + b)``, trained exactly like
    ``TwoLayerMeanField`` (step on each channel scaled by ``M``). With a linear activation it is
    the linear two-layer model on the mean patch ``(1/P) sum_p P_p x`` (``mean_patch``).
    Initialisation as in ``TwoLayerMeanField`` with ``d = in_channels kernel_size^2``.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        in_channels: int = 1,
        activation="relu",
        fixed_output: bool = False,
        bias: bool = True,
        *,
        stride: int = 1,
        padding: int = 0,
        input_scale: float = 1.0,
        output_scale: float = 1.0,
        bias_scale: float = 0.0,
        generator=None,
        dtype=None,
        device=None,
    ):
        _positive_int("kernel_size", kernel_size)
        _positive_int("in_channels", in_channels)
        _positive_int("stride", stride)
        check_int(padding, "padding", minimum=0)
        width = in_channels * kernel_size * kernel_size
        particles = _initial_particles(
            channels,
            width,
            fixed_output,
            bias,
            input_scale,
            output_scale,
            bias_scale,
            generator,
            dtype,
            device,
        )
        super().__init__(particles, fixed_output, activation)
        self.kernel_size, self.in_channels, self.bias = kernel_size, in_channels, bool(bias)
        self.stride, self.padding, self.filter_size = stride, padding, width

    def __repr__(self):
        return (
            f"MeanFieldCNN(channels={self.mean_field_scale}, kernel_size={self.kernel_size}, "
            f"in_channels={self.in_channels}, fixed_output={self.fixed_output}, bias={self.bias})"
        )

    @property
    def filters(self) -> torch.Tensor:
        """The filters as a ``conv2d`` weight, ``(M, in_channels, kernel_size, kernel_size)``."""
        return self.particles[:, 1 : 1 + self.filter_size].reshape(
            -1, self.in_channels, self.kernel_size, self.kernel_size
        )

    def _check_image(self, x):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape (batch, {self.in_channels}, height, width), got "
                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
        if min(x.shape[2], x.shape[3]) + 2 * self.padding < self.kernel_size:
            raise ValueError(
                f"images of size {tuple(x.shape[2:])} are smaller than kernel_size={self.kernel_size}"
            )
        if x.dtype != self.particles.dtype or x.device != self.particles.device:
            raise ValueError(
                f"x must be {self.particles.dtype} on {self.particles.device} like the particles, "
                f"got {x.dtype} on {x.device}"
            )

    def unit_outputs(self, x: torch.Tensor, particles: torch.Tensor | None = None) -> torch.Tensor:
        """Patch-averaged units ``(1/P) sum_p sigma(<w_m, P_p x> + b_m)``, shape ``(B, M)``."""
        self._check_image(x)
        particles = self.particles if particles is None else particles
        filters = particles[:, 1 : 1 + self.filter_size].reshape(
            -1, self.in_channels, self.kernel_size, self.kernel_size
        )
        bias = particles[:, -1] if self.bias else None
        pre = torch.nn.functional.conv2d(x, filters, bias, stride=self.stride, padding=self.padding)
        return self.activation(pre).mean((-2, -1))

    def mean_patch(self, x: torch.Tensor) -> torch.Tensor:
        """``(1/P) sum_p P_p x`` flattened like the filters, shape ``(B, in_channels kernel_size^2)``."""
        self._check_image(x)
        patches = torch.nn.functional.unfold(x, self.kernel_size, stride=self.stride, padding=self.padding)
        return patches.mean(-1)
