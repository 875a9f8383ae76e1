"""Simulated grey natural-like scenes with one salient object, for pretraining.

A stand-in for salient-object data sets (XPIE, ECSSD) converted to grey: a background of
natural-image statistics (1/f^beta noise with a random spectral slope, a lighting gradient,
sometimes a horizon between two regions, sometimes out of focus), a few faint distractor
shapes, and one salient object whose shape (a smooth random blob, a polygon, an ellipse or two
merged blobs), size, position, texture (its own 1/f noise, stripes or plain), shading and
contrast (brighter or darker) vary. The mask is the object. The scene is drawn at a fixed
resolution and resampled, so a seed gives the same scene at any size.
"""

from __future__ import annotations

import math

import numpy as np

from unet_transfer.data.arrays import SegmentationSet
from unet_transfer.simulate._common import (
    ANATOMY,
    NOISE,
    block_mean,
    check_common,
    check_range,
    fourier_radius,
    gaussian_field,
    ids,
    image_rng,
    polygon_radius,
    power_law_field,
    resample,
    smoothstep_edge,
    tabulate,
)

SCENE_GRID = 256


def _shape(rng: np.random.Generator):
    """A random star-shaped outline: a radius function of the angle (mean radius about 1)."""
    kind = rng.choice(["blob", "polygon", "ellipse", "pair"], p=[0.4, 0.25, 0.2, 0.15])
    if kind == "blob":
        return fourier_radius(rng, 6, rng.uniform(0.15, 0.45), 1.2)
    if kind == "polygon":
        return polygon_radius(rng, int(rng.integers(3, 9)), rng.uniform(0.1, 0.5))
    if kind == "ellipse":
        ratio, turn = rng.uniform(0.4, 1.0), rng.uniform(0, np.pi)

        def ellipse(theta):
            t = theta - turn
            return ratio / np.sqrt((ratio * np.cos(t)) ** 2 + np.sin(t) ** 2) / math.sqrt(ratio)

        return ellipse
    # Two overlapping lobes: r(theta) = max of two offset circles' radii, seen from the centre.
    offset, turn, second = rng.uniform(0.3, 0.6), rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 0.9)

    def pair(theta):
        out = np.zeros_like(theta)
        for cx, radius in ((offset, 1.0), (-offset, second)):
            proj = cx * np.cos(theta - turn)
            disc = radius**2 - cx**2 + proj**2
            out = np.maximum(out, np.where(disc > 0, proj + np.sqrt(np.maximum(disc, 0.0)), 0.0))
        return np.maximum(out, 0.2) * 0.8

    return pair


def _texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    kind = rng.choice(["noise", "stripes", "plain"], p=[0.6, 0.2, 0.2])
    if kind == "noise":
        return power_law_field(rng, shape, rng.uniform(0.6, 1.8))
    if kind == "stripes":
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] / shape[0]
        angle, period = rng.uniform(0, np.pi), rng.uniform(0.02, 0.12)
        wave = np.sin(2 * np.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)
        return (wave + 0.3 * gaussian_field(rng, shape, (3.0, 3.0))).astype(np.float32)
    return np.zeros(shape, dtype=np.float32)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur by FFT (periodic; used on the scene grid)."""
    ky = np.fft.fftfreq(image.shape[0])[:, None]
    kx = np.fft.rfftfreq(image.shape[1])[None, :]
    transfer = np.exp(-2.0 * np.pi**2 * sigma**2 * (ky**2 + kx**2))
    return np.fft.irfft2(np.fft.rfft2(image) * transfer, s=image.shape)


def _to_size(image: np.ndarray, size: int) -> np.ndarray:
    """Scene grid to ``size``: area averaging when shrinking (no aliasing), bilinear otherwise."""
    if size == SCENE_GRID:
        return image
    if size < SCENE_GRID:
        if SCENE_GRID % size == 0:
            return block_mean(image, SCENE_GRID // size, SCENE_GRID // size)
        image = _blur(image, 0.5 * SCENE_GRID / size)
    return resample(image, (size, size))


def scene(rng: np.random.Generator, *, min_area: float, max_area: float, min_contrast: float,
          max_contrast: float, max_distractors: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene on the SCENE_GRID: (image float in [0, 1] before noise, object soft mask)."""
    n = SCENE_GRID
    shape = (n, n)
    yy, xx = ((np.mgrid[0:n, 0:n] + 0.5) / n).astype(np.float32)

    # Background.
    level = rng.uniform(0.25, 0.75)
    image = level + rng.uniform(0.03, 0.16) * power_law_field(rng, shape, rng.uniform(0.8, 2.0))
    angle = rng.uniform(0, 2 * np.pi)
    image += rng.uniform(0.0, 0.25) * ((xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle))
    if rng.random() < 0.35:  # a horizon between two regions
        height = rng.uniform(0.25, 0.75) + 0.05 * np.sin(2 * np.pi * xx * rng.uniform(0.5, 3.0) + rng.uniform(0, 6.3))
        image += rng.uniform(-0.2, 0.2) * smoothstep_edge(height - yy, 0.01)

    def place(area: float, central: bool = True):
        """A random shape: the box it lies in and the signed distance (scene pixels) there."""
        radius_fn = tabulate(_shape(rng), 1024)
        r0 = math.sqrt(area / math.pi)
        if central:  # salient objects sit near the middle and inside the frame
            cx = float(np.clip(rng.normal(0.5, 0.12), r0 * 0.8, 1 - r0 * 0.8))
            cy = float(np.clip(rng.normal(0.5, 0.12), r0 * 0.8, 1 - r0 * 0.8))
        else:
            cx, cy = rng.uniform(-0.1, 1.1), rng.uniform(-0.1, 1.1)
        reach = r0 * float(radius_fn(np.linspace(0, 2 * np.pi, 256)).max()) + 12.0 / n
        box = (
            slice(min(max(int((cy - reach) * n), 0), n), min(max(int((cy + reach) * n) + 2, 0), n)),
            slice(min(max(int((cx - reach) * n), 0), n), min(max(int((cx + reach) * n) + 2, 0), n)),
        )
        dy, dx = yy[box] - np.float32(cy), xx[box] - np.float32(cx)
        outline = radius_fn(np.arctan2(dy, dx)).astype(np.float32)
        return box, (np.hypot(dx, dy) / np.float32(r0) - outline) * np.float32(r0 * n), (cx, cy, r0)

    # Background clutter: large shapes, often cut by the frame, and small faint distractors.
    for _ in range(int(rng.integers(0, 3))):
        box, dist, _ = place(rng.uniform(0.1, 0.5), central=False)
        patch = rng.uniform(-0.5, 0.5) * max_contrast + rng.uniform(0.0, 0.08) * _texture(rng, shape)[box]
        image[box] += patch * smoothstep_edge(dist, rng.uniform(0.5, 3.0))
    for _ in range(int(rng.integers(0, max_distractors + 1))):
        box, dist, _ = place(rng.uniform(0.003, 0.02), central=False)
        image[box] += rng.uniform(-0.6, 0.6) * min_contrast * smoothstep_edge(dist, 0.8)
    if rng.random() < 0.5:  # background out of focus
        image = _blur(image, rng.uniform(1.0, 4.0))

    # The salient object.
    area = math.exp(rng.uniform(math.log(min_area), math.log(max_area)))
    box, dist, (cx, cy, r0) = place(area)
    soft = np.zeros(shape, dtype=np.float32)
    soft[box] = smoothstep_edge(dist, rng.uniform(0.4, 1.0))
    contrast = rng.uniform(min_contrast, max_contrast) * rng.choice([-1.0, 1.0])
    around = float(np.sum(image * soft) / max(np.sum(soft), 1e-9))
    target = float(np.clip(around + contrast, 0.08, 0.92))
    if abs(target - around) < min_contrast:  # no room on that side: go the other way
        target = float(np.clip(around - contrast, 0.08, 0.92))
    shading = rng.uniform(0.0, 0.12) * ((xx - cx) * math.cos(angle + 1) + (yy - cy) * math.sin(angle + 1)) / r0
    obj = target + rng.uniform(0.02, 0.1) * _texture(rng, shape) + shading
    image = image * (1.0 - soft) + obj * soft
    return image, soft


def simulate_natural(
    n: int,
    size: int,
    seed: int,
    *,
    min_object_area: float = 0.04,
    max_object_area: float = 0.35,
    min_contrast: float = 0.08,
    max_contrast: float = 0.4,
    max_distractors: int = 3,
    noise_std: float = 0.01,
) -> SegmentationSet:
    """``n`` grey scenes (size x size) with one salient object each; the mask is the object.

    Object area is a share of the image between ``min_object_area`` and ``max_object_area``
    (log-uniform); its mean grey differs from the background around it by ``min_contrast``
    to ``max_contrast`` (either sign). ``noise_std``: sensor noise std (grey levels in [0, 1]).
    Ids ``nat_0000``, ...; no labels.
    """
    check_common(n, size)
    check_range("min_object_area", min_object_area, 1e-4, 0.9)
    check_range("max_object_area", max_object_area, min_object_area, 0.9)
    check_range("min_contrast", min_contrast, 0.0, 1.0)
    check_range("max_contrast", max_contrast, min_contrast, 1.0)
    check_range("max_distractors", max_distractors, 0, 50)
    check_range("noise_std", noise_std, 0.0, 1.0)
    images = np.empty((n, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=bool)
    for i in range(n):
        image, soft = scene(
            image_rng(seed, i, ANATOMY), min_area=min_object_area, max_area=max_object_area,
            min_contrast=min_contrast, max_contrast=max_contrast, max_distractors=int(max_distractors),
        )
        image = _to_size(image, size)
        noise = noise_std * image_rng(seed, i, NOISE).standard_normal((size, size))
        images[i] = np.clip(image + noise, 0.0, 1.0)
        masks[i] = _to_size(soft, size) >= 0.5
    return SegmentationSet.from_float(images, masks, ids("nat", n))
