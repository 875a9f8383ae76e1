"""Layouts of one image folder and one mask folder with matching file names: UDIAT, ECSSD,
XPIE and any folder pair of your own (`dataset=folder`)."""

from __future__ import annotations

import os

from unet_transfer.data.readers.common import (
    RawSample,
    check_on_missing,
    finish,
    pair_dirs,
    require_root,
    require_subdir,
)


def read_image_and_mask_dirs(
    name: str,
    layout: str,
    root: str | os.PathLike,
    image_dir: str,
    mask_dir: str,
    on_missing_mask: str,
    container: str | None = None,
) -> list[RawSample]:
    """`<root>/<image_dir>/x.*` with the mask `<root>/<mask_dir>/x.*` (UDIAT, ECSSD, XPIE).

    `container`: a folder name the distribution wraps the data in, accepted below `root`.
    """
    base = require_root(name, root, layout)
    if container and not (base / image_dir).is_dir() and (base / container).is_dir():
        base = base / container
    images = require_subdir(name, base, image_dir, "image_dir", layout)
    masks = require_subdir(name, base, mask_dir, "mask_dir", layout)
    samples = pair_dirs(name, images, [masks], on_missing_mask=on_missing_mask)
    return finish(name, samples, images, layout)


_UDIAT_LAYOUT = "'<root>/original/000001.png' with the mask '<root>/GT/000001.png'"


def read_udiat(
    root: str | os.PathLike,
    image_dir: str = "original",
    mask_dir: str = "GT",
    on_missing_mask: str = "error",
) -> list[RawSample]:
    """UDIAT breast ultrasound, "Dataset B" (Yap et al. 2017; the paper's 163 images).

    `<root>/<image_dir>/000001.png` with the mask of the same name in `<root>/<mask_dir>/`.
    """
    return read_image_and_mask_dirs("udiat", _UDIAT_LAYOUT, root, image_dir, mask_dir, on_missing_mask)


_ECSSD_LAYOUT = "'<root>/images/0001.jpg' with the mask '<root>/ground_truth_mask/0001.png'"


def read_ecssd(
    root: str | os.PathLike,
    image_dir: str = "images",
    mask_dir: str = "ground_truth_mask",
    on_missing_mask: str = "error",
) -> list[RawSample]:
    """ECSSD salient objects (Yan et al. 2013): `images/NNNN.jpg` + `ground_truth_mask/NNNN.png`."""
    return read_image_and_mask_dirs("ecssd", _ECSSD_LAYOUT, root, image_dir, mask_dir, on_missing_mask)


XPIE_FOLDER = "XPIE"
_XPIE_LAYOUT = "'<root>/img/<name>.jpg' with the mask '<root>/gt/<name>.png'"


def read_xpie(
    root: str | os.PathLike,
    image_dir: str = "img",
    mask_dir: str = "gt",
    on_missing_mask: str = "error",
) -> list[RawSample]:
    """XPIE salient objects (Xia et al., CVPR 2017; the paper's 10,000 pretraining images).

    The defaults `img/` (JPEG photos) and `gt/` (binary PNG masks of the same name) are our
    best knowledge of the layout as distributed; no copy was available to check them against,
    so both folder names are settings (dataset.image_dir, dataset.mask_dir). `root` may also
    be the folder that contains an `XPIE` folder.
    """
    return read_image_and_mask_dirs(
        "xpie", _XPIE_LAYOUT, root, image_dir, mask_dir, on_missing_mask, container=XPIE_FOLDER
    )


def read_folder(
    root: str | os.PathLike,
    images: str = "images",
    masks: str = "masks",
    mask_suffix: str = "",
    on_missing_mask: str = "error",
) -> list[RawSample]:
    """Any dataset as `<root>/<images>/<name>.<ext>` + `<root>/<masks>/<name><mask_suffix>.<ext>`.

    The mask's extension may differ from the image's (e.g. `a.jpg` + `a_mask.png`). `images`
    and `masks` may name the same folder when `mask_suffix` is set (files ending in the suffix
    are then masks). `on_missing_mask="skip"` leaves images without a mask out, with one
    warning listing them; "error" stops. The id is the image name without extension.
    """
    layout = f"'<root>/{images}/<name>.png' with the mask '<root>/{masks}/<name>{mask_suffix}.png'"
    check_on_missing(on_missing_mask)
    base = require_root("folder", root, layout)
    image_dir = require_subdir("folder", base, images, "images", layout)
    mask_dir = require_subdir("folder", base, masks, "masks", layout)
    samples = pair_dirs(
        "folder", image_dir, [mask_dir], mask_suffix=mask_suffix, on_missing_mask=on_missing_mask
    )
    return finish("folder", samples, image_dir, layout)
