"""The study report: every finished run below a folder, aggregated as the paper reports it.

`write_report(run_dir)` writes, into the output folder (default: run_dir), summary.md plus
every registered entry (unet_transfer/report/registry.py) that has something to show:

- summary.csv, summary.md: mean ± sample std over folds per configuration, the
  contracting-vs-expanding table and the k table per sweep, the reference rows, warnings
- dice_vs_blocks.png, pixel_error_vs_blocks.png, adjusted_rand_vs_blocks.png (Fig. 4)
- examples.png (Fig. 3), when runs kept predictions.npz and the dataset cache exists
- stats.md: paired Wilcoxon comparisons over folds and over held-out images
- epoch_check.md, when a configuration was run with two epoch counts
- <setting>_gap.md/.png, when a dataset setting was swept (e.g. speckle): the direction gap

While it writes, the folder holds REPORT_INCOMPLETE and no summary.md: a report stopped midway
(Ctrl-C, a killed job) never leaves an old summary.md beside new figures. summary.md comes last.

Command line: `unet-transfer report DIR [--folds 5] [--out OUTDIR]`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from unet_transfer.files import atomic_write_text
from unet_transfer.report.aggregate import study_warnings, summarise
from unet_transfer.report.collect import Collection, deduplicate, find_runs
from unet_transfer.report.registry import Report, discover

log = logging.getLogger("unet_transfer.report")

__all__ = ["INCOMPLETE", "NoRunsError", "find_runs", "summarise", "write_report"]

INCOMPLETE = "REPORT_INCOMPLETE"


class NoRunsError(FileNotFoundError):
    """The folder holds no finished run (no metrics.json below it)."""


def write_report(
    run_dir: Path | str, out_dir: Path | str | None = None, folds: int | None = None,
    only: set[str] | None = None, before_entries: Callable[[], object] | None = None,
) -> dict[str, Path]:
    """Aggregate every finished run below `run_dir`; returns {file name: path} of what was written.

    `folds` is the number of folds every configuration should have (default: the runs' own
    `folds` value). Raises NoRunsError when no metrics.json is found. Warnings (missing folds,
    duplicate runs, mixed settings) are logged and listed at the top of summary.md. `only`:
    just these entries (by name; `unet-transfer analyze` runs the analysis ones), no summary.md.
    `before_entries` is called once the runs are found, before the heavy part (the command sets
    its threads there, so that a folder without runs is one error line).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise NoRunsError(f"{run_dir} is not a folder")
    found: Collection = find_runs(run_dir)
    if not found.runs and found.problems:
        raise NoRunsError(f"the {len(found.problems)} metrics.json below {run_dir} are unreadable (first: "
                          f"{found.problems[0]}): nothing to report; run those runs again (a rerun keeps the "
                          "damaged file aside)")
    if not found.runs:
        extra = (
            f" ({len(found.unfinished)} unfinished run folder(s) found)" if found.unfinished else ""
        )
        raise NoRunsError(f"no metrics.json below {run_dir}{extra}: nothing to report")
    out = Path(out_dir) if out_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    runs, duplicate_warnings = deduplicate(found.runs)
    rows, warnings = summarise(runs, folds)
    warnings = [*found.problems, *duplicate_warnings, *warnings, *study_warnings(runs)]
    for warning in warnings:
        log.warning("%s", warning)
    report = Report(root=run_dir, runs=runs, rows=rows)
    if found.unfinished:
        shown = ", ".join(str(p.relative_to(run_dir)) for p in found.unfinished[:5])
        report.notes.append(
            f"{len(found.unfinished)} unfinished run folder(s) (no metrics.json) ignored: {shown}"
            + (" …" if len(found.unfinished) > 5 else "")
        )
    if any(len(r["seeds"]) > 1 for r in rows):
        report.notes.append(
            "Some configurations have runs of several seeds: scores are averaged over folds "
            "within each seed first, then over seeds; ± is the fold std pooled over seeds "
            "(summary.csv also gives the std of the seed means, *_seed_std)."
        )
    if before_entries is not None:
        before_entries()
    mark_incomplete(out, keep_summary=only is not None)
    paths: dict[str, Path] = {}
    for part in discover():
        if only is not None and part.name not in only:
            continue
        log.info("report: %s ...", part.name)
        try:
            paths.update(part.write(report, out))
            report.written.update(paths)
        except Exception as error:  # a figure or analysis must never stop the report
            report.notes.append(f"{part.name} failed: {type(error).__name__}: {error}")
            log.warning("%s failed: %s", part.name, error)
    if only is not None:
        (out / INCOMPLETE).unlink(missing_ok=True)
        return paths
    from unet_transfer.report.tables import summary_markdown

    figures = [name for name in paths if name.endswith(".png")]
    text = summary_markdown(report, warnings, len(found.unfinished), figures)
    paths = {"summary.md": atomic_write_text(out / "summary.md", text + "\n"), **paths}
    (out / INCOMPLETE).unlink(missing_ok=True)
    for note in report.notes:
        log.info("%s", note)
    return paths


def mark_incomplete(out: Path, keep_summary: bool = False) -> None:
    """Before the first new file: the folder says it is being rewritten, and the old summary.md
    (which describes the old figures) goes, unless only extra entries are rewritten (`analyze`)."""
    from datetime import datetime

    atomic_write_text(out / INCOMPLETE, f"A report is being rewritten here (started {datetime.now():%Y-%m-%d %H:%M:%S}); "
                      "if this file stays, it was stopped midway: files here may mix old and new. Run "
                      "`unet-transfer report` on the study again; summary.md is written last.\n")
    if not keep_summary:
        (out / "summary.md").unlink(missing_ok=True)
