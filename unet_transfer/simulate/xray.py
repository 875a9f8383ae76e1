"""Simulated chest X-rays (posteroanterior radiographs) with a mask of both lungs.

What it models. A thorax phantom, described by how many centimetres of each material an X-ray
crosses on its way through the patient to each detector pixel (thickness maps): the body
(soft tissue, an elliptical cross-section that narrows to the neck and shoulders, optionally
the arms at the sides), two lungs (air-filled; thin at their margins, thickest at the bases)
with branching pulmonary vessels from the hila, the heart and aortic knob (soft tissue that
displaces the left lung; the heart lies on the image's right side, as radiographs show the
patient's left on the right), the trachea, the spine (vertebral bodies, discs and pedicles),
posterior and anterior ribs and the clavicles (bone tubes with a dense cortical shell), and
sometimes a gas bubble in the stomach under the left diaphragm. The attenuation coefficients
of the materials at an effective energy near 60 keV are summed along each ray (the line
integral) and the primary beam is attenuated by Beer-Lambert's law; a little scattered
radiation (a wide blur of the primary) is added, the detector counts Poisson-distributed
quanta (the photon count per mm^2 is a setting, so noise falls as it rises) and blurs them
(scintillator spread), and the image is shown the way radiographs are: the log of the
attenuation, so air is black, lungs dark, soft tissue grey and bone bright. Size, position,
lung shape, inspiration depth, heart size and the rib spacing vary from image to image. The
mask is the visible lung field: both lungs as one mask, without the heart and aortic knob.

What it leaves out. One effective energy (no beam hardening or spectrum), no
energy-dependent detector response, scatter only as a smooth fog (no anti-scatter grid), no
geometric magnification or focal spot blur, no costal cartilage calcification, scapulae,
breast shadows, diaphragm details or abdominal organs beyond a soft-tissue block, no
pathology (nodules, effusions, consolidation), no rotation of the patient, and no markers or
text burned into the image.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline

from unet_transfer.data.arrays import SegmentationSet
from unet_transfer.simulate._common import (
    ANATOMY,
    NOISE,
    block_mean,
    check_common,
    check_positive,
    check_range,
    gaussian_field,
    ids,
    image_rng,
    resample,
)

# Linear attenuation coefficients (1/cm) at an effective energy of about 60 keV.
MU_SOFT = 0.20
MU_LUNG = 0.05  # inflated lung: tissue at about a quarter of water density
MU_AIR = 0.0
MU_CORTICAL = 0.55
MU_TRABECULAR = 0.28

# Right lung outline (image left, x < 0) in cm, y down from the top of the field; clockwise
# from the apex. The left lung is its mirror image with a lower diaphragm.
_LUNG = np.array([
    (-5.0, 4.5), (-8.5, 5.8), (-11.5, 9.5), (-13.2, 15.0), (-13.8, 21.0), (-14.0, 26.0),
    (-13.7, 29.2), (-11.5, 27.4), (-7.5, 25.4), (-4.0, 26.0), (-2.6, 26.5), (-2.3, 22.0),
    (-2.8, 16.0), (-2.6, 11.0), (-3.2, 6.5),
])
# The left lung (image right): mirrored, its upper medial border pushed out by the aortic knob.
_LEFT_LUNG = _LUNG.copy()
_LEFT_LUNG[13] = (-3.8, 12.0)


def _closed_curve(points: np.ndarray, n: int = 160) -> np.ndarray:
    """A smooth closed curve through ``points`` (periodic cubic spline)."""
    closed = np.vstack([points, points[:1]])
    t = np.arange(len(closed), dtype=np.float64)
    spline = CubicSpline(t, closed, bc_type="periodic")
    return spline(np.linspace(0.0, len(points), n, endpoint=False))


def fill_polygon(polygon: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Boolean (len(ys), len(xs)) raster of a closed polygon (x, y vertices), even-odd rule.

    ``xs`` and ``ys`` are the pixel-centre coordinates, increasing and evenly spaced.
    """
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    yy = ys[:, None]
    crosses = (y0[None, :] <= yy) != (y1[None, :] <= yy)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x0 + (yy - y0) * (x1 - x0) / (y1 - y0)
    rows, edges = np.nonzero(crosses)
    dx = xs[1] - xs[0]
    cols = np.clip(np.ceil((xc[rows, edges] - xs[0]) / dx), 0, len(xs)).astype(np.intp)
    counts = np.zeros((len(ys), len(xs) + 1), dtype=np.int32)
    np.add.at(counts, (rows, cols), 1)
    return (np.cumsum(counts, axis=1)[:, :-1] % 2).astype(bool)


def _tube(distance: np.ndarray, radius: float, shell: float) -> tuple[np.ndarray, np.ndarray]:
    """Path lengths (cortical, marrow) through a bone tube at ``distance`` from its axis."""
    outer = 2.0 * np.sqrt(np.maximum(radius**2 - distance**2, 0.0))
    inner = 2.0 * np.sqrt(np.maximum((radius - shell) ** 2 - distance**2, 0.0))
    return outer - inner, inner


class _Canvas:
    """Accumulates the attenuation line integral on the pixel grid (patient coordinates, cm)."""

    def __init__(self, xs: np.ndarray, ys: np.ndarray):
        self.xs, self.ys = xs, ys
        self.p = np.zeros((len(ys), len(xs)))
        self.dy = ys[1] - ys[0]

    def rows(self, y_low: float, y_high: float) -> slice:
        n = len(self.ys)
        lo = min(max(math.floor((y_low - self.ys[0]) / self.dy), 0), n)
        hi = min(max(math.ceil((y_high - self.ys[0]) / self.dy) + 1, 0), n)
        return slice(lo, hi)

    def cols(self, x_low: float, x_high: float) -> slice:
        n = len(self.xs)
        dx = self.xs[1] - self.xs[0]
        lo = min(max(math.floor((x_low - self.xs[0]) / dx), 0), n)
        hi = min(max(math.ceil((x_high - self.xs[0]) / dx) + 1, 0), n)
        return slice(lo, hi)

    def box(self, x_low: float, x_high: float, y_low: float, y_high: float):
        """Row and column slices of a box, and its pixel coordinates (column, row vectors)."""
        r, c = self.rows(y_low, y_high), self.cols(x_low, x_high)
        return r, c, self.xs[c][None, :], self.ys[r][:, None]

    def bone_pair(self, x_inner: float, x_outer: float, curve, radius: float, shell: float, scale: float = 1.0):
        """Two mirror-image bone tubes, axis y = curve(|x|) for x_inner <= |x| <= x_outer."""
        ax = np.abs(self.xs)
        cols = np.nonzero((ax >= x_inner) & (ax <= x_outer))[0]
        if len(cols) < 2:
            return
        xc = ax[cols]
        yc = curve(xc)
        h = 1e-3
        slope = (curve(xc + h) - curve(xc - h)) / (2 * h)
        band = self.rows(yc.min() - radius, yc.max() + radius)
        yy = self.ys[band][:, None]
        distance = np.abs(yy - yc[None, :]) / np.sqrt(1.0 + slope**2)[None, :]
        cortex, marrow = _tube(distance, radius, shell)
        # Round the bone ends off over one radius.
        end = np.minimum(xc - x_inner, x_outer - xc) / radius
        taper = np.sqrt(np.clip(end, 0.0, 1.0))[None, :]
        self.p[band, cols] += scale * taper * ((MU_CORTICAL - MU_SOFT) * cortex + (MU_TRABECULAR - MU_SOFT) * marrow)


def _vessel_tree(rng, canvas: _Canvas, vessels: np.ndarray, hilum, angles, length, radius, depth) -> None:
    """Pulmonary vessels: branching tubes; ``vessels`` keeps the largest path per pixel."""
    stack = [(hilum[0] + 0.8 * math.cos(a), hilum[1] + 0.8 * math.sin(a), a, length, radius, depth) for a in angles]
    while stack:
        x0, y0, angle, ln, r, d = stack.pop()
        x1, y1 = x0 + ln * math.cos(angle), y0 + ln * math.sin(angle)
        band, c, px, py = canvas.box(min(x0, x1) - r, max(x0, x1) + r, min(y0, y1) - r, max(y0, y1) + r)
        if c.stop > c.start and band.stop > band.start and r > 0.3 * canvas.dy:
            vx, vy = x1 - x0, y1 - y0
            t = np.clip(((px - x0) * vx + (py - y0) * vy) / (vx * vx + vy * vy), 0.0, 1.0)
            dist2 = (px - x0 - t * vx) ** 2 + (py - y0 - t * vy) ** 2
            path = 2.0 * np.sqrt(np.maximum(r * r - dist2, 0.0))
            np.maximum(vessels[band, c], path, out=vessels[band, c])
        if d > 0:
            for sign in (-1.0, 1.0):
                stack.append((x1, y1, angle + sign * rng.uniform(0.25, 0.55), ln * rng.uniform(0.65, 0.8), r * 0.72, d - 1))


def _ellipsoid(canvas: _Canvas, cx, cy, a, b, half_depth, tilt=0.0):
    """Path length through an ellipsoid (semi-axes a, b in the image plane), in its box."""
    reach = max(a, b)
    r, c, xx, yy = canvas.box(cx - reach, cx + reach, cy - reach, cy + reach)
    u = (xx - cx) * math.cos(tilt) + (yy - cy) * math.sin(tilt)
    v = -(xx - cx) * math.sin(tilt) + (yy - cy) * math.cos(tilt)
    rho2 = (u / a) ** 2 + (v / b) ** 2
    return r, c, 2.0 * half_depth * np.sqrt(np.clip(1.0 - rho2, 0.0, None)), rho2 < 1.0


def _distance_inside(mask: np.ndarray) -> np.ndarray:
    """Distance (pixels) to the outside of ``mask``; on a grid of at most 128 (it is smooth)."""
    factor = max(1, mask.shape[0] // 128)
    while mask.shape[0] % factor or mask.shape[1] % factor:
        factor -= 1
    if factor == 1:
        return ndimage.distance_transform_edt(mask)
    coarse = block_mean(mask.astype(np.float32), factor, factor) >= 0.5
    return resample(ndimage.distance_transform_edt(coarse).astype(np.float32), mask.shape) * factor * mask


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == np.argmax(sizes)


def thorax(rng: np.random.Generator, size: int, field_cm: float) -> tuple[np.ndarray, np.ndarray]:
    """Attenuation line integral (size x size) and lung mask of one random thorax."""
    scale = rng.uniform(0.88, 1.08)
    shift_x, shift_y = rng.normal(0.0, 0.6), rng.normal(0.0, 0.8)
    pixel = field_cm / size
    # Patient coordinates of the pixel centres (cm): the patient is scaled and shifted.
    xs = ((np.arange(size) + 0.5) * pixel - field_cm / 2 - shift_x) / scale
    ys = ((np.arange(size) + 0.5) * pixel - shift_y - (field_cm - 40.0) / 2) / scale
    canvas = _Canvas(xs, ys)
    xx, yy = xs[None, :], ys[:, None]
    p = canvas.p

    # Body: elliptical cross-section, narrowing to the neck above the shoulders.
    half_width = rng.uniform(14.5, 16.5)
    half_depth = rng.uniform(9.0, 12.0)
    shoulder = 1.0 / (1.0 + np.exp(-(yy - rng.uniform(3.0, 5.0)) / 0.9))
    width = 5.5 + (half_width - 5.5) * shoulder + 0.04 * np.clip(yy - 10.0, 0.0, None)
    depth = 6.0 + (half_depth - 6.0) * shoulder
    p += MU_SOFT * 2.0 * depth * np.sqrt(np.clip(1.0 - (xx / width) ** 2, 0.0, None))
    if rng.random() < 0.7:  # arms at the sides, from the shoulders down
        arm_r = rng.uniform(3.5, 5.0)
        top = rng.uniform(3.0, 6.0)
        for side in (-1.0, 1.0):
            centre = side * (half_width + arm_r + rng.uniform(0.3, 1.5))
            r, c, ax, ay = canvas.box(centre - arm_r, centre + arm_r, top - arm_r, ys[-1])
            along = np.sqrt(np.clip(1.0 - ((ay - top) / arm_r).clip(None, 0.0) ** 2, 0.0, None))
            p[r, c] += MU_SOFT * 2.0 * np.sqrt(np.clip(arm_r**2 - (ax - centre) ** 2, 0.0, None)) * along

    # Lungs: outlines with jitter; air path grows from the margin inwards and towards the base.
    inspiration = rng.uniform(0.92, 1.08)
    base_drop = rng.uniform(0.6, 1.8)
    lung_air = np.zeros_like(p)
    lungs = []
    for side in (-1.0, 1.0):
        points = (_LUNG if side < 0 else _LEFT_LUNG).copy()
        points[:, 0] *= -side * rng.uniform(0.93, 1.05) * half_width / 15.5
        points[:, 1] = 4.5 + (points[:, 1] - 4.5) * inspiration
        if side > 0:
            points[points[:, 1] > 22.0, 1] += base_drop
        points += rng.normal(0.0, 0.3, points.shape)
        inside = _largest_component(fill_polygon(_closed_curve(points), xs, ys))
        lungs.append(inside)
        margin = _distance_inside(inside) * (pixel / scale)
        y_top, y_base = points[:, 1].min(), points[:, 1].max()
        air_depth = 2.0 * (half_depth - 2.0) * (0.55 + 0.45 * np.clip((yy - y_top) / (y_base - y_top), 0.0, 1.0))
        lung_air += inside * air_depth * (1.0 - np.exp(-margin / rng.uniform(1.5, 2.5)))

    # Heart and aortic knob: soft tissue that displaces lung; the mask leaves the heart out.
    r, c, heart, covered = _ellipsoid(
        canvas, rng.uniform(1.0, 3.0), rng.uniform(21.0, 23.5) * inspiration,
        rng.uniform(5.8, 7.5), rng.uniform(4.8, 5.8), 5.5, rng.uniform(-0.6, -0.3),
    )
    lung_air[r, c] = np.maximum(lung_air[r, c] - heart, 0.0)
    lung_mask = np.zeros(p.shape, dtype=bool)
    for inside in lungs:
        visible = inside.copy()
        visible[r, c] &= ~covered
        kept = _largest_component(visible)
        lung_air[visible & ~kept] = 0.0  # a sliver cut off below the heart: no air there
        lung_mask |= kept
    p -= (MU_SOFT - MU_LUNG) * lung_air

    # Vessels from each hilum: blood displaces air (a vessel only replaces air that is there).
    vessels = np.zeros_like(p)
    for side in (-1.0, 1.0):
        hilum = (side * rng.uniform(3.5, 5.0), rng.uniform(14.5, 17.0))
        spread = np.array([-1.3, -0.6, 0.1, 0.75, 1.35]) + rng.normal(0, 0.12, 5)
        angles = np.where(side > 0, spread, np.pi - spread)
        _vessel_tree(rng, canvas, vessels, hilum, angles, rng.uniform(3.5, 4.5), rng.uniform(0.5, 0.7), 2)
    # Unresolved small vessels and interstitium: a fine random texture of the lung tissue.
    texture = resample(gaussian_field(rng, (128, 128), (2.0, 2.0)), p.shape)
    vessels += rng.uniform(0.6, 1.0) * np.exp(-((texture / 0.3) ** 2))  # curvy thin lines
    p += (MU_SOFT - MU_LUNG) * np.minimum(vessels, lung_air)

    # Trachea (an air column) and gas in the stomach.
    trachea_r = rng.uniform(0.6, 0.8)
    r, c, tx, _ = canvas.box(0.3 - trachea_r, 0.3 + trachea_r, ys[0], rng.uniform(11.0, 13.0))
    p[r, c] -= (MU_SOFT - MU_AIR) * 2.0 * np.sqrt(np.clip(trachea_r**2 - (tx - 0.3) ** 2, 0.0, None))
    if rng.random() < 0.6:
        gy = 28.5 * inspiration + base_drop + rng.uniform(1.5, 3.0)
        r, c, bubble, _ = _ellipsoid(canvas, rng.uniform(6.0, 10.0), gy, rng.uniform(2.0, 3.5), rng.uniform(1.2, 2.2), 1.5)
        p[r, c] -= (MU_SOFT - MU_AIR) * bubble

    # Spine: vertebral bodies separated by discs, pedicles as small cortical rings.
    period = rng.uniform(2.3, 2.7)
    phase = rng.uniform(0.0, period)
    spine_w = rng.uniform(1.8, 2.3)
    r, c, sx, sy = canvas.box(-spine_w, spine_w, ys[0], ys[-1])
    column = 2.0 * 1.2 * np.sqrt(np.clip(1.0 - (sx / spine_w) ** 2, 0.0, None))
    within = np.abs(((sy - phase) % period) - 0.5 * period)
    in_body = 0.5 + 0.5 * np.tanh((0.5 * period - 0.3 - within) / 0.12)
    spine = column * (0.6 + 0.4 * in_body) * (MU_TRABECULAR - MU_SOFT)
    spine += column * in_body * 0.15 * (MU_CORTICAL - MU_SOFT) * (np.abs(sx) > 0.8 * spine_w)
    cyc = ((sy - phase + 0.4 * period) % period) - 0.5 * period
    for side in (-1.0, 1.0):
        d = np.hypot((sx - side * 0.72 * spine_w) / 0.45, cyc / 0.6)
        spine += 0.3 * np.clip(1.0 - np.abs(d - 1.0) / 0.3, 0.0, None) * (MU_CORTICAL - MU_SOFT)
    p[r, c] += spine

    # Ribs: ten pairs; posterior arcs from the spine, anterior arcs sloping down-medially.
    first, spacing = rng.uniform(4.3, 5.3), rng.uniform(2.1, 2.5) * inspiration
    rise, fall = rng.uniform(0.8, 1.8), rng.uniform(2.0, 3.2)
    for k in range(10):
        yk = first + k * spacing
        wall = float(half_width - 1.0 - 2.5 * max(0.0, 2 - k) / 2)
        span = wall - 1.8

        def posterior(x, yk=yk, span=span):
            s = np.clip(x - 1.8, 0.0, None) / span
            return yk - rise * np.sin(np.pi * s) + fall * s**3

        canvas.bone_pair(1.8, wall, posterior, 0.55, 0.13)
        y_end = yk + fall + rng.normal(0.0, 0.2)
        inner = rng.uniform(3.5, 6.0)
        drop = rng.uniform(3.5, 5.5)

        def anterior(x, y_end=y_end, inner=inner, drop=drop, wall=wall):
            s = np.clip((wall - x) / (wall - inner), 0.0, 1.0)
            return y_end + drop * s**0.8

        canvas.bone_pair(inner, wall - 0.3, anterior, 0.45, 0.1, scale=0.6)

    # Clavicles.
    y_inner, y_outer = rng.uniform(6.5, 8.0), rng.uniform(4.0, 6.0)
    outer = half_width - rng.uniform(0.5, 2.0)

    def clavicle(x):
        s = np.clip((x - 1.5) / (outer - 1.5), 0.0, 1.0)
        return y_inner + (y_outer - y_inner) * s + 0.5 * np.sin(2 * np.pi * s)

    canvas.bone_pair(1.5, outer, clavicle, 0.8, 0.2, scale=1.5)
    return p, lung_mask


def _wide_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """A Gaussian blur wide enough to be done on a coarse grid (scatter is smooth)."""
    factor = max(1, int(sigma_px // 4))
    while image.shape[0] % factor or image.shape[1] % factor:
        factor -= 1
    coarse = block_mean(image, factor, factor)
    coarse = ndimage.gaussian_filter(coarse, sigma_px / factor, mode="nearest")
    return resample(coarse, image.shape)


def simulate_xray(
    n: int,
    size: int,
    seed: int,
    *,
    field_cm: float = 36.0,
    photons_per_mm2: float = 3.0e4,
    scatter_fraction: float = 0.1,
    detector_blur_mm: float = 0.7,
    display_level: float = 0.68,
    display_width: float = 0.12,
    edge_enhancement: float = 0.5,
) -> SegmentationSet:
    """``n`` simulated chest X-rays (size x size, field of ``field_cm`` square) with lung masks.

    ``photons_per_mm2``: quanta per mm^2 that would reach the detector without a patient
    (quantum noise falls as it rises). ``scatter_fraction``: scattered radiation as a share of
    the mean primary. ``detector_blur_mm``: Gaussian sigma of the detector blur.
    ``edge_enhancement``: unsharp-masking gain of the log image (radiograph processing).
    ``display_level``, ``display_width``: centre and width of the film-like sigmoid that maps
    the log image to grey, as fractions of the 99th percentile of the attenuation line
    integral. Ids ``xr_0000``, ...; no labels.
    """
    check_common(n, size)
    check_positive("field_cm", field_cm)
    check_positive("photons_per_mm2", photons_per_mm2)
    check_range("scatter_fraction", scatter_fraction, 0.0, 10.0)
    check_range("detector_blur_mm", detector_blur_mm, 0.0, 100.0)
    check_range("display_level", display_level, 0.0, 2.0)
    check_positive("display_width", display_width)
    check_range("edge_enhancement", edge_enhancement, 0.0, 10.0)
    pixel_mm = 10.0 * field_cm / size
    quanta = photons_per_mm2 * pixel_mm**2
    # Detector pixels integrate over their area: small images are drawn finer and summed.
    q = max(1, math.ceil(128 / size))
    fine_mm = pixel_mm / q
    images = np.empty((n, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=bool)
    for i in range(n):
        line_integral, mask = thorax(image_rng(seed, i, ANATOMY), size * q, field_cm)
        primary = np.exp(-line_integral)
        scatter = scatter_fraction * _wide_blur(primary, 60.0 / fine_mm)
        counts = image_rng(seed, i, NOISE).poisson(quanta / q**2 * (primary + scatter)).astype(np.float64)
        if detector_blur_mm > 0:
            counts = ndimage.gaussian_filter(counts, detector_blur_mm / fine_mm, mode="nearest")
        counts = block_mean(counts, q, q) * q**2
        measured = -np.log(np.maximum(counts, 0.5) / quanta)
        if edge_enhancement > 0:  # unsharp masking, as radiograph processing does
            measured = measured + edge_enhancement * (measured - _wide_blur(measured, 10.0 / pixel_mm))
        # Display: a film-like (H&D) sigmoid of the log image, relative to the densest parts.
        dense = np.quantile(line_integral, 0.99)
        images[i] = 1.0 / (1.0 + np.exp(-(measured - display_level * dense) / (display_width * dense)))
        masks[i] = block_mean(mask.astype(np.float32), q, q) >= 0.5
    return SegmentationSet.from_float(images, masks, ids("xr", n))
