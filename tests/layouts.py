"""Write small generated dataset trees, one per supported layout, for the reader tests.

Images are random grey or RGB pictures (default 40 wide x 30 high), masks 0/255 PNG with a
rectangle, so tests never need the real datasets. Each writer returns the folder to give the
reader as `root`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (30, 40)  # (height, width)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def write_image(path: Path, seed: int = 0, size=SIZE, rgb: bool = False) -> Path:
    """A random 8-bit picture (grey, or RGB with grey-ish content) at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (*size, 3) if rgb else size
    pixels = _rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def mask_array(seed: int = 0, size=SIZE) -> np.ndarray:
    """A bool mask with one random rectangle (never empty)."""
    rng = _rng(seed + 1000)
    height, width = size
    top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
    bottom, right = top + rng.integers(2, height // 2), left + rng.integers(2, width // 2)
    mask = np.zeros(size, dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def write_mask(path: Path, mask: np.ndarray | None = None, seed: int = 0, size=SIZE) -> Path:
    """A 0/255 PNG mask at `path` (the given one, or a random rectangle)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = mask_array(seed, size) if mask is None else mask
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return path


def write_busi(root: Path, benign: int = 3, malignant: int = 2, normal: int = 2) -> Path:
    """`root/Dataset_BUSI_with_GT/<class>/<class> (N).png` + `_mask.png`.

    "benign (2)" also has `_mask_1.png` (a second lesion, disjoint from the first); normal
    masks are empty. Returns `root` (the parent of Dataset_BUSI_with_GT).
    """
    base = root / "Dataset_BUSI_with_GT"
    seed = 0
    for cls, count in (("benign", benign), ("malignant", malignant), ("normal", normal)):
        for n in range(1, count + 1):
            seed += 1
            write_image(base / cls / f"{cls} ({n}).png", seed, rgb=True)
            if cls == "normal":
                write_mask(base / cls / f"{cls} ({n})_mask.png", np.zeros(SIZE, dtype=bool))
                continue
            if cls == "benign" and n == 2:
                first = np.zeros(SIZE, dtype=bool)
                first[2:8, 2:10] = True
                second = np.zeros(SIZE, dtype=bool)
                second[20:26, 25:35] = True
                write_mask(base / cls / f"{cls} ({n})_mask.png", first)
                write_mask(base / cls / f"{cls} ({n})_mask_1.png", second)
            else:
                write_mask(base / cls / f"{cls} ({n})_mask.png", seed=seed)
    return root


def write_udiat(root: Path, count: int = 3) -> Path:
    for n in range(1, count + 1):
        write_image(root / "original" / f"{n:06d}.png", n)
        write_mask(root / "GT" / f"{n:06d}.png", seed=n)
    return root


def write_montgomery(root: Path, count: int = 3) -> Path:
    """`root/MontgomerySet/CXR_png/MCUCXR_000N_0.png` + left/right masks (left and right halves)."""
    base = root / "MontgomerySet"
    for n in range(1, count + 1):
        name = f"MCUCXR_{n:04d}_{n % 2}.png"
        write_image(base / "CXR_png" / name, n)
        left = np.zeros(SIZE, dtype=bool)
        left[5:25, 3:15] = True
        right = np.zeros(SIZE, dtype=bool)
        right[5:25, 25:37] = True
        write_mask(base / "ManualMask" / "leftMask" / name, left)
        write_mask(base / "ManualMask" / "rightMask" / name, right)
    return root


def write_ecssd(root: Path, count: int = 3) -> Path:
    """`images/NNNN.jpg` (RGB) + `ground_truth_mask/NNNN.png`."""
    for n in range(1, count + 1):
        write_image(root / "images" / f"{n:04d}.jpg", n, rgb=True)
        write_mask(root / "ground_truth_mask" / f"{n:04d}.png", seed=n)
    return root


def write_xpie(root: Path, count: int = 3) -> Path:
    """`XPIE/img/<name>.jpg` + `XPIE/gt/<name>.png` (our assumed default layout)."""
    base = root / "XPIE"
    for n in range(1, count + 1):
        write_image(base / "img" / f"{n:05d}.jpg", n, rgb=True)
        write_mask(base / "gt" / f"{n:05d}.png", seed=n)
    return root


def write_folder(root: Path, count: int = 3, mask_suffix: str = "_mask") -> Path:
    """`images/case<N>.<png|jpg|bmp>` + `masks/case<N><suffix>.png`."""
    extensions = (".png", ".jpg", ".bmp")
    for n in range(1, count + 1):
        write_image(root / "images" / f"case{n}{extensions[n % 3]}", n)
        write_mask(root / "masks" / f"case{n}{mask_suffix}.png", seed=n)
    return root
