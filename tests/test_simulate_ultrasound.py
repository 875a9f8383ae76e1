"""Physics and contract of the ultrasound simulator."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from unet_transfer.data.arrays import SegmentationSet
from unet_transfer.errors import ConfigError
from unet_transfer.simulate import SIMULATORS, simulate_ultrasound
from unet_transfer.simulate.ultrasound import envelope, psf_fwhm_mm

RAYLEIGH_SNR = np.sqrt(np.pi / (4.0 - np.pi))  # mean / std of a Rayleigh envelope, 1.913
LOG_RAYLEIGH_STD_DB = 20.0 / np.log(10.0) * np.pi / np.sqrt(24.0)  # std of 20 log10, 5.57 dB


def _speckle(shape=(512, 512), pixel_mm=0.05, seed=0, **settings):
    return envelope(np.ones(shape), pixel_mm, np.random.default_rng(seed), **settings)


def _grain_px(env: np.ndarray, axis: int) -> float:
    """FWHM (pixels) of the normalised autocovariance of the intensity along ``axis``."""
    intensity = env.astype(np.float64) ** 2
    intensity -= intensity.mean()
    n = intensity.shape[axis]
    spectrum = np.fft.rfft(intensity, n=2 * n, axis=axis)
    acov = np.fft.irfft(np.abs(spectrum) ** 2, axis=axis).mean(axis=1 - axis)[:n]
    acov /= acov[0]
    k = int(np.argmax(acov < 0.5))
    return 2.0 * (k - 1 + (acov[k - 1] - 0.5) / (acov[k - 1] - acov[k]))


def test_envelope_is_rayleigh_in_homogeneous_tissue():
    env = _speckle(pulse_cycles=2.0, beam_width_mm=0.4)
    snr = env.mean() / env.std()
    assert abs(snr / RAYLEIGH_SNR - 1.0) < 0.05, snr
    log_std = np.std(20.0 * np.log10(env))
    assert abs(log_std / LOG_RAYLEIGH_STD_DB - 1.0) < 0.05, log_std
    # Mean intensity equals the echogenicity (unit-energy PSF).
    assert abs(np.mean(env.astype(np.float64) ** 2) - 1.0) < 0.05


def test_compounding_lowers_speckle_contrast_by_sqrt_looks():
    env = _speckle(pulse_cycles=2.0, beam_width_mm=0.4, compounding=4)
    intensity = env.astype(np.float64) ** 2
    # Speckle contrast of intensity: 1 for one look, 1/sqrt(N) for N independent looks.
    assert abs(intensity.std() / intensity.mean() - 0.5) < 0.05


def test_axial_grain_follows_pulse_length():
    short = _grain_px(_speckle(pulse_cycles=2.0, beam_width_mm=0.4), axis=0)
    long = _grain_px(_speckle(pulse_cycles=4.0, beam_width_mm=0.4), axis=0)
    assert 1.6 < long / short < 2.4, (short, long)
    # And the grain matches the PSF's axial width (intensity ACF FWHM = PSF amplitude FWHM).
    expected = psf_fwhm_mm(7.5, 2.0, 0.4)[0] / 0.05
    assert abs(short / expected - 1.0) < 0.2, (short, expected)


def test_lateral_grain_follows_beam_width():
    narrow = _grain_px(_speckle(pulse_cycles=2.0, beam_width_mm=0.4), axis=1)
    wide = _grain_px(_speckle(pulse_cycles=2.0, beam_width_mm=0.8), axis=1)
    assert 1.6 < wide / narrow < 2.4, (narrow, wide)


def test_tgc_undoes_matching_attenuation_and_lesions_shadow():
    e = np.ones((400, 200))
    alpha = np.full(e.shape, 0.75)
    flat = _speckle(e.shape, 0.1, attenuation_db_cm_mhz=alpha, tgc_db_cm_mhz=0.75, speckle=0.0)
    assert np.allclose(flat[20:-20], flat[20:-20].mean(), rtol=1e-3)
    alpha[100:150, 80:120] = 2.75  # 5 mm of tissue attenuating 2 dB/cm/MHz more
    env = _speckle(e.shape, 0.1, attenuation_db_cm_mhz=alpha, tgc_db_cm_mhz=0.75, speckle=0.0)
    shadow_db = 20.0 * np.log10(env[250:350, 90:110].mean() / env[250:350, 10:40].mean())
    expected = -2.0 * 7.5 * 2.0 * 0.5  # round trip x MHz x excess dB/cm/MHz x cm
    assert abs(shadow_db - expected) < 1.0, shadow_db


def test_set_shape_ids_labels():
    data = simulate_ultrasound(6, 64, seed=3)
    assert isinstance(data, SegmentationSet)
    assert data.images.shape == (6, 64, 64) and data.images.dtype == np.uint8
    assert data.masks.shape == (6, 64, 64) and data.masks.dtype == bool
    assert data.ids == ("us_0000", "us_0001", "us_0002", "us_0003", "us_0004", "us_0005")
    assert set(data.labels) <= {"benign", "malignant"}
    assert SIMULATORS["ultrasound"] is simulate_ultrasound
    assert set(simulate_ultrasound(4, 32, 0, malignant_fraction=0.0).labels) == {"benign"}
    assert set(simulate_ultrasound(4, 32, 0, malignant_fraction=1.0).labels) == {"malignant"}


def test_same_seed_same_arrays_and_image_independent_of_n():
    a = simulate_ultrasound(4, 48, seed=11)
    b = simulate_ultrasound(4, 48, seed=11)
    c = simulate_ultrasound(2, 48, seed=11)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.images[:2], c.images) and a.labels[:2] == c.labels
    d = simulate_ultrasound(4, 48, seed=12)
    assert not np.array_equal(a.images, d.images)


def test_masks_non_empty_and_lesions_darker_than_surroundings():
    data = simulate_ultrasound(10, 64, seed=5)
    contrasts = []
    for image, mask in zip(data.images, data.masks, strict=True):
        assert mask.any() and not mask.all()
        ring = ndimage.binary_dilation(mask, iterations=4) & ~mask
        contrasts.append(image[ring].mean() - image[mask].mean())
    assert np.mean(contrasts) > 20, contrasts  # grey levels out of 255
    assert np.mean(np.array(contrasts) > 0) >= 0.8


def _high_pass_std(images: np.ndarray) -> float:
    x = images.astype(np.float64)
    return float(np.std(x - ndimage.uniform_filter(x, size=(1, 3, 3))))


def test_speckle_setting_keeps_anatomy_and_removes_noise():
    # At 256 px a pixel (0.16 mm) is about the speckle grain; at 64 px the grain is averaged
    # within each pixel, as resizing a real scan would do, and speckle is much weaker.
    smooth = simulate_ultrasound(2, 256, seed=2, speckle=0.0)
    half = simulate_ultrasound(2, 256, seed=2, speckle=0.5)
    full = simulate_ultrasound(2, 256, seed=2, speckle=1.0)
    assert smooth.labels == half.labels == full.labels
    assert np.array_equal(smooth.masks, full.masks) and np.array_equal(half.masks, full.masks)
    s0, s5, s1 = (_high_pass_std(d.images) for d in (smooth, half, full))
    assert s0 < 0.35 * s1, (s0, s1)
    assert s0 < s5 < s1, (s0, s5, s1)
    # Same anatomy: heavily smoothed images agree.
    blur = (0, 8, 8)
    r = np.corrcoef(ndimage.gaussian_filter(smooth.images.astype(float), blur).ravel(),
                    ndimage.gaussian_filter(full.images.astype(float), blur).ravel())[0, 1]
    assert r > 0.8, r


def test_anatomy_is_the_same_at_every_size():
    small = simulate_ultrasound(2, 32, seed=4)
    big = simulate_ultrasound(2, 64, seed=4)
    assert small.labels == big.labels
    shrunk = big.masks.reshape(2, 32, 2, 32, 2).mean(axis=(2, 4)) >= 0.5
    assert (shrunk == small.masks).mean() > 0.97


@pytest.mark.parametrize("settings", [{"speckle": 1.5}, {"malignant_fraction": -0.1}, {"pulse_cycles": 0}, {"compounding": 0}])
def test_bad_settings_are_config_errors(settings):
    with pytest.raises(ConfigError):
        simulate_ultrasound(2, 32, 0, **settings)


def test_bad_size_and_count():
    with pytest.raises(ConfigError):
        simulate_ultrasound(0, 32, 0)
    with pytest.raises(ConfigError):
        simulate_ultrasound(2, 8, 0)
