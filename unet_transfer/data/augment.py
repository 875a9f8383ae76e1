"""The paper's augmentation: small shift, rotation, shear, zoom and horizontal flip.

Image and mask always share one geometry (mask resampled with nearest neighbour). Two modes:
"online" draws new transforms every epoch; "offline" expands a training fold once to a fixed
total including the originals, as the paper did (163 -> 600). Held-out images never pass here.
"""

from __future__ import annotations

import os

import numpy as np

from unet_transfer.errors import ConfigError

MODES = ("none", "online", "offline")


def paper_transform(
    shift: float = 0.05, rotate: float = 5.0, shear: float = 5.0, zoom: float = 0.05, hflip: float = 0.5,
    seed: int | None = None,
):
    """An albumentations Compose: shift/zoom are fractions of the image size, rotate/shear degrees,
    hflip a probability."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # 1.4.x asks the network at import
    import albumentations as A
    import cv2

    return A.Compose(
        [
            A.Affine(
                translate_percent=(-shift, shift), rotate=(-rotate, rotate), shear=(-shear, shear),
                scale=(1 - zoom, 1 + zoom), interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST, border_mode=cv2.BORDER_REPLICATE, p=1.0,
            ),
            A.HorizontalFlip(p=hflip),
        ],
        seed=seed,
    )


def apply(transform, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = transform(image=image, mask=mask.astype(np.uint8))
    return out["image"], out["mask"].astype(bool)


def expand_offline(
    images: np.ndarray, masks: np.ndarray, total: int, transform
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Originals plus augmented copies up to `total` images; also returns each image's source row.

    Copies cycle through the originals so each is augmented about equally often.
    """
    n = len(images)
    if total < n:
        raise ConfigError(f"augment.total={total} is smaller than the {n} training images; set it to >= {n} or use augment=online.")
    source = np.concatenate([np.arange(n), np.arange(total - n) % n])
    out_images = np.empty((total, *images.shape[1:]), dtype=images.dtype)
    out_masks = np.empty((total, *masks.shape[1:]), dtype=bool)
    out_images[:n], out_masks[:n] = images, masks
    for row in range(n, total):
        out_images[row], out_masks[row] = apply(transform, images[source[row]], masks[source[row]])
    return out_images, out_masks, source
