"""meanfield.resnet: mean-field ResNet / ResNeXt against the ODE in depth, trained as particles.

Blocks ``f(x; theta) = U sigma(W x)`` (``block_width`` units), ``x_{l+1} = x_l + (1/(L M)) sum_j
f(x_l; theta_{l,j})``; ``M = 1`` is a ResNet (mean field through depth), ``M > 1`` a ResNeXt of
cardinality ``M``. Measured:

1. At initialisation, blocks of layer ``l`` drawn from a Gaussian law ``rho_{l/L}`` whose mean field
   ``F(x, t)`` is closed up to a 1-D Gaussian quadrature: the output ``x_L`` against the ODE
   ``dX/dt = F(X, t)`` solved by Dormand-Prince. Over seeds, the mean error (Euler bias, expected
   ``L^-1``) and the seed-to-seed fluctuation (sampling, expected ``(L M)^-1/2``); measured rates.
2. Backpropagation against the adjoint ODE and the particle velocities (``-L M dE/dtheta``)
   against the Wasserstein velocity ``-grad_theta sum_b P_b(t) . f(X_b(t); theta)`` of the limit.
3. Rates of training (Chizat 2025; Chaintron, Chizat & Maass 2026): ResNets with linear blocks
   ``U W x`` trained by mean-field gradient descent on a linear teacher ``y = exp(A_T) x``. For linear
   blocks the unit second moments of each layer are a sufficient statistic of the training
   (``linear_resnet_training``, equal to ``mean_field_sgd`` on the network to rounding; checked here),
   so finite networks of any width cost ``O(L D^3)`` a step, and with the law's moments the same
   solver is the infinite-width training at depth ``L``. The mean-ODE limit (``L, M -> infinity``) is
   its Richardson extrapolation in ``L`` from ``L_r, 2 L_r, 4 L_r`` (error estimated). Distance: the
   largest over training of the population output error ``|T_net(s) - T_lim(s)|_F / sqrt(D)`` (the
   RMS of ``f_net(x) - f_lim(x)`` over ``x ~ N(0, I)``); the root mean square over seeds is fitted
   (slope -1/2 in ``M`` and -1 in ``L`` expected; the mean square would have -1 and -2), with a
   bootstrap standard error over seeds. Embedded variant: inputs embedded in ``R^D`` by a random
   Gaussian ``E`` (``D x d``) and read out by ``E^T``: the ``D`` term of the limit and of the network.
4. ResNet against ResNeXt at equal parameter count (``L M`` blocks fixed).
5. Block reordering during training (``MeanFieldResNet.reorder_by_depth_gradient``: layers move in
   depth against the depth derivative of the first variation and are re-sorted) against plain
   training: final losses and the sensitivity of the trained network to a random block order.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

import numpy as np
import torch

from dlpde.shared import Study, check_positive, check_positive_int, make_generator, resolve_device
from dlpde.shared.testing import convergence_order

from .._dynamics import mean_field_sgd
from .._resnet import (
    GaussianBlockMeasure,
    MeanFieldResNet,
    linear_block_moments,
    linear_resnet_training,
    particle_velocity,
    resnet_limit,
    resnet_limit_adjoint,
)
from ._plots import label_log_axis


@dataclasses.dataclass(frozen=True)
class Config:
    MEANINGFUL_VALUES: typing.ClassVar[dict] = {"noise": (0,)}  # noise 0: noiseless blocks U = A(t) W
    dim: int = 4
    block_width: int = 2
    activation: Literal["tanh", "erf", "sigmoid"] = "tanh"
    coupling_scale: float = 1.0
    noise: float = 0.5
    inputs: int = 64
    depths: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
    widths: tuple[int, ...] = (1, 4, 16, 64, 256)
    seeds: int = 6
    train_size: int = 128
    test_size: int = 256
    teacher_scale: float = 2.0
    train_time: float = 5.0
    step: float = 0.05
    train_seeds: int = 3
    linear_teacher_scale: float = 1.0
    linear_noise: float = 0.5
    linear_train_time: float = 1.0
    linear_step: float = 0.025
    rate_depths: tuple[int, ...] = (8, 16, 32, 64, 128)
    rate_depth_width: int = 4096
    rate_depth_seeds: int = 4
    rate_widths: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    rate_width_depth: int = 2048
    rate_width_seeds: int = 32
    reference_depth: int = 1024
    embed_dims: tuple[int, ...] = (8, 16, 32, 64)
    embed_shape: tuple[int, int] = (128, 8)
    embed_seeds: int = 8
    bootstrap: int = 400
    equal_blocks: tuple[int, ...] = (64, 256)
    cardinalities: tuple[int, ...] = (1, 4, 16)
    reorder_shapes: tuple[int, ...] = (32, 1, 8, 4)
    reorder_every: int = 10
    depth_step: float = 1.0
    reorder_seeds: int = 4
    dtype: Literal["float32", "float64"] = "float64"
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.dim < 1 or self.block_width < 1:
            raise ValueError("dim and block_width must be positive")
        # coupling_scale or teacher_scale 0 makes the mean field F = 0 (the limit is the identity),
        # depth_step 0 makes every reordering the identity: refused, like negative values
        for name in (
            "coupling_scale",
            "teacher_scale",
            "depth_step",
            "linear_teacher_scale",
            "linear_noise",
            "linear_train_time",
            "linear_step",
        ):
            check_positive(getattr(self, name), name)
        for name in (
            "rate_depth_width",
            "rate_width_depth",
            "reference_depth",
            "bootstrap",
            "rate_depth_seeds",
            "rate_width_seeds",
            "embed_seeds",
        ):
            check_positive_int(getattr(self, name), name)
        for name in ("rate_depths", "rate_widths", "embed_dims"):
            values = getattr(self, name)
            if len(values) < 2 or len(set(values)) != len(values):
                raise ValueError(f"{name} needs at least two distinct entries")
            for i, value in enumerate(values):
                check_positive_int(value, f"{name}[{i}]")
        if min(self.embed_dims) < self.dim:
            raise ValueError(f"embed_dims must be >= dim = {self.dim}, got {self.embed_dims}")
        if len(self.embed_shape) != 2:
            raise ValueError(f"embed_shape is (depth, width), got {self.embed_shape}")
        for i, value in enumerate(self.embed_shape):
            check_positive_int(value, f"embed_shape[{i}]")
        if self.rate_depth_seeds < 2 or self.rate_width_seeds < 2 or self.embed_seeds < 2:
            raise ValueError("rate_depth_seeds, rate_width_seeds and embed_seeds must be >= 2")
        check_positive(self.noise, "noise", allow_zero=True)
        for name in ("inputs", "train_size", "test_size", "reorder_every"):
            check_positive_int(getattr(self, name), name)
        for name in ("equal_blocks", "cardinalities"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name} needs at least one entry")
            for i, value in enumerate(values):
                check_positive_int(value, f"{name}[{i}]")
        if len(self.depths) < 2 or len(self.widths) < 2 or min(self.depths + self.widths) < 1:
            raise ValueError("depths and widths need at least two positive entries each")
        if self.seeds < 2 or self.train_seeds < 1 or self.reorder_seeds < 1:
            raise ValueError("seeds must be >= 2, train_seeds and reorder_seeds >= 1")
        if not (self.train_time > 0 and self.step > 0):
            raise ValueError("train_time and step must be positive")
        if len(self.reorder_shapes) % 2 or not self.reorder_shapes:
            raise ValueError("reorder_shapes lists (depth, width) pairs: an even number of entries")
        for blocks in self.equal_blocks:
            if any(blocks % c for c in self.cardinalities):
                raise ValueError(
                    f"every entry of equal_blocks must be divisible by every cardinality, got {blocks}"
                )


def _dtype(config):
    return torch.float64 if config.dtype == "float64" else torch.float32


def _coupling(config, seed, scale):
    """Coefficients ``(A_0, A_1)`` of ``A(t) = A_0 + t A_1`` (random, from ``seed``)."""
    generator = make_generator(seed, "cpu")
    a = torch.randn(2, config.dim, config.dim, generator=generator, dtype=torch.float64)
    return scale * a / config.dim**0.5


def _measure(config):
    """The law of the initial blocks of part 1 (and 2)."""
    return GaussianBlockMeasure(
        config.dim,
        config.block_width,
        config.activation,
        _coupling(config, config.seed * 31 + 1, config.coupling_scale),
        noise=config.noise,
    )


def _teacher(config):
    return GaussianBlockMeasure(
        config.dim,
        config.block_width,
        config.activation,
        _coupling(config, config.seed * 31 + 2, config.teacher_scale),
        noise=0.0,
    )


def _student_measure(config):
    zero = torch.zeros(1, config.dim, config.dim, dtype=torch.float64)
    return GaussianBlockMeasure(config.dim, config.block_width, config.activation, zero, noise=1.0)


def _inputs(config, count, salt):
    generator = make_generator(config.seed * 97 + salt, "cpu")
    return torch.randn(count, config.dim, generator=generator, dtype=torch.float64)


def _training_data(config, device):
    x = _inputs(config, config.train_size + config.test_size, 3)
    y = resnet_limit(_teacher(config).field, x)
    dtype = _dtype(config)
    x, y = x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)
    return (x[: config.train_size], y[: config.train_size]), (x[config.train_size :], y[config.train_size :])


def limit_point(task) -> dict:
    """Part 1-2 at one ``(depth, width)``: outputs of ``seeds`` networks, and adjoint / velocity errors."""
    config, depth, width = task
    measure = _measure(config)
    x = _inputs(config, config.inputs, 1)
    target = _inputs(config, config.inputs, 2)
    outputs, adjoint_error, velocity_error = [], float("nan"), float("nan")
    for seed in range(config.seeds):
        particles = measure.sample(
            depth,
            width,
            generator=config.seed * 1_000_003 + 7_919 * depth + 31 * width + seed,
            dtype=torch.float64,
        )
        net = MeanFieldResNet(
            depth, width, config.dim, config.block_width, config.activation, particles=particles
        )
        with torch.no_grad():
            outputs.append(net(x))
        if seed == 0:
            times = [layer / depth for layer in range(depth)]
            states, adjoints = resnet_limit_adjoint(measure.field, x, target, times)
            discrete_states, discrete_adjoints = net.adjoint_states(x, target)
            adjoint_error = float(
                (discrete_adjoints[:-1] - adjoints).norm() / adjoints.norm()
            )  # p_l vs P(t_l)
            discrete, continuous = [], []
            for layer in range(depth):
                kwargs = {
                    "dim": config.dim,
                    "block_width": config.block_width,
                    "activation": config.activation,
                }
                discrete.append(
                    particle_velocity(
                        net.particles[layer], discrete_states[layer], discrete_adjoints[layer + 1], **kwargs
                    )
                )
                continuous.append(
                    particle_velocity(net.particles[layer], states[layer], adjoints[layer], **kwargs)
                )
            discrete, continuous = torch.stack(discrete), torch.stack(continuous)
            velocity_error = float((discrete - continuous).norm() / continuous.norm())
    return {
        "depth": depth,
        "width": width,
        "outputs": torch.stack(outputs).numpy(),
        "adjoint_error": adjoint_error,
        "velocity_error": velocity_error,
    }


def train_point(task) -> dict:
    """Parts 3-5: train one network ``(config, depth, width, seed, reorder)``; losses along training."""
    config, depth, width, seed, reorder = task
    device = resolve_device(config.device)
    (x, y), (x_test, y_test) = _training_data(config, device)
    particles = _student_measure(config).sample(
        depth, width, generator=config.seed * 1_000_003 + 104_729 * seed + 17
    )
    net = MeanFieldResNet(
        depth,
        width,
        config.dim,
        config.block_width,
        config.activation,
        particles=particles.to(device=device, dtype=_dtype(config)),
    )
    shuffle = make_generator(config.seed * 13 + seed, "cpu")

    def loss(step):
        return 0.5 * ((net(x) - y) ** 2).sum(-1).mean()

    moved = []

    def callback(step, record):
        if reorder and (step + 1) % config.reorder_every == 0:
            permutation = net.reorder_by_depth_gradient(x, y, config.depth_step)
            moved.append(int((permutation != torch.arange(depth, device=permutation.device)).sum()))

    history = mean_field_sgd(net, loss, config.train_time, config.step, progress=False, callback=callback)
    with torch.no_grad():
        train_loss = float(loss(0))
        test_loss = float(0.5 * ((net(x_test) - y_test) ** 2).sum(-1).mean())
        permuted = []
        for _ in range(4):
            saved = net.particles.detach().clone()
            net.reorder_blocks(torch.randperm(depth, generator=shuffle))
            permuted.append(float(loss(0)))
            net.particles.copy_(saved)
    return {
        "depth": depth,
        "width": width,
        "seed": seed,
        "reorder": reorder,
        "loss_curve": np.array([h["loss"] for h in history]),
        "train_loss": train_loss,
        "test_loss": test_loss,
        "permuted_loss": float(np.mean(permuted)),
        "layers_moved": int(sum(moved)),
    }


def _linear_data(config, embed_dim=None, embed_seed=0):
    """Inputs (embedded when ``embed_dim``), targets ``exp(A_T) x``, readout and unit moments ``S_0``."""
    d = config.dim
    generator = make_generator(config.seed * 97 + 5, "cpu")
    teacher = config.linear_teacher_scale * torch.randn(d, d, generator=generator, dtype=torch.float64)
    x = torch.randn(config.train_size, d, generator=generator, dtype=torch.float64)
    y = x @ torch.linalg.matrix_exp(teacher / d**0.5).T
    dim = d if embed_dim is None else embed_dim
    embedding = torch.eye(d, dtype=torch.float64)
    if embed_dim is not None:
        generator = make_generator(config.seed * 1_009 + 7_907 * embed_dim + embed_seed, "cpu")
        embedding = torch.randn(embed_dim, d, generator=generator, dtype=torch.float64) / embed_dim**0.5
    moments = torch.zeros(2 * dim, 2 * dim, dtype=torch.float64)
    moments[:dim, :dim] = config.linear_noise**2 * torch.eye(dim)  # u ~ N(0, noise^2 I)
    moments[dim:, dim:] = torch.eye(dim) / d  # w ~ N(0, I / d): pre-activations O(1) for every D
    return x @ embedding.T, y, embedding, moments


def _linear_particles(config, dim, depth, width, seed):
    measure = GaussianBlockMeasure(
        dim,
        config.block_width,
        "linear",
        torch.zeros(1, dim, dim, dtype=torch.float64),
        scale=(dim / config.dim) ** 0.5,
        noise=config.linear_noise,
    )
    return measure.sample(depth, width, generator=seed, dtype=torch.float64)


def _linear_train(config, moments, x, y, readout=None):
    return linear_resnet_training(
        moments, x, y, config.block_width, config.linear_train_time, config.linear_step, readout
    )


def rate_point(task) -> dict:
    """Part 3 at one point. ``("limit", L)``: infinite width at depth ``L``; ``("net", L, M, seeds)``:
    finite networks; ``("embed", D, seed)``: embedded variant at ``embed_shape`` and infinite width
    at its depth. Returns end-to-end maps over training and losses (numpy)."""
    config, kind, *rest = task
    if kind == "limit":
        (depth,) = rest
        x, y, _, s0 = _linear_data(config)
        out = _linear_train(config, s0.expand(depth, *s0.shape), x, y)
        return {"maps": out["maps"].numpy(), "losses": out["losses"].numpy()}
    if kind == "net":
        depth, width, seeds = rest
        x, y, _, _ = _linear_data(config)
        maps, losses = [], []
        size = max(1, int(4e7 // (depth * (len(x) + config.dim) * config.dim)))  # states: ~320 MB
        for chunk in range(0, len(seeds), size):
            moments = torch.stack(
                [
                    linear_block_moments(
                        _linear_particles(
                            config, config.dim, depth, width, 1_000_003 * s + 7_919 * depth + width
                        ),
                        config.dim,
                        config.block_width,
                    )
                    for s in seeds[chunk : chunk + size]
                ]
            )
            out = _linear_train(config, moments, x, y)
            maps.append(out["maps"])
            losses.append(out["losses"])
        return {"maps": torch.cat(maps).numpy(), "losses": torch.cat(losses).numpy()}
    dim, seed = rest
    depth, width = config.embed_shape
    x, y, embedding, s0 = _linear_data(config, dim, seed)
    particles = _linear_particles(config, dim, depth, width, 104_729 * seed + 31 * dim + 3)
    moments = torch.stack(
        [s0.expand(depth, *s0.shape), linear_block_moments(particles, dim, config.block_width)]
    )
    out = _linear_train(config, moments, x, y, embedding.T)
    maps = out["maps"] @ embedding  # (2, steps + 1, D, d): embedding-space maps x -> h_L
    return {
        "maps": maps.numpy(),
        "readout_maps": (embedding.T @ maps).numpy(),
        "losses": out["losses"].numpy(),
    }


def network_check(config) -> float:
    """Largest difference between the end-to-end map of a linear ``MeanFieldResNet`` trained by
    ``mean_field_sgd`` and ``linear_resnet_training`` from its initial unit moments."""
    depth, width = 8, 4
    x, y, _, _ = _linear_data(config)
    particles = _linear_particles(config, config.dim, depth, width, 11)
    net = MeanFieldResNet(depth, width, config.dim, config.block_width, "linear", particles=particles.clone())
    mean_field_sgd(
        net,
        lambda step: 0.5 * ((net(x) - y) ** 2).sum(-1).mean(),
        config.linear_train_time,
        config.linear_step,
        progress=False,
    )
    closure = _linear_train(config, linear_block_moments(particles, config.dim, config.block_width), x, y)
    with torch.no_grad():
        trained = net(torch.eye(config.dim, dtype=torch.float64)).T
    return float((trained - closure["maps"][-1]).abs().max())


def _distance(maps, reference):
    """Largest over training of ``|T - T_ref|_F / sqrt(d)``: the RMS output error over ``x ~ N(0, I_d)``."""
    return np.sqrt(((maps - reference) ** 2).sum((-2, -1)) / reference.shape[-1]).max(-1)


def _fit(sizes, per_seed, resamples, seed):
    """Slope of log RMS-over-seeds against log size, with a bootstrap standard error over seeds."""
    sizes = np.log(np.asarray(sizes, float))
    rms = [np.sqrt(np.mean(np.square(d))) for d in per_seed]
    slope = float(np.polyfit(sizes, np.log(rms), 1)[0])
    rng = np.random.default_rng(seed)
    boot = [
        np.polyfit(sizes, np.log([np.sqrt(np.mean(np.square(rng.choice(d, len(d))))) for d in per_seed]), 1)[
            0
        ]
        for _ in range(resamples)
    ]
    return slope, float(np.std(boot)), rms


def _rates(config, run_dir):
    """Part 3: distances of trained networks to the Richardson-extrapolated mean-ODE limit."""
    levels = [config.reference_depth * 2**i for i in range(3)]
    tasks = [(config, "limit", depth) for depth in sorted({*levels, *config.rate_depths})]
    tasks += [
        (config, "net", depth, config.rate_depth_width, tuple(range(config.rate_depth_seeds)))
        for depth in config.rate_depths
    ]
    tasks += [
        (config, "net", config.rate_width_depth, width, tuple(range(config.rate_width_seeds)))
        for width in config.rate_widths
    ]
    tasks += [(config, "embed", dim, seed) for dim in config.embed_dims for seed in range(config.embed_seeds)]
    keys = ["-".join(str(v) for v in t[1:] if not isinstance(v, tuple)) for t in tasks]
    out = dict(zip(keys, run_dir.map(rate_point, tasks, keys=keys, desc="linear rates")))
    maps = {depth: out[f"limit-{depth}"]["maps"] for depth in levels}
    losses = {depth: out[f"limit-{depth}"]["losses"] for depth in levels}
    first = [2 * maps[levels[i + 1]] - maps[levels[i]] for i in range(2)]
    reference = (4 * first[1] - first[0]) / 3  # eliminates the 1/L and 1/L^2 terms
    first_loss = [2 * losses[levels[i + 1]] - losses[levels[i]] for i in range(2)]
    reference_loss = (4 * first_loss[1] - first_loss[0]) / 3
    reference_error = float(_distance(first[1], reference))
    raw_error = float(_distance(maps[levels[-1]], reference))

    def loss_distance(curves):
        return np.abs(curves - reference_loss).max(-1)

    depth_dist = [
        _distance(out[f"net-{d}-{config.rate_depth_width}"]["maps"], reference) for d in config.rate_depths
    ]
    width_dist = [
        _distance(out[f"net-{config.rate_width_depth}-{w}"]["maps"], reference) for w in config.rate_widths
    ]
    limit_dist = [float(_distance(out[f"limit-{d}"]["maps"], reference)) for d in config.rate_depths]
    salt = config.seed
    slope_l, se_l, rms_l = _fit(config.rate_depths, depth_dist, config.bootstrap, salt)
    slope_m, se_m, rms_m = _fit(config.rate_widths, width_dist, config.bootstrap, salt + 1)
    loss_m, loss_se_m, loss_rms_m = _fit(
        config.rate_widths,
        [loss_distance(out[f"net-{config.rate_width_depth}-{w}"]["losses"]) for w in config.rate_widths],
        config.bootstrap,
        salt + 2,
    )
    slope_inf = float(np.polyfit(np.log(config.rate_depths), np.log(limit_dist), 1)[0])
    # embedded variant, at the common depth L_e: the limit at D against D = d (the term 1/sqrt(D)),
    # and the networks against the limit at their D in embedding and in readout space (sqrt(D/(L M)))
    base = (
        out[f"limit-{config.embed_shape[0]}"]["maps"] if config.embed_shape[0] in config.rate_depths else None
    )
    if base is None:
        x, y, _, s0 = _linear_data(config)
        base = _linear_train(config, s0.expand(config.embed_shape[0], *s0.shape), x, y)["maps"].numpy()
    embed_limit, embed_net, embed_readout = [], [], []
    for dim in config.embed_dims:
        runs = [out[f"embed-{dim}-{seed}"] for seed in range(config.embed_seeds)]
        embed_limit.append(np.array([_distance(r["readout_maps"][0], base) for r in runs]))
        embed_net.append(np.array([_distance(r["maps"][1], r["maps"][0]) for r in runs]))
        embed_readout.append(np.array([_distance(r["readout_maps"][1], r["readout_maps"][0]) for r in runs]))
    d_limit, d_limit_se, d_limit_rms = _fit(config.embed_dims, embed_limit, config.bootstrap, salt + 3)
    d_net, d_net_se, d_net_rms = _fit(config.embed_dims, embed_net, config.bootstrap, salt + 4)
    d_read, d_read_se, d_read_rms = _fit(config.embed_dims, embed_readout, config.bootstrap, salt + 5)
    check = network_check(config)
    metrics = {
        "slope_vs_width": slope_m,
        "slope_vs_width_se": se_m,
        "slope_vs_depth": slope_l,
        "slope_vs_depth_se": se_l,
        "slope_vs_depth_infinite_width": slope_inf,
        "loss_slope_vs_width": loss_m,
        "loss_slope_vs_width_se": loss_se_m,
        "embed_limit_slope_vs_dim": d_limit,
        "embed_limit_slope_vs_dim_se": d_limit_se,
        "embed_network_slope_vs_dim": d_net,
        "embed_network_slope_vs_dim_se": d_net_se,
        "embed_readout_slope_vs_dim": d_read,
        "embed_readout_slope_vs_dim_se": d_read_se,
        "reference_depths": levels,
        "reference_error": reference_error,
        "reference_raw_error": raw_error,
        "network_check": check,
        "distance_vs_depth": [float(v) for v in rms_l],
        "distance_vs_depth_infinite_width": limit_dist,
        "distance_vs_width": [float(v) for v in rms_m],
        "loss_distance_vs_width": [float(v) for v in loss_rms_m],
        "embed_limit_distance": [float(v) for v in d_limit_rms],
        "embed_network_distance": [float(v) for v in d_net_rms],
        "embed_readout_distance": [float(v) for v in d_read_rms],
        "reference_final_loss": float(reference_loss[-1]),
        "reference_initial_loss": float(reference_loss[0]),
    }
    return metrics


def _rates_section(config, m):
    lw, ld = config.rate_width_depth, config.rate_depth_width
    rows_m = "\n".join(
        f"| {w} | {d:.3e} | {e:.3e} |"
        for w, d, e in zip(config.rate_widths, m["distance_vs_width"], m["loss_distance_vs_width"])
    )
    rows_l = "\n".join(
        f"| {L} | {d:.3e} | {e:.3e} |"
        for L, d, e in zip(config.rate_depths, m["distance_vs_depth"], m["distance_vs_depth_infinite_width"])
    )
    rows_d = "\n".join(
        f"| {D} | {a:.3e} | {b:.3e} | {c:.3e} |"
        for D, a, b, c in zip(
            config.embed_dims,
            m["embed_limit_distance"],
            m["embed_network_distance"],
            m["embed_readout_distance"],
        )
    )
    le, me = config.embed_shape
    return (
        f"Linear blocks, teacher exp(A_T), {config.train_size} training inputs, mean-field time "
        f"{config.linear_train_time} in steps of {config.linear_step} (initial loss "
        f"{m['reference_initial_loss']:.3e}, final loss of the limit {m['reference_final_loss']:.3e}). "
        f"Reference: Richardson extrapolation (1/L and 1/L^2 eliminated) of the infinite-width solver at "
        f"L = {', '.join(map(str, m['reference_depths']))}; estimated error {m['reference_error']:.1e} "
        f"(distance of the first-order extrapolation to it; the raw depth {m['reference_depths'][-1]} is "
        f"{m['reference_raw_error']:.1e} away). Finite networks trained by `mean_field_sgd` and by the "
        f"moment solver agree to {m['network_check']:.1e} (L=8, M=4). Distance: max over training of the "
        "population RMS output error; the root mean square over seeds is fitted (the mean square has "
        "twice the slope), standard errors by a bootstrap over seeds.\n\n"
        f"| M (L={lw}, {config.rate_width_seeds} seeds) | output distance | training-loss distance |\n"
        f"|---|---|---|\n{rows_m}\n\n"
        f"slope in M: **{m['slope_vs_width']:.3f} +- {m['slope_vs_width_se']:.3f}** "
        f"(theory -1/2); training-loss distance {m['loss_slope_vs_width']:.3f} +- "
        f"{m['loss_slope_vs_width_se']:.3f}.\n\n"
        f"| L (M={ld}, {config.rate_depth_seeds} seeds) | output distance | infinite width |\n|---|---|---|\n"
        f"{rows_l}\n\nslope in L: **{m['slope_vs_depth']:.3f} +- {m['slope_vs_depth_se']:.3f}** (theory -1); "
        f"infinite-width solver {m['slope_vs_depth_infinite_width']:.3f}.\n\n"
        f"Embedded variant (L={le}, M={me}, {config.embed_seeds} draws of the embedding and the "
        "network): the infinite-width limit at embedding dimension D against D = d (readout space), "
        "and the network against the infinite-width limit at its D, in embedding and readout space.\n\n"
        f"| D | limit vs D = d | network, embedding space | network, readout space |\n|---|---|---|---|\n"
        f"{rows_d}\n\nslopes in D: limit {m['embed_limit_slope_vs_dim']:.3f} +- "
        f"{m['embed_limit_slope_vs_dim_se']:.3f} (theory -1/2), network in embedding space "
        f"{m['embed_network_slope_vs_dim']:.3f} +- {m['embed_network_slope_vs_dim_se']:.3f} (theory +1/2), "
        f"in readout space {m['embed_readout_slope_vs_dim']:.3f} +- {m['embed_readout_slope_vs_dim_se']:.3f}."
    )


def _rates_figure(config, m, run_dir):
    from dlpde.shared import new_figure

    fig, axes = new_figure(1, 3, width=3.8, height=3.2)
    widths, depths, dims = (
        np.asarray(v, float) for v in (config.rate_widths, config.rate_depths, config.embed_dims)
    )
    axes[0].loglog(
        widths, m["distance_vs_width"], "o-", label=f"L={config.rate_width_depth}: {m['slope_vs_width']:.2f}"
    )
    axes[0].loglog(widths, m["distance_vs_width"][0] * widths**-0.5, "k:", label="M^-1/2")
    axes[0].set(xlabel="width M", ylabel="distance to the mean-ODE limit", title="width")
    label_log_axis(axes[0], config.rate_widths)
    axes[1].loglog(
        depths, m["distance_vs_depth"], "o-", label=f"M={config.rate_depth_width}: {m['slope_vs_depth']:.2f}"
    )
    axes[1].loglog(depths, m["distance_vs_depth_infinite_width"], "s--", ms=3, label="M = infinity")
    axes[1].loglog(depths, m["distance_vs_depth"][0] * depths[0] / depths, "k:", label="L^-1")
    axes[1].set(xlabel="depth L", title="depth")
    label_log_axis(axes[1], config.rate_depths)
    axes[2].loglog(dims, m["embed_limit_distance"], "o-", label="limit vs D = d")
    axes[2].loglog(dims, m["embed_network_distance"], "s-", label="network, embedding space")
    axes[2].loglog(dims, m["embed_readout_distance"], "^-", label="network, readout space")
    axes[2].loglog(dims, m["embed_limit_distance"][0] * (dims / dims[0]) ** -0.5, "k:", label="D^-1/2")
    axes[2].loglog(dims, m["embed_network_distance"][0] * (dims / dims[0]) ** 0.5, "k--", label="D^1/2")
    axes[2].set(xlabel="embedding dimension D", title="embedding")
    label_log_axis(axes[2], config.embed_dims)
    for ax in axes:
        ax.legend(fontsize=6)
    run_dir.save_figure(
        fig,
        "resnet_rates",
        "Distance of trained linear ResNets to the Richardson-extrapolated mean-ODE limit (RMS over seeds "
        "of the largest population output error over training) against the width M at fixed depth, the "
        "depth L at large width, and (embedded variant) the embedding dimension D, with the theory lines.",
    )


def _slope(sizes, values):
    sizes, values = np.asarray(sizes, float), np.asarray(values, float)
    keep = np.isfinite(values) & (values > 0)
    return convergence_order(sizes[keep], values[keep]) if keep.sum() >= 2 else float("nan")


def _rms(a):
    return float(np.sqrt(np.mean(np.sum(np.asarray(a) ** 2, -1))))


def run(config: Config, run_dir) -> dict:
    from dlpde.shared import new_figure

    # -- 1-2: initial networks against the ODE in depth --------------------------------------
    grid = [(config, depth, width) for depth in config.depths for width in config.widths]
    points = run_dir.map(
        limit_point, grid, keys=[f"limit-L{d}-M{w}" for _, d, w in grid], desc="depth x width"
    )
    limit = resnet_limit(_measure(config).field, _inputs(config, config.inputs, 1)).numpy()
    bias = {(p["depth"], p["width"]): _rms(p["outputs"].mean(0) - limit) for p in points}
    fluctuation = {
        (p["depth"], p["width"]): _rms(p["outputs"] - p["outputs"].mean(0))
        * np.sqrt(config.seeds / (config.seeds - 1))
        for p in points
    }
    depths, widths = list(config.depths), list(config.widths)
    wide, deep = max(widths), max(depths)
    rates = {
        "bias_vs_depth": _slope(depths, [bias[d, wide] for d in depths]),
        "fluctuation_vs_width": _slope(widths, [fluctuation[deep, w] for w in widths]),
        "fluctuation_vs_depth": _slope(depths, [fluctuation[d, wide] for d in depths]),
        "fluctuation_vs_blocks": _slope(
            [d * w for d in depths for w in widths], [fluctuation[d, w] for d in depths for w in widths]
        ),
        "adjoint_error_vs_depth": _slope(depths, [p["adjoint_error"] for p in points if p["width"] == wide]),
        "velocity_error_vs_depth": _slope(
            depths, [p["velocity_error"] for p in points if p["width"] == wide]
        ),
    }
    lines = ["| L \\ M | " + " | ".join(str(w) for w in widths) + " |", "|---" * (len(widths) + 1) + "|"]
    for d in depths:
        lines.append(
            f"| {d} | " + " | ".join(f"{bias[d, w]:.2e} / {fluctuation[d, w]:.2e}" for w in widths) + " |"
        )
    run_dir.add_section(
        "Initial networks against the ODE in depth",
        "\n".join(lines)
        + (
            "\n\nEntries: Euler bias (RMS of the seed mean minus X(1)) / seed-to-seed fluctuation, "
            f"{config.seeds} seeds, {config.inputs} inputs. Rates: bias vs L at M={wide}: "
            f"{rates['bias_vs_depth']:.3f} (expected -1); fluctuation vs M at L={deep}: "
            f"{rates['fluctuation_vs_width']:.3f}, vs L at M={wide}: {rates['fluctuation_vs_depth']:.3f}, "
            f"vs L M over the grid: {rates['fluctuation_vs_blocks']:.3f} (expected -1/2). Backpropagation "
            f"against the adjoint ODE (M={wide}): relative error slope "
            f"{rates['adjoint_error_vs_depth']:.3f}; particle velocities against the Wasserstein velocity of "
            "the limit: slope "
            f"{rates['velocity_error_vs_depth']:.3f}."
        ),
    )

    # -- 3: rates of training against the mean-ODE limit -------------------------------------
    linear = _rates(config, run_dir)
    run_dir.add_section(
        "Trained networks against the mean-ODE limit: rates in M, L and D", _rates_section(config, linear)
    )
    _rates_figure(config, linear, run_dir)

    # -- 4-5: training (tanh) ---------------------------------------------------------------
    shapes = {(blocks // c, c) for blocks in config.equal_blocks for c in config.cardinalities}
    reorder_shapes = list(zip(config.reorder_shapes[::2], config.reorder_shapes[1::2]))
    tasks = [(config, d, w, s, False) for d, w in sorted(shapes) for s in range(config.train_seeds)]
    tasks += [
        (config, d, w, s, flag)
        for d, w in reorder_shapes
        for s in range(config.reorder_seeds)
        for flag in (False, True)
        if not (not flag and (d, w) in shapes and s < config.train_seeds)
    ]
    keys = [f"train-L{d}-M{w}-s{s}-{'reorder' if r else 'plain'}" for _, d, w, s, r in tasks]
    trained = run_dir.map(train_point, tasks, keys=keys, desc="training")

    def select(depth, width, reorder=False):
        return [r for r in trained if r["depth"] == depth and r["width"] == width and r["reorder"] == reorder]

    equal_rows, equal = [], {}
    for blocks in config.equal_blocks:
        for c in config.cardinalities:
            d = blocks // c
            runs_here = select(d, c)
            key = (d, c)
            init = next((p for p in points if p["depth"] == d and p["width"] == c), None)
            equal[f"{blocks}_{c}"] = {
                "train_loss": float(np.mean([r["train_loss"] for r in runs_here])),
                "test_loss": float(np.mean([r["test_loss"] for r in runs_here])),
            }
            equal_rows.append(
                f"| {blocks} | {'ResNet' if c == 1 else 'ResNeXt'} L={d}, M={c} | "
                f"{equal[f'{blocks}_{c}']['train_loss']:.4e} | {equal[f'{blocks}_{c}']['test_loss']:.4e} | "
                + (f"{bias[key]:.2e} / {fluctuation[key]:.2e}" if init else "-")
                + " |"
            )
    run_dir.add_section(
        "ResNet against ResNeXt at equal parameter count",
        (
            "| blocks L M | network | train loss | test loss | initial bias / fluctuation vs ODE |\n"
            "|---|---|---|---|---|\n"
            + "\n".join(equal_rows)
            + f"\n\nParameters per block {2 * config.dim * config.block_width}; the same "
            "number of blocks means the same number of parameters. Training as above."
        ),
    )

    reorder_rows, reorder_metrics = [], {}
    for d, w in reorder_shapes:
        summary = {}
        for flag in (False, True):
            rs = [r for r in select(d, w, flag) if r["seed"] < config.reorder_seeds]
            summary["reorder" if flag else "plain"] = {
                k: float(np.mean([r[k] for r in rs]))
                for k in ("train_loss", "test_loss", "permuted_loss", "layers_moved")
            }
        reorder_metrics[f"L{d}_M{w}"] = summary
        for name, values in summary.items():
            reorder_rows.append(
                f"| L={d}, M={w} | {name} | {values['train_loss']:.4e} | {values['test_loss']:.4e} | "
                f"{values['permuted_loss']:.4e} | {values['layers_moved']:.1f} |"
            )
    run_dir.add_section(
        "Block reordering against plain training",
        (
            "| network | training | train loss | test loss | train loss after a random block order "
            "| layers moved |\n|---|---|---|---|---|---|\n"
            + "\n".join(reorder_rows)
            + f"\n\nReordering every {config.reorder_every} steps with depth step {config.depth_step}; "
            f"means over {config.reorder_seeds} seeds. This is our implementation of training with block "
            "reordering (layers move in depth along minus the depth derivative of the first variation and "
            "are re-sorted), in the "
            "spirit of Lu et al. (2020); their exact schedule is not reproduced."
        ),
    )

    fig, axes = new_figure(1, 2, width=3.8, height=3.2)
    for w in widths:
        axes[0].loglog(depths, [bias[d, w] for d in depths], "o-", ms=3, label=f"bias, M={w}")
    axes[0].loglog(
        depths, bias[depths[0], wide] * (np.asarray(depths) / depths[0]) ** -1.0, "k:", label="L^-1"
    )
    axes[0].set(xlabel="depth L", ylabel="RMS error of the seed mean", title="Euler bias")
    label_log_axis(axes[0], depths)
    axes[0].legend(fontsize=6)
    blocks_all = np.array([d * w for d in depths for w in widths])
    axes[1].loglog(blocks_all, [fluctuation[d, w] for d in depths for w in widths], "o", ms=3)
    axes[1].loglog(
        np.sort(blocks_all),
        fluctuation[depths[0], widths[0]] * (np.sort(blocks_all) / blocks_all.min()) ** -0.5,
        "k:",
        label="(L M)^-1/2",
    )
    axes[1].set(xlabel="blocks L M", ylabel="seed-to-seed fluctuation", title="sampling error")
    axes[1].legend(fontsize=7)
    run_dir.save_figure(
        fig,
        "resnet_convergence",
        "Left: Euler bias of x_L against the depth ODE; right: sampling "
        "fluctuation against the number of blocks.",
    )
    fig, ax = new_figure(1, 1, width=4.4, height=3.2)
    steps = np.arange(int(round(config.train_time / config.step))) * config.step
    for i, (d, w) in enumerate(reorder_shapes):
        for flag, style in ((False, "-"), (True, "--")):
            rs = select(d, w, flag)
            if rs:
                ax.semilogy(
                    steps[: len(rs[0]["loss_curve"])],
                    rs[0]["loss_curve"],
                    style,
                    color=f"C{i}",
                    label=f"L={d}, M={w}, {'reordered' if flag else 'plain'}",
                )
    ax.set(xlabel="mean-field training time", ylabel="training loss")
    ax.legend(fontsize=6)
    run_dir.save_figure(
        fig,
        "training_curves",
        "Training loss against mean-field time: plain (solid) against block-reordered (dashed) training.",
    )
    return {
        "rates": {
            **rates,
            "trained_vs_width": linear["slope_vs_width"],
            "trained_vs_depth": linear["slope_vs_depth"],
            "trained_limit_vs_embedding": linear["embed_limit_slope_vs_dim"],
        },
        "bias": {f"L{d}_M{w}": v for (d, w), v in bias.items()},
        "fluctuation": {f"L{d}_M{w}": v for (d, w), v in fluctuation.items()},
        "linear": linear,
        "equal_parameters": equal,
        "reordering": reorder_metrics,
    }


_SMOKE = Config(
    inputs=8,
    depths=(2, 4),
    widths=(1, 2),
    seeds=2,
    train_size=8,
    test_size=8,
    train_time=0.2,
    step=0.05,
    train_seeds=1,
    linear_train_time=0.2,
    rate_depths=(2, 4),
    rate_depth_width=8,
    rate_depth_seeds=2,
    rate_widths=(1, 2),
    rate_width_depth=4,
    rate_width_seeds=2,
    reference_depth=8,
    embed_dims=(4, 8),
    embed_shape=(4, 2),
    embed_seeds=2,
    bootstrap=20,
    equal_blocks=(4,),
    cardinalities=(1, 2),
    reorder_shapes=(4, 1),
    reorder_every=2,
    reorder_seeds=1,
)
_QUICK = Config(
    depths=(4, 8, 16, 32, 64),
    widths=(1, 4, 16, 64),
    seeds=4,
    train_seeds=2,
    rate_depths=(8, 16, 32, 64),
    rate_depth_width=2048,
    rate_widths=(1, 2, 4, 8, 16),
    rate_width_depth=512,
    rate_width_seeds=16,
    reference_depth=256,
    embed_dims=(4, 8, 16),
    embed_shape=(32, 4),
    embed_seeds=4,
    bootstrap=200,
    equal_blocks=(64,),
    reorder_shapes=(16, 1),
    reorder_seeds=2,
)
_PAPER = Config(
    dim=16,
    block_width=8,
    depths=(8, 16, 32, 64, 128, 256, 512),
    widths=(1, 4, 16, 64, 256, 1024),
    seeds=16,
    train_size=1024,
    test_size=1024,
    train_seeds=8,
    embed_dims=(16, 32, 64),
    device="cuda",
)

STUDY = Study(
    name="meanfield.resnet",
    description="Mean-field ResNet/ResNeXt against the ODE in depth: rates in L and M, adjoint, reordering.",
    config=Config,
    presets={"smoke": _SMOKE, "quick": _QUICK, "full": Config(), "paper": _PAPER},
    run=run,
    citations=("lu2020meanfield", "e2020continuous", "xie2017resnext", "mei2018meanfield", "chizat2025hidden",
               "chaintron2026resnets"),
)
