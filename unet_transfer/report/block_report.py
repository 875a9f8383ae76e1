"""analysis.md: what fine-tuning changed in each block, per strategy (unet_transfer/analysis).

Per block, mean ± std over folds: the relative weight change from the loaded weights, the
linear CKA between the loaded and the fine-tuned network's features on the held-out images,
and the gradient norm during training. Figures: the paths (contracting, expanding, all) as
lines over the blocks (block_analysis.png), the k sweep as heatmaps (block_analysis_by_k.png)
and, when a dataset setting was swept (the speckle ablation), block 1 against it. The Fig. 5
grid (report/fig5.py) is shown here too.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from unet_transfer.blocks import DIRECTION_TITLES, SWEPT_DIRECTIONS
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
MEASURES = {  # metrics.json key -> (title, what it says)
    "block_change": ("Relative weight change ||w − w0|| / ||w0||", "0 = the block kept its loaded weights"),
    "block_cka": ("Linear CKA of the block's features, loaded vs fine-tuned", "1 = the same representation"),
    "block_grad_norm": ("Gradient norm during training (mean over epochs)", "0 = no learning signal"),
}
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
    return {name: row for name, row in found.items() if any(run.get("block_change") for run in row["runs"])}


def cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def plot_paths(found: dict[str, dict], layout, path: Path, title: str) -> Path:
    fig = Figure(figsize=(11.5, 3.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(MEASURES))
    for ax, (measure, (label, meaning)) in zip(axes, MEASURES.items(), strict=True):
        for name, row in found.items():
            mean, std = per_block(row, measure)
            if not mean:
                continue
            colour, marker = PATH_STYLE[name]
            blocks = np.array(sorted(mean))
            ax.errorbar(blocks, [mean[b] for b in blocks], yerr=np.nan_to_num([std[b] for b in blocks]),
                        color=colour, marker=marker, markersize=4, capsize=3, linewidth=1.5,
                        label=row["label"].split(" (")[0] if name != "all" else "All blocks")
        ax.set_title(f"{label}\n({meaning})", fontsize=9)
        ax.set_xticks(layout.numbers, [f"{b} {n}" for b, n in zip(layout.numbers, layout.names, strict=True)],
                      fontsize=7, rotation=40, ha="right", rotation_mode="anchor")  # upright names collide
        ax.grid(True, axis="y", color="#dddddd", linewidth=0.8)
        ax.set_axisbelow(True)
    axes[0].legend(fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=DPI)
    return path


def plot_by_k(rows: list[dict], group, path: Path, title: str) -> Path | None:
    """Heatmaps: rows k, columns blocks; change and CKA, for each direction of the k sweep."""
    layout = group_layout(rows, group)
    measures = ("block_change", "block_cka")
    grids = {}
    for measure in measures:
        for direction in SWEPT_DIRECTIONS:
            grid = np.full((len(layout.k_range), layout.n), np.nan)
            for k in layout.k_range:
                row = find_row(rows, group, direction, k)
                if row is not None:
                    mean, _ = per_block(row, measure)
                    for block, value in mean.items():
                        grid[k - 1, block - 1] = value
            grids[(measure, direction)] = grid
    if all(np.isnan(g).all() for g in grids.values()):
        return None
    fig = Figure(figsize=(10, 8.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(2, 2)
    for r, measure in enumerate(measures):
        high = np.nanmax([np.nanmax(grids[(measure, d)]) for d in SWEPT_DIRECTIONS if not np.isnan(grids[(measure, d)]).all()])
        low = 0.0 if measure == "block_change" else min(0.0, np.nanmin([np.nanmin(g) for (m, _), g in grids.items() if m == measure]))
        for c, direction in enumerate(SWEPT_DIRECTIONS):
            ax = axes[r, c]
            image = ax.imshow(grids[(measure, direction)], cmap="viridis" if measure == "block_change" else "magma",
                              vmin=low, vmax=high if measure == "block_change" else 1.0, origin="upper", aspect="equal")
            ax.set_title(f"{DIRECTION_TITLES[direction]}: {MEASURES[measure][0].split(' ||')[0].split(' of')[0]}",
                         fontsize=9)
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
        for name in ("contracting", "expanding"):
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


def analysis_markdown(report: Report, figures: dict[str, list[str]], settings: dict[str, list[dict]]) -> str:
    rows = report.rows
    lines = ["# Why the layers matter: what fine-tuning changed in each block", "",
             f"Source: `{report.root}`. Per block, mean ± sample std over folds: " + "; ".join(
                 f"**{label}** ({meaning})" for label, meaning in MEASURES.values()) + ". The CKA compares each "
             "block's features on the held-out images, image positions as examples and channels as features "
             "(unet_transfer/analysis/cka.py); the loaded weights are the pretrained ones (or the random "
             "initialisation when trained from scratch).", ""]
    for dataset in sorted({r["dataset"] for r in rows}):
        group = primary_group(rows, dataset)
        found = strategies(rows, group) if group else {}
        if not found:
            continue
        layout = group_layout(rows, group)
        lines += [f"## {dataset} ({group_words(group)})", ""]
        for measure, (label, _) in MEASURES.items():
            table = []
            for row in found.values():
                mean, std = per_block(row, measure)
                table.append([f"{row['label']}", *(cell(mean.get(b, math.nan), std.get(b, math.nan)) for b in layout.numbers)])
            lines += [f"### {label}", ""]
            lines += markdown_table(["Strategy", *(f"{b} {layout.name(b)}" for b in layout.numbers)], table) + [""]
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
    ANALYSIS_FILE: "per-block weight change, CKA and gradient norm per strategy, Fig. 5",
    "block_analysis.png": "per-block change, CKA and gradient norm of the paths",
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
    if not written:
        return {}
    report.written.update(written)
    written[ANALYSIS_FILE] = atomic_write_text(out / ANALYSIS_FILE, analysis_markdown(report, figures, settings) + "\n")
    return written
