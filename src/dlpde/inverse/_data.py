"""Images that ship inside installed packages (no download), patches for training, phantoms.

Test images are kept apart from training images: ``training_images(exclude=...)`` never returns
an image named in ``exclude`` (a study passes its test images there), and
``TEST_IMAGES`` / ``TRAINING_IMAGES`` are disjoint by construction.
"""

from __future__ import annotations

import math

import torch

from dlpde.shared import check_bool, check_choice, check_positive_int, check_tensor
from dlpde.shared.checks import check_dtype

from ._checks import check_generator, check_names

__all__ = ["load_image", "available_images", "training_images", "random_patches",
           "shepp_logan_phantom", "random_ellipses", "TEST_IMAGES", "TRAINING_IMAGES"]

# scikit-image images that load without network access (checked), and matplotlib's sample.
_SKIMAGE = ("camera", "astronaut", "coins", "moon", "text", "brick", "grass", "gravel", "cell",
            "chelsea", "coffee", "page", "clock", "hubble_deep_field", "rocket",
            "immunohistochemistry", "shepp_logan_phantom")
TEST_IMAGES = ("camera", "astronaut", "coins")
TRAINING_IMAGES = ("moon", "text", "brick", "grass", "gravel", "cell", "chelsea", "coffee", "page",
                   "clock", "hubble_deep_field", "rocket", "immunohistochemistry", "grace_hopper")


def available_images() -> tuple[str, ...]:
    return (*_SKIMAGE, "grace_hopper")


def load_image(name: str, size: int | None = None, dtype=torch.float32) -> torch.Tensor:
    """A grayscale image in [0, 1] as an (H, W) tensor; ``size`` crops the centre to
    ``size`` x ``size`` after downscaling (anti-aliased) so that the short side equals ``size``.

    Names: scikit-image's data images listed in ``available_images()`` and matplotlib's
    ``grace_hopper`` sample. Colour images are converted with ITU-R 601 luma weights.
    """
    import numpy as np

    check_choice(name, "name", available_images())
    if size is not None:
        size = check_positive_int(size, "size", maximum=8192)
    dtype = check_dtype(dtype)
    if name == "grace_hopper":
        import matplotlib.cbook
        import matplotlib.image

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
            array = matplotlib.image.imread(handle, format="jpg")
    else:
        import skimage.data

        array = getattr(skimage.data, name)()
    array = np.asarray(array)
    if array.dtype == np.uint8:
        array = array.astype(np.float64) / 255.0
    else:
        array = array.astype(np.float64)
        array = (array - array.min()) / max(array.max() - array.min(), 1e-12)
    if array.ndim == 3:
        array = array[..., :3] @ np.array([0.299, 0.587, 0.114])
    if size is not None:
        from skimage.transform import rescale

        scale = size / min(array.shape)
        if scale < 1:
            array = rescale(array, scale, anti_aliasing=True, preserve_range=True)
        top = (array.shape[0] - size) // 2
        left = (array.shape[1] - size) // 2
        if top < 0 or left < 0:
            raise ValueError(f"image {name} {array.shape} is smaller than size {size}")
        array = array[top:top + size, left:left + size]
    return torch.tensor(np.clip(array, 0.0, 1.0), dtype=dtype)


def training_images(names=TRAINING_IMAGES, exclude=TEST_IMAGES, max_side: int | None = 384,
                    dtype=torch.float32) -> list[torch.Tensor]:
    """The training images (never any name in ``exclude``), each downscaled so its short side
    is at most ``max_side`` (natural images at a common scale)."""
    names = check_names(names, "names", available_images())
    exclude = check_names(exclude, "exclude", available_images())
    if max_side is not None:
        max_side = check_positive_int(max_side, "max_side", maximum=8192)
    dtype = check_dtype(dtype)
    overlap = set(names) & set(exclude)
    if overlap:
        raise ValueError(f"test images {sorted(overlap)} must not be used for training")
    images = []
    for name in names:
        image = load_image(name, dtype=torch.float64)
        if max_side is not None and min(image.shape) > max_side:
            from skimage.transform import rescale

            image = torch.tensor(rescale(image.numpy(), max_side / min(image.shape),
                                         anti_aliasing=True))
        images.append(image.to(dtype))
    return images


def random_patches(images: list[torch.Tensor], count: int, size: int, generator,
                   flips: bool = True) -> torch.Tensor:
    """``count`` random ``size`` x ``size`` crops (random image, position, and with ``flips``
    a random flip/transpose) drawn with ``generator``: (count, size, size)."""
    if isinstance(images, torch.Tensor) and images.dim() == 2:
        images = [images]
    if not isinstance(images, (list, tuple)) or not images:
        raise TypeError("images must be a non-empty list of (H, W) tensors")
    for k, image in enumerate(images):
        check_tensor(image, f"images[{k}]", dim=2)
    count = check_positive_int(count, "count", maximum=2**20)
    smallest = min(min(image.shape) for image in images)
    size = check_positive_int(size, "size", maximum=smallest)
    check_bool(flips, "flips")
    g = check_generator(generator)
    out = []
    which = torch.randint(len(images), (count,), generator=g)
    for k in range(count):
        image = images[int(which[k])]
        h, w = image.shape
        top = int(torch.randint(h - size + 1, (1,), generator=g))
        left = int(torch.randint(w - size + 1, (1,), generator=g))
        patch = image[top:top + size, left:left + size]
        if flips:
            mode = int(torch.randint(8, (1,), generator=g))
            if mode & 1:
                patch = patch.flip(-1)
            if mode & 2:
                patch = patch.flip(-2)
            if mode & 4:
                patch = patch.T
        out.append(patch)
    return torch.stack(out)


# Shepp & Logan (1974) ellipses, modified contrast (Toft 1996): intensity, semi-axes a, b,
# centre x, y, rotation in degrees; the image covers [-1, 1]^2.
_SHEPP_LOGAN = (
    (1.0, 0.69, 0.92, 0.0, 0.0, 0.0), (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0),
    (-0.2, 0.11, 0.31, 0.22, 0.0, -18.0), (-0.2, 0.16, 0.41, -0.22, 0.0, 18.0),
    (0.1, 0.21, 0.25, 0.0, 0.35, 0.0), (0.1, 0.046, 0.046, 0.0, 0.1, 0.0),
    (0.1, 0.046, 0.046, 0.0, -0.1, 0.0), (0.1, 0.046, 0.023, -0.08, -0.605, 0.0),
    (0.1, 0.023, 0.023, 0.0, -0.606, 0.0), (0.1, 0.023, 0.046, 0.06, -0.605, 0.0),
)


def _ellipses_image(ellipses, size: int, dtype) -> torch.Tensor:
    coords = (torch.arange(size, dtype=torch.float64) - (size - 1) / 2) / (size / 2)
    y, x = -coords[:, None], coords[None, :]
    image = torch.zeros(size, size, dtype=torch.float64)
    for value, a, b, cx, cy, angle in ellipses:
        phi = math.radians(angle)
        xr = (x - cx) * math.cos(phi) + (y - cy) * math.sin(phi)
        yr = -(x - cx) * math.sin(phi) + (y - cy) * math.cos(phi)
        image = image + value * (((xr / a) ** 2 + (yr / b) ** 2) <= 1)
    return image.to(dtype)


def shepp_logan_phantom(size: int, dtype=torch.float32) -> torch.Tensor:
    """The modified Shepp-Logan phantom rasterised at ``size`` x ``size`` (values in [0, 1])."""
    size = check_positive_int(size, "size", maximum=8192)
    dtype = check_dtype(dtype)
    return _ellipses_image(_SHEPP_LOGAN, size, dtype).clamp(0, 1)


def random_ellipses(count: int, size: int, generator, ellipses: int = 8,
                    dtype=torch.float32, body: bool = False) -> torch.Tensor:
    """``count`` random phantoms (count, size, size): ``ellipses`` ellipses with random
    centres and axes inside the inscribed circle, random angles and intensities, clamped to
    [0, 1]; drawn with ``generator``.

    ``body=True``: phantoms shaped like the Shepp-Logan one instead, a large ellipse of value 1
    (semi-axes in [0.6, 0.9] x [0.75, 0.95]) with a thin rim (interior lowered by 0.8) holding
    ``ellipses`` small low-contrast features (+-0.1 to 0.4) -- the large outer ellipse that the
    default phantoms (semi-axes <= 0.4) never contain."""
    count = check_positive_int(count, "count", maximum=2**16)
    size = check_positive_int(size, "size", maximum=8192)
    ellipses = check_positive_int(ellipses, "ellipses", maximum=1024)
    dtype = check_dtype(dtype)
    body = check_bool(body, "body")
    g = check_generator(generator)
    out = []
    for _ in range(count):
        params = []
        scale = 1.0
        if body:
            r = torch.rand(4, generator=g, dtype=torch.float64).tolist()
            a, b, angle, rim = 0.6 + 0.3 * r[0], 0.75 + 0.2 * r[1], 30 * (r[2] - 0.5), 0.02 + 0.04 * r[3]
            params += [(1.0, a, b, 0.0, 0.0, angle), (-0.8, a - rim, b - rim, 0.0, 0.0, angle)]
            scale = 0.5 * min(a, b) / 0.6
        r = torch.rand(ellipses, 6, generator=g, dtype=torch.float64)
        for k in range(ellipses):
            radius, theta = scale * 0.6 * math.sqrt(float(r[k, 3])), 2 * math.pi * float(r[k, 4])
            if body:
                a, b = 0.03 + 0.25 * float(r[k, 1]), 0.03 + 0.25 * float(r[k, 2])
                value = (0.1 + 0.3 * float(r[k, 0])) * (1 if float(r[k, 5]) > 0.3 else -0.5)
            else:
                a, b = 0.05 + 0.35 * float(r[k, 1]), 0.05 + 0.35 * float(r[k, 2])
                value = (0.2 + 0.8 * float(r[k, 0])) * (1 if k < 2 or float(r[k, 5]) > 0.3 else -0.5)
            params.append((value, a, b, radius * math.cos(theta), radius * math.sin(theta),
                           360 * float(r[k, 5])))
        out.append(_ellipses_image(params, size, dtype).clamp(0, 1))
    return torch.stack(out)
