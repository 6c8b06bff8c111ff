"""Linear forward operators of imaging inverse problems, y = A x (+ noise).

Every operator acts on batched tensors: images are ``(..., H, W)`` (any leading batch
dimensions), vectors ``(..., n)``. ``forward`` is A, ``adjoint`` is a hand-written A^T (never
obtained from autograd, so that autograd can check it), ``normal`` is A^T A. All of them are
differentiable (autograd passes through), run on the device and in the dtype of their input.

Adjoint pitfall: for a convolution with reflect or replicate padding, the adjoint is NOT the
convolution with the flipped kernel and the same padding; it is the correlation with the kernel
over the padded domain followed by the adjoint of the padding, which folds the padded border
back onto the pixels it was copied from (``_pad_adjoint``).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

from dlpde.shared import (
    NonFiniteResultError,
    check_choice,
    check_int,
    check_positive,
    check_positive_int,
    check_real,
    check_tensor,
)
from dlpde.shared.checks import check_dtype

from ._checks import check_generator, check_shape

__all__ = [
    "LinearOperator", "Identity", "Blur", "GaussianBlur", "MotionBlur", "Inpainting",
    "Downsampling", "Radon", "CompressedSensing", "gaussian_kernel", "motion_kernel",
]

BOUNDARIES = ("circular", "reflect", "replicate", "zero")


def _check_tensor(name: str, x, min_dim: int = 1) -> torch.Tensor:
    """Operator inputs: float32/float64 tensors with at least ``min_dim`` dims (NaN passes
    through a linear map; finiteness is the solvers' business)."""
    return check_tensor(x, name, min_dim=min_dim, finite=False)


class LinearOperator:
    """A linear map A from ``input_shape`` to ``output_shape`` (event shapes; leading dims batch).

    Subclasses implement ``forward`` (A x) and ``adjoint`` (A^T y). ``input_shape`` may be
    ``None`` for operators that accept any image size (convolutions); then ``norm`` and
    ``adjointness_error`` need an explicit ``input_shape``.
    """

    input_shape: tuple[int, ...] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """A^T A x."""
        return self.adjoint(self.forward(x))

    def _shape(self, input_shape) -> tuple[int, ...]:
        shape = self.input_shape if input_shape is None else input_shape
        if shape is None:
            raise ValueError(f"{type(self).__name__} accepts any image size: pass input_shape=(H, W)")
        return check_shape(shape, "input_shape")

    def norm(self, input_shape=None, iterations: int = 200, tolerance: float = 1e-10,
             generator=0, dtype=torch.float64, device="cpu") -> float:
        """Operator 2-norm ||A|| = sqrt(lambda_max(A^T A)).

        Operators whose norm is known in closed form return it (circular ``Blur`` and circular
        ``Downsampling`` by the FFT, ``Identity``, ``Inpainting``, ``CompressedSensing`` by the
        SVD); the others use ``power_iteration_norm`` with these arguments.
        """
        exact = self.exact_norm(input_shape)
        if exact is not None:
            return exact
        return self.power_iteration_norm(input_shape, iterations, tolerance, generator, dtype, device)

    def exact_norm(self, input_shape=None) -> float | None:
        """||A|| in closed form, or ``None`` where it is not known (then ``norm`` iterates)."""
        return None

    def power_iteration_norm(self, input_shape=None, iterations: int = 200, tolerance: float = 1e-10,
                             generator=0, dtype=torch.float64, device="cpu") -> float:
        """||A|| by power iteration on A^T A: x <- A^T A x / ||A^T A x||, lambda_k = ||A^T A x_k||.

        Starts from a Gaussian vector drawn from ``generator`` (a seed or a torch.Generator);
        stops when lambda_k changes by at most ``tolerance`` (relative). lambda_k increases to
        lambda_max from below, so the estimate is a lower bound; if ``iterations`` run out before
        the tolerance is met a ``RuntimeWarning`` says so (callers that need a step size below
        1 / ||A||^2 should then keep a safety margin, as the primal-dual solvers do).
        """
        iterations = check_positive_int(iterations, "iterations")
        tolerance = check_positive(tolerance, "tolerance")
        shape = self._shape(input_shape)
        g = check_generator(generator)
        dtype = check_dtype(dtype)
        x = torch.randn(shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
        x = x / torch.linalg.vector_norm(x)
        value, converged, change = 0.0, False, math.inf
        with torch.no_grad():
            for _ in range(iterations):
                y = self.normal(x)
                new = float(torch.linalg.vector_norm(y))
                if not math.isfinite(new):
                    raise NonFiniteResultError(f"power iteration of {type(self).__name__} became non-finite")
                if new == 0.0:
                    return 0.0
                x = y / new
                change = abs(new - value) / new
                value = new
                if change <= tolerance:
                    converged = True
                    break
        if not converged:
            warnings.warn(f"power iteration for ||{type(self).__name__}|| stopped after {iterations} "
                          f"iterations without reaching relative tolerance {tolerance:g} (last relative "
                          f"change {change:.2g}); the estimate is a lower bound",
                          RuntimeWarning, stacklevel=2)
        return math.sqrt(value)

    def adjointness_error(self, input_shape=None, generator=0, dtype=torch.float64, device="cpu",
                          batch: int = 2) -> float:
        """Relative mismatch |<A u, v> - <u, A^T v>| / (|A u| |v| + |u| |A^T v|) for random u, v."""
        shape = self._shape(input_shape)
        g = check_generator(generator)
        dtype = check_dtype(dtype)
        batch = check_positive_int(batch, "batch")
        u = torch.randn((batch, *shape), generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
        au = self.forward(u)
        v = torch.randn(au.shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
        atv = self.adjoint(v)
        lhs, rhs = (au * v).sum(), (u * atv).sum()
        scale = torch.linalg.vector_norm(au) * torch.linalg.vector_norm(v) \
            + torch.linalg.vector_norm(u) * torch.linalg.vector_norm(atv)
        return float((lhs - rhs).abs() / scale.clamp_min(1e-300))


class Identity(LinearOperator):
    """A x = x (denoising). ``input_shape`` is optional and only used by ``norm``."""

    def __init__(self, input_shape=None):
        self.input_shape = None if input_shape is None else check_shape(input_shape)

    def forward(self, x):
        return _check_tensor("x", x)

    def adjoint(self, y):
        return _check_tensor("y", y)

    def solve_shifted_normal(self, z, tau):
        """(I + tau A^T A)^{-1} z = z / (1 + tau)."""
        return z / (1.0 + tau)

    def exact_norm(self, input_shape=None) -> float:
        """||I|| = 1."""
        return 1.0


# ---------------------------------------------------------------------------------------------
# Convolutions with boundary conditions


def _pad_sizes(kernel_size: int) -> tuple[int, int]:
    """Padding (before, after) so that the kernel centre sits at index kernel_size // 2."""
    centre = kernel_size // 2
    return kernel_size - 1 - centre, centre


def _source_indices(n: int, before: int, after: int, boundary: str, device) -> torch.Tensor:
    """For each index of the padded axis (length n + before + after), the index it copies."""
    j = torch.arange(-before, n + after, device=device)
    if boundary == "replicate":
        return j.clamp(0, n - 1)
    if boundary == "circular":
        return j.remainder(n)
    if boundary == "reflect":  # mirror without repeating the edge sample (numpy/torch 'reflect')
        period = 2 * (n - 1)
        j = j.remainder(period) if period > 0 else torch.zeros_like(j)
        return torch.where(j < n, j, period - j)
    raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")


def _pad(x: torch.Tensor, pads: tuple[int, int, int, int], boundary: str) -> torch.Tensor:
    """Pad the last two dims of a (N, C, H, W) tensor by (top, bottom, left, right)."""
    top, bottom, left, right = pads
    mode = "constant" if boundary == "zero" else boundary
    return F.pad(x, (left, right, top, bottom), mode=mode)


def _pad_adjoint(p: torch.Tensor, pads: tuple[int, int, int, int], boundary: str) -> torch.Tensor:
    """Adjoint of ``_pad``: crop, and (except for zero padding) add the padded border back onto
    the pixels it was copied from."""
    top, bottom, left, right = pads
    h = p.shape[-2] - top - bottom
    w = p.shape[-1] - left - right
    if boundary == "zero":
        return p[..., top:top + h, left:left + w]
    rows = _source_indices(h, top, bottom, boundary, p.device)
    cols = _source_indices(w, left, right, boundary, p.device)
    out = p.new_zeros((*p.shape[:-2], h, p.shape[-1])).index_add(-2, rows, p)
    return out.new_zeros((*p.shape[:-2], h, w)).index_add(-1, cols, out)


def convolve(x: torch.Tensor, kernels: torch.Tensor, boundary: str) -> torch.Tensor:
    """Convolution of (N, 1, H, W) images with a bank of kernels (C, kh, kw) -> (N, C, H, W).

    (k * x)[i] = sum_m k[m] x[i + c - m] with the kernel centre c = (kh // 2, kw // 2) and x
    extended beyond the image by ``boundary`` (same as scipy.ndimage.convolve with modes wrap,
    mirror, nearest, constant).
    """
    kh, kw = kernels.shape[-2:]
    pads = (*_pad_sizes(kh), *_pad_sizes(kw))
    weight = torch.flip(kernels, (-2, -1)).unsqueeze(1)
    return F.conv2d(_pad(x, pads, boundary), weight)


def convolve_adjoint(y: torch.Tensor, kernels: torch.Tensor, boundary: str) -> torch.Tensor:
    """Adjoint of ``convolve``: (N, C, H, W) -> (N, 1, H, W), summed over the C kernels."""
    kh, kw = kernels.shape[-2:]
    pads = (*_pad_sizes(kh), *_pad_sizes(kw))
    weight = torch.flip(kernels, (-2, -1)).unsqueeze(1)
    return _pad_adjoint(F.conv_transpose2d(y, weight), pads, boundary)


def _as_images(x: torch.Tensor, name: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    _check_tensor(name, x, 2)
    lead = x.shape[:-2]
    return x.reshape(-1, 1, *x.shape[-2:]), lead


class Blur(LinearOperator):
    """Convolution A x = k * x of images ``(..., H, W)`` with a 2-D kernel.

    ``boundary``: ``"circular"`` (periodic; computed with the FFT), ``"reflect"`` (mirror
    without repeating the edge), ``"replicate"`` (edge value), ``"zero"``. The kernel centre is
    at index (kh // 2, kw // 2). For circular blur ||A|| = max |FFT(k)| over the image grid.
    """

    def __init__(self, kernel: torch.Tensor, boundary: str = "circular"):
        check_tensor(kernel, "kernel", dim=2)
        check_choice(boundary, "boundary", BOUNDARIES)
        self.kernel = kernel
        self.boundary = boundary

    def _kernel_for(self, x):
        return self.kernel.to(device=x.device, dtype=x.dtype)

    def transfer_function(self, shape, device=None, dtype=torch.float64) -> torch.Tensor:
        """rfft2 of the kernel embedded in an image of ``shape`` with its centre at (0, 0)."""
        h, w = shape
        kh, kw = self.kernel.shape
        if kh > h or kw > w:
            raise ValueError(f"kernel {tuple(self.kernel.shape)} is larger than the image {shape}")
        k = self.kernel.to(device=device or self.kernel.device, dtype=dtype)
        padded = k.new_zeros((h, w))
        padded[:kh, :kw] = k
        padded = torch.roll(padded, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
        return torch.fft.rfft2(padded)

    def forward(self, x):
        images, lead = _as_images(x, "x")
        if self.boundary == "circular":
            k_hat = self.transfer_function(x.shape[-2:], x.device, x.dtype)
            out = torch.fft.irfft2(torch.fft.rfft2(images) * k_hat, s=x.shape[-2:])
        else:
            out = convolve(images, self._kernel_for(x)[None], self.boundary)
        return out.reshape(*lead, *x.shape[-2:])

    def adjoint(self, y):
        images, lead = _as_images(y, "y")
        if self.boundary == "circular":
            k_hat = self.transfer_function(y.shape[-2:], y.device, y.dtype)
            out = torch.fft.irfft2(torch.fft.rfft2(images) * k_hat.conj(), s=y.shape[-2:])
        else:
            out = convolve_adjoint(images, self._kernel_for(y)[None], self.boundary)
        return out.reshape(*lead, *y.shape[-2:])

    def solve_shifted_normal(self, z, tau):
        """(I + tau A^T A)^{-1} z, in closed form by the FFT; circular boundary only."""
        if self.boundary != "circular":
            raise NotImplementedError("closed-form (I + tau A^T A)^-1 needs circular boundary")
        k_hat = self.transfer_function(z.shape[-2:], z.device, z.dtype)
        return torch.fft.irfft2(torch.fft.rfft2(z) / (1 + tau * k_hat.abs() ** 2), s=z.shape[-2:])

    def fft_norm(self, shape) -> float:
        """The closed-form norm for circular boundary: max over frequencies of |FFT(k)|."""
        return float(self.transfer_function(self._shape(shape)).abs().max())

    def exact_norm(self, input_shape=None) -> float | None:
        """Circular boundary: A is diagonalised by the 2-D DFT, ||A|| = max_w |k_hat(w)| over the
        image grid (``fft_norm``). Other boundaries: ``None`` (power iteration)."""
        if self.boundary != "circular":
            return None
        return self.fft_norm(input_shape)


MAX_KERNEL_SIZE = 2049


def check_odd_size(size) -> int:
    size = check_positive_int(size, "size", maximum=MAX_KERNEL_SIZE)
    if size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, got {size}")
    return size


def gaussian_kernel(sigma: float, size: int | None = None, dtype=torch.float64) -> torch.Tensor:
    """Normalised Gaussian kernel exp(-(i^2 + j^2) / (2 sigma^2)) of odd ``size`` (default
    2 * ceil(3 sigma) + 1)."""
    sigma = check_positive(sigma, "sigma", maximum=MAX_KERNEL_SIZE / 6)
    dtype = check_dtype(dtype)
    size = 2 * math.ceil(3 * sigma) + 1 if size is None else check_odd_size(size)
    r = torch.arange(size, dtype=dtype) - size // 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def motion_kernel(length: float, angle: float, size: int | None = None, dtype=torch.float64,
                  oversampling: int = 16) -> torch.Tensor:
    """Normalised linear motion-blur kernel: a segment of ``length`` pixels at ``angle`` degrees
    (counter-clockwise from the x axis) through the centre, rasterised by bilinear splatting of
    ``oversampling`` points per pixel of length."""
    length = check_positive(length, "length", maximum=MAX_KERNEL_SIZE - 1)
    angle = check_real(angle, "angle")
    dtype = check_dtype(dtype)
    oversampling = check_positive_int(oversampling, "oversampling", maximum=1024)
    size = 2 * math.ceil(length / 2) + 1 if size is None else check_odd_size(size)
    n = max(2, int(math.ceil(length * oversampling)))
    t = torch.linspace(-length / 2, length / 2, n, dtype=torch.float64)
    theta = math.radians(angle)
    cols = size // 2 + t * math.cos(theta)
    rows = size // 2 - t * math.sin(theta)
    kernel = torch.zeros(size, size, dtype=torch.float64)
    r0, c0 = rows.floor(), cols.floor()
    for dr in (0, 1):
        for dc in (0, 1):
            weight = (1 - (rows - r0 - dr).abs()) * (1 - (cols - c0 - dc).abs())
            r, c = (r0 + dr).long(), (c0 + dc).long()
            inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
            kernel.index_put_((r[inside], c[inside]), weight[inside], accumulate=True)
    return (kernel / kernel.sum()).to(dtype)


class GaussianBlur(Blur):
    """``Blur`` with the normalised Gaussian kernel of standard deviation ``sigma`` pixels."""

    def __init__(self, sigma: float, size: int | None = None, boundary: str = "circular"):
        super().__init__(gaussian_kernel(sigma, size), boundary)
        self.sigma = sigma


class MotionBlur(Blur):
    """``Blur`` with a linear motion kernel of ``length`` pixels at ``angle`` degrees."""

    def __init__(self, length: float, angle: float = 0.0, size: int | None = None,
                 boundary: str = "circular"):
        super().__init__(motion_kernel(length, angle, size), boundary)
        self.length, self.angle = length, angle


# ---------------------------------------------------------------------------------------------


class Inpainting(LinearOperator):
    """A x = m * x with a 0/1 ``mask`` of shape (H, W) (missing pixels read as zero).

    A is a diagonal projection: self-adjoint, ||A|| = 1 when any pixel is observed.
    """

    def __init__(self, mask: torch.Tensor):
        check_tensor(mask, "mask", min_dim=1, dtype="any", finite=False)
        if mask.is_complex():
            raise TypeError("mask must be a real or boolean tensor of 0 and 1")
        values = mask.to(torch.float64)
        if not bool(((values == 0) | (values == 1)).all()):
            raise ValueError("mask must contain only 0 and 1 (or booleans)")
        self.mask = mask.bool()
        self.input_shape = tuple(mask.shape)

    def _apply(self, x, name):
        _check_tensor(name, x)
        if tuple(x.shape[-self.mask.dim():]) != self.input_shape:
            raise ValueError(f"{name} must end with shape {self.input_shape}, got {tuple(x.shape)}")
        return x * self.mask.to(device=x.device, dtype=x.dtype)

    def forward(self, x):
        return self._apply(x, "x")

    def adjoint(self, y):
        return self._apply(y, "y")

    def exact_norm(self, input_shape=None) -> float:
        """||A|| = 1 if any pixel is observed, else 0."""
        return 1.0 if bool(self.mask.any()) else 0.0

    def solve_shifted_normal(self, z, tau):
        """(I + tau A^T A)^{-1} z: divide observed pixels by 1 + tau."""
        return z / (1 + tau * self.mask.to(device=z.device, dtype=z.dtype))


class Downsampling(LinearOperator):
    """A x = S (k * x): blur with ``filter`` then keep every ``factor``-th pixel (phase 0).

    ``filter``: ``"box"`` (factor x factor average), ``"gaussian"`` (sigma = factor / 2, the
    usual anti-aliasing choice), ``None`` (no filter) or a 2-D kernel tensor. The adjoint is
    k^T * (S^T y) with S^T the zero-filling upsampler.
    """

    def __init__(self, factor: int, filter="gaussian", boundary: str = "circular"):
        factor = check_positive_int(factor, "factor", maximum=1024)
        check_choice(boundary, "boundary", BOUNDARIES)
        if isinstance(filter, torch.Tensor):
            kernel = filter
        elif not (filter is None or isinstance(filter, str)):
            raise TypeError(f"filter must be 'box', 'gaussian', None or a kernel tensor, got {filter!r}")
        elif filter == "box":
            kernel = torch.full((factor, factor), 1.0 / factor**2, dtype=torch.float64)
        elif filter == "gaussian":
            kernel = gaussian_kernel(factor / 2.0)
        elif filter is None:
            kernel = torch.ones(1, 1, dtype=torch.float64)
        else:
            raise ValueError(f"filter must be 'box', 'gaussian', None or a kernel tensor, got {filter!r}")
        self.factor = factor
        self.blur = Blur(kernel, boundary)

    def forward(self, x):
        return self.blur.forward(x)[..., ::self.factor, ::self.factor]

    def adjoint(self, y, output_shape=None):
        _check_tensor("y", y, 2)
        h, w = output_shape or (y.shape[-2] * self.factor, y.shape[-1] * self.factor)
        up = y.new_zeros((*y.shape[:-2], h, w))
        up[..., ::self.factor, ::self.factor] = y
        return self.blur.adjoint(up)

    def exact_norm(self, input_shape=None) -> float | None:
        """Circular blur and H, W divisible by the factor f: A A^T = S K K^T S^T is a circular
        convolution on the coarse grid with symbol (1 / f^2) sum_aliases |k_hat(w + 2 pi j / f)|^2,
        so ||A||^2 is its maximum over the coarse frequencies. Otherwise ``None``."""
        shape = self._shape(input_shape)
        f = self.factor
        if self.blur.boundary != "circular" or len(shape) != 2 or shape[0] % f or shape[1] % f:
            return None
        h, w = shape
        kernel = self.blur.kernel.to(torch.float64)
        if kernel.shape[0] > h or kernel.shape[1] > w:
            raise ValueError(f"kernel {tuple(kernel.shape)} is larger than the image {shape}")
        padded = kernel.new_zeros((h, w))
        padded[:kernel.shape[0], :kernel.shape[1]] = kernel
        padded = torch.roll(padded, shifts=(-(kernel.shape[0] // 2), -(kernel.shape[1] // 2)), dims=(0, 1))
        power = torch.fft.fft2(padded).abs() ** 2
        symbol = power.reshape(f, h // f, f, w // f).sum(dim=(0, 2)) / f**2
        return math.sqrt(float(symbol.max()))

    def adjointness_error(self, input_shape=None, **kwargs) -> float:
        shape = self._shape(input_shape)
        if shape[-2] % self.factor or shape[-1] % self.factor:
            raise ValueError(f"input_shape {shape} must be divisible by factor {self.factor}")
        return super().adjointness_error(shape, **kwargs)


class CompressedSensing(LinearOperator):
    """A x = Phi x for a measurement matrix ``matrix`` (m, n); vectors (..., n) -> (..., m)."""

    def __init__(self, matrix: torch.Tensor):
        check_tensor(matrix, "matrix", dim=2)
        self.matrix = matrix
        self.input_shape = (matrix.shape[1],)

    @classmethod
    def gaussian(cls, m: int, n: int, generator=0, dtype=torch.float64, normalize_columns=True):
        """Entries N(0, 1/m), columns rescaled to unit norm (the LISTA benchmark matrix)."""
        m, n = check_positive_int(m, "m", maximum=2**16), check_positive_int(n, "n", maximum=2**16)
        g = check_generator(generator)
        dtype = check_dtype(dtype)
        a = torch.randn(m, n, generator=g, dtype=torch.float64) / math.sqrt(m)
        if normalize_columns:
            a = a / torch.linalg.vector_norm(a, dim=0, keepdim=True)
        return cls(a.to(dtype))

    def _matrix_for(self, x):
        return self.matrix.to(device=x.device, dtype=x.dtype)

    def forward(self, x):
        _check_tensor("x", x)
        if x.shape[-1] != self.matrix.shape[1]:
            raise ValueError(f"x must end with size {self.matrix.shape[1]}, got {tuple(x.shape)}")
        return x @ self._matrix_for(x).T

    def adjoint(self, y):
        _check_tensor("y", y)
        if y.shape[-1] != self.matrix.shape[0]:
            raise ValueError(f"y must end with size {self.matrix.shape[0]}, got {tuple(y.shape)}")
        return y @ self._matrix_for(y)

    def exact_norm(self, input_shape=None) -> float:
        """The largest singular value of the matrix."""
        return float(torch.linalg.matrix_norm(self.matrix.to(torch.float64), ord=2))


class _SparseProduct(torch.autograd.Function):
    """Y = M X for a sparse CSR matrix M and a dense X (columns, batch); the backward pass
    multiplies by the stored transpose (a CSR matrix too) instead of transposing M each time."""

    @staticmethod
    def forward(ctx, x, matrix, transpose):
        ctx.transpose = transpose
        return matrix @ x

    @staticmethod
    def backward(ctx, grad):
        return ctx.transpose @ grad.contiguous(), None, None


class Radon(LinearOperator):
    """Parallel-beam Radon transform of ``(..., size, size)`` images -> ``(..., angles, detectors)``.

    (R f)(theta, s) = int f(s cos(theta) - t sin(theta), s sin(theta) + t cos(theta)) dt, with the
    origin at the image centre (x to the right, y up), unit pixel spacing, ``detectors``
    (default ``size``) unit-spaced detector bins, the line integral sampled every pixel along
    the ray across the whole image (ceil(size sqrt 2) + 1 samples) and f read by bilinear
    interpolation (zero outside). ``angles`` in degrees: a tensor, or an int n for n angles
    uniformly in [0, 180).

    The discretised transform is a sparse matrix R (rays x pixels) whose row for one ray holds
    the bilinear weights of all its samples (``system_matrix``); it is built once per device and
    dtype (angles in chunks of about ``chunk`` samples, to bound the memory of the build) and
    kept with its transpose in CSR form, so that ``forward`` is R f and ``adjoint`` is R^T g, an
    exact adjoint pair (about 8-12 bytes per non-zero, roughly 1.4 non-zeros per sample).
    """

    def __init__(self, angles, size: int, detectors: int | None = None, chunk: int = 2**21):
        if isinstance(angles, bool):
            raise TypeError(f"angles must be an int or a list/tensor of degrees, got {angles!r}")
        if isinstance(angles, int):
            angles = check_positive_int(angles, "angles", maximum=2**14)
            angles = torch.arange(angles, dtype=torch.float64) * (180.0 / angles)
        elif isinstance(angles, (list, tuple)):
            if not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in angles):
                raise TypeError("angles must be a list of numbers (degrees)")
            angles = torch.tensor(angles, dtype=torch.float64)
        elif isinstance(angles, torch.Tensor):
            check_tensor(angles, "angles", dtype="any")
            if angles.is_complex() or angles.dtype == torch.bool:
                raise TypeError(f"angles must be real degrees, got {angles.dtype}")
        else:
            raise TypeError(f"angles must be an int or a list/tensor of degrees, got {type(angles).__name__}")
        angles = angles.to(torch.float64).reshape(-1)
        size = check_int(size, "size", minimum=2, maximum=4096)
        chunk = check_positive_int(chunk, "chunk")
        self.angles = angles
        self.size = size
        self.detectors = size if detectors is None else check_positive_int(detectors, "detectors",
                                                                            maximum=16384)
        self.samples = int(math.ceil(size * math.sqrt(2))) + 1
        self.input_shape = (size, size)
        self.output_shape = (angles.numel(), self.detectors)
        self.chunk = max(1, chunk // (self.detectors * self.samples))
        self._matrices = {}

    def sample_coordinates(self, angles=None, device="cpu", dtype=torch.float64):
        """Column and row coordinates (in pixels, origin at the top-left pixel centre) of every
        sample of every ray: two tensors (angles, detectors, samples)."""
        angles = self.angles if angles is None else angles
        n, d = self.size, self.detectors
        theta = torch.deg2rad(angles.to(device=device, dtype=dtype))[:, None, None]
        s = (torch.arange(d, device=device, dtype=dtype) - (d - 1) / 2)[None, :, None]
        t = (torch.arange(self.samples, device=device, dtype=dtype) - (self.samples - 1) / 2)
        t = t[None, None, :]
        centre = (n - 1) / 2
        columns = s * torch.cos(theta) - t * torch.sin(theta) + centre
        rows = centre - (s * torch.sin(theta) + t * torch.cos(theta))
        return columns, rows

    def _chunk_entries(self, start: int):
        """The coalesced (ray, pixel, weight) entries of the rays of angles start:start+chunk."""
        n, d = self.size, self.detectors
        columns, rows = self.sample_coordinates(self.angles[start:start + self.chunk])
        c0, r0 = columns.floor(), rows.floor()
        fc, fr = columns - c0, rows - r0
        first_ray = start * d
        ray = torch.arange(first_ray, first_ray + columns.shape[0] * d)[:, None].expand(-1, self.samples)
        indices, values = [], []
        for dr, dc, weight in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                               (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
            r, c = r0.long() + dr, c0.long() + dc
            keep = (r >= 0) & (r < n) & (c >= 0) & (c < n) & (weight > 0)
            indices.append(torch.stack([ray.reshape(columns.shape[0], d, -1)[keep], (r * n + c)[keep]]))
            values.append(weight[keep])
        entries = torch.sparse_coo_tensor(torch.cat(indices, 1), torch.cat(values),
                                          (self.angles.numel() * d, n * n), check_invariants=False).coalesce()
        return entries.indices(), entries.values()

    def system_matrix(self, device="cpu", dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        """The sparse matrices (R, R^T) in CSR form on ``device`` in ``dtype`` (built on first use,
        then cached): R (angles * detectors, size^2), R[ray, pixel] = sum of the bilinear
        weights of the ray's samples on that pixel."""
        key = (torch.device(device), dtype)
        if key not in self._matrices:
            import warnings

            rays, pixels = self.angles.numel() * self.detectors, self.size**2
            parts = [self._chunk_entries(start) for start in range(0, self.angles.numel(), self.chunk)]
            indices = torch.cat([p[0] for p in parts], 1)
            values = torch.cat([p[1] for p in parts])
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                matrix = torch.sparse_coo_tensor(indices, values, (rays, pixels), is_coalesced=True,
                                                 check_invariants=False)
                csr = matrix.to_sparse_csr()
                csc = matrix.to_sparse_csc()
                transpose = torch.sparse_csr_tensor(csc.ccol_indices(), csc.row_indices(), csc.values(),
                                                    (pixels, rays))
                self._matrices[key] = (csr.to(device=device, dtype=dtype),
                                       transpose.to(device=device, dtype=dtype))
        return self._matrices[key]

    def forward(self, x):
        _check_tensor("x", x, 2)
        if tuple(x.shape[-2:]) != self.input_shape:
            raise ValueError(f"x must end with shape {self.input_shape}, got {tuple(x.shape)}")
        matrix, transpose = self.system_matrix(x.device, x.dtype)
        columns = x.reshape(-1, self.size**2).T.contiguous()
        out = _SparseProduct.apply(columns, matrix, transpose)
        return out.T.reshape(*x.shape[:-2], *self.output_shape)

    def adjoint(self, y):
        _check_tensor("y", y, 2)
        if tuple(y.shape[-2:]) != self.output_shape:
            raise ValueError(f"y must end with shape {self.output_shape}, got {tuple(y.shape)}")
        matrix, transpose = self.system_matrix(y.device, y.dtype)
        columns = y.reshape(-1, self.output_shape[0] * self.output_shape[1]).T.contiguous()
        out = _SparseProduct.apply(columns, transpose, matrix)
        return out.T.reshape(*y.shape[:-2], *self.input_shape)
