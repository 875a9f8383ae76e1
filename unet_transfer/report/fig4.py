"""The paper's Fig. 4: each score against the number of fine-tuned blocks k, both directions,
one panel per dataset (<metric>_vs_blocks.png). Uses matplotlib's object API (no pyplot
state, no display)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from unet_transfer.blocks import DIRECTION_TITLES, SWEPT_DIRECTIONS
from unet_transfer.metrics import METRICS
from unet_transfer.report.aggregate import (
    ANY,
    find_row,
    group_layout,
    networks_in,
    primary_group,
    reference_label,
    references_for,
    study_groups,
)
from unet_transfer.report.collect import variant_words
from unet_transfer.report.registry import Report, entry
from unet_transfer.report.tables import has_k_sweep

DPI = 150
TITLE_CHARACTERS = 55  # a panel is 5 inches wide: about this many characters at font size 11
COLOURS = {"shallow_to_deep": "#1f77b4", "deep_to_shallow": "#d62728"}
MARKERS = {"shallow_to_deep": "o", "deep_to_shallow": "s"}
REFERENCE_STYLE = {"all_blocks": ("#555555", "--"), "scratch": ("#000000", ":")}


def plot_metric_vs_blocks(rows: list[dict], metric: str, path: Path) -> Path | None:
    """Mean ± std over folds of `metric` against k, both directions, one panel per dataset.

    Reference rows (all blocks fine-tuned, trained from scratch) are horizontal lines labelled
    with their value; hollow markers flag configurations with fewer folds than expected.
    Returns None (and draws nothing) when no dataset has a k sweep (see tables.has_k_sweep).
    """
    datasets = [(d, network) for d in sorted({r["dataset"] for r in rows}) for network in networks_in(rows, d)
                if swept(rows, d, network)]  # one panel per dataset and network: its own k and blocks
    if not datasets:
        return None
    columns = min(3, len(datasets))
    lines_of_panels = math.ceil(len(datasets) / columns)
    fig = Figure(
        figsize=(5.0 * columns + 0.6, 3.9 * lines_of_panels + 1.0), dpi=DPI, layout="constrained"
    )
    axes = fig.subplots(lines_of_panels, columns, squeeze=False).ravel()
    legend: dict[str, object] = {}
    for ax, (dataset, network) in zip(axes, datasets, strict=False):
        legend.update(_panel(ax, rows, dataset, metric, network))
    for ax in axes[len(datasets) :]:
        ax.set_visible(False)
    gap = "\n" if columns == 1 else " "  # one panel is too narrow for the title on one line
    fig.suptitle(
        f"{METRICS[metric].axis_label} vs number of fine-tuned blocks{gap}(mean ± std over folds)",
        fontsize=12,
    )
    labels = sorted(legend, key=_legend_order)
    fig.legend(
        [legend[label] for label in labels],
        labels,
        loc="outside lower center",
        ncols=min(len(labels), 4),
        frameon=False,
        fontsize=9,
    )
    fig.savefig(path, dpi=DPI)
    return path


def swept(rows: list[dict], dataset: str, network=ANY) -> bool:
    """Whether the dataset's primary sweep (of this network) is a k sweep (not the two paths alone)."""
    primary = primary_group(rows, dataset, network)
    return primary is not None and has_k_sweep(rows, primary)


def _legend_order(label: str) -> tuple:
    first = (
        "Shallow to deep",
        "Deep to shallow",
        "All blocks",
        "Trained from scratch",
        "Fewer folds",
    )
    position = next((n for n, start in enumerate(first) if label.startswith(start)), len(first))
    return ("epochs" in label, position, label)


def _panel(ax, rows, dataset, metric, network=ANY) -> dict[str, object]:
    """Draw one dataset (and network); returns the legend entries {label: handle} it used."""
    primary = primary_group(rows, dataset, network)
    groups = [g for g in study_groups(rows, dataset, network)
              if g.has_pretrained == primary.has_pretrained and has_k_sweep(rows, g)]
    layout = group_layout(rows, primary)
    legend: dict[str, object] = {}
    for group in sorted(groups, key=lambda g: g != primary):
        is_primary = group == primary
        for i, direction in enumerate(SWEPT_DIRECTIONS):
            points = [find_row(rows, group, direction, k) for k in group_layout(rows, group).k_range]
            points = [p for p in points if p is not None]
            if not points:
                continue
            offset = (-0.07 if i == 0 else 0.07) * (1 if is_primary else 1.8)
            ks = np.array([p["k"] for p in points], dtype=float) + offset
            means = np.array([p["mean"][metric] for p in points])
            stds = np.nan_to_num(np.array([p["std"][metric] for p in points]))
            label = DIRECTION_TITLES[direction] + ("" if is_primary else f", {group_difference(group, primary)}")
            colour = COLOURS[direction]
            handle = ax.errorbar(
                ks,
                means,
                yerr=stds,
                color=colour,
                marker=MARKERS[direction],
                markersize=5,
                linewidth=1.8 if is_primary else 1.2,
                linestyle="-" if is_primary else "--",
                alpha=1.0 if is_primary else 0.55,
                capsize=3,
                elinewidth=1,
                zorder=3,
            )
            legend.setdefault(label, handle)
            hollow = [j for j, p in enumerate(points) if p["flag"]]
            if hollow:
                ax.plot(
                    ks[hollow],
                    means[hollow],
                    linestyle="none",
                    marker=MARKERS[direction],
                    markersize=6,
                    markerfacecolor="white",
                    markeredgecolor=colour,
                    zorder=4,
                )
                legend.setdefault(
                    "Fewer folds than expected",
                    Line2D(
                        [],
                        [],
                        linestyle="none",
                        marker="o",
                        markerfacecolor="white",
                        markeredgecolor="#444444",
                    ),
                )
    for ref in references_for(rows, primary):
        if ref["role"] not in REFERENCE_STYLE:
            continue
        colour, style = REFERENCE_STYLE[ref["role"]]
        value = ref["mean"][metric]
        more = "" if ref["epochs"] == primary.epochs else f", {ref['epochs']} ep."
        ax.axhline(value, color=colour, linestyle=style, linewidth=1.3, zorder=2)
        ax.annotate(
            f"{value:.3g}{more}{' ⚠' if ref['flag'] else ''}",
            (1.0, value),
            xycoords=("axes fraction", "data"),
            textcoords="offset points",
            xytext=(3, 1) if ref["role"] == "all_blocks" else (3, -1),
            va="bottom" if ref["role"] == "all_blocks" else "top",
            ha="left",
            fontsize=8,
            color=colour,
        )
        legend.setdefault(reference_label(ref, primary), Line2D([], [], color=colour, linestyle=style, linewidth=1.3))
    start = "pretrained" if primary.has_pretrained else "from scratch"
    extra = f", {variant_words(primary.variant, primary.method)}" if primary.variant or primary.method != "freeze" else ""
    title = f"{dataset} ({start}, {primary.epochs} epochs{extra})"
    ax.set_title(textwrap.fill(title, TITLE_CHARACTERS), fontsize=11)  # a network's words make long titles
    ax.set_xlabel(f"Number of {layout.k_words} fine-tuned, k\n({layout.n} blocks of {layout.described}: "
                  f"1 = {layout.names[0]} … {layout.n} = {layout.names[-1]})", fontsize=9)
    ax.set_ylabel(METRICS[metric].axis_label)
    ax.set_xticks(layout.k_range)
    ax.set_xlim(0.5, len(layout.k_range) + 0.5)
    low, high = ax.get_ylim()
    if METRICS[metric].higher_is_better and high > 1.0:  # Dice and adjusted Rand end at 1
        ax.set_ylim(low, 1.005)
    if not METRICS[metric].higher_is_better and low < 0:  # errors start at 0
        ax.set_ylim(0, high)
    ax.grid(True, axis="y", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return legend


def group_difference(group, primary) -> str:
    """How a further sweep differs from the primary one, for its legend label."""
    words = [f"{group.epochs} epochs"] if group.epochs != primary.epochs else []
    if (group.variant, group.method) != (primary.variant, primary.method):
        words.append(variant_words(group.variant, group.method) or "default settings")
    return ", ".join(words)


@entry("vs_blocks", order=50, describes={
    "dice_vs_blocks.png": "Fig. 4, Dice vs number of fine-tuned blocks",
    "pixel_error_vs_blocks.png": "pixel error vs number of fine-tuned blocks",
    "adjusted_rand_vs_blocks.png": "adjusted Rand vs number of fine-tuned blocks",
})
def write_vs_blocks(report: Report, out: Path) -> dict[str, Path]:
    """<metric>_vs_blocks.png for every metric (Fig. 4 is dice_vs_blocks.png)."""
    written = {}
    for metric in METRICS:
        path = plot_metric_vs_blocks(report.rows, metric, out / f"{metric}_vs_blocks.png")
        if path:
            written[path.name] = path
    if not written and any(primary_group(report.rows, d) for d in {r["dataset"] for r in report.rows}):
        report.notes.append("No score-vs-blocks figure (Fig. 4): no k sweep in this study (only the contracting "
                            "and expanding paths ran), so there is nothing to plot against k.")
    elif not written:
        report.notes.append("No score-vs-blocks figure: no shallow-to-deep / deep-to-shallow runs found.")
    return written
