"""`python -m unet_transfer.simulate [--out samples.png] [--shared ../shared/data]`: a sheet of
simulated ultrasound, X-ray and natural images, beside real samples when they are present."""

from __future__ import annotations

import argparse
from pathlib import Path

from unet_transfer.data.arrays import SegmentationSet
from unet_transfer.simulate.sheet import write_sample_sheet

REAL = {  # row name -> (reader, folder below --shared, reader options, id prefix)
    "real: BUSI benign": ("busi", "busi_sample/Dataset_BUSI_with_GT", {}, "benign"),
    "real: BUSI malignant": ("busi", "busi_sample/Dataset_BUSI_with_GT", {}, "malignant"),
    "real: chest X-ray": ("folder", "lung_sample", {}, "montgomery"),
    "real: ECSSD": ("ecssd", "ecssd_sample", {}, ""),
}


def real_rows(shared: Path, size: int, n: int) -> dict[str, SegmentationSet]:
    from unet_transfer.data.preprocess import preprocess
    from unet_transfer.data.readers import read_dataset

    rows = {}
    for name, (reader, folder, options, prefix) in REAL.items():
        if (shared / folder).is_dir():
            samples = [s for s in read_dataset(reader, shared / folder, **options) if s.id.startswith(prefix)][:n]
            rows[name] = preprocess(samples, size, progress=False)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m unet_transfer.simulate", description=__doc__)
    parser.add_argument("--out", default="samples.png", type=Path)
    parser.add_argument("--shared", default=Path("../shared/data"), type=Path, help="folder with real samples, if any")
    parser.add_argument("--size", default=256, type=int)
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("-n", default=4, type=int, help="images per row")
    args = parser.parse_args(argv)
    real = real_rows(args.shared, args.size, args.n) if args.shared.is_dir() else {}
    path = write_sample_sheet(args.out, size=args.size, seed=args.seed, n_per_kind=args.n, real=real or None)
    print(f"Wrote {path} ({len(real)} rows of real samples{'' if real else ': none found at ' + str(args.shared)})")


if __name__ == "__main__":
    main()
