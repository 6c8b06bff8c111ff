"""Batched Metropolis walkers and Monte Carlo error analysis.

``MetropolisWalkers`` runs ``B`` independent chains for an unnormalised log-density
``log_prob: (B, *event) -> (B,)``, with a Gaussian random-walk proposal
(``proposal="random_walk"``: ``x' = x + s xi``) or the Metropolis-adjusted Langevin algorithm
(``proposal="mala"``: ``x' = x + (s^2/2) grad log p(x) + s xi``, with the asymmetric-proposal
correction). During burn-in the step size ``s`` can adapt (Robbins-Monro on ``log s`` towards a
target acceptance rate); adaptation is then frozen so that sampling is exact.

Error bars: ``integrated_autocorrelation_time`` (Sokal's automatic window) and
``blocking_standard_error`` (Flyvbjerg-Petersen blocking) correct the naive standard error for
correlation along the chains.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .checks import check_callable, check_choice, check_positive, check_probability, check_tensor
from .random import make_generator

__all__ = [
    "MetropolisWalkers",
    "integrated_autocorrelation_time",
    "blocking_standard_error",
    "chain_mean_and_error",
]

_TARGET = {"random_walk": 0.5, "mala": 0.57}


class MetropolisWalkers:
    """``B`` Metropolis chains advanced together.

    Args:
        log_prob: batched unnormalised log-density, ``(B, *event) -> (B,)``.
        x0: initial positions ``(B, *event)``.
        proposal: ``"random_walk"`` or ``"mala"``.
        step_size: initial proposal scale ``s``.
        generator: the source of randomness (a ``torch.Generator`` or an int seed).
        target_acceptance: acceptance rate aimed at while adapting (0.5 random walk, 0.57 MALA).

    Attributes: ``x`` (current positions), ``log_p`` (their log-densities), ``step_size``,
    ``acceptance_rate`` (of the last ``step`` call), ``total_acceptance`` (since creation).
    """

    def __init__(self, log_prob: Callable, x0: torch.Tensor, proposal: str = "random_walk",
                 step_size: float = 0.5, generator=None, target_acceptance: float | None = None):
        check_callable(log_prob, "log_prob")
        check_choice(proposal, "proposal", sorted(_TARGET))
        check_tensor(x0, "x0", min_dim=2)
        self.proposal = proposal
        self.step_size = check_positive(step_size, "step_size")
        self.target_acceptance = _TARGET[proposal] if target_acceptance is None else \
            check_probability(target_acceptance, "target_acceptance", open_low=True, open_high=True)
        if generator is not None and not isinstance(generator, (int, torch.Generator)):
            raise TypeError(f"generator must be a torch.Generator, an int seed or None, got "
                            f"{type(generator).__name__}")
        self.generator = make_generator(generator, x0.device)
        self.acceptance_rate = float("nan")
        self._accepted = 0
        self._proposed = 0
        self.x = x0.detach().clone()
        self.set_log_prob(log_prob)

    # -- state -----------------------------------------------------------------------------
    def set_log_prob(self, log_prob: Callable) -> None:
        """Replace the target (e.g. after a VMC parameter update) and re-evaluate the state."""
        self.log_prob = log_prob
        self.log_p, self.grad_log_p = self._evaluate(self.x)

    def _evaluate(self, x):
        if self.proposal == "mala":
            x = x.detach().requires_grad_(True)
            with torch.enable_grad():
                lp = self.log_prob(x)
                (g,) = torch.autograd.grad(lp.sum(), x)
            lp, g = lp.detach(), g.detach()
        else:
            with torch.no_grad():
                lp, g = self.log_prob(x).detach(), None
        if lp.shape != x.shape[:1]:
            raise ValueError(f"log_prob must return shape ({x.shape[0]},), got {tuple(lp.shape)}")
        return lp, g

    @property
    def total_acceptance(self) -> float:
        return self._accepted / max(1, self._proposed)

    # -- moves -----------------------------------------------------------------------------
    def _noise(self):
        # Drawn on the generator's device: a CPU generator reproduces CPU runs on CUDA.
        return torch.randn(self.x.shape, generator=self.generator, device=self.generator.device,
                           dtype=self.x.dtype).to(self.x.device)

    def _one_step(self) -> torch.Tensor:
        s = self.step_size
        x, lp = self.x, self.log_p
        if self.proposal == "random_walk":
            x_new = x + s * self._noise()
            lp_new, g_new = self._evaluate(x_new)
            log_ratio = lp_new - lp
        else:
            g = self.grad_log_p
            x_new = x + 0.5 * s * s * g + s * self._noise()
            lp_new, g_new = self._evaluate(x_new)
            event = tuple(range(1, x.dim()))
            forward = ((x_new - x - 0.5 * s * s * g) ** 2).sum(event)
            backward = ((x - x_new - 0.5 * s * s * g_new) ** 2).sum(event)
            log_ratio = lp_new - lp - (backward - forward) / (2 * s * s)
        u = torch.rand(lp.shape, generator=self.generator, device=self.generator.device,
                       dtype=x.dtype).to(x.device)
        accept = torch.log(u) < torch.nan_to_num(log_ratio, nan=-math.inf)
        shape = (-1,) + (1,) * (x.dim() - 1)
        self.x = torch.where(accept.view(shape), x_new, x)
        self.log_p = torch.where(accept, lp_new, lp)
        if g_new is not None:
            self.grad_log_p = torch.where(accept.view(shape), g_new, self.grad_log_p)
        return accept

    def step(self, n_steps: int = 1, adapt: bool = False) -> torch.Tensor:
        """Advance every chain ``n_steps`` Metropolis steps; return the current positions.

        With ``adapt=True`` the step size moves after each step by
        ``log s += (acceptance - target) / sqrt(k + 1)`` (use during burn-in only).
        """
        accepted = 0.0
        for _ in range(n_steps):
            accept = self._one_step()
            rate = float(accept.float().mean())
            accepted += rate
            self._accepted += int(accept.sum())
            self._proposed += accept.numel()
            if adapt:
                k = self._proposed / accept.numel()
                self.step_size *= math.exp((rate - self.target_acceptance) / math.sqrt(k + 1.0))
        self.acceptance_rate = accepted / max(1, n_steps)
        if not bool(torch.isfinite(self.x).all()):
            raise FloatingPointError("walker positions became non-finite")
        return self.x

    def sample(self, n_samples: int, thin: int = 1, burn_in: int = 0, adapt_during_burn_in=True):
        """Burn in, then collect ``n_samples`` states every ``thin`` steps: ``(n_samples, B, *event)``."""
        if n_samples < 1 or thin < 1 or burn_in < 0:
            raise ValueError("n_samples and thin must be >= 1 and burn_in >= 0")
        if burn_in:
            self.step(burn_in, adapt=adapt_during_burn_in)
        samples = []
        for _ in range(n_samples):
            samples.append(self.step(thin).clone())
        return torch.stack(samples)


def _series(values, name: str) -> torch.Tensor:
    """A real series as a float64 tensor: finite (a NaN sample would make every error bar wrong)."""
    if isinstance(values, torch.Tensor):
        if values.is_complex() or values.dtype == torch.bool:
            raise TypeError(f"{name} must be a real tensor, got {values.dtype}")
        x = values.detach().to(torch.float64)
    else:
        try:
            x = torch.as_tensor(values, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a tensor or a sequence of numbers, "
                            f"got {type(values).__name__}") from None
    return check_tensor(x, name, dim=(1, 2))


def integrated_autocorrelation_time(chain: torch.Tensor, window_factor: float = 5.0) -> float:
    """Integrated autocorrelation time ``tau = 1 + 2 sum_k rho(k)`` of a scalar observable.

    ``chain`` has shape ``(T,)`` or ``(T, C)`` (``C`` independent chains; the autocorrelation is
    averaged over them). The sum is truncated at Sokal's automatic window, the smallest ``M``
    with ``M >= window_factor * tau(M)``. The variance of a mean of ``T C`` samples is
    ``tau var / (T C)``.
    """
    x = _series(chain, "chain")
    window_factor = check_positive(window_factor, "window_factor")
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2 or x.shape[0] < 4 or x.shape[1] < 1:
        raise ValueError(f"chain must have shape (T,) or (T, chains) with T >= 4, got {tuple(x.shape)}")
    T = x.shape[0]
    x = x - x.mean(0, keepdim=True)
    n = 1 << (2 * T - 1).bit_length()
    spectrum = torch.fft.rfft(x, n=n, dim=0)
    acf = torch.fft.irfft(spectrum * spectrum.conj(), n=n, dim=0)[:T].mean(1)
    if acf[0] <= 0:
        return 1.0
    rho = acf / acf[0]
    tau = 1.0
    for m in range(1, T):
        tau += 2.0 * float(rho[m])
        if m >= window_factor * tau:
            break
    return max(tau, 1e-12)


def blocking_standard_error(series: torch.Tensor) -> float:
    """Standard error of the mean of a correlated series by Flyvbjerg-Petersen blocking.

    Repeatedly averages neighbouring pairs; the naive standard error grows with the block size
    until blocks decorrelate. Returns the largest estimate among levels with at least 32 blocks
    (a conservative plateau estimate). ``series`` has shape ``(T,)``.
    """
    x = _series(series, "series").flatten()
    if x.numel() < 64:
        raise ValueError(f"series: blocking needs at least 64 samples, got {x.numel()}")
    best = 0.0
    while x.numel() >= 32:
        n = x.numel()
        error = float(x.std(unbiased=True) / math.sqrt(n))
        best = max(best, error)
        m = n // 2
        x = 0.5 * (x[: 2 * m : 2] + x[1 : 2 * m : 2])
    return best


def chain_mean_and_error(samples: torch.Tensor) -> tuple[float, float, float]:
    """Mean, autocorrelation-corrected standard error, and ``tau`` of ``samples`` ``(T, chains)``.

    ``error = sqrt(tau var / (T chains))`` with ``tau`` from ``integrated_autocorrelation_time``.
    """
    x = _series(samples, "samples")
    if x.dim() == 1:
        x = x[:, None]
    tau = integrated_autocorrelation_time(x)
    mean = float(x.mean())
    error = math.sqrt(max(tau, 1.0) * float(x.var(unbiased=True)) / x.numel())
    return mean, error, tau
