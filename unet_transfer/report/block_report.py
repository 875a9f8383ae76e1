"""analysis.md: what fine-tuning changed in each block, per strategy (unet_transfer/analysis).

Per block, mean ± std over folds, each per-run measure of the registry (analysis/registry.py:
the relative weight change from the loaded weights, the linear CKA between the loaded and the
fine-tuned network's features on the held-out images, the gradient norm during training, and
any measure registered since), then each fine-tuning method's per-block summary (Auto-RGN's
learning-rate scales). Figures: the paths (contracting, expanding, all) as lines over the
blocks (block_analysis.png), the k sweep as heatmaps of the measures that ask for one
(block_analysis_by_k.png) and, when a dataset setting was swept (the speckle ablation), block 1
against it. The Fig. 5 grid (report/fig5.py) is shown here too.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from unet_transfer.analysis.registry import Shown, shown
from unet_transfer.blocks import DIRECTION_TITLES, PATHS, SWEPT_DIRECTIONS
from unet_transfer.files import atomic_write_text
from unet_transfer.report.aggregate import (
    find_row,
    group_layout,
    group_words,
    path_rows,
    primary_group,
)
from unet_transfer.report.collect import run_path
from unet_transfer.report.registry import Report, entry
from unet_transfer.report.tables import markdown_table

DPI = 150
PATH_STYLE = {"contracting": ("#1f77b4", "o"), "expanding": ("#d62728", "s"), "all": ("#555555", "^")}
ANALYSIS_FILE = "analysis.md"


def per_block(row: dict, measure: str) -> tuple[dict[int, float], dict[int, float]]:
    """Mean and sample std over the row's folds (each fold averaged over its seeds) per block."""
    by_fold: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in row["runs"]:
        for block, value in (run.get(measure) or {}).items():
            if value is not None and not math.isnan(value):
                by_fold[run["fold"]][int(block)].append(float(value))
    folds = [{b: statistics.fmean(v) for b, v in fold.items()} for fold in by_fold.values()]
    blocks = sorted({b for fold in folds for b in fold})
    mean = {b: statistics.fmean(f[b] for f in folds if b in f) for b in blocks}
    std = {b: statistics.stdev([f[b] for f in folds if b in f]) if sum(b in f for f in folds) > 1 else math.nan
           for b in blocks}
    return mean, std


def strategies(rows: list[dict], group) -> dict[str, dict]:
    """The paths of a sweep and its all-blocks row: {'contracting': row, 'expanding': row, 'all': row}."""
    found = {path: row for path, row in path_rows(rows, group).items() if row is not None}
    layout = group_layout(rows, group)
    every = find_row(rows, group, "shallow_to_deep", layout.k_range[-1]) or next(
        (r for r in rows if r["role"] == "all_blocks" and r["dataset"] == group.dataset), None)
    if every is not None:
        found["all"] = every
    return {name: row for name, row in found.items() if measured(row["runs"])}


def measured(runs: list[dict]) -> list[Shown]:
    """The registered measures that any of `runs` recorded (old runs lack newer ones)."""
    return [kind for kind in shown() if any(run.get(kind.key) for run in runs)]


def is_per_block(value) -> bool:
    """{block number: value}: how metrics.json holds a per-block summary."""
    return (isinstance(value, dict) and bool(value) and all(isinstance(k, str) and k.isdigit() for k in value)
            and all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in value.values()))


def method_summaries(runs: list[dict]) -> list[str]:
    """The metrics.json keys of fine-tuning methods' per-block summaries (Method.summary(), such
    as Auto-RGN's rgn_scale): per-block values that no registered measure wrote."""
    measures = {kind.key for kind in shown()}
    keys: list[str] = []
    for run in runs:
        keys += [key for key, value in run.items() if key not in measures and key not in keys and is_per_block(value)]
    return keys


def cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def plot_paths(found: dict[str, dict], layout, path: Path, title: str) -> Path:
    entries = measured([run for row in found.values() for run in row["runs"]])
    fig = Figure(figsize=(11.5 * len(entries) / 3, 3.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(entries), squeeze=False)[0]
    for ax, kind in zip(axes, entries, strict=True):
        for name, row in found.items():
            mean, std = per_block(row, kind.key)
            if not mean:
                continue
            colour, marker = PATH_STYLE[name]
            blocks = np.array(sorted(mean))
            ax.errorbar(blocks, [mean[b] for b in blocks], yerr=np.nan_to_num([std[b] for b in blocks]),
                        color=colour, marker=marker, markersize=4, capsize=3, linewidth=1.5,
                        label=row["label"].split(" (")[0] if name != "all" else "All blocks")
        ax.set_title(f"{kind.title}\n({kind.meaning})", fontsize=9)
        ax.set_xticks(layout.numbers, [f"{b} {n}" for b, n in zip(layout.numbers, layout.names, strict=True)],
                      fontsize=7, rotation=40, ha="right", rotation_mode="anchor")  # upright names collide
        ax.grid(True, axis="y", color="#dddddd", linewidth=0.8)
        ax.set_axisbelow(True)
    axes[0].legend(fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=DPI)
    return path


def plot_by_k(rows: list[dict], group, path: Path, title: str) -> Path | None:
    """Heatmaps: rows k, columns blocks; one row of heatmaps per measure that asks for one (change
    and CKA), for each direction of the k sweep."""
    layout = group_layout(rows, group)
    measures = [kind for kind in shown() if kind.colormap]
    grids = {}
    for measure in measures:
        for direction in SWEPT_DIRECTIONS:
            grid = np.full((len(layout.k_range), layout.n), np.nan)
            for k in layout.k_range:
                row = find_row(rows, group, direction, k)
                if row is not None:
                    mean, _ = per_block(row, measure.key)
                    for block, value in mean.items():
                        grid[k - 1, block - 1] = value
            grids[(measure, direction)] = grid
    measures = [m for m in measures if not all(np.isnan(grids[(m, d)]).all() for d in SWEPT_DIRECTIONS)]
    if not measures:
        return None
    fig = Figure(figsize=(10, 4.2 * len(measures)), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(measures), 2, squeeze=False)
    for r, measure in enumerate(measures):
        values = [grids[(measure, d)] for d in SWEPT_DIRECTIONS if not np.isnan(grids[(measure, d)]).all()]
        high = np.nanmax([np.nanmax(g) for g in values]) if measure.high is None else measure.high
        low = min(0.0, np.nanmin([np.nanmin(g) for g in values])) if measure.low is None else measure.low
        for c, direction in enumerate(SWEPT_DIRECTIONS):
            ax = axes[r, c]
            image = ax.imshow(grids[(measure, direction)], cmap=measure.colormap, vmin=low, vmax=high, origin="upper",
                              aspect="equal")
            ax.set_title(f"{DIRECTION_TITLES[direction]}: {measure.short}", fontsize=9)
            ax.set_xticks(range(layout.n), layout.numbers, fontsize=7)
            ax.set_yticks(range(len(layout.k_range)), layout.k_range, fontsize=7)
            ax.set_xlabel("block", fontsize=8)
            ax.set_ylabel("k (blocks fine-tuned)", fontsize=8)
            fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=DPI)
    return path


def setting_rows(runs: list[dict], setting: str) -> list[dict]:
    """Block 1's change and CKA against a swept dataset setting, for the strategies that train it."""
    values: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for run in runs:
        value = (run.get("dataset_settings") or {}).get(setting)
        path = run_path(run)
        if value is None or path is None or not run.get("block_change") or run.get("epochs", 1) == 0:
            continue
        values[(float(value), path)].append((run["block_change"].get("1", math.nan), run["block_cka"].get("1", math.nan)))
    out = []
    for (value, path), pairs in sorted(values.items()):
        change, cka = [p[0] for p in pairs], [p[1] for p in pairs]
        out.append({"value": value, "path": path, "folds": len(pairs),
                    "change": statistics.fmean(change), "change_std": statistics.stdev(change) if len(change) > 1 else math.nan,
                    "cka": statistics.fmean(cka), "cka_std": statistics.stdev(cka) if len(cka) > 1 else math.nan})
    return out


def plot_setting(rows: list[dict], setting: str, path: Path) -> Path:
    fig = Figure(figsize=(9, 3.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (key, label) in zip(axes, (("change", "Block 1 relative weight change"), ("cka", "Block 1 CKA (loaded vs tuned)")),
                                strict=True):
        for name in PATHS:
            points = [r for r in rows if r["path"] == name]
            if points:
                colour, marker = PATH_STYLE[name]
                ax.errorbar([r["value"] for r in points], [r[key] for r in points],
                            yerr=np.nan_to_num([r[f"{key}_std"] for r in points]), color=colour, marker=marker,
                            capsize=3, label=f"{name}-tuned")
        ax.set_xlabel(setting)
        ax.set_title(label, fontsize=10)
        ax.grid(True, color="#eeeeee")
    axes[0].legend(fontsize=8, frameon=False)
    fig.suptitle(f"Block 1 against {setting} (mean ± std over folds)", fontsize=11)
    fig.savefig(path, dpi=DPI)
    return path


def method_tables(rows: list[dict]) -> list[str]:
    """One table per fine-tuning method's per-block summary (metrics.json keys such as Auto-RGN's
    rgn_scale) and network: every configuration that recorded it, mean ± std over folds per block."""
    lines = []
    for key in method_summaries([run for row in rows for run in row["runs"]]):
        having = [row for row in rows if any(is_per_block(run.get(key)) for run in row["runs"])]
        by_blocks: dict[tuple, list[dict]] = defaultdict(list)
        for row in having:
            by_blocks[tuple(row["layout"].names)].append(row)
        for same in by_blocks.values():
            layout = same[0]["layout"]
            methods = ", ".join(sorted({str(run.get("method")) for row in same for run in row["runs"] if run.get(key)}))
            table = []
            for row in same:
                mean, std = per_block(row, key)
                table.append([row["label"], *(cell(mean.get(b, math.nan), std.get(b, math.nan)) for b in layout.numbers)])
            lines += [f"### Method summary: `{key}` (finetune={methods})", ""]
            lines += markdown_table(["Configuration", *(f"{b} {layout.name(b)}" for b in layout.numbers)], table) + [""]
    return lines


def analysis_markdown(report: Report, figures: dict[str, list[str]], settings: dict[str, list[dict]]) -> str:
    rows = report.rows
    lines = ["# Why the layers matter: what fine-tuning changed in each block", "",
             f"Source: `{report.root}`. Per block, mean ± sample std over folds: " + "; ".join(
                 f"**{kind.title}** ({kind.meaning})" for kind in measured(report.runs)) + ". The CKA compares each "
             "block's features on the held-out images, image positions as examples and channels as features "
             "(unet_transfer/analysis/cka.py); the loaded weights are the pretrained ones (or the random "
             "initialisation when trained from scratch).", ""]
    for dataset in sorted({r["dataset"] for r in rows}):
        group = primary_group(rows, dataset)
        found = strategies(rows, group) if group else {}
        methods = method_tables([r for r in rows if r["dataset"] == dataset])
        if not found and not methods:
            continue
        lines += [f"## {dataset}" + (f" ({group_words(group)})" if found else ""), ""]
        if found:
            layout = group_layout(rows, group)
            for kind in measured([run for row in found.values() for run in row["runs"]]):
                table = []
                for row in found.values():
                    mean, std = per_block(row, kind.key)
                    table.append([f"{row['label']}", *(cell(mean.get(b, math.nan), std.get(b, math.nan)) for b in layout.numbers)])
                lines += [f"### {kind.title}", ""]
                lines += markdown_table(["Strategy", *(f"{b} {layout.name(b)}" for b in layout.numbers)], table) + [""]
        lines += methods
        lines += [f"![{Path(f).stem}]({f})" for f in figures.get(dataset, [])] + [""]
    for setting, found_rows in settings.items():
        lines += [f"## Block 1 against `{setting}`", "",
                  "The paper's hypothesis: shallow blocks carry modality-specific low-level patterns such as "
                  "speckle, so block 1 should move more, and its features change more, as the setting grows. "
                  "What was measured, whichever way it goes:", ""]
        lines += markdown_table([setting, "Strategy", "Folds", "Block 1 change", "Block 1 CKA"],
                                [[f"{r['value']:g}", f"{r['path']}-tuned", str(r["folds"]), cell(r["change"], r["change_std"]),
                                  cell(r["cka"], r["cka_std"])] for r in found_rows])
        lines += ["", f"![block1_vs_{setting}](block1_vs_{setting}.png)", ""]
    fig5 = [name for name in report.written if "activation" in name]
    if fig5:
        lines += ["## Fig. 5: what single units respond to", "",
                  "Inputs that maximise single units (channels) of the 4th convolution and of the deepest "
                  "convolution, by activation maximisation from one seed, for the loaded network and the "
                  "fine-tuned ones (unet_transfer/analysis/activation.py). A frozen layer whose input is "
                  "unchanged gives the same picture as the loaded network.", "", f"![activation]({fig5[0]})", ""]
    return "\n".join(lines)


@entry(ANALYSIS_FILE, order=80, describes={
    ANALYSIS_FILE: "per-block weight change, CKA, gradient norm (each registered measure) and method summaries per strategy, Fig. 5",
    "block_analysis.png": "per-block change, CKA, gradient norm (each registered measure) of the paths",
    "block_analysis_by_k.png": "per-block change and CKA over the k sweep"})
def write_analysis(report: Report, out: Path) -> dict[str, Path]:
    written: dict[str, Path] = {}
    figures: dict[str, list[str]] = defaultdict(list)
    datasets = sorted({r["dataset"] for r in report.rows})
    for dataset in datasets:
        group = primary_group(report.rows, dataset)
        found = strategies(report.rows, group) if group else {}
        if not found:
            continue
        suffix = "" if len(datasets) == 1 else f"_{dataset}"
        title = f"{dataset} ({group_words(group)})"
        layout = group_layout(report.rows, group)
        for made in (plot_paths(found, layout, out / f"block_analysis{suffix}.png", title),
                     plot_by_k(report.rows, group, out / f"block_analysis_by_k{suffix}.png", title)):
            if made:
                written[made.name] = made
                figures[dataset].append(made.name)
    from unet_transfer.report.ablation import swept_settings

    settings = {s: rows for s in swept_settings(report.runs) if (rows := setting_rows(report.runs, s))}
    for setting, rows in settings.items():
        made = plot_setting(rows, setting, out / f"block1_vs_{setting}.png")
        written[made.name] = made
    if not written and not any(method_tables([r for r in report.rows if r["dataset"] == d]) for d in datasets):
        return {}
    report.written.update(written)
    written[ANALYSIS_FILE] = atomic_write_text(out / ANALYSIS_FILE, analysis_markdown(report, figures, settings) + "\n")
    return written
