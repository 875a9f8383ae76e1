"""unet-transfer report DIR [--folds 5] [--out OUTDIR]  (python -m unet_transfer.report)"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="unet-transfer report",
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
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads (default: $UNET_TRANSFER_THREADS, else the cores not busy with other work)")
    args = parser.parse_args(argv)
    if args.folds is not None and args.folds < 1:
        parser.error("--folds must be a positive integer")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)

    from unet_transfer.errors import one_line_exit
    from unet_transfer.hardware import threads_for_one_process, use_threads
    from unet_transfer.report import NoRunsError, write_report
    from unet_transfer.report.registry import DESCRIPTIONS

    def set_threads() -> None:
        """Its figures and analyses run torch and numpy: all cores when some are busy stalls them."""
        threads, why = threads_for_one_process(args.threads)
        print(why, file=sys.stderr, flush=True)
        use_threads(threads)

    try:
        paths = write_report(args.dir, args.out, args.folds, before_entries=set_threads)
    except NoRunsError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a UserError (also wrapped): one line, exit code 2; anything else is a bug
        return one_line_exit(error)
    for name, path in paths.items():
        print(f"Wrote {path}  ({DESCRIPTIONS.get(name, name)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
