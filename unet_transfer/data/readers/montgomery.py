"""Montgomery County chest X-rays: `CXR_png/` with left and right lung masks in two folders."""

from __future__ import annotations

import os

from unet_transfer.data.readers.common import (
    RawSample,
    finish,
    pair_dirs,
    require_root,
    require_subdir,
)

MONTGOMERY_FOLDER = "MontgomerySet"
_MONTGOMERY_LAYOUT = (
    "'<root>/CXR_png/MCUCXR_0001_0.png' with the masks 'ManualMask/leftMask/MCUCXR_0001_0.png' "
    "and 'ManualMask/rightMask/MCUCXR_0001_0.png' (as in the distributed 'MontgomerySet' "
    "folder)"
)


def read_montgomery(
    root: str | os.PathLike,
    image_dir: str = "CXR_png",
    left_dir: str = "ManualMask/leftMask",
    right_dir: str = "ManualMask/rightMask",
    on_missing_mask: str = "error",
) -> list[RawSample]:
    """Montgomery County chest X-rays (Jaeger et al. 2014): lungs = left mask OR right mask.

    `root` is the `MontgomerySet` folder or the folder that contains it. Each sample's masks
    are (left, right); both must exist.
    """
    base = require_root("montgomery", root, _MONTGOMERY_LAYOUT)
    if not (base / image_dir).is_dir() and (base / MONTGOMERY_FOLDER).is_dir():
        base = base / MONTGOMERY_FOLDER
    images = require_subdir("montgomery", base, image_dir, "image_dir", _MONTGOMERY_LAYOUT)
    left = require_subdir("montgomery", base, left_dir, "left_dir", _MONTGOMERY_LAYOUT)
    right = require_subdir("montgomery", base, right_dir, "right_dir", _MONTGOMERY_LAYOUT)
    samples = pair_dirs("montgomery", images, [left, right], on_missing_mask=on_missing_mask)
    return finish("montgomery", samples, images, _MONTGOMERY_LAYOUT)
