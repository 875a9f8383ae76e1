"""unet-transfer analyze DIR: the per-block analysis of a finished study (analysis.md, its
figures and the Fig. 5 grid), without the rest of the report. A study runs it at the end."""

from __future__ import annotations

import argparse
import logging
import sys

ANALYSIS_ENTRIES = {"analysis.md", "activation_maximisation.png"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unet-transfer analyze", description=__doc__)
    parser.add_argument("dir", metavar="DIR", help="a study folder (searched recursively for runs)")
    parser.add_argument("--out", metavar="OUTDIR", default=None, help="where to write (default: DIR)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    from unet_transfer.errors import one_line_exit
    from unet_transfer.report import NoRunsError, write_report
    from unet_transfer.report.registry import DESCRIPTIONS

    try:
        paths = write_report(args.dir, args.out, only=ANALYSIS_ENTRIES)
    except NoRunsError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a UserError (also wrapped): one line, exit code 2; anything else is a bug
        return one_line_exit(error)
    if not paths:
        print("Nothing to analyse: no run recorded per-block results (block_change), e.g. runs of an older "
              "version; run the study again.", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"Wrote {path}  ({DESCRIPTIONS.get(name, name)})")
    return 0
