"""CI's smoke step for predict on the real samples (make smoke-real), after it trained a tiny
checkpoint on each: python tests/smoke_predict.py SHARED_DATA SMOKE_OUTPUTS

- BUSI: a temporary copy of the sample's images (all classes) plus one corrupt file; predict must
  write a mask of every readable image's original size, name the corrupt file and exit 1;
  then the sample read as the busi dataset (its masks OR-merged) is scored.
- Lungs: the sample's images scored against its masks folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image


def predict(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "unet_transfer", "predict", *args, "--no-progress"]
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, capture_output=True, text=True)
    print(result.stdout + result.stderr, flush=True)
    return result


def check_sizes(images: list[Path], out: Path) -> None:
    for image in images:
        with Image.open(image) as source, Image.open(out / f"{image.stem}_mask.png") as mask:
            if mask.size != source.size:
                raise SystemExit(f"FAILED: {mask.filename} is {mask.size}, its image {image} is {source.size}")
    print(f"ok: {len(images)} masks at their images' original sizes in {out}")


def main(shared: Path, smoke: Path) -> None:
    busi = shared / "busi_sample" / "Dataset_BUSI_with_GT"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        images = [p for p in sorted(busi.glob("*/*.png")) if "_mask" not in p.stem]
        for image in images:
            shutil.copy(image, folder / image.name)
        (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
        result = predict(str(smoke / "busi" / "model.pt"), str(folder), str(smoke / "predict_busi"))
        if result.returncode != 1 or "corrupt.png" not in result.stderr:
            raise SystemExit("FAILED: predict should name corrupt.png and exit 1, the other images written")
        check_sizes([folder / image.name for image in images], smoke / "predict_busi")
    if predict(str(smoke / "busi" / "model.safetensors"), str(busi), str(smoke / "predict_busi_scored"),
               "--dataset", "busi").returncode != 0:
        raise SystemExit("FAILED: predict --dataset busi on the BUSI sample")
    lungs = shared / "lung_sample"
    if predict(str(smoke / "lungs" / "model.pt"), str(lungs / "images"), str(smoke / "predict_lungs"),
               "--masks", str(lungs / "masks")).returncode != 0:
        raise SystemExit("FAILED: predict on the lung sample")
    check_sizes(sorted((lungs / "images").glob("*.png")), smoke / "predict_lungs")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
