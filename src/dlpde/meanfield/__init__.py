"""dlpde.meanfield: mean-field limits of two-layer nets, two-layer CNNs, ResNets and ResNeXt.

Finite networks are particle systems (vectorised over particles; CUDA when the tensors are there),
trained with mean-field time scaling (``mean_field_gradient_flow``, ``mean_field_sgd``, the
``MeanFieldLangevin`` step); their limits are solved independently:

- ``TwoLayerMeanField``, ``MeanFieldCNN``: ``f = (1/n) sum_i a_i phi(x; w_i)``;
  ``LinearMomentClosure``: the exact second-moment ODE for a linear activation;
- ``IsotropicGaussianProblem`` (Mei, Montanari & Nguyen 2018) with the exact population risk of a
  finite network and the radially symmetric reduction ``solve_radial_limit``;
- ``MeanFieldResNet`` (ResNet / ResNeXt), the depth ODE ``resnet_limit``, its adjoint
  ``resnet_limit_adjoint``, the Wasserstein velocity ``particle_velocity``, block reordering, and
  ``GaussianBlockMeasure`` (a block law with a closed-form mean field), and for linear blocks the
  exact training on the unit moments (``linear_block_moments``, ``linear_resnet_training``);
- ``coordinate_check``: on any model family, how activations, their updates and the empirical
  NTK scale with width, and the regime (lazy/NTK, mean-field, unstable, trivial) it implies.
"""

from ._activations import GaussianWellActivation, PiecewiseLinearActivation, resolve_activation
from ._dynamics import MeanFieldLangevin, mean_field_gradient_flow, mean_field_sgd, mean_field_velocity
from ._isotropic import (
    IsotropicGaussianProblem,
    RadialSolution,
    gaussian_initial_radius,
    solve_radial_limit,
    sphere_moments,
)
from ._linear_closure import LinearMomentClosure
from ._regime import PARAMETERIZATIONS, REGIMES, CoordinateCheck, coordinate_check
from ._resnet import (
    GaussianBlockMeasure,
    MeanFieldResNet,
    block_outputs,
    linear_block_moments,
    linear_resnet_training,
    particle_velocity,
    resnet_limit,
    resnet_limit_adjoint,
)
from ._two_layer import MeanFieldCNN, TwoLayerMeanField

__all__ = [
    "TwoLayerMeanField",
    "MeanFieldCNN",
    "MeanFieldResNet",
    "PiecewiseLinearActivation",
    "GaussianWellActivation",
    "resolve_activation",
    "MeanFieldLangevin",
    "mean_field_velocity",
    "mean_field_gradient_flow",
    "mean_field_sgd",
    "LinearMomentClosure",
    "IsotropicGaussianProblem",
    "RadialSolution",
    "solve_radial_limit",
    "gaussian_initial_radius",
    "sphere_moments",
    "GaussianBlockMeasure",
    "block_outputs",
    "linear_block_moments",
    "linear_resnet_training",
    "particle_velocity",
    "resnet_limit",
    "resnet_limit_adjoint",
    "coordinate_check",
    "CoordinateCheck",
    "PARAMETERIZATIONS",
    "REGIMES",
]
