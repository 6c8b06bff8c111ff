"""Tensor utilities every thread of dlpde uses; imports no thread.

- device: ``resolve_device``, ``resolve_dtype``
- random: ``make_generator``, ``spawn_seed``
- autodiff: ``gradient``, ``divergence``, ``laplacian``, ``hessian_vector_product``, ``jacobian``
- ode: ``integrate`` with ``Euler``, ``Heun``, ``RK4``, ``Dopri5``
- mcmc: ``MetropolisWalkers``, ``integrated_autocorrelation_time``, ``blocking_standard_error``,
  ``chain_mean_and_error``
- train: ``train`` (the one training loop), ``NonFiniteLossError``
- testing: property checks (``dlpde.shared.testing``)
- citations: ``cite``
- runs: ``RunDir`` and atomic writes; plotting: ``new_figure``, ``save_figure``
- studies: ``Study``, ``execute``; kernels: ``KernelCheck`` (GPU check registry)
- checks: the argument-checking vocabulary (``check_tensor``, ``check_int``, ``check_real``, ...)
"""

from . import checks, testing
from .autodiff import divergence, gradient, hessian_vector_product, jacobian, laplacian
from .checks import (
    NonFiniteResultError,
    check_bool,
    check_callable,
    check_choice,
    check_dtype,
    check_finite_result,
    check_int,
    check_path,
    check_positive,
    check_positive_int,
    check_probability,
    check_real,
    check_same_device,
    check_sequence,
    check_tensor,
)
from .citations import cite
from .device import resolve_device, resolve_dtype
from .kernels import KernelCheck
from .mcmc import (
    MetropolisWalkers,
    blocking_standard_error,
    chain_mean_and_error,
    integrated_autocorrelation_time,
)
from .ode import INTEGRATORS, RK4, Dopri5, Euler, Heun, integrate
from .plotting import image_grid, new_figure, save_figure
from .random import make_generator, spawn_seed
from .runs import RunDir, atomic_write_json, atomic_write_text, environment_info
from .studies import ConfigError, Study, execute
from .train import NonFiniteLossError, train

__all__ = [
    "resolve_device", "resolve_dtype", "make_generator", "spawn_seed",
    "gradient", "divergence", "laplacian", "hessian_vector_product", "jacobian",
    "integrate", "Euler", "Heun", "RK4", "Dopri5", "INTEGRATORS",
    "MetropolisWalkers", "integrated_autocorrelation_time", "blocking_standard_error",
    "chain_mean_and_error",
    "train", "NonFiniteLossError",
    "testing", "cite",
    "RunDir", "atomic_write_json", "atomic_write_text", "environment_info",
    "new_figure", "save_figure", "image_grid",
    "Study", "ConfigError", "execute", "KernelCheck",
    "checks", "check_tensor", "check_int", "check_positive_int", "check_real", "check_positive",
    "check_probability", "check_choice", "check_callable", "check_same_device", "check_bool",
    "check_finite_result", "check_sequence", "check_dtype", "check_path",
    "NonFiniteResultError",
]
