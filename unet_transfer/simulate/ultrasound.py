"""Simulated breast ultrasound (B-mode) with a lesion mask.

What it models. Each image is a 2-D slice through a breast, imaged by a linear probe at the top
edge. A tissue model gives every point an echogenicity (how strongly it scatters) and an
attenuation: skin with a bright entry line, subcutaneous fat (dark lobules with bright septa),
fibroglandular tissue (bright, streaky, with dark fat islands and Cooper's ligaments), a
retromammary fat band and, in most images, the pectoralis muscle with its striations. One
lesion sits in it, darker than the tissue around it (hypoechoic). A benign-like lesion is an
oval, wider than tall, with a smooth margin, sometimes a thin capsule and edge shadows, and it
attenuates little, so the tissue behind it looks brighter (posterior acoustic enhancement). A
malignant-like lesion has an irregular, angular margin with spicules, often an echogenic halo
and micro-calcifications, and it attenuates strongly, so a dark shadow falls behind it
(posterior acoustic shadowing).

The image is formed as a scanner forms it: a field of random scatterers (a complex Gaussian
value per sample of a grid at least as fine as the resolution cell, which is what many
sub-resolution scatterers add up to), scaled by the square root of the echogenicity, is
attenuated on the way down and back (dB/cm/MHz times frequency times the round trip) and
convolved with the point-spread function of the probe (along depth a Gaussian-envelope pulse
of a given number of cycles at the centre frequency; across, a Gaussian beam of a given
width). Receiver noise is added, time-gain compensation undoes most of the nominal tissue
attenuation, the envelope of the complex (baseband) echo is taken, a few looks with
independent speckle are averaged in intensity (spatial compounding, as modern scanners do),
and the result is log-compressed to a dynamic range in dB and shown as grey. A single look
has fully developed speckle (Rayleigh envelope statistics) whose grain size follows the pulse
length along depth and the beam width across. The ``speckle`` setting blends the random
(diffuse) scattering with a coherent, noise-free component of the same mean power (Rician
statistics in between): 0 gives the same tissue imaged without speckle (a smooth, blurred
echogenicity map), 1 gives full speckle; anatomy for a given seed is the same at every
speckle level and at every image size. The field of view is fixed in millimetres (40 mm by
default), so PSF sizes in pixels follow the image size: at 256 px a pixel (0.16 mm) is about
one speckle grain; at smaller sizes the simulation runs on a finer grid and the grey image is
area-averaged to the requested size, as resizing a real scan would do, so speckle is weaker
at 64 px (``compounding=1`` keeps more of it).

What it leaves out. No wave propagation: no refraction (the lateral edge shadows of smooth
lesions are drawn as extra attenuation at their sides), reverberation, multiple scattering,
side lobes or grating lobes, no nonlinearity or harmonic imaging; the beam does not change
with depth (no focus); speed of sound is one constant (1540 m/s), so nothing is displaced;
shadowing and enhancement come only from attenuation along straight vertical lines;
receiver noise has the speckle's grain (it goes through the same receive filter);
compounded looks are independent speckle patterns rather than steered views of the same
scatterers; no scan conversion (the probe is linear, the image rectangular), speckle
reduction filters, colour Doppler or elastography; no text, callipers or markers burned into
the image; a single lesion per image, in 2-D only.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from unet_transfer.data.arrays import SegmentationSet
from unet_transfer.simulate._common import (
    ANATOMY,
    SPECKLE,
    block_mean,
    check_common,
    check_positive,
    check_range,
    fourier_radius,
    gaussian_fields,
    ids,
    image_rng,
    polygon_radius,
    resample,
    smoothstep_edge,
    tabulate,
)

SPEED_OF_SOUND_MM_PER_US = 1.54
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
MAX_OVERSAMPLING = 8
TEXTURE_GRID = (192, 192)  # anatomy textures are drawn here, so anatomy does not depend on size


def psf_fwhm_mm(centre_frequency_mhz: float, pulse_cycles: float, beam_width_mm: float) -> tuple[float, float]:
    """Full widths at half maximum of the point-spread function (axial, lateral) in mm.

    A pulse of ``pulse_cycles`` cycles at the centre frequency is ``cycles * wavelength`` long;
    its echo spans half that in depth (round trip). The lateral width is the beam width.
    """
    wavelength = SPEED_OF_SOUND_MM_PER_US / centre_frequency_mhz
    return pulse_cycles * wavelength / 2.0, float(beam_width_mm)


def _gaussian_kernel(sigma_px: float) -> np.ndarray:
    if sigma_px < 1e-3:
        return np.ones(1, dtype=np.float32)
    half = max(1, int(math.ceil(4.0 * sigma_px)))
    k = np.arange(-half, half + 1, dtype=np.float64)
    return np.exp(-0.5 * (k / sigma_px) ** 2).astype(np.float32)


def _separable(field: np.ndarray, kz: np.ndarray, kx: np.ndarray) -> np.ndarray:
    out = ndimage.correlate1d(field, kz, axis=0, mode="reflect")
    return ndimage.correlate1d(out, kx, axis=1, mode="reflect")


def _complex_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Circular complex Gaussian samples with E|g|^2 = 1 (complex64)."""
    pairs = rng.standard_normal((*shape[:-1], 2 * shape[-1]), dtype=np.float32)
    return pairs.view(np.complex64) * np.float32(math.sqrt(0.5))


def envelope(
    echogenicity: np.ndarray,
    pixel_mm: float | tuple[float, float],
    rng: np.random.Generator | None = None,
    *,
    centre_frequency_mhz: float = 7.5,
    pulse_cycles: float = 2.0,
    beam_width_mm: float = 0.8,
    speckle: float = 1.0,
    attenuation_db_cm_mhz: float | np.ndarray = 0.0,
    tgc_db_cm_mhz: float = 0.0,
    noise_db: float | None = None,
    compounding: int = 1,
) -> np.ndarray:
    """Envelope (amplitude, before log compression) of a B-mode image of an echogenicity map.

    ``echogenicity`` (depth x lateral, axis 0 is depth from the probe) is the mean scattered
    intensity per sample, linear (1 = reference tissue). ``pixel_mm`` is the sample spacing
    (one value or (depth, lateral)). With ``speckle=1``, one look and no attenuation, the
    envelope in a homogeneous region is Rayleigh-distributed with mean intensity equal to the
    echogenicity. ``attenuation_db_cm_mhz`` is a number or a map like ``echogenicity``;
    attenuation is accumulated along depth for the round trip. ``tgc_db_cm_mhz`` is the
    attenuation that the time-gain compensation undoes. ``noise_db`` is the receiver noise
    power relative to the reference echo, added before the gain (None: no noise).
    ``compounding`` averages the intensity of that many looks with independent speckle
    (spatial compounding), which lowers speckle contrast by about its square root. ``rng``
    draws the scatterers and noise (needed unless ``speckle=0``). Returns float32.
    """
    e = np.asarray(echogenicity, dtype=np.float32)
    if e.ndim != 2:
        raise ValueError(f"echogenicity must be 2-D (depth, lateral), got shape {e.shape}")
    dz, dx = (float(pixel_mm), float(pixel_mm)) if np.isscalar(pixel_mm) else map(float, pixel_mm)
    s = check_range("speckle", speckle, 0.0, 1.0)
    looks = int(check_range("compounding", compounding, 1, 64))
    f0 = check_positive("centre_frequency_mhz", centre_frequency_mhz)
    fwhm_z, fwhm_x = psf_fwhm_mm(f0, check_positive("pulse_cycles", pulse_cycles), check_positive("beam_width_mm", beam_width_mm))
    hz = _gaussian_kernel(fwhm_z / FWHM_PER_SIGMA / dz)
    hx = _gaussian_kernel(fwhm_x / FWHM_PER_SIGMA / dx)

    depth_cm = (np.arange(e.shape[0]) + 0.5)[:, None] * dz / 10.0
    alpha = np.broadcast_to(np.asarray(attenuation_db_cm_mhz, dtype=np.float32), e.shape)
    path_db = (np.cumsum(alpha, axis=0) - np.float32(0.5) * alpha) * np.float32(dz / 10.0)  # one way, per MHz
    tgc_db = (2.0 * f0 * float(tgc_db_cm_mhz) * depth_cm).astype(np.float32)
    # Round-trip attenuation, then the time-gain compensation (applied before the PSF: it
    # varies slowly next to the PSF, so this is the same as applying it to the echo).
    amplitude = np.sqrt(np.maximum(e, 0.0)) * np.exp(np.float32(np.log(10.0) / 20.0) * (tgc_db - np.float32(2.0 * f0) * path_db))

    coherent = None
    if s < 1.0:
        # Unit-gain PSF: a coherent (noise-free) field of the same mean power.
        coherent = np.float32(math.sqrt(1.0 - s)) * _separable(amplitude, hz / hz.sum(), hx / hx.sum())
    if s == 0.0:
        return np.abs(coherent)
    if rng is None:
        raise ValueError("envelope() needs a random generator when speckle > 0")
    if noise_db is not None:
        # Receiver noise, amplified by the gain. It goes through the same receive filter, so
        # it is folded into the random field as extra power (same statistics, one draw).
        noise = np.float32(10.0 ** (float(noise_db) / 20.0)) * np.exp(np.float32(np.log(10.0) / 20.0) * tgc_db)
        amplitude = np.sqrt(amplitude**2 + noise**2)
    unit_energy = (hz / np.linalg.norm(hz), hx / np.linalg.norm(hx))  # keeps a white field's power
    intensity = np.zeros(e.shape, dtype=np.float32)
    for _ in range(looks):
        echo = _separable(amplitude * _complex_normal(rng, e.shape), *unit_energy)
        echo *= np.float32(math.sqrt(s))
        if coherent is not None:
            echo += coherent
        intensity += echo.real**2 + echo.imag**2
    if looks == 1:
        return np.sqrt(intensity)
    return np.sqrt(intensity / np.float32(looks))


def log_compress(env: np.ndarray, dynamic_range_db: float = 50.0, gain_db: float = -18.0) -> np.ndarray:
    """Grey in [0, 1]: 20 log10(envelope) + gain, the top ``dynamic_range_db`` shown, 0 dB white."""
    level = 20.0 * np.log10(np.maximum(env, np.float32(1e-12))) + np.float32(gain_db)
    return np.clip(1.0 + level / np.float32(dynamic_range_db), 0.0, 1.0)


def _boundary(rng: np.random.Generator, x_mm: np.ndarray, base: float, amplitude: float) -> np.ndarray:
    """A gently undulating layer boundary z(x) (mm)."""
    z = np.full_like(x_mm, base)
    for _ in range(3):
        wavelength = rng.uniform(25.0, 90.0)
        z += amplitude / 3.0 * rng.standard_normal() * np.sin(2 * np.pi * x_mm / wavelength + rng.uniform(0, 2 * np.pi))
    return z.astype(np.float32)


def _segment_distance(zz, xx, z0, x0, z1, x1):
    dz, dx = z1 - z0, x1 - x0
    t = np.clip(((zz - z0) * dz + (xx - x0) * dx) / (dz * dz + dx * dx + 1e-12), 0.0, 1.0)
    return np.hypot(zz - (z0 + t * dz), xx - (x0 + t * dx)), t


def _gauss(d, width):
    return np.exp(np.float32(-0.5) * (d / np.float32(width)) ** 2)


# Correlation lengths (depth, lateral) in mm of the anatomy textures, drawn in one batch.
_TEXTURES = {
    "skin": (0.2, 1.0),
    "fat": (1.0, 2.0),
    "septa": (1.2, 3.0),
    "fibro": (1.0, 5.0),
    "gland": (0.25, 1.5),
    "streaks": (0.8, 6.0),
    "ligaments": (1.5, 4.0),
    "lesion": (0.6, 0.6),
}


def breast_phantom(
    rng: np.random.Generator,
    shape: tuple[int, int],
    depth_mm: float,
    width_mm: float,
    malignant: bool,
    *,
    attenuation_db_cm_mhz: float = 0.75,
    muscle_probability: float = 0.6,
    lesion_radius_min_mm: float = 3.0,
    lesion_radius_max_mm: float = 10.0,
) -> dict[str, np.ndarray]:
    """Tissue model on a grid of ``shape`` (depth, lateral) covering depth_mm x width_mm.

    Returns ``echo_db`` (echogenicity in dB re fibroglandular tissue), ``alpha`` (attenuation
    map, dB/cm/MHz), ``lesion`` (soft lesion indicator in [0, 1]) and ``inside`` (bool,
    lesion at the sample centre). All arrays float32 except ``inside``. The anatomy is drawn
    at a fixed texture resolution, so it does not depend on ``shape``.
    """
    f32 = np.float32
    nz, nx = shape
    # Tissue on the fixed texture grid (then resampled); the lesion on the requested grid.
    gz, gx = TEXTURE_GRID
    tz, tx = depth_mm / gz, width_mm / gx
    z = ((np.arange(gz) + 0.5) * tz).astype(f32)[:, None]
    x = ((np.arange(gx) + 0.5) * tx).astype(f32)[None, :]
    stack = gaussian_fields(rng, TEXTURE_GRID, [(cz / tz, cx / tx) for cz, cx in _TEXTURES.values()])
    tex = dict(zip(_TEXTURES, stack, strict=True))

    def ridge(field: np.ndarray, width: float) -> np.ndarray:
        return np.exp(-((field / f32(width)) ** 2))

    # Layers: boundaries z(x) in mm below the skin surface.
    x_line = x[0]
    z_skin = _boundary(rng, x_line, rng.uniform(1.2, 2.2), 0.15)[None, :]
    z_fat = z_skin + _boundary(rng, x_line, rng.uniform(2.5, 9.0), 1.8)[None, :].clip(1.5)
    has_muscle = rng.random() < muscle_probability
    z_gland = z_fat + _boundary(rng, x_line, rng.uniform(0.4, 0.7) * depth_mm, 3.0)[None, :].clip(5.0)
    z_muscle = z_gland + f32(rng.uniform(1.5, 3.5))
    z_deep = z_muscle + _boundary(rng, x_line, rng.uniform(4.0, 10.0), 0.8)[None, :].clip(2.0)
    if not has_muscle:
        z_gland = z_gland + f32(10 * depth_mm)
        z_muscle = z_deep = z_gland

    skin_db = f32(1.0) + f32(1.5) * tex["skin"]
    fat_db = f32(-13.0) + f32(2.0) * tex["fat"] + f32(7.0) * ridge(tex["septa"], 0.1)
    fibro = 1.0 / (1.0 + np.exp(-(tex["fibro"] + f32(rng.uniform(-0.5, 0.8))) / f32(0.3)))
    gland_db = fibro * (f32(-1.0) + f32(2.5) * tex["gland"]) + (1.0 - fibro) * (f32(-13.0) + f32(2.0) * tex["fat"])
    gland_db += f32(10.0) * ridge(tex["streaks"], 0.1) * fibro + f32(10.0) * ridge(tex["ligaments"], 0.06)
    fibre_angle = rng.uniform(-0.35, 0.35)
    across = -x * f32(math.sin(fibre_angle)) + z * f32(math.cos(fibre_angle))
    phase = across / f32(rng.uniform(1.2, 2.5)) + f32(0.3) * tex["ligaments"]
    muscle_db = f32(-8.0) + f32(1.5) * tex["gland"] + f32(7.0) * np.exp(-(((phase % 1.0) - 0.5) / f32(0.1)) ** 2)
    deep_db = f32(-20.0) + f32(2.0) * tex["fibro"]

    echo_db = np.select(
        [z < z_skin, z < z_fat, z < z_gland, z < z_muscle, z < z_deep],
        [skin_db, fat_db, gland_db, fat_db, muscle_db],
        deep_db,
    ).astype(f32)
    echo_db += f32(8.0) * _gauss(z, 0.2)  # entry echo at the skin surface
    echo_db += f32(6.0) * _gauss(z - z_skin, 0.15)
    echo_db += f32(4.0) * _gauss(z - z_fat, 0.2) * (tex["septa"] > 0)
    if has_muscle:
        echo_db += f32(8.0) * _gauss(z - z_muscle, 0.2) + f32(5.0) * _gauss(z - z_deep, 0.3)
    lesion_tex = resample(tex["lesion"], shape)
    echo_db = resample(echo_db, shape)
    alpha = np.full(shape, f32(attenuation_db_cm_mhz), dtype=f32)
    z = ((np.arange(nz) + 0.5) * depth_mm / nz).astype(f32)[:, None]
    x = ((np.arange(nx) + 0.5) * width_mm / nx).astype(f32)[None, :]

    # The lesion, computed in a box around it.
    a = rng.uniform(lesion_radius_min_mm, lesion_radius_max_mm)
    b = a * (rng.uniform(0.65, 1.2) if malignant else rng.uniform(0.45, 0.85))
    tilt = rng.normal(0.0, 0.3 if malignant else 0.15)
    xc = rng.uniform(0.25, 0.75) * width_mm
    top, bottom = float(z_fat.mean()) + 0.3 * b, min(float(z_gland.mean()), depth_mm - b - 3.0)
    zc = rng.uniform(min(top, bottom), max(top, bottom))
    zc = float(np.clip(zc, float(z_skin.max()) + b + 1.0, depth_mm - b - 1.0))
    if malignant:
        fourier = fourier_radius(rng, 10, 0.5, 1.4)
        polygon = polygon_radius(rng, int(rng.integers(5, 10)), 0.4)

        radius = tabulate(lambda theta: 0.7 * fourier(theta) + 0.3 * polygon(theta))
    else:
        radius = tabulate(fourier_radius(rng, 3, 0.12 if rng.random() < 0.3 else 0.05, 0.5))
    reach = 1.6 * max(a, b) + 8.0
    iz = slice(int(max(0, (zc - reach) / depth_mm * nz)), int(min(nz, math.ceil((zc + reach) / depth_mm * nz))))
    ix = slice(int(max(0, (xc - reach) / width_mm * nx)), int(min(nx, math.ceil((xc + reach) / width_mm * nx))))
    zl, xl = z[iz], x[:, ix]
    cos_t, sin_t = f32(math.cos(tilt)), f32(math.sin(tilt))
    u = (xl - f32(xc)) * cos_t + (zl - f32(zc)) * sin_t
    v = -(xl - f32(xc)) * sin_t + (zl - f32(zc)) * cos_t
    r = np.hypot(u / f32(a), v / f32(b))
    theta = np.arctan2(v / f32(b), u / f32(a))
    big_r = radius(theta).astype(f32)
    dist = (r - big_r) * f32(math.sqrt(a * b))  # about the signed distance to the margin, mm
    inside_local = r < big_r
    lesion_local = smoothstep_edge(dist, 0.35 if malignant else 0.1).astype(f32)
    local_db = echo_db[iz, ix]
    lesion_tex = lesion_tex[iz, ix]

    if malignant:
        level = rng.uniform(-22.0, -10.0)
        lesion_db = f32(level) + f32(3.0) * lesion_tex
        for _ in range(int(rng.integers(1, 9)) if rng.random() < 0.5 else 0):
            pz, px = zc + rng.normal(0, 0.3 * b), xc + rng.normal(0, 0.3 * a)
            lesion_db = lesion_db + f32(14.0) * _gauss(np.hypot(zl - f32(pz), xl - f32(px)), 0.12)
        lesion_alpha = rng.uniform(0.6, 2.2)
    else:
        cyst = rng.random() < 0.3
        level = -40.0 if cyst else rng.uniform(-28.0, -14.0)
        lesion_db = f32(level) + f32(0.0 if cyst else 1.5) * lesion_tex
        lesion_alpha = rng.uniform(0.05, 0.2) if cyst else rng.uniform(0.2, 0.6)
    local_db = local_db * (1.0 - lesion_local) + lesion_db * lesion_local
    local_alpha = alpha[iz, ix] * (1.0 - lesion_local) + f32(lesion_alpha) * lesion_local

    if malignant:
        if rng.random() < 0.6:  # echogenic halo
            h = rng.uniform(0.8, 2.0)
            local_db += f32(4.0) * _gauss(dist - f32(h / 2), h / 2) * (dist > 0)
        n_spicules = int(rng.integers(5, 13)) if rng.random() < 0.8 else 0
        for _ in range(n_spicules):
            t0 = rng.uniform(0, 2 * np.pi)
            rb = float(radius(np.array([t0]))[0])
            bu, bv = a * rb * math.cos(t0), b * rb * math.sin(t0)
            bx = xc + bu * math.cos(tilt) - bv * math.sin(tilt)
            bz = zc + bu * math.sin(tilt) + bv * math.cos(tilt)
            direction = math.atan2(bz - zc, bx - xc) + rng.normal(0, 0.2)
            length, width = rng.uniform(1.5, 5.0), rng.uniform(0.25, 0.5)
            ex, ez = bx + length * math.cos(direction), bz + length * math.sin(direction)
            d, t = _segment_distance(zl, xl, bz - 0.5 * math.sin(direction), bx - 0.5 * math.cos(direction), ez, ex)
            weight = np.exp(-0.5 * (d / (f32(width) * (1.0 - f32(0.7) * t))) ** 2) * (1.0 - lesion_local)
            local_db = local_db * (1.0 - weight) + f32(level + 4.0) * weight
    else:
        if rng.random() < 0.4:  # thin capsule
            local_db += f32(5.0) * _gauss(dist, 0.15)
        if rng.random() < 0.5:  # refraction (edge) shadows below the lateral margins
            local_alpha += f32(1.5) * _gauss(dist, 0.3) * (np.abs(np.cos(theta)) > 0.97)
    echo_db[iz, ix] = local_db
    alpha[iz, ix] = local_alpha
    lesion = np.zeros(shape, dtype=f32)
    lesion[iz, ix] = lesion_local
    inside = np.zeros(shape, dtype=bool)
    inside[iz, ix] = inside_local
    return {"echo_db": echo_db, "alpha": alpha, "lesion": lesion, "inside": inside}


def simulate_ultrasound(
    n: int,
    size: int,
    seed: int,
    *,
    malignant_fraction: float = 0.5,
    depth_mm: float = 40.0,
    width_mm: float = 40.0,
    centre_frequency_mhz: float = 7.5,
    pulse_cycles: float = 3.0,
    beam_width_mm: float = 0.8,
    attenuation_db_cm_mhz: float = 0.75,
    tgc_compensation: float = 0.8,
    dynamic_range_db: float = 50.0,
    gain_db: float = -18.0,
    noise_db: float = -75.0,
    speckle: float = 1.0,
    compounding: int = 3,
    muscle_probability: float = 0.6,
    lesion_radius_min_mm: float = 3.0,
    lesion_radius_max_mm: float = 10.0,
) -> SegmentationSet:
    """``n`` simulated breast ultrasound images (size x size) with lesion masks.

    Labels are "benign" / "malignant" (a ``malignant_fraction`` share on average). Ids are
    ``us_0000``, ... Image ``i`` depends only on ``seed``, ``i``, ``size`` and the settings.
    See the module docstring for what is modelled. Settings:

    - ``depth_mm``, ``width_mm``: field of view (depth from the probe, lateral extent).
    - ``centre_frequency_mhz``, ``pulse_cycles``: the pulse; its echo spans
      ``pulse_cycles * wavelength / 2`` in depth (FWHM), which sets the axial speckle grain.
    - ``beam_width_mm``: lateral FWHM of the beam (lateral speckle grain).
    - ``attenuation_db_cm_mhz``: tissue attenuation; ``tgc_compensation``: the share of it
      that time-gain compensation undoes (below 1, deep tissue gets darker).
    - ``dynamic_range_db``, ``gain_db``: log compression; grey 1 at ``-gain_db`` dB re the
      mean tissue echo, grey 0 ``dynamic_range_db`` below that.
    - ``noise_db``: receiver noise power re the mean tissue echo, before the gain.
    - ``speckle``: 0 (no speckle) .. 1 (fully developed speckle).
    - ``compounding``: looks with independent speckle averaged (1 = plain B-mode).
    - ``muscle_probability``: share of images showing the pectoralis muscle.
    - ``lesion_radius_min_mm``, ``lesion_radius_max_mm``: lesion half-width range.
    """
    check_common(n, size)
    check_range("malignant_fraction", malignant_fraction, 0.0, 1.0)
    check_range("speckle", speckle, 0.0, 1.0)
    check_range("tgc_compensation", tgc_compensation, 0.0, 2.0)
    check_range("muscle_probability", muscle_probability, 0.0, 1.0)
    for name, value in [("depth_mm", depth_mm), ("width_mm", width_mm), ("dynamic_range_db", dynamic_range_db),
                        ("centre_frequency_mhz", centre_frequency_mhz), ("pulse_cycles", pulse_cycles),
                        ("beam_width_mm", beam_width_mm), ("lesion_radius_min_mm", lesion_radius_min_mm)]:
        check_positive(name, value)
    if lesion_radius_max_mm < lesion_radius_min_mm:
        check_range("lesion_radius_max_mm", lesion_radius_max_mm, lesion_radius_min_mm, math.inf)
    check_range("attenuation_db_cm_mhz", attenuation_db_cm_mhz, 0.0, 10.0)

    fwhm_z, fwhm_x = psf_fwhm_mm(centre_frequency_mhz, pulse_cycles, beam_width_mm)
    dz_out, dx_out = depth_mm / size, width_mm / size
    # Sample at least about once per PSF width (spacing <= 2 sigma = FWHM / 1.18); finer
    # pixels than that are simulated directly, coarser ones are averaged from a finer grid.
    qz = int(min(MAX_OVERSAMPLING, max(1, math.ceil(dz_out / (2.0 * fwhm_z / FWHM_PER_SIGMA) - 1e-9))))
    qx = int(min(MAX_OVERSAMPLING, max(1, math.ceil(dx_out / (2.0 * fwhm_x / FWHM_PER_SIGMA) - 1e-9))))
    grid = (size * qz, size * qx)

    check_range("compounding", compounding, 1, 64)
    images = np.empty((n, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=bool)
    labels = []
    for i in range(n):
        anatomy_rng = image_rng(seed, i, ANATOMY)
        malignant = bool(anatomy_rng.random() < malignant_fraction)
        labels.append("malignant" if malignant else "benign")
        phantom = breast_phantom(
            anatomy_rng, grid, depth_mm, width_mm, malignant,
            attenuation_db_cm_mhz=attenuation_db_cm_mhz, muscle_probability=muscle_probability,
            lesion_radius_min_mm=lesion_radius_min_mm, lesion_radius_max_mm=lesion_radius_max_mm,
        )
        env = envelope(
            10.0 ** (phantom["echo_db"] / 10.0), (depth_mm / grid[0], width_mm / grid[1]),
            image_rng(seed, i, SPECKLE),
            centre_frequency_mhz=centre_frequency_mhz, pulse_cycles=pulse_cycles,
            beam_width_mm=beam_width_mm, speckle=speckle, attenuation_db_cm_mhz=phantom["alpha"],
            tgc_db_cm_mhz=attenuation_db_cm_mhz * tgc_compensation, noise_db=noise_db,
            compounding=compounding,
        )
        images[i] = block_mean(log_compress(env, dynamic_range_db, gain_db), qz, qx)
        cover = block_mean(phantom["inside"].astype(np.float64), qz, qx)
        mask = cover >= 0.5
        if not mask.any():  # a lesion smaller than a pixel still marks its pixel
            mask = cover >= cover.max()
        masks[i] = mask
    return SegmentationSet.from_float(images, masks, ids("us", n), labels)
