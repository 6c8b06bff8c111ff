"""dlpde.inverse: imaging inverse problems y = A x + noise, classical solvers, unrolled networks.

- Operators (``LinearOperator``: forward, adjoint, normal, norm, adjointness_error):
  ``Identity``, ``Blur`` (circular / reflect / replicate / zero), ``GaussianBlur``,
  ``MotionBlur``, ``Inpainting``, ``Downsampling``, ``Radon``, ``CompressedSensing``.
- Noise and metrics: ``GaussianNoise``, ``PoissonNoise``, ``psnr``, ``ssim``, ``nmse_db``.
- Classical solvers with a ``StoppingRule``: ``ista``, ``fista``,
  ``total_variation_restoration`` (Chambolle-Pock), ``tikhonov`` (CG), ``richardson_lucy``,
  ``wiener_deconvolution``, ``filtered_back_projection``, ``wavelet_denoise``.
- Unrolled networks: ``LISTA``, ``LISTA_CP``, ``LISTA_CPSS``, ``ALISTA`` (``train_layerwise``),
  ``UnrolledProximalGradient``, ``LearnedPrimalDual``, ``TRD``; baselines ``DnCNN``, ``UNet``.
- Pretrained denoisers shipped in the package: ``pretrained("trd" | "dncnn" | "unet", sigma)``,
  ``pretrained_record`` (how each was trained), ``denoise_file(input_path, output_path, ...)``.
- Data: ``load_image``, ``training_images``, ``random_patches``, ``shepp_logan_phantom``,
  ``random_ellipses``, ``sparse_vectors``.
"""

from ._data import (
    TEST_IMAGES,
    TRAINING_IMAGES,
    available_images,
    load_image,
    random_ellipses,
    random_patches,
    shepp_logan_phantom,
    training_images,
)
from ._lista import (
    ALISTA,
    LISTA,
    LISTA_CP,
    LISTA_CPSS,
    analytic_weight_matrix,
    layer_nmse_db,
    sparse_vectors,
    support_selection_threshold,
    train_layerwise,
)
from ._networks import (
    DnCNN,
    LearnedPrimalDual,
    UNet,
    UnrolledProximalGradient,
    haar_transform,
    inverse_haar_transform,
)
from ._noise import GaussianNoise, PoissonNoise, nmse_db, noise_level_for_snr, psnr, ssim
from ._operators import (
    Blur,
    CompressedSensing,
    Downsampling,
    GaussianBlur,
    Identity,
    Inpainting,
    LinearOperator,
    MotionBlur,
    Radon,
    gaussian_kernel,
    motion_kernel,
)
from ._pretrained import PRETRAINED_METHODS, PRETRAINED_SIGMAS, denoise_file, pretrained, pretrained_record
from ._solvers import (
    SolverResult,
    StoppingRule,
    filtered_back_projection,
    fista,
    image_divergence,
    image_gradient,
    ista,
    richardson_lucy,
    soft_threshold,
    tikhonov,
    total_variation,
    total_variation_restoration,
    wavelet_denoise,
    wiener_deconvolution,
)
from ._trd import TRD, RadialBasisInfluence, dct_filter_basis, train_greedy_then_joint

__all__ = [
    "LinearOperator", "Identity", "Blur", "GaussianBlur", "MotionBlur", "Inpainting",
    "Downsampling", "Radon", "CompressedSensing", "gaussian_kernel", "motion_kernel",
    "GaussianNoise", "PoissonNoise", "noise_level_for_snr", "psnr", "ssim", "nmse_db",
    "StoppingRule", "SolverResult", "soft_threshold", "ista", "fista", "image_gradient",
    "image_divergence", "total_variation", "total_variation_restoration", "tikhonov",
    "richardson_lucy", "wiener_deconvolution", "filtered_back_projection", "wavelet_denoise",
    "LISTA", "LISTA_CP", "LISTA_CPSS", "ALISTA", "analytic_weight_matrix", "sparse_vectors",
    "train_layerwise", "support_selection_threshold", "layer_nmse_db",
    "UnrolledProximalGradient", "LearnedPrimalDual", "DnCNN", "UNet", "haar_transform",
    "inverse_haar_transform", "TRD", "RadialBasisInfluence", "dct_filter_basis", "train_greedy_then_joint",
    "load_image", "available_images", "training_images", "random_patches",
    "shepp_logan_phantom", "random_ellipses", "TEST_IMAGES", "TRAINING_IMAGES",
    "pretrained", "pretrained_record", "denoise_file", "PRETRAINED_METHODS", "PRETRAINED_SIGMAS",
]
