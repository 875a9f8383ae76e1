"""Contract and plausibility of the chest X-ray and natural-scene simulators."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from unet_transfer.data.arrays import SegmentationSet
from unet_transfer.errors import ConfigError
from unet_transfer.simulate import SIMULATORS, simulate_natural, simulate_xray
from unet_transfer.simulate.xray import fill_polygon


@pytest.fixture(scope="module")
def xrays() -> SegmentationSet:
    return simulate_xray(6, 96, seed=1)


def test_xray_set_contract(xrays):
    assert xrays.images.shape == (6, 96, 96) and xrays.images.dtype == np.uint8
    assert xrays.masks.dtype == bool and xrays.labels is None
    assert xrays.ids[0] == "xr_0000" and xrays.ids[-1] == "xr_0005"
    assert SIMULATORS["xray"] is simulate_xray


def test_xray_mask_is_two_lungs(xrays):
    for mask in xrays.masks:
        labels, count = ndimage.label(mask)
        assert count == 2
        # One lung on each side of the midline.
        centres = [np.nonzero(labels == k)[1].mean() for k in (1, 2)]
        assert min(centres) < 48 < max(centres)
        assert 0.12 < mask.mean() < 0.5


def test_xray_lungs_darker_than_mediastinum_and_spine(xrays):
    for image, mask in zip(xrays.images, xrays.masks, strict=True):
        rows = np.nonzero(mask.any(axis=1))[0]
        mediastinum = image[rows[0]:rows[-1] + 1, 44:52]  # the central column: spine, heart
        assert image[mask].mean() + 40 < mediastinum.mean()


def test_xray_outside_body_dark_and_bone_bright(xrays):
    image = xrays.images.astype(float)
    corners = np.concatenate([image[:, :6, :6].ravel(), image[:, :6, -6:].ravel()])
    assert corners.mean() < 40  # air above the shoulders
    assert np.percentile(image, 99) > 200  # bone and mediastinum near white


def test_xray_noise_falls_with_photon_count():
    def noise(photons):
        data = simulate_xray(2, 96, seed=3, photons_per_mm2=photons, edge_enhancement=0.0)
        x = data.images.astype(float)
        residual = x - ndimage.uniform_filter(x, size=(1, 3, 3))
        return residual[data.masks].std()

    low, mid, high = noise(1e2), noise(1e3), noise(1e5)
    assert low > mid > high, (low, mid, high)
    assert low > 1.8 * high


def test_xray_determinism_and_independence_of_n():
    a = simulate_xray(3, 64, seed=7)
    b = simulate_xray(3, 64, seed=7)
    c = simulate_xray(1, 64, seed=7)
    d = simulate_xray(3, 64, seed=8)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.images[:1], c.images) and np.array_equal(a.masks[:1], c.masks)
    assert not np.array_equal(a.images, d.images)


def test_fill_polygon_matches_area():
    xs = ys = (np.arange(200) + 0.5) / 100.0 - 1.0
    t = np.linspace(0, 2 * np.pi, 300, endpoint=False)
    disc = fill_polygon(np.c_[0.8 * np.cos(t), 0.8 * np.sin(t)], xs, ys)
    assert abs(disc.mean() * 4.0 - np.pi * 0.64) < 0.02
    square = fill_polygon(np.array([(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]), xs, ys)
    assert square.sum() == 100 * 100


@pytest.fixture(scope="module")
def scenes() -> SegmentationSet:
    return simulate_natural(40, 64, seed=0)


def test_natural_contract_and_mask_fraction(scenes):
    assert scenes.images.shape == (40, 64, 64) and scenes.ids[0] == "nat_0000"
    assert scenes.labels is None and SIMULATORS["natural"] is simulate_natural
    fractions = scenes.masks.mean(axis=(1, 2))
    assert fractions.min() > 0.01 and fractions.max() < 0.6
    assert 0.05 < np.median(fractions) < 0.35


def test_natural_object_contrast(scenes):
    contrasts = []
    for image, mask in zip(scenes.images.astype(float), scenes.masks, strict=True):
        ring = ndimage.binary_dilation(mask, iterations=3) & ~mask
        contrasts.append(abs(image[mask].mean() - image[ring].mean()) / 255.0)
    assert np.mean(contrasts) > 0.1, np.mean(contrasts)
    assert np.mean(np.array(contrasts) > 0.03) > 0.9


def test_natural_determinism_and_sizes():
    a = simulate_natural(3, 64, seed=5)
    b = simulate_natural(3, 64, seed=5)
    c = simulate_natural(2, 64, seed=5)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.images[:2], c.images)
    assert not np.array_equal(a.images, simulate_natural(3, 64, seed=6).images)
    # The same scene at another size (the scene is drawn at a fixed resolution).
    big = simulate_natural(3, 128, seed=5)
    shrunk = big.masks.reshape(3, 64, 2, 64, 2).mean(axis=(2, 4)) >= 0.5
    assert (shrunk == a.masks).mean() > 0.97
    odd = simulate_natural(2, 100, seed=5)
    assert odd.images.shape == (2, 100, 100) and odd.masks.any(axis=(1, 2)).all()


@pytest.mark.parametrize(
    "call",
    [
        lambda: simulate_xray(2, 32, 0, photons_per_mm2=0),
        lambda: simulate_xray(2, 32, 0, field_cm=-1),
        lambda: simulate_natural(2, 32, 0, min_object_area=0.5, max_object_area=0.1),
        lambda: simulate_natural(2, 32, 0, noise_std=-1),
    ],
)
def test_bad_settings_are_config_errors(call):
    with pytest.raises(ConfigError):
        call()
