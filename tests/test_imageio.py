"""Decoding images and masks of every supported format into the project's grey form."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from unet_transfer.data.imageio import read_grey, read_mask
from unet_transfer.errors import DatasetError

RNG = np.random.default_rng(0)
GREY = RNG.integers(0, 256, size=(30, 40), dtype=np.uint8)
RGB = RNG.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float64) @ [0.299, 0.587, 0.114]) / 255


def write_dicom(path, pixels, photometric="MONOCHROME2", slope=None, intercept=None):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = str(slope), str(intercept)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# --- images ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".gif"])
def test_8bit_grey_is_divided_by_255(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    Image.fromarray(GREY).save(path)
    out = read_grey(path)
    assert out.dtype == np.float32 and out.shape == (30, 40)
    np.testing.assert_allclose(out, GREY / 255, atol=1e-6)


def test_8bit_is_not_stretched(tmp_path):
    dim = np.full((30, 40), 60, dtype=np.uint8)
    dim[0, 0] = 80
    Image.fromarray(dim).save(tmp_path / "a.png")
    out = read_grey(tmp_path / "a.png")
    assert out.max() == pytest.approx(80 / 255) and out.min() == pytest.approx(60 / 255)


def test_jpeg_uppercase_extension(tmp_path):
    path = tmp_path / "a.JPG"
    Image.fromarray(GREY).save(path, format="JPEG", quality=100)
    assert np.abs(read_grey(path) - GREY / 255).mean() < 0.02


def test_rgb_becomes_luminance(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    np.testing.assert_allclose(read_grey(tmp_path / "a.png"), luminance(RGB), atol=1 / 255 + 1e-6)


def test_rgb_with_grey_content_equals_grey(tmp_path):
    Image.fromarray(np.stack([GREY] * 3, -1)).save(tmp_path / "a.png")
    np.testing.assert_allclose(read_grey(tmp_path / "a.png"), GREY / 255, atol=1e-6)


def test_rgba_alpha_is_ignored(tmp_path):
    alpha = RNG.integers(0, 256, size=(30, 40, 1), dtype=np.uint8)
    Image.fromarray(np.concatenate([RGB, alpha], -1)).save(tmp_path / "a.png")
    Image.fromarray(RGB).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_grey(tmp_path / "a.png"), read_grey(tmp_path / "b.png"))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_is_scaled_by_its_range(tmp_path, suffix):
    pixels = np.linspace(100, 4000, 30 * 40).reshape(30, 40).astype(np.uint16)  # 12-bit data
    path = tmp_path / f"a{suffix}"
    Image.fromarray(pixels).save(path)
    out = read_grey(path)
    expected = (pixels.astype(np.float64) - 100) / 3900
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert out.min() == 0 and out.max() == pytest.approx(1)


def test_float_tiff_is_scaled_by_its_range(tmp_path):
    pixels = np.linspace(-500.0, 1500.0, 30 * 40).reshape(30, 40).astype(np.float32)
    Image.fromarray(pixels, mode="F").save(tmp_path / "a.tif")
    np.testing.assert_allclose(read_grey(tmp_path / "a.tif"), (pixels + 500) / 2000, atol=1e-6)


def test_gif_reads_the_first_frame(tmp_path):
    first = np.where(GREY > 127, 200, 50).astype(np.uint8)
    second = 255 - first
    frames = [Image.fromarray(f).convert("P") for f in (first, second)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    np.testing.assert_allclose(read_grey(tmp_path / "a.gif"), first / 255, atol=2 / 255)


def test_dicom_16bit_with_rescale(tmp_path):
    pixels = np.linspace(0, 1000, 30 * 40).reshape(30, 40).astype(np.uint16)
    path = write_dicom(tmp_path / "a.dcm", pixels, slope=-1, intercept=1000)  # negative: inverts
    out = read_grey(path)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 1 - pixels / 1000, atol=1e-6)


def test_dicom_monochrome1_is_inverted(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", GREY, photometric="MONOCHROME1")
    np.testing.assert_allclose(read_grey(path), 1 - GREY / 255, atol=1e-6)


def test_dicom_8bit_is_divided_by_255(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", GREY)
    np.testing.assert_allclose(read_grey(path), GREY / 255, atol=1e-6)


def test_truncated_png_names_file_and_fix(tmp_path):
    path = tmp_path / "broken scan.png"
    Image.fromarray(GREY).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError) as e:
        read_grey(path)
    assert "broken scan.png" in str(e.value) and "again" in str(e.value)


def test_truncated_jpeg_raises(tmp_path):
    path = tmp_path / "half.jpg"
    Image.fromarray(RGB).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="half.jpg"):
        read_grey(path)


@pytest.mark.parametrize("name", ["notes.png", "notes.dcm"])
def test_not_an_image_raises(tmp_path, name):
    path = tmp_path / name
    path.write_text("this is not an image")
    with pytest.raises(DatasetError, match=name.replace(".", r"\.")):
        read_grey(path)


def test_missing_file_raises(tmp_path):
    with pytest.raises(DatasetError, match="gone.png"):
        read_grey(tmp_path / "gone.png")


# --- masks -------------------------------------------------------------------------------------


def save(path, pixels):
    Image.fromarray(pixels).save(path)
    return path


MASK = np.zeros((30, 40), dtype=bool)
MASK[5:15, 10:30] = True


@pytest.mark.parametrize("value", [255, 1, 128])
def test_binary_mask_any_foreground_value(tmp_path, value):
    path = save(tmp_path / "m.png", MASK.astype(np.uint8) * value)
    out = read_mask(path)
    assert out.dtype == np.bool_
    np.testing.assert_array_equal(out, MASK)


def test_one_bit_and_rgba_masks(tmp_path):
    one_bit = Image.fromarray(MASK).convert("1")
    one_bit.save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "a.png"), MASK)
    rgba = np.zeros((30, 40, 4), dtype=np.uint8)
    rgba[MASK, :3] = 255
    rgba[..., 3] = 255
    np.testing.assert_array_equal(read_mask(save(tmp_path / "b.png", rgba)), MASK)


def test_empty_mask(tmp_path):
    path = save(tmp_path / "m.png", np.zeros((30, 40), dtype=np.uint8))
    assert not read_mask(path).any()
    assert not read_mask(path, threshold=0.5).any()


def test_masks_are_or_merged(tmp_path):
    other = np.zeros_like(MASK)
    other[20:25, 0:5] = True
    a = save(tmp_path / "a.png", MASK.astype(np.uint8) * 255)
    b = save(tmp_path / "b.png", other.astype(np.uint8) * 255)
    np.testing.assert_array_equal(read_mask([a, b]), MASK | other)


def test_masks_of_different_size_raise(tmp_path):
    a = save(tmp_path / "first.png", MASK.astype(np.uint8) * 255)
    b = save(tmp_path / "second.png", np.zeros((20, 40), dtype=np.uint8))
    with pytest.raises(DatasetError) as e:
        read_mask([a, b])
    message = str(e.value)
    assert "first.png" in message and "second.png" in message and "on_size_mismatch" in message


def test_soft_mask_raises_with_values_and_fix(tmp_path):
    soft = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (30, 1))
    path = save(tmp_path / "soft.png", soft)
    with pytest.raises(DatasetError) as e:
        read_mask(path)
    message = str(e.value)
    assert "soft.png" in message and "mask_threshold" in message and "PNG" in message
    assert "0, 6" in message  # the values seen
    out = read_mask(path, threshold=0.5)
    np.testing.assert_array_equal(out, soft >= 127.5)


def test_jpeg_mask_raises_unless_threshold(tmp_path):
    path = tmp_path / "m.jpg"
    Image.fromarray(MASK.astype(np.uint8) * 255).save(path, quality=75)
    with pytest.raises(DatasetError, match="m.jpg"):
        read_mask(path)
    out = read_mask(path, threshold=0.5)
    assert (out != MASK).mean() < 0.02


def test_near_binary_mask_splits_at_half(tmp_path):
    pixels = np.where(MASK, 253, 2).astype(np.uint8)
    pixels[0, 0], pixels[10, 20] = 0, 255  # background 0..2, foreground 253..255
    np.testing.assert_array_equal(read_mask(save(tmp_path / "m.png", pixels)), MASK)


def test_threshold_out_of_range(tmp_path):
    path = save(tmp_path / "m.png", MASK.astype(np.uint8) * 255)
    with pytest.raises(DatasetError, match="mask_threshold"):
        read_mask(path, threshold=1.5)


def test_resize_masks_to_a_shape(tmp_path):
    big = np.kron(MASK, np.ones((2, 2), dtype=bool))
    a = save(tmp_path / "a.png", MASK.astype(np.uint8) * 255)
    b = save(tmp_path / "b.png", big.astype(np.uint8) * 255)
    np.testing.assert_array_equal(read_mask([a, b], shape=(30, 40)), MASK)


# --- orientation and size limits -------------------------------------------------------------------


def exif_rotated(path, stored: np.ndarray, orientation: int = 6):
    """`stored` pixels tagged with an EXIF orientation (6: turn 90 degrees clockwise to show)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, exif=exif, **({"quality": 100} if path.suffix == ".jpg" else {}))
    return path


def test_exif_orientation_is_applied_as_viewers_show_the_image(tmp_path):
    stored = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (20, 1))  # dark left, bright right; 40x20
    out = read_grey(exif_rotated(tmp_path / "a.jpg", stored))
    assert out.shape == (40, 20)  # turned: 20 wide, 40 high
    shown = np.rot90(stored, k=-1) / 255  # 90 degrees clockwise: dark at the top, bright at the bottom
    assert np.abs(out - shown).max() < 0.05


def test_exif_orientation_applies_to_masks_too(tmp_path):
    stored = np.zeros((20, 40), dtype=np.uint8)
    stored[:, :10] = 255
    np.testing.assert_array_equal(read_mask(exif_rotated(tmp_path / "m.png", stored)), np.rot90(stored, k=-1) > 0)


def test_training_reads_an_exif_rotated_image_as_shown(tmp_path):
    """The training path (preprocess) goes through the same reader: a mask drawn on the shown
    picture fits its image, and the cached image is the turned one."""
    from unet_transfer.data.preprocess import preprocess, resize_image
    from unet_transfer.data.readers import RawSample

    stored = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (20, 1))
    path = exif_rotated(tmp_path / "a.jpg", stored)
    drawn = np.zeros((40, 20), dtype=np.uint8)
    drawn[:10] = 255
    Image.fromarray(drawn).save(tmp_path / "a_mask.png")
    data = preprocess([RawSample("a", path, (tmp_path / "a_mask.png",))], 16, progress=False)
    expected = np.clip(np.rint(resize_image(np.rot90(stored, k=-1) / 255, 16) * 255), 0, 255)
    assert np.abs(data.images[0].astype(float) - expected).max() <= 13


def test_an_image_over_the_pixel_limit_says_what_it_is_and_how_to_read_it(tmp_path, monkeypatch):
    path = save(tmp_path / "big.png", GREY)  # 1200 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    monkeypatch.delenv("UNET_TRANSFER_MAX_IMAGE_PIXELS", raising=False)
    with pytest.raises(DatasetError) as e:
        read_grey(path)
    message = str(e.value)
    assert "big.png" in message and "1200 pixels" in message and "UNET_TRANSFER_MAX_IMAGE_PIXELS" in message
    assert "damaged" not in message
    monkeypatch.setenv("UNET_TRANSFER_MAX_IMAGE_PIXELS", "2000")
    np.testing.assert_allclose(read_grey(path), GREY / 255, atol=1e-6)
    monkeypatch.setenv("UNET_TRANSFER_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(DatasetError, match="1000"):
        read_grey(path)
    monkeypatch.setenv("UNET_TRANSFER_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(DatasetError, match="UNET_TRANSFER_MAX_IMAGE_PIXELS='lots'"):
        read_grey(path)
