"""Decode, grey, resize and quantise a list of `RawSample`s into one `SegmentationSet`.

Images are resized with area averaging along a side that shrinks and linear interpolation
along a side that grows (cv2 INTER_AREA / INTER_LINEAR), masks with nearest neighbour, both
to (image_size, image_size) without keeping the aspect ratio, as in the paper. Images are
then stored as uint8 (0..255 for [0, 1]).

`fingerprint` hashes what the result depends on, as the key of the preprocessing cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from unet_transfer.data.arrays import SegmentationSet
from unet_transfer.data.checks import check_sizes
from unet_transfer.data.digests import FileDigests
from unet_transfer.data.imageio import DECODER_VERSION, read_grey, read_mask, resize_mask
from unet_transfer.data.readers import RawSample
from unet_transfer.errors import ConfigError, DatasetError, DataWarning

# Bump when a change here changes the arrays preprocess makes from the same files.
PREPROCESS_VERSION = 1
ON_SIZE_MISMATCH = ("error", "resize")
PROGRESS_MIN = 50
ASPECT_TOLERANCE = 0.05  # resized masks whose aspect ratio differs more get a warning


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float32: area average along a shrinking side, linear along a growing one."""
    height, width = image.shape
    if (height, width) == (size, size):
        return image.astype(np.float32, copy=False)
    if height > size or width > size:
        shrunk = (min(width, size), min(height, size))
        image = cv2.resize(image, shrunk, interpolation=cv2.INTER_AREA)
    if image.shape != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return image


def quantise(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _one(
    sample: RawSample, image_size: int, on_size_mismatch: str, mask_threshold: float | None
) -> tuple[np.ndarray, np.ndarray, str | None, tuple[int, int]]:
    """(uint8 image, bool mask, note, original (height, width)) for one sample; note flags a
    distorting mask resize."""
    image = read_grey(sample.image)
    if not sample.masks:
        raise DatasetError(
            f"Sample '{sample.id}' ('{sample.image}') has no mask file. Fix: add its mask, or "
            "set dataset.on_missing_mask=skip to leave such images out."
        )
    merged: np.ndarray | None = None
    note = None
    for path in sample.masks:
        mask = read_mask(path, threshold=mask_threshold)
        if mask.shape != image.shape:
            (ih, iw), (mh, mw) = image.shape, mask.shape
            if on_size_mismatch == "error":
                raise DatasetError(
                    f"Image and mask sizes differ: '{sample.image}' is {iw}x{ih} but its mask "
                    f"'{path}' is {mw}x{mh} (width x height). Fix: export the mask again at the "
                    "image's size, or set dataset.on_size_mismatch=resize to resize each mask "
                    "to its image (nearest neighbour)."
                )
            if abs((mw / mh) / (iw / ih) - 1) > ASPECT_TOLERANCE:
                note = f"'{path}' ({mw}x{mh}) for '{sample.image}' ({iw}x{ih})"
            mask = resize_mask(mask, image.shape)
        merged = mask if merged is None else merged | mask
    assert merged is not None
    if merged.shape != (image_size, image_size):
        merged = resize_mask(merged, (image_size, image_size))
    return quantise(resize_image(image, image_size)), merged, note, image.shape


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def preprocess(
    samples: Sequence[RawSample],
    image_size: int,
    on_size_mismatch: str = "error",
    mask_threshold: float | None = None,
    progress: bool = True,
    workers: int | None = None,
    name: str = "dataset",
) -> SegmentationSet:
    """Decode every sample into a `SegmentationSet` of (image_size, image_size) arrays.

    `on_size_mismatch="error"` stops at an image whose mask has another size, naming both
    files; "resize" resizes such masks to the image (nearest neighbour), with one warning
    when the aspect ratios differ by more than 5% (e.g. a transposed mask). `mask_threshold`
    is passed to `read_mask` (None = strict binary check). A progress bar is shown when
    `progress` and there are more than 50 samples. Decoding runs on `workers` threads
    (default: up to 4, one per CPU); the result does not depend on it.
    """
    if on_size_mismatch not in ON_SIZE_MISMATCH:
        raise ConfigError(
            f"dataset.on_size_mismatch={on_size_mismatch!r} is not one of "
            f"{list(ON_SIZE_MISMATCH)}. Fix: use 'error' (stop) or 'resize' (resize each mask "
            "to its image)."
        )
    if not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ConfigError(
            f"dataset.image_size={image_size!r} must be a positive whole number of pixels, "
            "e.g. 256 (the paper's size)."
        )
    if mask_threshold is not None and not 0.0 < float(mask_threshold) <= 1.0:
        raise ConfigError(
            f"dataset.mask_threshold={mask_threshold!r} is out of range. Fix: use null (strict "
            "binary check) or a fraction in (0, 1], e.g. 0.5."
        )
    samples = list(samples)
    if not samples:
        raise DatasetError(
            "There are no samples to preprocess: the dataset reader found no image/mask pairs. "
            "Fix: check dataset.root and the dataset's folder settings."
        )
    size = int(image_size)
    n = len(samples)
    images = np.empty((n, size, size), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=bool)
    notes: list[str] = []
    sizes: list[tuple[int, int]] = []

    def work(sample: RawSample):
        return _one(sample, size, on_size_mismatch, mask_threshold)

    workers = _workers() if workers is None else max(1, int(workers))
    bar = None
    if progress and n > PROGRESS_MIN:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="Preprocessing images", unit="img", leave=False)
    try:
        if workers == 1:
            results = map(work, samples)
            executor = None
        else:
            executor = ThreadPoolExecutor(max_workers=workers)
            results = executor.map(work, samples)
        try:
            for i, (image, mask, note, original) in enumerate(results):
                images[i], masks[i] = image, mask
                sizes.append(original)
                if note:
                    notes.append(note)
                if bar is not None:
                    bar.update(1)
        finally:
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
    finally:
        if bar is not None:
            bar.close()
    if notes:
        shown = "; ".join(notes[:5]) + (f"; and {len(notes) - 5} more" if len(notes) > 5 else "")
        warnings.warn(
            f"{len(notes)} mask(s) were resized to an image of another aspect ratio (more than "
            f"5% apart), which distorts them: {shown}. Check that these masks belong to their "
            "images (a rotated or transposed export?).",
            DataWarning,
            stacklevel=2,
        )
    check_sizes(name, [s.id for s in samples], sizes, size)
    labels = None
    if any(s.label is not None for s in samples):
        labels = tuple("" if s.label is None else s.label for s in samples)
    return SegmentationSet(images, masks, tuple(s.id for s in samples), labels)


def fingerprint(samples: Sequence[RawSample], digests: FileDigests | None = None, **settings) -> str:
    """sha256 hex of every image and mask file's identity, content and the settings.

    Each file contributes (sample id, label, path relative to the files' common folder,
    size in bytes, mtime in ns, content digest), in sorted order, so a changed, added, removed
    or renamed file changes the key, also when its size and mtime were kept, while moving the
    whole dataset folder does not. `digests` reuses digests of unchanged files (data/digests.py).
    `settings` (e.g. image_size, mask_threshold, on_size_mismatch) are hashed as sorted JSON,
    with the preprocessing version.
    """
    files = [(s, p) for s in samples for p in (s.image, *s.masks)]
    if files:
        try:
            common = Path(os.path.commonpath([os.path.abspath(p) for _, p in files]))
        except ValueError:  # different drives
            common = Path("/")
    stats = []
    for sample, path in files:
        try:
            stats.append(os.stat(path))
        except OSError as e:
            raise DatasetError(
                f"Cannot read file '{path}' of sample '{sample.id}': {e}. Fix: restore it, or "
                "check that the dataset folder was not changed while reading it."
            ) from e
    try:
        contents = (digests or FileDigests()).digests((path, stat) for (_, path), stat in zip(files, stats, strict=True))
    except PermissionError as e:
        raise DatasetError(f"Cannot read '{e.filename}': permission denied. Fix: give your user read access to the "
                           "dataset's files (chmod -R u+rX <dataset folder>).") from None
    entries = []
    for (sample, path), stat, content in zip(files, stats, contents, strict=True):
        relative = os.path.relpath(os.path.abspath(path), common).replace(os.sep, "/")
        entries.append([sample.id, sample.label, relative, stat.st_size, stat.st_mtime_ns, content])
    entries.sort(key=lambda e: (e[0], "" if e[1] is None else e[1], e[2]))
    payload = {"version": PREPROCESS_VERSION, "decoder": DECODER_VERSION, "files": entries, "settings": settings}
    blob = json.dumps(payload, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
