"""Decode one image or mask file into the project's grey form.

Images become float32 (H, W) in [0, 1]; masks become bool (H, W). Every supported format goes
through the same rules, so a dataset gives the same arrays whatever it was exported as:

- PNG, JPEG, BMP, TIFF, GIF (first frame) through Pillow; DICOM through pydicom.
- An EXIF orientation tag is applied (Pillow's `ImageOps.exif_transpose`): a file is read as
  image viewers show it, so a mask drawn on the shown picture fits it, in training and predict.
- Colour (RGB, RGBA, palette, CMYK, ...) becomes grey by ITU-R BT.601 luminance
  (0.299 R + 0.587 G + 0.114 B, as Pillow's "L" conversion); alpha is ignored.
- 8-bit data is divided by 255: its range is the display range, and ultrasound brightness
  means something, so it is not stretched.
- 16-bit, 32-bit integer, float and rescaled DICOM data are scaled by the image's own range
  (min..max -> 0..1). Such files rarely use their type's full range: a 12-bit X-ray stored
  in 16 bits only reaches 4095, so dividing by 65535 would give an almost black image; float
  and DICOM values are in arbitrary units (e.g. Hounsfield units, negative). The range is
  the only scale they all have. A constant image becomes all zeros.

Any file that cannot be decoded (missing, truncated, not an image, unsupported compression)
raises `ImageReadError` (a `DatasetError`) naming the file and the fix; its `skipped()` says the
same without training's advice, for predict. An image of more pixels than Pillow's limit against
decompression bombs (about 179 million) is refused as such; if the file is trusted, the
environment variable UNET_TRANSFER_MAX_IMAGE_PIXELS sets another limit (0: none).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from unet_transfer.errors import DatasetError

# How files are decoded, part of every cache key: a cache made by an older decoder is remade
# (2: EXIF orientation applied, so images and masks read as viewers show them).
DECODER_VERSION = 2

DICOM_SUFFIXES = (".dcm", ".dicom")

# Values within this fraction of the mask's maximum from 0 or from the maximum count as
# "near 0 / near max" in the strict binary check of masks.
NEAR_BINARY_TOLERANCE = 0.1

_NATIVE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
PIXEL_LIMIT_VARIABLE = "UNET_TRANSFER_MAX_IMAGE_PIXELS"  # overrides Pillow's limit when set (0: none)
_EXIF_ORIENTATION = 0x0112


class ImageReadError(DatasetError):
    """A file that cannot be read. The message ends with training's fix (which may say to leave
    the sample out); `skipped()` is the same news for predict, which skips the image."""

    def __init__(self, what: str, fix: str, predict_fix: str | None = None):
        super().__init__(f"{what} Fix: {fix}")
        self.what, self.predict_fix = what, fix if predict_fix is None else predict_fix

    def skipped(self) -> str:
        fix = f" Fix: {self.predict_fix}" if self.predict_fix else ""
        return f"{self.what}{fix} The image is skipped (listed at the end)."


def _unreadable(path: Path, reason: object) -> ImageReadError:
    return ImageReadError(
        f"Cannot read image file '{path}': {reason}. The file is damaged, truncated or not an "
        "image in a supported format (PNG, JPEG, BMP, TIFF, GIF, DICOM).",
        "download or export it again (PNG is the safest), or remove it together with its mask so the sample is "
        "left out.", "download or export it again (PNG is the safest).")


def _missing(path: Path) -> ImageReadError:
    return ImageReadError(f"Image file '{path}' does not exist.", "check dataset.root and the folder names, or "
                          "restore the file.", "restore the file, or check the path.")


def _not_permitted(path: Path) -> ImageReadError:
    return ImageReadError(f"Cannot read image file '{path}': permission denied.", f"give your user read access "
                          f"(chmod u+r '{path}'), or copy the data somewhere readable.")


def _pixel_limit() -> int | None:
    """The user's limit from UNET_TRANSFER_MAX_IMAGE_PIXELS (0: none), or None to keep Pillow's."""
    value = os.environ.get(PIXEL_LIMIT_VARIABLE, "").strip()
    if not value:
        return None
    try:
        limit = int(value)
        if limit < 0:
            raise ValueError
    except ValueError:
        raise ImageReadError(f"{PIXEL_LIMIT_VARIABLE}={value!r} is not a number of pixels.",
                             f"set it to a whole number of pixels (e.g. {PIXEL_LIMIT_VARIABLE}=400000000), "
                             "0 for no limit, or unset it to keep Pillow's limit.") from None
    return limit


def _too_many_pixels(path: Path, pixels: str, limit: int, how: str) -> ImageReadError:
    return ImageReadError(
        f"Image file '{path}' has {pixels} pixels, more than {how} ({limit} pixels), which guards against "
        "decompression bombs (small files that decode to huge images); it is not read.",
        f"if you trust the file, set the environment variable {PIXEL_LIMIT_VARIABLE} to a larger number of "
        "pixels (0: no limit) and run again; otherwise remove it together with its mask so the sample is left out.",
        f"if you trust the file, set the environment variable {PIXEL_LIMIT_VARIABLE} to a larger number of "
        "pixels (0: no limit) and run again.")


def _open(path: Path) -> Image.Image:
    """Image.open, with the user's pixel limit in place of Pillow's when one is set."""
    limit = _pixel_limit()
    if limit is None:
        try:
            return Image.open(path)
        except Image.DecompressionBombError as e:
            found = re.search(r"\((\d+) pixels\)", str(e))
            raise _too_many_pixels(path, found[1] if found else "too many", 2 * int(Image.MAX_IMAGE_PIXELS or 0),
                                   "Pillow's limit (twice PIL.Image.MAX_IMAGE_PIXELS)") from e
    Image.MAX_IMAGE_PIXELS = None  # the user's limit replaces Pillow's for this process; checked below
    im = Image.open(path)
    width, height = im.size
    if limit and width * height > limit:
        im.close()
        raise _too_many_pixels(path, str(width * height), limit, PIXEL_LIMIT_VARIABLE)
    return im


def _as_shown(im: Image.Image) -> Image.Image:
    """The picture as viewers show it: turned/mirrored by its EXIF orientation tag, if any."""
    if im.getexif().get(_EXIF_ORIENTATION, 1) in (1, None):
        return im
    return ImageOps.exif_transpose(im)


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_pil(path: Path) -> np.ndarray:
    """The grey pixel array as stored: uint8 for 8-bit and colour data, else its own type."""
    try:
        with _open(path) as opened:
            opened.seek(0)  # first frame of a GIF / multi-page TIFF
            opened.load()
            im = _as_shown(opened)
            mode = im.mode
            if mode in _NATIVE_MODES:
                return np.array(im)
            if mode in ("1", "L"):
                return np.array(im.convert("L"))
            if mode in ("LA", "La"):
                return np.array(im.getchannel(0))
            # Colour (RGB, RGBA, P, CMYK, YCbCr, ...) and rare modes (LAB, HSV): luminance via RGB.
            return np.array(im.convert("RGB").convert("L"))
    except FileNotFoundError as e:
        raise _missing(path) from e
    except PermissionError as e:
        raise _not_permitted(path) from e
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise _unreadable(path, e) from e


def _read_dicom(path: Path) -> np.ndarray:
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError as e:  # pragma: no cover - pydicom is a dependency
        raise DatasetError(
            f"'{path}' is a DICOM file but pydicom is not installed. Fix: pip install pydicom."
        ) from e
    try:
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            ds = pydicom.dcmread(path, force=True)  # no preamble: older files
        pixels = ds.pixel_array
    except FileNotFoundError as e:
        raise _missing(path) from e
    except PermissionError as e:
        raise _not_permitted(path) from e
    except Exception as e:  # pydicom raises many kinds for bad or compressed data
        raise DatasetError(
            f"Cannot read DICOM file '{path}': {type(e).__name__}: {e}. Fix: if it uses a "
            "compressed transfer syntax, install a decoder (pip install pylibjpeg "
            "pylibjpeg-libjpeg) or convert it to an uncompressed DICOM or PNG; if it is damaged, "
            "export it again or remove it together with its mask."
        ) from e
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    if samples > 1 and pixels.ndim == 3:
        grey = _luminance(pixels[..., :3])
        if pixels.dtype == np.uint8:  # 8-bit colour keeps the 8-bit rule (/255)
            grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        pixels = grey
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if slope != 1 or intercept != 0:
        pixels = pixels.astype(np.float64) * slope + intercept
    grey = _to_unit(pixels)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        grey = 1.0 - grey  # MONOCHROME1: the lowest value is displayed white
    return grey


def _luminance(rgb: np.ndarray) -> np.ndarray:
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float64)
    return rgb.astype(np.float64) @ weights


def _to_unit(pixels: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]: 8-bit by /255, everything else by its own min..max."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) * np.float32(1 / 255)
    if pixels.dtype == np.bool_:
        return pixels.astype(np.float32)
    values = pixels.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():  # NaN / inf pixels (float TIFF): scale by the finite ones, fill low
        if not finite.any():
            return np.zeros(values.shape, dtype=np.float32)
        low, high = float(values[finite].min()), float(values[finite].max())
        values = np.where(finite, values, low)
    else:
        low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def read_raw(path: str | os.PathLike) -> np.ndarray:
    """The file's grey pixel values before any scaling (uint8 for 8-bit and colour files).

    DICOM files come back already scaled to [0, 1] (rescale slope/intercept applied,
    MONOCHROME1 inverted), as their raw values have no fixed meaning.
    """
    path = Path(path)
    if _is_dicom(path):
        return _read_dicom(path)
    pixels = _read_pil(path)
    if pixels.ndim != 2:  # defensive: an odd mode that kept channels
        pixels = _luminance(pixels[..., :3]) if pixels.shape[-1] >= 3 else pixels[..., 0]
    return pixels


def read_grey(path: str | os.PathLike) -> np.ndarray:
    """The image at `path` as float32 (H, W) in [0, 1] (see the module docstring for the rules)."""
    path = Path(path)
    if _is_dicom(path):
        return _read_dicom(path)
    return _to_unit(read_raw(path))


def _full_scale(raw: np.ndarray) -> float:
    """What `threshold` is a fraction of: 255 for 8-bit, 1.0 for [0, 1] floats, else the maximum."""
    if raw.dtype == np.uint8:
        return 255.0
    if raw.dtype == np.bool_:
        return 1.0
    high = float(np.max(raw)) if raw.size else 0.0
    if np.issubdtype(raw.dtype, np.floating) and 0.0 <= float(np.min(raw)) and high <= 1.0:
        return 1.0
    return high


def _binarise(path: Path, raw: np.ndarray, threshold: float | None, setting: str) -> np.ndarray:
    if threshold is not None:
        scale = _full_scale(raw)
        if scale <= 0:
            return np.zeros(raw.shape, dtype=bool)
        return raw >= threshold * scale
    if raw.size == 0:
        return raw > 0
    # Fast path for the usual mask (only 0 and one other value): no sort of every pixel.
    top = raw.max()
    if top <= 0 or not np.any((raw != 0) & (raw != top)):
        return raw > 0
    values = np.unique(raw)
    high = float(values[-1])
    tolerance = NEAR_BINARY_TOLERANCE * high
    near = (np.abs(values) <= tolerance) | (np.abs(values - high) <= tolerance)
    if near.all():
        # Only noise around 0 and around the maximum (e.g. a lossless re-save with slight
        # ringing): split at half the maximum, so background noise does not become foreground.
        return raw > high / 2
    shown = ", ".join(f"{float(v):g}" for v in values[:8])
    if values.size > 8:
        shown += f", ... ({values.size} distinct values, max {high:g})"
    raise DatasetError(
        f"Mask file '{path}' is not binary: it holds the values {shown}, including values far "
        "from both 0 and its maximum (a JPEG-compressed mask, a soft or probability map, or a "
        "label map). Fix: export the masks again as PNG with only 0 and 255, or set "
        f"{setting} to a fraction in (0, 1] of full scale (255 for 8-bit files) "
        f"at which to binarise, e.g. {setting}{'=' if setting.startswith('dataset.') else ' '}0.5."
    )


def read_mask(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    threshold: float | None = None,
    shape: tuple[int, int] | None = None,
    setting: str = "dataset.mask_threshold",
    resize_fix: str | None = "set dataset.on_size_mismatch=resize to resize every mask to its image (nearest neighbour)",
) -> np.ndarray:
    """One bool (H, W) mask from one or several mask files of the same sample, OR-merged.

    Each file is read grey. With `threshold=None` (strict) a file must be binary: values 0
    and one other value become False/True (the foreground is everything > 0); a file whose
    values sit only near 0 and near its maximum is split at half its maximum; any other file
    raises `DatasetError` naming it, the values seen and the fix. With `threshold` a float in
    (0, 1], a pixel is foreground when its value is at least that fraction of full scale
    (255 for 8-bit files, 1.0 for float files in [0, 1], else the file's maximum); no check.

    With `shape=(H, W)` every mask is resized to it (nearest) before merging; otherwise all
    masks of the sample must have the same size.

    `setting` and `resize_fix` are how messages name the caller's options (predict has its own).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise DatasetError("A sample has no mask file. Fix: give every image at least one mask.")
    if threshold is not None and not 0.0 < float(threshold) <= 1.0:
        raise DatasetError(
            f"{setting}={threshold!r} is out of range. Fix: use null (strict "
            "binary check) or a fraction in (0, 1], e.g. 0.5."
        )
    merged: np.ndarray | None = None
    first: Path | None = None
    for path in paths:
        raw = read_raw(path)
        mask = _binarise(path, raw, threshold, setting)
        if shape is not None and mask.shape != tuple(shape):
            mask = resize_mask(mask, shape)
        if merged is None:
            merged, first = mask, path
        elif mask.shape != merged.shape:
            raise DatasetError(
                f"Masks of one sample differ in size: '{first}' is "
                f"{merged.shape[1]}x{merged.shape[0]} but '{path}' is "
                f"{mask.shape[1]}x{mask.shape[0]} (width x height). Fix: export the masks again "
                "at the image's size" + (f", or {resize_fix}." if resize_fix else ".")
            )
        else:
            merged |= mask
    assert merged is not None
    return merged


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to (H, W), sampling at pixel centres."""
    flag = getattr(cv2, "INTER_NEAREST_EXACT", cv2.INTER_NEAREST)
    height, width = int(shape[0]), int(shape[1])
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=flag) > 0
