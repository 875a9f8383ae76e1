"""The one in-memory form every dataset takes once preprocessed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from unet_transfer.errors import DatasetError


@dataclass(frozen=True)
class SegmentationSet:
    """A whole dataset at its training size.

    Images are grey uint8 (0..255 stands for [0, 1]) and masks bool, both (N, H, W): compact
    enough to cache and to hold in memory for every run of a sweep.
    """

    images: np.ndarray
    masks: np.ndarray
    ids: tuple[str, ...]
    labels: tuple[str, ...] | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)  # what looks wrong in the data (data/checks.py)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if n == 0:
            raise DatasetError("The dataset is empty: no image/mask pair was found.")
        if self.images.dtype != np.uint8 or self.images.ndim != 3:
            raise ValueError(f"images must be uint8 (N, H, W), got {self.images.dtype} {self.images.shape}")
        if self.masks.dtype != np.bool_ or self.masks.shape != self.images.shape:
            raise ValueError(f"masks must be bool with the images' shape {self.images.shape}, got {self.masks.dtype} {self.masks.shape}")
        if self.images.shape[0] != n or (self.labels is not None and len(self.labels) != n):
            raise ValueError("ids, labels, images and masks must have the same length")
        duplicates = sorted({i for i in self.ids if self.ids.count(i) > 1}) if len(set(self.ids)) != n else []
        if duplicates:
            raise DatasetError(
                f"Duplicate sample ids {duplicates[:5]}: every image needs a unique id. "
                "Rename the files or put them in one folder."
            )

    def __len__(self) -> int:
        return len(self.ids)

    def with_warnings(self, found) -> SegmentationSet:
        return SegmentationSet(self.images, self.masks, self.ids, self.labels, tuple(found))

    @staticmethod
    def from_float(images: np.ndarray, masks: np.ndarray, ids, labels=None) -> SegmentationSet:
        """Quantise [0, 1] float images (as simulators make them) to the stored uint8 form."""
        quantised = np.clip(np.rint(np.asarray(images, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
        return SegmentationSet(quantised, np.asarray(masks, dtype=bool), tuple(ids), None if labels is None else tuple(labels))
