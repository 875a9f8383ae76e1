"""Find the image/mask pairs of a dataset folder, in each dataset's layout as distributed.

Readers only list files (`RawSample`s, sorted by id); decoding happens in `preprocess`. Every
reader fails at once, with a message that says what to do, when the folder is missing, when
an image has no mask, when nothing is found or when two samples would share an id.

Image files are recognised by extension (.png .jpg .jpeg .bmp .tif .tiff .gif .dcm, any
case); hidden files (".name") and other files are ignored.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from unet_transfer.errors import ConfigError, DatasetError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".dcm"})
ON_MISSING_MASK = ("error", "skip")


@dataclass(frozen=True)
class RawSample:
    """One image file and its mask files (several are OR-merged), before decoding."""

    id: str
    image: Path
    masks: tuple[Path, ...]
    label: str | None = None


class DatasetInfo(NamedTuple):
    reader: Callable[..., list[RawSample]]
    description: str
    source: str


# ----------------------------------------------------------------------------------------------
# Shared helpers


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder` (not in sub-folders), sorted by name."""
    with os.scandir(folder) as entries:
        found = [Path(e.path) for e in entries if e.is_file() and is_image_file(Path(e.name))]
    return sorted(found)


def _where_to_get(name: str) -> str:
    info = DATASETS.get(name)
    return f"{info.description}. Get it from {info.source}" if info else name


def _missing_root(name: str, root: Path, layout: str) -> DatasetError:
    if name == "folder":
        return DatasetError(
            f"The dataset folder '{root}' does not exist. Put your images and masks there, laid "
            f"out as {layout}, where <root> is '{root}', or point dataset.root=... at the folder "
            "where they are (and dataset.images / dataset.masks / dataset.mask_suffix at their "
            "folder names and mask suffix)."
        )
    return DatasetError(
        f"The {name} dataset folder '{root}' does not exist. {_where_to_get(name)}. Put it so "
        f"that the files are laid out as {layout}, where <root> is '{root}', or point "
        "dataset.root=... at the folder where it already is."
    )


def _require_root(name: str, root: str | os.PathLike, layout: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise _missing_root(name, path, layout)
    return path


def _contents(folder: Path, limit: int = 8) -> str:
    try:
        names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    except OSError:
        return "(unreadable)"
    if not names:
        return "nothing"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} entries)" if len(names) > limit else "")


def _require_subdir(name: str, root: Path, sub: str, setting: str, layout: str) -> Path:
    folder = root / sub
    if not folder.is_dir():
        raise DatasetError(
            f"The {name} dataset at '{root}' has no folder '{sub}' (expected layout: {layout}); "
            f"'{root}' holds: {_contents(root)}. Fix: point dataset.root=... at the folder that "
            f"contains '{sub}', or set dataset.{setting}=... to the folder's name."
        )
    return folder


def _check_on_missing(on_missing_mask: str) -> None:
    if on_missing_mask not in ON_MISSING_MASK:
        raise ConfigError(
            f"on_missing_mask={on_missing_mask!r} is not one of {list(ON_MISSING_MASK)}. "
            "Fix: use 'error' (stop at images without a mask) or 'skip' (leave them out)."
        )


def _handle_missing(
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
            stacklevel=3,
        )
        return
    raise DatasetError(
        f"{name}: {len(missing)} image(s) have no mask: {shown}{more}; expected {expected}. "
        "Fix: add the missing masks, or set dataset.on_missing_mask=skip to leave those images "
        "out."
    )


def _finish(name: str, samples: list[RawSample], where: Path, expected: str) -> list[RawSample]:
    if not samples:
        raise DatasetError(
            f"The {name} dataset at '{where}' has no image/mask pairs: expected {expected}. "
            f"'{where}' holds: {_contents(where)}. Fix: point dataset.root=... at the right "
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


def _by_stem(files: Iterable[Path], name: str, kind: str) -> dict[str, Path]:
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


def _pair_dirs(
    name: str,
    image_dir: Path,
    mask_dirs: Sequence[Path],
    *,
    mask_suffix: str = "",
    on_missing_mask: str = "error",
    label: str | None = None,
    id_prefix: str = "",
) -> list[RawSample]:
    """Pair each image with a same-named file (stem + suffix, any extension) in each mask dir."""
    _check_on_missing(on_missing_mask)
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
    indexes = [_by_stem(list_images(d), name, "mask") for d in mask_dirs]
    samples, missing = [], []
    for image in images:
        masks = [index.get(image.stem + mask_suffix) for index in indexes]
        if any(m is None for m in masks):
            missing.append(image)
            continue
        samples.append(RawSample(id_prefix + image.stem, image, tuple(masks), label))  # type: ignore[arg-type]
    expected = "a mask " + " and ".join(f"'{d}/<image name>{mask_suffix}.<ext>'" for d in mask_dirs)
    _handle_missing(name, missing, expected, on_missing_mask)
    return samples


# ----------------------------------------------------------------------------------------------
# BUSI

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
        f"({', '.join(BUSI_CLASSES)}); it holds: {_contents(root)}. Expected layout: "
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
    _check_on_missing(on_missing_mask)
    base = _busi_root(_require_root("busi", root, _BUSI_LAYOUT))
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
                f"{_contents(base)}. Expected layout: {_BUSI_LAYOUT}. Fix: restore the folder, "
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
    _handle_missing(
        "busi", missing, "a mask '<image name>_mask.png' beside each image", on_missing_mask
    )
    return _finish("busi", samples, base, _BUSI_LAYOUT)


# ----------------------------------------------------------------------------------------------
# Layouts of one image folder and one mask folder with the same file names


def _read_image_and_mask_dirs(
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
    base = _require_root(name, root, layout)
    if container and not (base / image_dir).is_dir() and (base / container).is_dir():
        base = base / container
    images = _require_subdir(name, base, image_dir, "image_dir", layout)
    masks = _require_subdir(name, base, mask_dir, "mask_dir", layout)
    samples = _pair_dirs(name, images, [masks], on_missing_mask=on_missing_mask)
    return _finish(name, samples, images, layout)


# ----------------------------------------------------------------------------------------------
# UDIAT (Dataset B)

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
    return _read_image_and_mask_dirs("udiat", _UDIAT_LAYOUT, root, image_dir, mask_dir, on_missing_mask)


# ----------------------------------------------------------------------------------------------
# Montgomery County chest X-ray

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
    base = _require_root("montgomery", root, _MONTGOMERY_LAYOUT)
    if not (base / image_dir).is_dir() and (base / MONTGOMERY_FOLDER).is_dir():
        base = base / MONTGOMERY_FOLDER
    images = _require_subdir("montgomery", base, image_dir, "image_dir", _MONTGOMERY_LAYOUT)
    left = _require_subdir("montgomery", base, left_dir, "left_dir", _MONTGOMERY_LAYOUT)
    right = _require_subdir("montgomery", base, right_dir, "right_dir", _MONTGOMERY_LAYOUT)
    samples = _pair_dirs("montgomery", images, [left, right], on_missing_mask=on_missing_mask)
    return _finish("montgomery", samples, images, _MONTGOMERY_LAYOUT)


# ----------------------------------------------------------------------------------------------
# ECSSD and XPIE (natural images with salient-object masks)

_ECSSD_LAYOUT = "'<root>/images/0001.jpg' with the mask '<root>/ground_truth_mask/0001.png'"


def read_ecssd(
    root: str | os.PathLike,
    image_dir: str = "images",
    mask_dir: str = "ground_truth_mask",
    on_missing_mask: str = "error",
) -> list[RawSample]:
    """ECSSD salient objects (Yan et al. 2013): `images/NNNN.jpg` + `ground_truth_mask/NNNN.png`."""
    return _read_image_and_mask_dirs("ecssd", _ECSSD_LAYOUT, root, image_dir, mask_dir, on_missing_mask)


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
    return _read_image_and_mask_dirs(
        "xpie", _XPIE_LAYOUT, root, image_dir, mask_dir, on_missing_mask, container=XPIE_FOLDER
    )


# ----------------------------------------------------------------------------------------------
# Any folder pair


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
    _check_on_missing(on_missing_mask)
    base = _require_root("folder", root, layout)
    image_dir = _require_subdir("folder", base, images, "images", layout)
    mask_dir = _require_subdir("folder", base, masks, "masks", layout)
    samples = _pair_dirs(
        "folder", image_dir, [mask_dir], mask_suffix=mask_suffix, on_missing_mask=on_missing_mask
    )
    return _finish("folder", samples, image_dir, layout)


# ----------------------------------------------------------------------------------------------
# Registry

DATASETS: dict[str, DatasetInfo] = {
    "busi": DatasetInfo(
        read_busi,
        "BUSI, breast ultrasound images with lesion masks (Al-Dhabyani et al., Data in Brief 28, "
        "2020; 780 images: benign, malignant, normal)",
        "the authors' public release, 'Dataset_BUSI_with_GT' (search 'Breast Ultrasound Images "
        "Dataset', e.g. https://scholar.cu.edu.eg/?q=afahmy/pages/dataset or its Kaggle copy "
        "https://www.kaggle.com/datasets/aryashah2k/breast-ultrasound-images-dataset)",
    ),
    "udiat": DatasetInfo(
        read_udiat,
        "UDIAT breast ultrasound, 'Dataset B' (Yap et al., IEEE JBHI 2017; 163 images with "
        "lesion masks)",
        "the authors on request (Manchester Metropolitan University / UDIAT Diagnostic Centre, "
        "Sabadell; see http://www2.docm.mmu.ac.uk/STAFF/m.yap/dataset.php)",
    ),
    "montgomery": DatasetInfo(
        read_montgomery,
        "Montgomery County chest X-rays with left and right lung masks (Jaeger et al., QIMS "
        "2014; 138 images)",
        "the U.S. National Library of Medicine "
        "(https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets, "
        "file NLM-MontgomeryCXRSet.zip)",
    ),
    "ecssd": DatasetInfo(
        read_ecssd,
        "ECSSD, natural images with salient-object masks (Yan et al., CVPR 2013; 1,000 images)",
        "the CUHK project page "
        "(https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/dataset.html: images.zip and "
        "ground_truth_mask.zip)",
    ),
    "xpie": DatasetInfo(
        read_xpie,
        "XPIE, natural images with salient-object masks (Xia et al., CVPR 2017; 10,000 images; "
        "the paper's pretraining set)",
        "the authors' project page (http://cvteam.net/projects/CVPR17-ELE/ELE.html, XPIE.zip)",
    ),
    "folder": DatasetInfo(
        read_folder,
        "a dataset of your own: an images folder and a masks folder with matching file names",
        "your own files: any images folder with a masks folder whose files have the same names "
        "(optionally with a suffix such as _mask); set dataset.images, dataset.masks and "
        "dataset.mask_suffix to match",
    ),
}


def read_dataset(name: str, root: str | os.PathLike, **options) -> list[RawSample]:
    """The samples of the registered dataset `name` (see DATASETS) read from `root`."""
    if name not in DATASETS:
        raise ConfigError(
            f"Unknown dataset reader {name!r}. Fix: use one of {sorted(DATASETS)} "
            "('folder' reads any images/ + masks/ pair)."
        )
    return DATASETS[name].reader(root, **options)
