"""Helpers shared by the simulators: seeding, random fields, resampling, star-shaped outlines.

Everything here is plain numpy/scipy and deterministic: a generator seeded from
``(seed, image index, stream)`` gives the same numbers on any machine, and image ``i`` does
not depend on how many images are made.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from unet_transfer.errors import ConfigError

# Independent random streams per image, so that e.g. the anatomy stays fixed when only the
# amount of speckle or quantum noise changes.
ANATOMY, SPECKLE, NOISE = 1, 2, 3


def image_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """The generator for one image and one stream (anatomy, speckle, noise)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) % 2**63, int(index), int(stream)]))


def check_common(n: int, size: int) -> None:
    if int(n) != n or n < 1:
        raise ConfigError(f"The number of simulated images must be a positive integer, got n={n!r}.")
    if int(size) != size or size < 16:
        raise ConfigError(f"The simulated image size must be an integer of at least 16 pixels, got size={size!r}.")


def check_range(name: str, value: float, low: float, high: float) -> float:
    value = float(value)
    if not low <= value <= high:
        raise ConfigError(f"Setting {name}={value!r} is outside the accepted range [{low}, {high}].")
    return value


def check_positive(name: str, value: float) -> float:
    value = float(value)
    if not value > 0 or not np.isfinite(value):
        raise ConfigError(f"Setting {name}={value!r} must be a positive number.")
    return value


def ids(prefix: str, n: int) -> list[str]:
    width = max(4, len(str(n - 1)))
    return [f"{prefix}_{i:0{width}d}" for i in range(n)]


def gaussian_fields(rng: np.random.Generator, shape: tuple[int, int], sigmas) -> np.ndarray:
    """A stack of random fields, white noise low-passed by Gaussians of ``sigmas`` pixels.

    ``sigmas`` is a list of (sigma along axis 0, sigma along axis 1); fields are periodic,
    zero-mean, unit-std, float32, shape (len(sigmas), *shape). One batched inverse FFT of
    random spectra, so many textures cost little.
    """
    sig = np.asarray(sigmas, dtype=np.float32).reshape(-1, 2)
    ky = np.fft.fftfreq(shape[0]).astype(np.float32)
    kx = np.fft.rfftfreq(shape[1]).astype(np.float32)
    spectrum = rng.standard_normal((len(sig), shape[0], 2 * len(kx)), dtype=np.float32).view(np.complex64)
    ty = np.exp(-2.0 * np.pi**2 * (ky[None, :] * sig[:, :1]) ** 2)
    tx = np.exp(-2.0 * np.pi**2 * (kx[None, :] * sig[:, 1:]) ** 2)
    spectrum *= ty[:, :, None] * tx[:, None, :]
    spectrum[:, 0, 0] = 0.0
    fields = sfft.irfft2(spectrum, s=shape, axes=(-2, -1))
    fields /= fields.std(axis=(1, 2), keepdims=True) + np.float32(1e-12)
    return fields.astype(np.float32, copy=False)


def gaussian_field(rng: np.random.Generator, shape: tuple[int, int], sigma: tuple[float, float]) -> np.ndarray:
    """One field of :func:`gaussian_fields`."""
    return gaussian_fields(rng, shape, [sigma])[0]


def power_law_field(rng: np.random.Generator, shape: tuple[int, int], slope: float) -> np.ndarray:
    """Isotropic noise with amplitude spectrum ~ 1/f**slope (1 is the natural-image 1/f), unit std."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    f = np.sqrt(ky**2 + kx**2)
    f[0, 0] = 1.0
    transfer = (f ** (-float(slope))).astype(np.float32)
    transfer[0, 0] = 0.0
    spectrum = rng.standard_normal((shape[0], 2 * kx.shape[1]), dtype=np.float32).view(np.complex64)
    field = sfft.irfft2(spectrum * transfer, s=shape)
    return (field / (field.std() + 1e-12)).astype(np.float32, copy=False)


def resample(field: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resampling of the last two axes to ``shape``, same extent, pixel centres aligned."""
    out = np.asarray(field)
    for axis, n_out in zip((-2, -1), shape, strict=True):
        n_in = out.shape[axis]
        if n_in == n_out:
            continue
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1.0)
        i0 = np.floor(pos).astype(np.intp)
        i1 = np.minimum(i0 + 1, n_in - 1)
        w = (pos - i0).astype(out.dtype if out.dtype.kind == "f" else np.float64)
        if axis == -2:
            w = w[:, None]
        out = np.take(out, i0, axis=axis) * (1 - w) + np.take(out, i1, axis=axis) * w
    return out


def block_mean(a: np.ndarray, qy: int, qx: int) -> np.ndarray:
    """Average non-overlapping qy x qx blocks (area downsampling by whole factors)."""
    if qy == 1 and qx == 1:
        return a
    h, w = a.shape
    return a.reshape(h // qy, qy, w // qx, qx).mean(axis=(1, 3))


def smoothstep_edge(signed_distance: np.ndarray, width: float) -> np.ndarray:
    """Soft indicator: 1 well inside (negative distance), 0 well outside, ramp of ``width``."""
    return 1.0 / (1.0 + np.exp(np.clip(signed_distance / max(width, 1e-9), -50.0, 50.0)))


def fourier_radius(rng: np.random.Generator, n_harmonics: int, amplitude: float, decay: float):
    """A random smooth radius function r(theta) = 1 + sum_k a_k cos(k theta + phi_k), k >= 2.

    Returns a callable; ``amplitude`` scales the harmonics, which fall as k**-decay.
    """
    k = np.arange(2, 2 + n_harmonics)
    a = amplitude * rng.standard_normal(n_harmonics) * k ** (-float(decay))
    phi = rng.uniform(0.0, 2.0 * np.pi, n_harmonics)

    def radius(theta: np.ndarray) -> np.ndarray:
        out = np.ones_like(theta)
        for kk, aa, pp in zip(k, a, phi, strict=True):
            out += aa * np.cos(kk * theta + pp)
        return np.maximum(out, 0.35)

    return radius


def polygon_radius(rng: np.random.Generator, n_vertices: int, irregularity: float):
    """Radius function of a random star-shaped polygon with straight edges (unit mean radius)."""
    gaps = rng.uniform(1.0 - irregularity, 1.0 + irregularity, n_vertices)
    angles = np.cumsum(gaps / gaps.sum() * 2.0 * np.pi) + rng.uniform(0, 2 * np.pi)
    angles = np.mod(angles, 2 * np.pi)
    angles.sort()
    radii = rng.uniform(1.0 - 0.5 * irregularity, 1.0 + 0.3 * irregularity, n_vertices)
    px, py = radii * np.cos(angles), radii * np.sin(angles)

    def radius(theta: np.ndarray) -> np.ndarray:
        t = np.mod(theta, 2 * np.pi)
        j = np.searchsorted(angles, t) % n_vertices  # vertex after t
        i = (j - 1) % n_vertices  # vertex before t
        x0, y0, x1, y1 = px[i], py[i], px[j], py[j]
        num = x0 * y1 - x1 * y0
        den = np.cos(t) * (y1 - y0) - np.sin(t) * (x1 - x0)
        return np.abs(num / np.where(np.abs(den) < 1e-9, 1e-9, den))

    return radius


def tabulate(radius, n: int = 2048):
    """A radius function r(theta) sampled once on ``n`` angles and then interpolated (fast)."""
    grid = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    table = np.asarray(radius(grid), dtype=np.float64)

    def fast(theta: np.ndarray) -> np.ndarray:
        return np.interp(theta, grid, table, period=2.0 * np.pi)

    return fast
