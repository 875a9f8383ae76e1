"""Samples become one SegmentationSet at the training size; the cache key follows the files."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest
from layouts import write_busi, write_ecssd, write_image, write_mask, write_udiat
from PIL import Image

from unet_transfer.data.imageio import read_mask, resize_mask
from unet_transfer.data.preprocess import fingerprint, preprocess, resize_image
from unet_transfer.data.readers import RawSample, read_busi, read_ecssd, read_udiat
from unet_transfer.errors import ConfigError, DatasetError


def test_busi_to_segmentation_set(tmp_path):
    samples = read_busi(write_busi(tmp_path), include_normal=True)
    data = preprocess(samples, 32, progress=False)
    assert data.images.shape == (7, 32, 32) and data.images.dtype == np.uint8
    assert data.masks.shape == (7, 32, 32) and data.masks.dtype == np.bool_
    assert data.ids == tuple(s.id for s in samples)
    assert data.labels == tuple(s.label for s in samples)
    assert not data.masks[[i for i, s in enumerate(samples) if s.label == "normal"]].any()


def test_two_masks_are_merged(tmp_path):
    samples = {s.id: s for s in read_busi(write_busi(tmp_path))}
    two = samples["benign (2)"]
    data = preprocess([two], 30, progress=False)
    expected = resize_mask(read_mask(two.masks), (30, 30))
    np.testing.assert_array_equal(data.masks[0], expected)
    first = resize_mask(read_mask(two.masks[0]), (30, 30))
    assert data.masks[0].sum() > first.sum() > 0


def test_no_labels_for_unlabelled_datasets(tmp_path):
    data = preprocess(read_udiat(write_udiat(tmp_path)), 16, progress=False)
    assert data.labels is None and len(data) == 3


def test_same_size_is_kept_exactly(tmp_path):
    write_image(tmp_path / "images" / "a.png", 1, size=(24, 24))
    write_mask(tmp_path / "masks" / "a.png", seed=1, size=(24, 24))
    sample = RawSample("a", tmp_path / "images" / "a.png", (tmp_path / "masks" / "a.png",), None)
    data = preprocess([sample], 24, progress=False)
    np.testing.assert_array_equal(data.images[0], np.asarray(Image.open(sample.image)))
    np.testing.assert_array_equal(data.masks[0], read_mask(sample.masks))


def test_resize_area_when_shrinking_linear_when_enlarging():
    image = np.kron(np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32), np.ones((4, 4)))
    image = image.astype(np.float32)
    np.testing.assert_allclose(resize_image(image, 2), [[0, 1], [1, 0]])  # block means
    checker = np.zeros((8, 8), dtype=np.float32)
    checker[::2, ::2] = checker[1::2, 1::2] = 1
    np.testing.assert_allclose(resize_image(checker, 4), np.full((4, 4), 0.5))  # no aliasing
    ramp = np.array([[0.0, 1.0]], dtype=np.float32).repeat(2, 0)
    up = resize_image(ramp, 4)
    assert up.shape == (4, 4) and 0 < up[0, 1] < up[0, 2] < 1  # interpolated, not repeated
    mixed = resize_image(np.ones((2, 20), dtype=np.float32), 8)  # grows one way, shrinks other
    np.testing.assert_allclose(mixed, 1.0, atol=1e-6)


def test_threads_give_the_same_result(tmp_path):
    samples = read_ecssd(write_ecssd(tmp_path, count=6))
    one = preprocess(samples, 20, progress=False, workers=1)
    two = preprocess(samples, 20, progress=False, workers=3)
    np.testing.assert_array_equal(one.images, two.images)
    np.testing.assert_array_equal(one.masks, two.masks)


def test_progress_bar_only_for_long_sets(tmp_path, capsys):
    samples = []
    for n in range(51):
        image = write_image(tmp_path / "i" / f"{n}.png", n, size=(8, 8))
        mask = write_mask(tmp_path / "m" / f"{n}.png", seed=n, size=(8, 8))
        samples.append(RawSample(str(n), image, (mask,), None))
    preprocess(samples[:10], 8, progress=True)
    assert "Preprocessing" not in capsys.readouterr().err
    preprocess(samples, 8, progress=False)
    assert "Preprocessing" not in capsys.readouterr().err
    preprocess(samples, 8, progress=True)
    assert "Preprocessing" in capsys.readouterr().err


# --- bad input ---------------------------------------------------------------------------------


def mismatched(tmp_path, mask_size=(20, 30)):
    image = write_image(tmp_path / "scan.png", 1)  # 40x30
    mask = write_mask(tmp_path / "scan_mask.png", seed=1, size=mask_size)
    return RawSample("scan", image, (mask,), None)


def test_size_mismatch_error_names_files_sizes_and_fix(tmp_path):
    with pytest.raises(DatasetError) as e:
        preprocess([mismatched(tmp_path)], 16, progress=False)
    message = str(e.value)
    assert "scan.png" in message and "scan_mask.png" in message
    assert "40x30" in message and "30x20" in message
    assert "on_size_mismatch=resize" in message


def test_size_mismatch_resize(tmp_path):
    sample = mismatched(tmp_path, mask_size=(60, 80))  # same aspect, twice the size
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = preprocess([sample], 16, on_size_mismatch="resize", progress=False)
    expected = resize_mask(read_mask(sample.masks), (16, 16))
    assert (data.masks[0] != expected).mean() < 0.05


def test_resize_warns_when_aspect_differs(tmp_path):
    sample = mismatched(tmp_path, mask_size=(40, 30))  # transposed
    with pytest.warns(UserWarning, match="scan_mask.png"):
        preprocess([sample], 16, on_size_mismatch="resize", progress=False)


def test_non_binary_mask_error_and_threshold(tmp_path):
    image = write_image(tmp_path / "a.png", 1)
    soft = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (30, 1))
    Image.fromarray(soft).save(tmp_path / "soft_mask.png")
    sample = RawSample("a", image, (tmp_path / "soft_mask.png",), None)
    with pytest.raises(DatasetError, match="soft_mask.png.*mask_threshold"):
        preprocess([sample], 16, progress=False)
    data = preprocess([sample], 40, mask_threshold=0.5, progress=False)
    assert data.masks[0, :, :19].sum() == 0 and data.masks[0, :, 21:].all()


def test_unreadable_image_names_file(tmp_path):
    samples = read_udiat(write_udiat(tmp_path))
    samples[1].image.write_bytes(samples[1].image.read_bytes()[:60])
    with pytest.raises(DatasetError, match="000002.png"):
        preprocess(samples, 16, progress=False)


def test_empty_and_bad_settings(tmp_path):
    with pytest.raises(DatasetError, match="no samples"):
        preprocess([], 16)
    samples = read_udiat(write_udiat(tmp_path, count=1))
    with pytest.raises(ConfigError, match="resize"):
        preprocess(samples, 16, on_size_mismatch="stretch")
    with pytest.raises(ConfigError, match="image_size"):
        preprocess(samples, 0)
    with pytest.raises(ConfigError, match="mask_threshold"):
        preprocess(samples, 16, mask_threshold=2)


# --- fingerprint -------------------------------------------------------------------------------


def test_fingerprint_follows_files_and_settings(tmp_path):
    root = write_udiat(tmp_path / "a")
    samples = read_udiat(root)
    key = fingerprint(samples, image_size=256)
    assert len(key) == 64 and key == fingerprint(read_udiat(root), image_size=256)
    assert fingerprint(samples, image_size=128) != key
    assert fingerprint(samples, image_size=256, mask_threshold=0.5) != key
    assert fingerprint(samples[:2], image_size=256) != key

    shutil.copytree(root, tmp_path / "b")  # copy2: same sizes and mtimes
    assert fingerprint(read_udiat(tmp_path / "b"), image_size=256) == key

    mask = samples[0].masks[0]
    stat = os.stat(mask)
    write_mask(mask, seed=77)  # new content
    os.utime(mask, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert fingerprint(samples, image_size=256) != key


def test_a_cache_made_by_an_older_decoder_is_not_reused(tmp_path, monkeypatch):
    """Reading images as viewers show them (EXIF orientation) changed what a file decodes to: a cache
    made before that must not be read as if it were the same."""
    from unet_transfer.data import preprocess

    samples = read_udiat(write_udiat(tmp_path / "a"))
    key = fingerprint(samples, image_size=256)
    monkeypatch.setattr(preprocess, "DECODER_VERSION", preprocess.DECODER_VERSION - 1)
    assert fingerprint(samples, image_size=256) != key


def test_fingerprint_follows_mtime_alone(tmp_path):
    samples = read_udiat(write_udiat(tmp_path))
    key = fingerprint(samples, image_size=64)
    stat = os.stat(samples[2].image)
    os.utime(samples[2].image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert fingerprint(samples, image_size=64) != key


def test_fingerprint_missing_file(tmp_path):
    samples = read_udiat(write_udiat(tmp_path))
    samples[0].masks[0].unlink()
    with pytest.raises(DatasetError, match="000001.png"):
        fingerprint(samples)
