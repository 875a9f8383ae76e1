"""What predict reads: image files (one file, or a folder's images, not its sub-folders), each
with the mask files that score it, if any.

A folder's listing leaves out what is not an image to segment: masks beside their images
(`<stem>_mask.png`, `<stem>_mask_1.png`, ... next to `<stem>.png`, as BUSI lays them out),
predict's own outputs beside their images (`<stem>_overlay.png`, `<stem>_prob.png`), and every
file a former predict run wrote into that folder (its manifest, outputs.MANIFEST, lists them).

Masks come from a folder (`--masks DIR`: `<stem>_mask.<ext>` and the extra lesions
`<stem>_mask_1.<ext>`, ... OR-merged as training merges them, else `<stem>.<ext>`; any image
format; an image is never its own mask) or from a dataset config (`--dataset busi`: the
dataset's own reader pairs images and masks, several masks of one image are OR-merged,
`dataset.mask_threshold` applies).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from unet_transfer.data.readers import IMAGE_EXTENSIONS, list_images
from unet_transfer.errors import ConfigError
from unet_transfer.inference.outputs import written_by_predict

# `<base>_mask`, `<base>_mask_<n>`, `<base>_overlay`, `<base>_prob`: a mask or predict's output of `<base>`
BESIDE = re.compile(r"^(?P<base>.+?)_(?P<kind>mask(?:_(?P<n>\d+))?|overlay|prob)$")


@dataclass(frozen=True)
class Item:
    """One image to segment; `name` is the stem its outputs are named after."""

    image: Path
    name: str
    masks: tuple[Path, ...] = ()


def is_beside(path: Path, stems: set[str]) -> bool:
    """A mask or a predict output of another image of the same folder (`stems`)."""
    match = BESIDE.match(path.stem)
    return bool(match) and match["base"] in stems


def listed_inputs(source: Path) -> tuple[list[Path], list[Path]]:
    """(images to segment, files left out): a file as it is (the reader says if it is not an
    image), or a folder's image files by name without masks and outputs beside their images."""
    if source.is_file():
        return [source], []
    if not source.is_dir():
        raise ConfigError(f"INPUT={str(source)!r}: no such file or folder. Give an image file or a folder of images.")
    found = list_images(source)
    ours, stems = written_by_predict(source), {path.stem for path in found}
    left_out = {path for path in found if path.name in ours or is_beside(path, stems)}
    images, skipped = [path for path in found if path not in left_out], sorted(left_out)
    if not images:
        why = (f" (left out: {len(skipped)} file(s) that are masks or predict's outputs, e.g. "
               f"'{skipped[0].name}')" if skipped else "")
        raise ConfigError(f"INPUT={str(source)!r} holds no image file to segment ({', '.join(sorted(IMAGE_EXTENSIONS))}; "
                          f"sub-folders are not searched){why}. Point INPUT at the folder that holds the images.")
    return images, skipped


def image_files(source: Path) -> list[Path]:
    """The images `listed_inputs` keeps."""
    return listed_inputs(source)[0]


def mask_families(by_stem: dict[str, Path]) -> dict[str, list[Path]]:
    """{base stem: its `<base>_mask`, `<base>_mask_1`, ... files, by number}."""
    families: dict[str, list[tuple[int, Path]]] = {}
    for stem, path in by_stem.items():
        match = BESIDE.match(stem)
        if match and match["kind"].startswith("mask"):
            families.setdefault(match["base"], []).append((0 if match["n"] is None else int(match["n"]), path))
    return {base: [path for _, path in sorted(found)] for base, found in families.items()}


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def with_mask_folder(images: list[Path], mask_dir: Path | None) -> list[Item]:
    """Each image with its masks from `mask_dir`: `<stem>_mask` and `<stem>_mask_<n>` (merged, as
    training merges BUSI's), else `<stem>`; an image is never its own mask."""
    if mask_dir is None:
        return [Item(path, path.stem) for path in images]
    if not mask_dir.is_dir():
        raise ConfigError(f"--masks {str(mask_dir)!r}: no such folder. Give the folder that holds the masks "
                          "(<image name>_mask.png or <image name>.png).")
    by_stem: dict[str, Path] = {}
    for path in list_images(mask_dir):
        by_stem.setdefault(path.stem, path)  # sorted by name: x.png before x.tif, whichever is there
    families = mask_families(by_stem)
    items = []
    for image in images:
        found = families.get(image.stem) or ([by_stem[image.stem]] if image.stem in by_stem else [])
        items.append(Item(image, image.stem, tuple(path for path in found if not same_file(path, image))))
    return items


def from_dataset(name: str, root: Path, overrides: list[str]) -> tuple[list[Item], float | None, str]:
    """Images and masks as dataset `name`'s reader pairs them below `root`, its mask threshold and its name."""
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
    return [Item(s.image, s.image.stem, tuple(s.masks)) for s in source.samples], source.mask_threshold, source.name
