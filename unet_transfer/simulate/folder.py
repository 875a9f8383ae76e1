"""python -m unet_transfer.simulate.folder OUT [--kind ultrasound] [-n 20] [--size 128] [--seed 7] [--shape HxW]

Simulated images written as files, in the `folder` dataset layout (OUT/images/<id>.png and
OUT/masks/<id>.png, 0/255): new images to try `unet-transfer predict` on, at a size other than
the training size if you like (`--size` simulates at that size, `--shape` then stretches to any
height x width). A seed other than the study's (0) gives images no study run has seen.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from unet_transfer.data.imageio import resize_mask
from unet_transfer.errors import ConfigError
from unet_transfer.files import atomic_path
from unet_transfer.simulate import SIMULATORS


def write_png(path: Path, pixels: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(cv2.imencode(".png", pixels)[1].tobytes())


def write_folder(out: Path | str, kind: str = "ultrasound", n: int = 20, size: int = 128, seed: int = 7,
                 shape: tuple[int, int] | None = None, **settings) -> list[Path]:
    """Simulate `n` images and write them with their masks below `out`; returns the image files."""
    if kind not in SIMULATORS:
        raise ConfigError(f"--kind {kind!r}: choose one of {sorted(SIMULATORS)}.")
    data = SIMULATORS[kind](n, size, seed, **settings)
    out, written = Path(out), []
    for sample_id, image, mask in zip(data.ids, data.images, data.masks, strict=True):
        if shape is not None:
            image = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
            mask = resize_mask(mask, shape)
        write_png(out / "images" / f"{sample_id}.png", image)
        write_png(out / "masks" / f"{sample_id}.png", mask.astype(np.uint8) * 255)
        written.append(out / "images" / f"{sample_id}.png")
    return written


def shape_of(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HEIGHTxWIDTH, e.g. 96x128") from None
    return height, width


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_transfer.simulate.folder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--kind", default="ultrasound", help=f"one of {sorted(SIMULATORS)}")
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--size", type=int, default=128, help="simulated size (square)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shape", type=shape_of, default=None, metavar="HxW", help="stretch the files to this size")
    args = parser.parse_args(argv)
    written = write_folder(args.out, args.kind, args.n, args.size, args.seed, args.shape)
    print(f"Wrote {len(written)} {args.kind} images to {args.out / 'images'} and their masks to {args.out / 'masks'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
