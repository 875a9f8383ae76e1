"""The study report: every finished run below a folder, aggregated as the paper reports it.

`write_report(run_dir)` writes, into the output folder (default: run_dir):

- summary.csv, summary.md: mean ± sample std over folds per dataset, direction and k, the
  contracting-vs-expanding table and the reference rows, with warnings for missing folds
- dice_vs_blocks.png, pixel_error_vs_blocks.png, adjusted_rand_vs_blocks.png (Fig. 4)
- examples.png (Fig. 3), when runs kept predictions.npz and the dataset cache exists
- stats.md: paired Wilcoxon comparisons over folds and over held-out images
- epoch_check.md, when a configuration was run with two epoch counts
- <setting>_gap.md/.png, when a dataset setting was swept (e.g. speckle): the direction gap

Command line: `python -m unet_transfer.report DIR [--folds 5] [--out OUTDIR]`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from unet_transfer.report.collect import Collection, deduplicate, find_runs
from unet_transfer.report.tables import (
    epoch_check_markdown,
    summarise,
    summary_markdown,
    write_summary_csv,
)
from unet_transfer.results import METRICS, atomic_write_text

log = logging.getLogger("unet_transfer.report")

__all__ = ["NoRunsError", "find_runs", "summarise", "write_report"]


class NoRunsError(FileNotFoundError):
    """The folder holds no finished run (no metrics.json below it)."""


def write_report(
    run_dir: Path | str, out_dir: Path | str | None = None, folds: int | None = None
) -> dict[str, Path]:
    """Aggregate every finished run below `run_dir`; returns {file name: path} of what was written.

    `folds` is the number of folds every configuration should have (default: the runs' own
    `folds` value). Raises NoRunsError when no metrics.json is found. Warnings (missing folds,
    duplicate runs, mixed settings) are logged and listed at the top of summary.md.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise NoRunsError(f"{run_dir} is not a folder")
    found: Collection = find_runs(run_dir)
    if not found.runs:
        extra = (
            f" ({len(found.unfinished)} unfinished run folder(s) found)" if found.unfinished else ""
        )
        raise NoRunsError(f"no metrics.json below {run_dir}{extra}: nothing to report")
    out = Path(out_dir) if out_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    runs, duplicate_warnings = deduplicate(found.runs)
    rows, warnings = summarise(runs, folds)
    warnings = [*found.problems, *duplicate_warnings, *warnings]
    for warning in warnings:
        log.warning("%s", warning)
    notes: list[str] = []
    if found.unfinished:
        shown = ", ".join(str(p.relative_to(run_dir)) for p in found.unfinished[:5])
        notes.append(
            f"{len(found.unfinished)} unfinished run folder(s) (no metrics.json) ignored: {shown}"
            + (" …" if len(found.unfinished) > 5 else "")
        )
    if any(len(r["seeds"]) > 1 for r in rows):
        notes.append(
            "Some configurations have runs of several seeds: scores are averaged over folds "
            "within each seed first, then over seeds; ± is the fold std pooled over seeds "
            "(summary.csv also gives the std of the seed means, *_seed_std)."
        )
    paths: dict[str, Path] = {}
    paths["summary.csv"] = write_summary_csv(rows, out / "summary.csv")

    from unet_transfer.report import figures  # matplotlib loads only when drawing

    figure_names = []
    for metric in METRICS:
        try:
            written = figures.plot_metric_vs_blocks(rows, metric, out / f"{metric}_vs_blocks.png")
        except Exception as error:  # a figure must never stop the report
            written = None
            notes.append(f"{metric}_vs_blocks.png failed: {type(error).__name__}: {error}")
            log.warning("%s_vs_blocks.png failed: %s", metric, error)
        if written:
            paths[written.name] = written
            figure_names.append(written.name)
    if not figure_names:
        notes.append("No score-vs-blocks figure: no shallow-to-deep / deep-to-shallow runs found.")
    examples, example_notes = figures.write_examples(rows, out / "examples.png")
    if examples:
        paths["examples.png"] = examples
        figure_names.append(examples.name)
    notes += [f"examples.png: {note}" + ("" if examples else "; skipped") for note in example_notes]

    from unet_transfer.report.stats import stats_markdown

    paths["stats.md"] = out / "stats.md"
    atomic_write_text(paths["stats.md"], stats_markdown(rows))
    epoch_text = epoch_check_markdown(rows)
    if epoch_text:
        paths["epoch_check.md"] = out / "epoch_check.md"
        atomic_write_text(paths["epoch_check.md"], epoch_text)
    from unet_transfer.report.ablation import write_setting_gaps

    paths.update(write_setting_gaps(runs, out))
    source = str(run_dir)
    text = summary_markdown(
        rows, warnings, notes, source, len(found.runs), len(found.unfinished), figure_names
    )
    paths["summary.md"] = out / "summary.md"
    atomic_write_text(paths["summary.md"], text + "\n")
    for note in notes:
        log.info("%s", note)
    order = [
        "summary.md",
        "summary.csv",
        "stats.md",
        "epoch_check.md",
        *(f"{m}_vs_blocks.png" for m in METRICS),
        "examples.png",
    ]
    return {name: paths[name] for name in [*order, *sorted(set(paths) - set(order))] if name in paths}
