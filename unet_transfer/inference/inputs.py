"""What predict reads: image files (one file, or a folder's images, not its sub-folders), each
with the mask files that score it, if any.

Masks come from a folder (`--masks DIR`: `<stem>.<ext>` or `<stem>_mask.<ext>`, any image
format) or from a dataset config (`--dataset busi`: the dataset's own reader pairs images and
masks, several masks of one image are OR-merged, `dataset.mask_threshold` applies).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unet_transfer.data.readers import IMAGE_EXTENSIONS, list_images
from unet_transfer.errors import ConfigError

MASK_SUFFIXES = ("", "_mask")  # <stem>.png or <stem>_mask.png in the masks folder


@dataclass(frozen=True)
class Item:
    """One image to segment; `name` is the stem its outputs are named after."""

    image: Path
    name: str
    masks: tuple[Path, ...] = ()


def image_files(source: Path) -> list[Path]:
    """A file as it is (the reader says if it is not an image), or a folder's image files by name."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise ConfigError(f"INPUT={str(source)!r}: no such file or folder. Give an image file or a folder of images.")
    found = list_images(source)
    if not found:
        raise ConfigError(f"INPUT={str(source)!r} holds no image file ({', '.join(sorted(IMAGE_EXTENSIONS))}; "
                          "sub-folders are not searched). Point INPUT at the folder that holds the images.")
    return found


def with_mask_folder(images: list[Path], mask_dir: Path | None) -> list[Item]:
    """Each image with its mask from `mask_dir` (by stem: `<stem>` or `<stem>_mask`), if any."""
    if mask_dir is None:
        return [Item(path, path.stem) for path in images]
    if not mask_dir.is_dir():
        raise ConfigError(f"--masks {str(mask_dir)!r}: no such folder. Give the folder that holds the masks "
                          "(<image name>.png or <image name>_mask.png).")
    by_stem: dict[str, Path] = {}
    for path in list_images(mask_dir):
        by_stem.setdefault(path.stem, path)  # sorted by name: x.png before x.tif, whichever is there
    suffixes = MASK_SUFFIXES
    if any(path.parent.resolve() == mask_dir.resolve() for path in images):  # masks beside their images
        images, suffixes = [path for path in images if not path.stem.endswith("_mask")], ("_mask",)
    items = []
    for path in images:
        mask = next((by_stem[path.stem + s] for s in suffixes if path.stem + s in by_stem), None)
        items.append(Item(path, path.stem, () if mask is None else (mask,)))
    return items


def from_dataset(name: str, root: Path, overrides: list[str]) -> tuple[list[Item], float | None]:
    """Images and masks as dataset `name`'s reader pairs them below `root`, and its mask threshold."""
    from hydra.errors import HydraException
    from hydra.utils import instantiate

    from unet_transfer.config import compose_config
    from unet_transfer.sources import ReaderSource

    try:
        cfg = compose_config([f"dataset={name}", f"dataset.root={root}", *(f"dataset.{o}" for o in overrides)])
    except HydraException as error:
        raise ConfigError(f"--dataset {name!r}: {str(error).splitlines()[0]} (the datasets are conf/dataset/*.yaml; "
                          "options are given as --dataset-option key=value).") from None
    source = instantiate(cfg.dataset)
    if not isinstance(source, ReaderSource):
        raise ConfigError(f"--dataset {name!r} is simulated, not files; write simulated images as files with "
                          "`python -m unet_transfer.simulate.folder OUT` and predict on OUT/images --masks OUT/masks.")
    return [Item(s.image, s.image.stem, tuple(s.masks)) for s in source.samples], source.mask_threshold
