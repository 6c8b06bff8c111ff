"""dlpde.ntk: neural tangent kernels, and the passage from lazy (NTK) to mean-field training.

- Empirical kernels of any PyTorch model (torch.func): ``empirical_ntk`` (Jacobian contraction
  or NTK-vector products, output-traced or full, batched), ``empirical_nngp``,
  ``ntk_vector_product``, Taylor models ``linearize`` and ``second_order_taylor``.
- A network-description language mirroring neural-tangents' ``stax`` (``Dense``, ``Conv``,
  ``ConvTranspose``, ``ConvLocal``; ``Relu``, ``LeakyRelu``, ``ABRelu``, ``Abs``, ``Sign``, ``Erf``,
  ``Sigmoid_like``, ``Gelu``, ``Sin``, ``Cos``, ``Rbf``, ``Exp``, ``Gaussian``, ``Hermite`` in closed
  form, any activation by
  quadrature with ``Elementwise`` = ``ElementwiseNumerical``; ``LayerNorm``, ``Dropout``;
  ``AvgPool``, ``SumPool``, ``GlobalAvgPool``, ``GlobalSumPool``, ``Flatten``, ``Identity``,
  ``FanOut``, ``Parallel``, ``FanInSum``, ``FanInProd``, ``FanInConcat``, ``Serial``,
  ``GlobalSelfAttention``) giving the
  infinite-width kernels (``analytic_kernels``), the finite network (``build_network``) and the
  neural-tangents model (``to_stax``) from one description.
- Infinite-width predictions: ``gradient_descent_mse``, ``nngp_posterior``,
  ``gradient_descent_mse_ensemble``.
- Lazy versus active training: ``AlphaScaled``, ``TwoLayerNetwork`` (width-parameterisation
  family), ``train_with_linearization``; diagnostics ``relative_kernel_drift``,
  ``relative_weight_movement``, ``linearization_distance``, ``kernel_target_alignment``,
  ``kernel_velocity`` (exact dK/dt); the neural tangent hierarchy ``third_order_kernel``,
  ``perturbative_dynamics``.
"""

from ._alpha import AlphaScaled, TwoLayerNetwork, train_with_linearization
from ._diagnostics import (
    kernel_target_alignment,
    kernel_velocity,
    linearization_distance,
    perturbative_dynamics,
    relative_kernel_drift,
    relative_weight_movement,
    third_order_kernel,
)
from ._empirical import (
    empirical_nngp,
    empirical_ntk,
    flatten_parameters,
    functional_model,
    linearize,
    monte_carlo_kernel,
    ntk_vector_product,
    second_order_taylor,
)
from ._predict import (
    gradient_descent_mse,
    gradient_descent_mse_ensemble,
    gradient_descent_mse_predictor,
    kernel_regression,
    nngp_posterior,
)
from ._spec import (
    ABRelu,
    Abs,
    AvgPool,
    Conv,
    ConvLocal,
    ConvTranspose,
    Cos,
    Dense,
    Dropout,
    Elementwise,
    ElementwiseNumerical,
    Erf,
    Exp,
    FanInConcat,
    FanInProd,
    FanInSum,
    FanOut,
    Flatten,
    Gaussian,
    Gelu,
    GlobalAvgPool,
    GlobalSelfAttention,
    GlobalSumPool,
    Hermite,
    Identity,
    Layer,
    LayerNorm,
    LeakyRelu,
    Parallel,
    Rbf,
    Relu,
    Serial,
    Sigmoid_like,
    Sign,
    Sin,
    SumPool,
    analytic_kernels,
    build_network,
    to_stax,
)

__all__ = [
    "empirical_ntk", "empirical_nngp", "ntk_vector_product", "linearize", "second_order_taylor",
    "functional_model", "flatten_parameters", "monte_carlo_kernel",
    "Layer", "Dense", "Conv", "ConvTranspose", "ConvLocal", "Relu", "LeakyRelu", "ABRelu", "Abs", "Sign",
    "Erf", "Sigmoid_like", "Gelu", "Sin", "Cos", "Rbf", "Exp", "Gaussian", "Hermite", "Elementwise",
    "ElementwiseNumerical", "LayerNorm", "Dropout", "AvgPool", "SumPool", "GlobalAvgPool", "GlobalSumPool",
    "Flatten", "Identity", "FanOut", "Parallel", "FanInSum", "FanInProd", "FanInConcat", "Serial",
    "GlobalSelfAttention",
    "analytic_kernels", "build_network", "to_stax",
    "gradient_descent_mse", "nngp_posterior", "gradient_descent_mse_ensemble",
    "gradient_descent_mse_predictor", "kernel_regression",
    "AlphaScaled", "TwoLayerNetwork", "train_with_linearization",
    "relative_kernel_drift", "relative_weight_movement", "linearization_distance",
    "kernel_target_alignment", "kernel_velocity", "third_order_kernel", "perturbative_dynamics",
]
