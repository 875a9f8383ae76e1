"""BUSI breast ultrasound: class folders with `<class> (N).png` and its `_mask*.png` beside it."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from unet_transfer.data.readers.common import (
    RawSample,
    check_on_missing,
    contents,
    finish,
    handle_missing,
    list_images,
    report_orphans,
    require_root,
)
from unet_transfer.errors import ConfigError, DatasetError

BUSI_FOLDER = "Dataset_BUSI_with_GT"
BUSI_CLASSES = ("benign", "malignant", "normal")
_BUSI_LAYOUT = (
    f"'<root>/{BUSI_FOLDER}/benign/benign (1).png' with its mask 'benign (1)_mask.png' (and "
    "'benign (1)_mask_1.png', ... for extra lesions) in the same folder, and likewise for "
    "'malignant/' and 'normal/'"
)
_BUSI_MASK = re.compile(r"^(?P<base>.*)_mask(?:_(?P<n>\d+))?$")


def _busi_root(root: Path) -> Path:
    if (root / BUSI_FOLDER).is_dir():
        return root / BUSI_FOLDER
    if any((root / c).is_dir() for c in BUSI_CLASSES):
        return root
    raise DatasetError(
        f"The BUSI dataset at '{root}' has neither a '{BUSI_FOLDER}' folder nor class folders "
        f"({', '.join(BUSI_CLASSES)}); it holds: {contents(root)}. Expected layout: "
        f"{_BUSI_LAYOUT}. Fix: point dataset.root=... at '{BUSI_FOLDER}' or the folder that "
        "contains it."
    )


def read_busi(
    root: str | os.PathLike,
    include_normal: bool = False,
    classes: Sequence[str] = BUSI_CLASSES,
    on_missing_mask: str = "error",
) -> list[RawSample]:
    """BUSI breast ultrasound (Al-Dhabyani et al. 2020): `<class>/<class> (N).png` + masks.

    `root` is the `Dataset_BUSI_with_GT` folder or the folder that contains it. Each image's
    masks `<class> (N)_mask.png`, `_mask_1.png`, `_mask_2.png`, ... are all listed in
    `RawSample.masks` (they are OR-merged when read). The label is the class folder; the id
    is the file name without extension, e.g. "benign (12)". "normal" images (empty masks) are
    left out unless `include_normal`, as in the paper's lesion-segmentation setting.
    """
    check_on_missing(on_missing_mask)
    base = _busi_root(require_root("busi", root, _BUSI_LAYOUT))
    wanted = [c for c in classes if include_normal or c != "normal"]
    if not wanted:
        raise ConfigError(
            f"read_busi: no class left to read from classes={list(classes)} with "
            "include_normal=False. Fix: list benign and/or malignant, or set "
            "dataset.include_normal=true."
        )
    samples: list[RawSample] = []
    missing: list[Path] = []
    for cls in wanted:
        folder = base / cls
        if not folder.is_dir():
            raise DatasetError(
                f"The BUSI dataset at '{base}' has no class folder '{cls}'; it holds: "
                f"{contents(base)}. Expected layout: {_BUSI_LAYOUT}. Fix: restore the folder, "
                "or leave the class out of dataset.classes."
            )
        images: list[Path] = []
        masks: dict[str, list[tuple[int, Path]]] = {}
        for path in list_images(folder):
            match = _BUSI_MASK.match(path.stem)
            if match:
                number = int(match["n"]) if match["n"] is not None else 0
                masks.setdefault(match["base"], []).append((number, path))
            else:
                images.append(path)
        for image in images:
            found = sorted(masks.get(image.stem, []))
            if not found:
                missing.append(image)
                continue
            samples.append(RawSample(image.stem, image, tuple(p for _, p in found), cls))
        claimed = {image.stem for image in images}
        report_orphans("busi", [path for base, found in masks.items() if base not in claimed for _, path in found], folder)
    handle_missing(
        "busi", missing, "a mask '<image name>_mask.png' beside each image", on_missing_mask
    )
    return finish("busi", samples, base, _BUSI_LAYOUT)
