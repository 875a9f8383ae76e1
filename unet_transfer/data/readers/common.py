"""What every reader shares: the sample record, file listing, and the checks whose messages
say what to do (missing folder, image without a mask, nothing found, duplicate ids)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from unet_transfer.errors import ConfigError, DatasetError, DataWarning

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".dcm"})
ON_MISSING_MASK = ("error", "skip")


@dataclass(frozen=True)
class RawSample:
    """One image file and its mask files (several are OR-merged), before decoding."""

    id: str
    image: Path
    masks: tuple[Path, ...]
    label: str | None = None


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder` (not in sub-folders), sorted by name."""
    try:
        with os.scandir(folder) as entries:
            found = [Path(e.path) for e in entries if e.is_file() and is_image_file(Path(e.name))]
    except PermissionError:
        raise DatasetError(f"The folder '{folder}' cannot be read: permission denied. Fix: give your user read "
                           f"access (chmod -R u+rX '{folder}'), or copy the data somewhere readable.") from None
    return sorted(found)


def missing_root(name: str, root: Path, layout: str) -> DatasetError:
    if name == "folder":
        return DatasetError(
            f"The dataset folder '{root}' does not exist. Put your images and masks there, laid "
            f"out as {layout}, where <root> is '{root}', or point dataset.root=... at the folder "
            "where they are (and dataset.images / dataset.masks / dataset.mask_suffix at their "
            "folder names and mask suffix)."
        )
    return DatasetError(
        f"The {name} dataset folder '{root}' does not exist. {where_to_get(name)}. Put it so "
        f"that the files are laid out as {layout}, where <root> is '{root}', or point "
        "dataset.root=... at the folder where it already is."
    )


def require_root(name: str, root: str | os.PathLike, layout: str) -> Path:
    path = Path(root).expanduser()
    if path.exists() and not path.is_dir():
        raise DatasetError(f"dataset.root='{path}' is a file, not a folder. Fix: point dataset.root=... at the "
                           f"folder that holds the {name} data, laid out as {layout}.")
    if not path.is_dir():
        raise missing_root(name, path, layout)
    return path


def contents(folder: Path, limit: int = 8) -> str:
    try:
        names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    except OSError:
        return "(unreadable)"
    if not names:
        return "nothing"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} entries)" if len(names) > limit else "")


def require_subdir(name: str, root: Path, sub: str, setting: str, layout: str) -> Path:
    folder = root / sub
    if not folder.is_dir():
        raise DatasetError(
            f"The {name} dataset at '{root}' has no folder '{sub}' (expected layout: {layout}); "
            f"'{root}' holds: {contents(root)}. Fix: point dataset.root=... at the folder that "
            f"contains '{sub}', or set dataset.{setting}=... to the folder's name."
        )
    return folder


def check_on_missing(on_missing_mask: str) -> None:
    if on_missing_mask not in ON_MISSING_MASK:
        raise ConfigError(
            f"on_missing_mask={on_missing_mask!r} is not one of {list(ON_MISSING_MASK)}. "
            "Fix: use 'error' (stop at images without a mask) or 'skip' (leave them out)."
        )


def handle_missing(
    name: str, missing: list[Path], expected: str, on_missing_mask: str
) -> None:
    """Raise for (or warn once about) images without a mask."""
    if not missing:
        return
    shown = ", ".join(f"'{p}'" for p in missing[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    if on_missing_mask == "skip":
        warnings.warn(
            f"{name}: skipped {len(missing)} image(s) without a mask: {shown}{more} "
            f"(expected {expected}).",
            DataWarning,
            stacklevel=3,
        )
        return
    raise DatasetError(
        f"{name}: {len(missing)} image(s) have no mask: {shown}{more}; expected {expected}. "
        "Fix: add the missing masks, or set dataset.on_missing_mask=skip to leave those images "
        "out."
    )


def finish(name: str, samples: list[RawSample], where: Path, expected: str) -> list[RawSample]:
    if not samples:
        raise DatasetError(
            f"The {name} dataset at '{where}' has no image/mask pairs: expected {expected}. "
            f"'{where}' holds: {contents(where)}. Fix: point dataset.root=... at the right "
            "folder, or check the folder settings."
        )
    seen: dict[str, RawSample] = {}
    for sample in samples:
        if sample.id in seen:
            raise DatasetError(
                f"{name}: two images have the sample id '{sample.id}': '{seen[sample.id].image}' "
                f"and '{sample.image}'. Every image needs a unique id (its file name without the "
                "extension). Fix: rename or remove one of them."
            )
        seen[sample.id] = sample
    return sorted(samples, key=lambda s: s.id)


def by_stem(files: Iterable[Path], name: str, kind: str) -> dict[str, Path]:
    """Files keyed by name without extension; the same stem twice is an error."""
    out: dict[str, Path] = {}
    for path in files:
        if path.stem in out:
            raise DatasetError(
                f"{name}: two {kind} files have the same name without extension: "
                f"'{out[path.stem]}' and '{path}', so it is ambiguous which one belongs to the "
                "sample. Fix: remove or rename one of them."
            )
        out[path.stem] = path
    return out


def pair_dirs(
    name: str,
    image_dir: Path,
    mask_dirs: Sequence[Path],
    *,
    mask_suffix: str = "",
    on_missing_mask: str = "error",
) -> list[RawSample]:
    """Pair each image with a same-named file (stem + suffix, any extension) in each mask dir."""
    check_on_missing(on_missing_mask)
    same_dir = any(d.resolve() == image_dir.resolve() for d in mask_dirs)
    if same_dir and not mask_suffix:
        raise ConfigError(
            f"{name}: images and masks are both read from '{image_dir}' with no mask suffix, so "
            "a mask cannot be told from an image. Fix: set dataset.mask_suffix (e.g. _mask) or "
            "use separate folders."
        )
    images = list_images(image_dir)
    if same_dir:
        images = [p for p in images if not p.stem.endswith(mask_suffix)]
    indexes = [by_stem(list_images(d), name, "mask") for d in mask_dirs]
    samples, missing = [], []
    for image in images:
        masks = [index.get(image.stem + mask_suffix) for index in indexes]
        if any(m is None for m in masks):
            missing.append(image)
            continue
        samples.append(RawSample(image.stem, image, tuple(masks)))  # type: ignore[arg-type]
    expected = "a mask " + " and ".join(f"'{d}/<image name>{mask_suffix}.<ext>'" for d in mask_dirs)
    handle_missing(name, missing, expected, on_missing_mask)
    wanted = {image.stem + mask_suffix for image in images}
    for folder, index in zip(mask_dirs, indexes, strict=True):
        candidates = [stem for stem in index if not same_dir or stem.endswith(mask_suffix)]
        report_orphans(name, [index[stem] for stem in candidates if stem not in wanted], folder)
    return samples


def report_orphans(name: str, orphans: Sequence[Path], folder: Path) -> None:
    """Mask files no image claims: said once (a renamed image, or masks of another set?)."""
    if orphans:
        shown = ", ".join(f"'{p.name}'" for p in sorted(orphans)[:5]) + (" ..." if len(orphans) > 5 else "")
        warnings.warn(f"{name}: {len(orphans)} mask file(s) in '{folder}' have no image and are not used: {shown}",
                      DataWarning, stacklevel=3)


def where_to_get(name: str) -> str:
    """The dataset's description and source, for the message of a missing folder."""
    from unet_transfer.data.readers import DATASETS

    info = DATASETS.get(name)
    return f"{info.description}. Get it from {info.source}" if info else name
