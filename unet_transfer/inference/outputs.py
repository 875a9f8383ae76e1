"""What predict writes per image, at the image's own size: the binary mask, optionally the
probability map, and an overlay picture to check it by eye. Every file is written atomically.

The network sees the image at its training size; its probability map is resized to the
original size (bilinear) and thresholded there, so the mask's edges follow the original pixels
rather than the blocks of a nearest-neighbour enlarged mask, and the saved probability map and
mask always agree (mask = probability > threshold).

predict never replaces a file it did not write: its manifest (MANIFEST in the output folder)
lists every file it wrote there, and a run that would replace any other file is refused before
it starts (`unowned`). A folder predict wrote is never read back as images (inputs.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from unet_transfer.files import atomic_path, atomic_write_text

PROBABILITY_FORMATS = ("png16", "npy")
TINT_BGR = np.array([40, 40, 230], dtype=np.float32)  # red: the predicted mask
PREDICTED_BGR = (0, 255, 255)  # yellow outline of the prediction
TRUTH_BGR = (0, 220, 0)  # green outline of the reference mask, when there is one
TINT = 0.35
MANIFEST = "predict_files.json"  # the files predict wrote into its output folder
MANIFEST_FORMAT = "unet-transfer/predict-files-v1"
SUMMARY_FILES = ("summary.json", "summary.md", "per_image.csv")


def file_names(name: str, probabilities: str | None, overlays: bool) -> list[str]:
    """The files predict writes for the image whose outputs are named `name`."""
    names = [f"{name}_mask.png"]
    if probabilities:
        names.append(f"{name}_prob.png" if probabilities == "png16" else f"{name}_prob.npy")
    if overlays:
        names.append(f"{name}_overlay.png")
    return names


def written_by_predict(folder: Path) -> set[str]:
    """The names predict's manifest in `folder` lists (none when predict never wrote there)."""
    try:
        record = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(record, dict) or record.get("format") != MANIFEST_FORMAT:
        return set()
    return {str(name) for name in record.get("files", [])}


def unowned(out: Path, names: list[str]) -> list[str]:
    """Those of `names` that exist in `out` but that predict did not write there."""
    ours = written_by_predict(out)  # a valid manifest lists itself
    return [name for name in names if name not in ours and ((out / name).exists() or (out / name).is_symlink())]


def claim(out: Path, names: list[str]) -> Path:
    """Record `names` in the manifest before writing them (a crash leaves them owned, not foreign)."""
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(written_by_predict(out) | set(names) | {MANIFEST})
    return atomic_write_text(out / MANIFEST, json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=1) + "\n")


def original_size(probability: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A (S, S) probability map resized (bilinear) to the image's (H, W)."""
    height, width = shape
    if probability.shape == (height, width):
        return probability.astype(np.float32, copy=False)
    return cv2.resize(probability.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def write_png(path: Path, pixels: np.ndarray) -> Path:
    """uint8 (grey or BGR) or uint16 grey pixels as a PNG file."""
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise OSError(f"could not encode {path.name} as PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return path


def write_mask(out: Path, name: str, mask: np.ndarray) -> Path:
    return write_png(out / f"{name}_mask.png", mask.astype(np.uint8) * 255)


def write_probability(out: Path, name: str, probability: np.ndarray, fmt: str) -> Path:
    """`png16`: 0..65535 for 0..1 in a 16-bit PNG; `npy`: float32."""
    if fmt == "png16":
        return write_png(out / f"{name}_prob.png", np.rint(np.clip(probability, 0, 1) * 65535).astype(np.uint16))
    path = out / f"{name}_prob.npy"
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, probability.astype(np.float32))
    return path


def outline(mask: np.ndarray) -> list:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return list(contours)


def overlay(grey: np.ndarray, mask: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
    """BGR picture: the image, the prediction tinted red with a yellow outline, the reference outlined green."""
    base = np.repeat(np.clip(np.rint(grey * 255), 0, 255).astype(np.float32)[..., None], 3, axis=2)
    base[mask] = (1 - TINT) * base[mask] + TINT * TINT_BGR
    picture = np.ascontiguousarray(base.astype(np.uint8))
    thickness = max(1, round(min(grey.shape) / 256))
    if truth is not None:
        cv2.drawContours(picture, outline(truth), -1, TRUTH_BGR, thickness)
    cv2.drawContours(picture, outline(mask), -1, PREDICTED_BGR, thickness)
    return picture


def write_overlay(out: Path, name: str, grey: np.ndarray, mask: np.ndarray, truth: np.ndarray | None) -> Path:
    return write_png(out / f"{name}_overlay.png", overlay(grey, mask, truth))
