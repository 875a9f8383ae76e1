"""python -m unet_transfer.report DIR [--folds 5] [--out OUTDIR]"""

from __future__ import annotations

import argparse
import logging
import sys

DESCRIPTIONS = {
    "summary.md": "results tables (contracting vs expanding, k table), warnings",
    "summary.csv": "mean ± std per configuration",
    "stats.md": "paired Wilcoxon comparisons",
    "epoch_check.md": "change of Dice between epoch counts",
    "dice_vs_blocks.png": "Fig. 4, Dice vs number of fine-tuned blocks",
    "pixel_error_vs_blocks.png": "pixel error vs number of fine-tuned blocks",
    "adjusted_rand_vs_blocks.png": "adjusted Rand vs number of fine-tuned blocks",
    "examples.png": "Fig. 3, example segmentations",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m unet_transfer.report",
        description="Aggregate every finished run (metrics.json) below DIR: tables, figures.",
    )
    parser.add_argument("dir", metavar="DIR", help="folder searched recursively for run folders")
    parser.add_argument(
        "--folds",
        type=int,
        default=None,
        help="folds every configuration should have (default: the runs' own 'folds')",
    )
    parser.add_argument(
        "--out", metavar="OUTDIR", default=None, help="where to write (default: DIR)"
    )
    args = parser.parse_args(argv)
    if args.folds is not None and args.folds < 1:
        parser.error("--folds must be a positive integer")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)

    from unet_transfer.report import NoRunsError, write_report

    try:
        paths = write_report(args.dir, args.out, args.folds)
    except NoRunsError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    for name, path in paths.items():
        print(f"Wrote {path}  ({DESCRIPTIONS.get(name, name)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
