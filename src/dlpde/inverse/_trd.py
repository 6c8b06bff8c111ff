"""Trainable nonlinear reaction-diffusion (Chen & Pock 2017) and its fidelity-free variant with a
learned stopping time (Effland, Kobler, Kunisch & Pock 2020)."""

from __future__ import annotations

import math

import torch
from torch import nn

from dlpde.shared import (
    check_bool,
    check_callable,
    check_int,
    check_positive,
    check_positive_int,
    check_tensor,
    train,
)
from dlpde.shared.checks import check_dtype, check_path

from ._checks import check_generator, probe_sample
from ._operators import convolve, convolve_adjoint

__all__ = ["TRD", "RadialBasisInfluence", "dct_filter_basis", "train_greedy_then_joint"]


def dct_filter_basis(size: int, dtype=torch.float64) -> torch.Tensor:
    """The 2-D DCT-II basis of ``size`` x ``size`` filters without the constant one:
    (size^2 - 1, size, size), orthonormal, every filter zero-mean."""
    size = check_int(size, "size", minimum=2, maximum=64)
    dtype = check_dtype(dtype)
    n = torch.arange(size, dtype=torch.float64)
    k = n[:, None]
    basis_1d = torch.cos(math.pi * (n[None, :] + 0.5) * k / size)
    basis_1d[0] /= math.sqrt(2)
    basis_1d *= math.sqrt(2 / size)
    basis = basis_1d[:, None, :, None] * basis_1d[None, :, None, :]
    return basis.reshape(size * size, size, size)[1:].to(dtype)


class RadialBasisInfluence(nn.Module):
    """Influence functions phi_i(z) = sum_j w_ij exp(-(z - c_j)^2 / (2 s^2)), one per channel.

    ``channels`` functions with ``centres`` equally spaced Gaussian RBFs on [-``radius``,
    ``radius``], width ``s`` = their spacing (Chen & Pock: 63 RBFs on [-310, 310], width 10,
    on the 0-255 scale; here radius 310/255 on the 0-1 scale). For speed phi is evaluated by
    linear interpolation of its values on a grid ``oversampling`` times finer than the centres
    (relative error ~ 1 / (8 oversampling^2) of one RBF's height); gradients reach both the
    weights and z. Initialised to phi_i(z) = ``scale`` z / (1 + (z / ``knee``)^2) (a Student-t
    type influence).
    """

    def __init__(self, channels: int, centres: int = 63, radius: float = 310 / 255,
                 oversampling: int = 8, scale: float = 1.0, knee: float = 0.1, dtype=torch.float32):
        super().__init__()
        channels = check_positive_int(channels, "channels", maximum=4096)
        centres = check_int(centres, "centres", minimum=2, maximum=4096)
        radius = check_positive(radius, "radius", maximum=1e6)
        oversampling = check_positive_int(oversampling, "oversampling", maximum=1024)
        scale = check_positive(scale, "scale", allow_zero=True, maximum=1e6)
        knee = check_positive(knee, "knee", maximum=1e6)
        dtype = check_dtype(dtype)
        self.register_buffer("centres", torch.linspace(-radius, radius, centres, dtype=dtype))
        self.width = 2 * radius / (centres - 1)
        self.radius = radius
        self.oversampling = oversampling
        target = scale * self.centres / (1 + (self.centres / knee) ** 2)
        weights = target / math.sqrt(2 * math.pi)  # sum_j g(c_j) RBF_j(z) ~ sqrt(2 pi) g(z)
        self.weights = nn.Parameter(weights.expand(channels, -1).clone())

    def exact(self, z: torch.Tensor) -> torch.Tensor:
        """phi evaluated directly from the RBF sum; z (N, C, ...), C = channels (slow, for tests)."""
        self._check(z, 2)
        c = self.centres.to(z)
        shape = (1, -1) + (1,) * (z.dim() - 2)
        rbf = torch.exp(-(z[..., None] - c) ** 2 / (2 * self.width**2))
        return (rbf * self.weights.reshape(*shape, c.numel()).to(z)).sum(-1)

    def _check(self, z, dim):
        check_tensor(z, "z", min_dim=dim, finite=False)
        if dim == 4 and z.dim() != 4:
            raise ValueError(f"z must have shape (N, C, H, W), got {tuple(z.shape)}")
        if z.shape[1] != self.weights.shape[0]:
            raise ValueError(f"z must have {self.weights.shape[0]} channels, got shape {tuple(z.shape)}")

    def table(self, dtype=None) -> tuple[torch.Tensor, float, float]:
        """phi on its interpolation grid: (channels, points), the first node and the spacing."""
        start = -self.radius - 4 * self.width
        spacing = self.width / self.oversampling
        points = int(round((2 * self.radius + 8 * self.width) / spacing)) + 1
        grid = start + spacing * torch.arange(points, device=self.centres.device,
                                              dtype=self.centres.dtype)
        rbf = torch.exp(-(grid[:, None] - self.centres[None, :]) ** 2 / (2 * self.width**2))
        values = self.weights @ rbf.T
        return (values if dtype is None else values.to(dtype)), start, spacing

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """phi_i applied to channel i of z (N, C, H, W)."""
        self._check(z, 4)
        values, start, spacing = self.table(z.dtype)
        channels, points = values.shape
        position = ((z - start) / spacing).clamp(0, points - 1)
        lower = position.detach().floor().clamp(max=points - 2)
        fraction = position - lower
        index = lower.long() + (torch.arange(channels, device=z.device) * points).reshape(1, -1, 1, 1)
        flat = values.reshape(-1)
        low, high = flat[index], flat[index + 1]
        return low + fraction * (high - low)


class TRD(nn.Module):
    """Trainable nonlinear reaction-diffusion (Chen & Pock 2017) for images (B, H, W):

        u_t = u_{t-1} - ( sum_i K_i^T phi_i^t(K_i u_{t-1}) + lambda_t (u_{t-1} - f) ),  u_0 = f,

    t = 1..``stages``, ``filters`` zero-mean filters K_i^t per stage spanned by the DCT basis
    without the constant (K = sum_j c_ij B_j / ||c_i||: unit norm), influence functions phi_i^t
    as Gaussian-RBF sums (``RadialBasisInfluence``), reflect boundary with the exact adjoint.

    ``fidelity=False`` drops the reaction term (lambda = 0): a pure, time-homogeneous diffusion
    u_t = u_{t-1} - (T / stages) sum_i K_i^T phi_i(K_i u_{t-1}) with one set of filters and
    influences for all steps, stopped at time T (``stopping_time``; learned when
    ``learn_stopping_time=True``, Effland et al. 2020). It can be run for any number of steps
    (``forward(f, steps=k)``) to choose the stopping time a posteriori.
    """

    def __init__(self, stages: int = 5, filter_size: int = 5, filters: int | None = None,
                 centres: int = 63, fidelity: bool = True, stopping_time: float = 1.0,
                 learn_stopping_time: bool = True, generator=None, dtype=torch.float32):
        super().__init__()
        stages = check_positive_int(stages, "stages", maximum=1000)
        basis = dct_filter_basis(filter_size, torch.float64)
        filters = basis.shape[0] if filters is None else check_positive_int(filters, "filters", maximum=4096)
        centres = check_int(centres, "centres", minimum=2, maximum=4096)
        check_bool(fidelity, "fidelity")
        stopping_time = check_positive(stopping_time, "stopping_time", maximum=1e6)
        check_bool(learn_stopping_time, "learn_stopping_time")
        generator = check_generator(generator, allow_none=True)
        dtype = check_dtype(dtype)
        self.stages, self.fidelity, self.filter_size = stages, fidelity, filter_size
        self.register_buffer("basis", basis.to(dtype))
        sets = stages if fidelity else 1
        # Initial coefficients: the DCT basis itself (cycled), slightly perturbed when a
        # generator is given so that filters of a set are not identical.
        eye = torch.eye(basis.shape[0], dtype=torch.float64)[torch.arange(filters) % basis.shape[0]]
        coefficients = []
        for _ in range(sets):
            c = eye.clone()
            if generator is not None:
                c = c + 0.05 * torch.randn(c.shape, generator=generator, dtype=torch.float64)
            coefficients.append(nn.Parameter(c.to(dtype)))
        self.coefficients = nn.ParameterList(coefficients)
        self.influences = nn.ModuleList(RadialBasisInfluence(filters, centres, dtype=dtype)
                                        for _ in range(sets))
        if fidelity:
            self.log_reaction = nn.ParameterList(
                nn.Parameter(torch.tensor(math.log(0.1), dtype=dtype)) for _ in range(stages))
        else:
            log_time = torch.tensor(math.log(stopping_time), dtype=dtype)
            if learn_stopping_time:
                self.log_stopping_time = nn.Parameter(log_time)
            else:
                self.register_buffer("log_stopping_time", log_time)

    @property
    def stopping_time(self) -> float:
        return float(self.log_stopping_time.detach().exp()) if not self.fidelity else float(self.stages)

    def filters_of(self, t: int) -> torch.Tensor:
        """The filters of stage t (0-based): (filters, size, size), zero-mean, unit norm."""
        c = self.coefficients[t if self.fidelity else 0]
        c = c / torch.linalg.vector_norm(c, dim=1, keepdim=True)
        return torch.einsum("ij,jkl->ikl", c, self.basis)

    def stage_parameters(self, t: int) -> list[nn.Parameter]:
        """Parameters of stage t (greedy training); for ``fidelity=False``, all parameters."""
        if not self.fidelity:
            return [p for p in self.parameters() if p.requires_grad]
        return [self.coefficients[t], self.influences[t].weights, self.log_reaction[t]]

    def step(self, t: int, u: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """One stage: u (N, 1, H, W), f the noisy image (N, 1, H, W)."""
        set_index = t if self.fidelity else 0
        kernels = self.filters_of(t)
        response = self.influences[set_index](convolve(u, kernels, "reflect"))
        diffusion = convolve_adjoint(response, kernels, "reflect")
        if self.fidelity:
            return u - diffusion - self.log_reaction[t].exp() * (u - f)
        return u - (self.log_stopping_time.exp() / self.stages) * diffusion

    def forward(self, f: torch.Tensor, steps: int | None = None, return_all: bool = False):
        """Restore ``f`` (B, H, W): the output after ``steps`` (default ``stages``) stages, or the
        list of all stage outputs with ``return_all``. Steps beyond ``stages`` are allowed only
        for ``fidelity=False``."""
        check_tensor(f, "f", dim=3, dtype=self.basis.dtype, finite=False)
        check_bool(return_all, "return_all")
        if min(f.shape[-2:]) <= self.filter_size // 2:
            raise ValueError(f"f (B, H, W) must be larger than the filter radius {self.filter_size // 2} "
                             f"(reflect boundary), got {tuple(f.shape)}")
        steps = self.stages if steps is None else check_int(steps, "steps", minimum=0, maximum=100000)
        if self.fidelity and steps > self.stages:
            raise ValueError(f"steps must be <= stages = {self.stages} with fidelity=True")
        f4 = f[:, None]
        u = f4
        outputs = []
        for t in range(steps):
            u = self.step(t, u, f4)
            outputs.append(u[:, 0])
        return outputs if return_all else (outputs[-1] if outputs else f)


def train_greedy_then_joint(model: TRD, sample, greedy_steps: int, joint_steps: int, lr: float = 1e-2,
                            joint_lr: float | None = None, generator=None, checkpoint_dir=None,
                            resume: bool = False, progress: bool = True, callback=None) -> list[dict]:
    """Greedy stage-wise then joint training of a ``TRD`` (Chen & Pock 2017), by
    ``dlpde.shared.train`` (Adam, cosine schedule), minimising the mean squared error.

    ``sample(generator) -> (noisy, clean)`` (B, H, W) draws a fresh batch. With fidelity, stage
    t = 1..T is trained alone for ``greedy_steps`` (earlier stages fixed, the loss on the
    output of stage t), then all stages together for ``joint_steps`` at ``joint_lr`` (default
    lr / 2). Without fidelity (shared parameters) only the joint phase runs, for
    ``greedy_steps + joint_steps`` steps. ``callback(stage, model)`` runs after each greedy stage
    (e.g. to record PSNR against the number of stages). Returns the concatenated history.
    """
    if not isinstance(model, TRD):
        raise TypeError(f"model must be a TRD, got {type(model).__name__}")
    check_callable(sample, "sample")
    greedy_steps = check_int(greedy_steps, "greedy_steps", minimum=0)
    joint_steps = check_int(joint_steps, "joint_steps", minimum=0)
    lr = check_positive(lr, "lr")
    if joint_lr is not None:
        joint_lr = check_positive(joint_lr, "joint_lr")
    check_bool(resume, "resume")
    check_bool(progress, "progress")
    if callback is not None:
        check_callable(callback, "callback")
    if checkpoint_dir is not None:
        check_path(checkpoint_dir, "checkpoint_dir")
    g = check_generator(0 if generator is None else generator)
    noisy, _ = probe_sample(sample, g, 3)
    if noisy.dtype != model.basis.dtype:
        raise TypeError(f"sample must return {model.basis.dtype} images (the model's dtype), "
                        f"got {noisy.dtype}")
    history = []

    def run(params, steps, rate, stage, tag):
        if steps == 0:
            return

        def loss_fn(step):
            noisy, clean = sample(g)
            if stage is None:
                out = model(noisy)
            else:
                with torch.no_grad():
                    u = noisy[:, None]
                    for t in range(stage):
                        u = model.step(t, u, noisy[:, None])
                out = model.step(stage, u, noisy[:, None])[:, 0]
            return ((out - clean) ** 2).mean()

        ckpt = None if checkpoint_dir is None else f"{checkpoint_dir}/trd-{tag}.pt"
        rows = train(params, loss_fn, steps, lr=rate, schedule="cosine", final_lr_factor=0.1,
                     generators=[g], checkpoint=ckpt, checkpoint_every=max(50, steps // 4),
                     resume=resume, progress=progress, desc=f"TRD {tag}",
                     log_every=max(1, steps // 10))
        history.extend({**r, "phase": tag} for r in rows)

    if model.fidelity:
        for t in range(model.stages):
            run(model.stage_parameters(t), greedy_steps, lr, t, f"greedy{t + 1}")
            if callback is not None:
                callback(t + 1, model)
        run([p for p in model.parameters() if p.requires_grad], joint_steps,
            joint_lr or lr / 2, None, "joint")
    else:
        run([p for p in model.parameters() if p.requires_grad], greedy_steps + joint_steps,
            lr, None, "joint")
    return history
