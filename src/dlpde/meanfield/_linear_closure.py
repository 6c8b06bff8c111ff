"""The moment closure of a linear two-layer mean-field network: an exact reference for particles.

With ``sigma(t) = t`` the network is ``f(x) = (1/n) sum_i a_i (<w_i, x> + b_i) = <beta, z>`` with
``z = (x, 1)`` (or ``z = x`` without biases) and ``beta = (1/n) sum_i a_i v_i``, ``v_i = (w_i, b_i)``.
For the risk ``R = E (y - <beta, z>)^2`` with data moments ``C = E[z z^T]``, ``c = E[y z]`` every
particle ``theta_i = (a_i, v_i)`` moves in the same linear field (``_dynamics.py`` conventions):

    d theta_i / dt = A theta_i,   A = m * [[-2 lambda, 2 g^T], [2 g, -2 lambda I]],   g = c - C beta,

(``m`` the trainable mask applied to rows), so the second-moment matrix ``M = (1/n) sum_i
theta_i theta_i^T`` obeys the closed ODE, for every ``n``,

    dM/dt = A(M) M + M A(M)^T + (4 / beta) diag(m),     beta_vec = M[0, 1:],

the last term being the Langevin noise of inverse temperature ``beta`` (absent for gradient
flow; with noise the ODE holds for ``n -> infinity``). Started from the particles' own ``M(0)``,
deterministic particles follow it exactly; started from the population ``E[theta theta^T]`` they
differ by the sampling error of ``M(0)``, O(n^-1/2).
"""

from __future__ import annotations

import math

import torch

from dlpde.shared import check_bool, check_positive, check_real, check_same_device, check_tensor, integrate

__all__ = ["LinearMomentClosure"]


class LinearMomentClosure:
    """The closed second-moment ODE of a linear two-layer mean-field network (see module doc).

    Args:
        input_moment: ``C = E[z z^T]``, shape ``(q, q)`` (``z`` = input, with a trailing 1 for biases).
        cross_moment: ``c = E[y z]``, shape ``(q,)``.
        output_moment: ``E[y^2]`` (only enters the risk).
        fixed_output: the output weights ``a`` do not move (row 0 of ``A`` is zero).
        penalty: ``lambda`` of the L2 penalty; inverse_temperature: ``beta`` (``math.inf``: none).
    Particles are ordered ``(a, w, b)`` like ``TwoLayerMeanField.particles``.
    """

    def __init__(
        self,
        input_moment: torch.Tensor,
        cross_moment: torch.Tensor,
        output_moment: float = 0.0,
        fixed_output: bool = False,
        penalty: float = 0.0,
        inverse_temperature: float = math.inf,
    ):
        check_tensor(input_moment, "input_moment", dim=2)
        if input_moment.shape[0] != input_moment.shape[1]:
            raise ValueError(f"input_moment must be a square matrix, got shape {tuple(input_moment.shape)}")
        check_tensor(cross_moment, "cross_moment", shape=(input_moment.shape[0],))
        check_same_device(input_moment=input_moment, cross_moment=cross_moment)
        output_moment = check_real(output_moment, "output_moment")
        check_bool(fixed_output, "fixed_output")
        penalty = check_positive(penalty, "penalty", allow_zero=True)
        inverse_temperature = check_real(
            inverse_temperature, "inverse_temperature (math.inf for no noise)", 0.0, strict_minimum=True,
            finite=False,
        )
        self.input_moment = input_moment
        self.cross_moment = cross_moment.to(input_moment)
        self.output_moment = float(output_moment)
        self.fixed_output = bool(fixed_output)
        self.penalty = float(penalty)
        self.inverse_temperature = float(inverse_temperature)
        size = input_moment.shape[0] + 1
        self.mask = torch.ones(size, dtype=input_moment.dtype, device=input_moment.device)
        if self.fixed_output:
            self.mask[0] = 0.0

    @classmethod
    def from_data(cls, x: torch.Tensor, y: torch.Tensor, bias: bool = True, **kwargs):
        """Moments of a data set (full-batch training): ``C = mean z z^T``, ``c = mean y z``."""
        if x.dim() != 2 or y.shape != (x.shape[0],):
            raise ValueError(f"x must be (B, d) and y (B,), got {tuple(x.shape)} and {tuple(y.shape)}")
        z = torch.cat([x, torch.ones_like(x[:, :1])], 1) if bias else x
        return cls(z.T @ z / x.shape[0], z.T @ y / x.shape[0], float((y * y).mean()), **kwargs)

    @property
    def size(self) -> int:
        return self.mask.shape[0]

    @staticmethod
    def second_moment(particles: torch.Tensor) -> torch.Tensor:
        """``(1/n) sum_i theta_i theta_i^T`` of particles ``(n, q + 1)``."""
        return particles.T @ particles / particles.shape[0]

    def _check(self, moment):
        if moment.shape != (self.size, self.size):
            raise ValueError(
                f"second moment must have shape ({self.size}, {self.size}), got {tuple(moment.shape)}"
            )

    def linear_predictor(self, moment: torch.Tensor) -> torch.Tensor:
        """``beta = E[a v] = M[0, 1:]``."""
        return moment[..., 0, 1:]

    def velocity_matrix(self, moment: torch.Tensor) -> torch.Tensor:
        """``A(M)``: every particle moves as ``d theta / dt = A theta``."""
        g = self.cross_moment - self.input_moment @ self.linear_predictor(moment)
        a = -2.0 * self.penalty * torch.eye(self.size, dtype=moment.dtype, device=moment.device)
        a[0, 1:] = a[0, 1:] + 2.0 * g
        a[1:, 0] = a[1:, 0] + 2.0 * g
        return self.mask[:, None] * a

    def right_hand_side(self, moment: torch.Tensor) -> torch.Tensor:
        a = self.velocity_matrix(moment)
        out = a @ moment + moment @ a.T
        if math.isfinite(self.inverse_temperature):
            out = out + (4.0 / self.inverse_temperature) * torch.diag(self.mask)
        return out

    def solve(
        self,
        initial_moment: torch.Tensor,
        time: float,
        steps: int | None = None,
        method: str = "rk4",
        save_at=None,
        rtol: float = 1e-10,
        atol: float = 1e-12,
    ) -> torch.Tensor:
        """``M(time)`` (or the stack at ``save_at``) from ``M(0) = initial_moment``, by ``integrate``."""
        self._check(initial_moment)
        return integrate(
            lambda t, m: self.right_hand_side(m),
            initial_moment,
            0.0,
            float(time),
            method=method,
            steps=steps,
            rtol=rtol,
            atol=atol,
            save_at=save_at,
        )

    def risk(self, moment: torch.Tensor) -> torch.Tensor:
        """``R = E y^2 - 2 <beta, c> + beta^T C beta`` (works on stacks of moments)."""
        beta = self.linear_predictor(moment)
        return (
            self.output_moment - 2.0 * beta @ self.cross_moment + ((beta @ self.input_moment) * beta).sum(-1)
        )
