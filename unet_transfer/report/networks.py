"""Networks side by side, for a study of several networks (`model=unet`, `model=flexunet`,
`model=basicunet`, ...): networks.md, one section per network (its blocks, and its k sweep with
the blocks each step trains and the share of parameters that is), and networks.png, mean Dice
against the share of the network's parameters trained (metrics.json `trainable_share`), one line
per network and direction, error bars the std over folds. A share, not k, is the common axis:
networks have different numbers of blocks and of parameters per block."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from unet_transfer.blocks import DIRECTION_SHORT, DIRECTION_TITLES, SWEPT_DIRECTIONS
from unet_transfer.files import atomic_write_text
from unet_transfer.metrics import METRICS
from unet_transfer.report.aggregate import (
    find_row,
    group_layout,
    group_network,
    group_words,
    networks_in,
    primary_group,
)
from unet_transfer.report.collect import network_name
from unet_transfer.report.registry import Report, entry
from unet_transfer.report.tables import cell, markdown_table

FIGURE, TEXT = "networks.png", "networks.md"
METRIC = "dice"
STYLES = {"shallow_to_deep": ("-", "o"), "deep_to_shallow": ("--", "s")}
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def compared(rows: list[dict]) -> dict[str, list]:
    """{dataset: its networks' primary sweeps} for the datasets with k sweeps of several networks."""
    out = {}
    for dataset in sorted({r["dataset"] for r in rows}):
        groups = [primary_group(rows, dataset, network) for network in networks_in(rows, dataset)]
        groups = [g for g in groups if g is not None]
        if len(groups) > 1:
            out[dataset] = groups
    return out


def network_title(rows: list[dict], group) -> str:
    """'FlexibleUNet (resnet18)', as the runs recorded their blocks, else the config's name."""
    layout = group_layout(rows, group)
    title = layout.network or network_name(dict(group_network(group) or ()).get("model._target_"))
    return title[:1].upper() + title[1:]


def sweep(rows: list[dict], group, direction: str) -> list[dict]:
    return [row for k in group_layout(rows, group).k_range if (row := find_row(rows, group, direction, k))]


def share(row: dict) -> float:
    return row["costs"].get("trainable_share", math.nan)


def section(rows: list[dict], group) -> list[str]:
    """One network's section: its blocks, then its k sweep with the blocks and share trained."""
    layout = group_layout(rows, group)
    lines = [f"### {network_title(rows, group)}", "", f"{group_words(group)}. {layout.legend()}", ""]
    table = []
    for direction in SWEPT_DIRECTIONS:
        for row in sweep(rows, group, direction):
            names = ", ".join(layout.name(b) for b in layout.swept(direction, row["k"]))
            trained = f"{100 * share(row):.1f}%" if not math.isnan(share(row)) else "–"
            table.append([DIRECTION_SHORT[direction], str(row["k"]), names, trained,
                          *(cell(row, m) for m in METRICS)])
    header = ["", "k", "Blocks trained", "Parameters trained", *(m.label for m in METRICS.values())]
    return lines + markdown_table(header, table) + [""]


def plot(rows: list[dict], comparisons: dict[str, list], path: Path) -> Path:
    panels = list(comparisons.items())
    fig = Figure(figsize=(6.2 * len(panels) + 0.4, 4.8), dpi=150, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    handles, labels = [], []
    for ax, (dataset, groups) in zip(axes, panels, strict=True):
        for colour, group in zip(PALETTE * 4, groups, strict=False):
            title = network_title(rows, group)
            for direction in SWEPT_DIRECTIONS:
                points = [r for r in sweep(rows, group, direction) if not math.isnan(share(r))]
                if not points:
                    continue
                style, marker = STYLES[direction]
                handle = ax.errorbar([100 * share(r) for r in points], [r["mean"][METRIC] for r in points],
                                     yerr=[0 if math.isnan(r["std"][METRIC]) else r["std"][METRIC] for r in points],
                                     color=colour, linestyle=style, marker=marker, markersize=5, linewidth=1.6,
                                     capsize=3, elinewidth=0.9, alpha=0.9)
                label = f"{title}, {DIRECTION_TITLES[direction].lower()}"
                if label not in labels:
                    handles.append(handle)
                    labels.append(label)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}%"))
        ax.set_xlabel("Share of the network's parameters trained (log scale)")
        ax.set_ylabel(METRICS[METRIC].axis_label)
        ax.set_title(f"{dataset} ({group_words(groups[0]).split(',')[0]})", fontsize=11)
        ax.grid(True, which="both", color="#e4e4e4", linewidth=0.7)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.suptitle(f"Networks side by side: {METRICS[METRIC].label} vs share of parameters fine-tuned\n"
                 "(mean ± std over folds)", fontsize=11)
    fig.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False, fontsize=8.5)
    fig.savefig(path, dpi=150)
    return path


@entry(FIGURE, order=55, describes={FIGURE: "networks side by side: Dice vs share of parameters trained",
                                    TEXT: "one section per network: its blocks and its k sweep"})
def write_networks(report: Report, out: Path) -> dict[str, Path]:
    comparisons = compared(report.rows)
    if not comparisons:
        return {}
    lines = ["# Networks side by side", "",
             f"Each network's own blocks and k sweep; ![{FIGURE}]({FIGURE}) puts them on one axis, the share of "
             "the network's parameters that train (k counts blocks of different sizes in different networks).", ""]
    for dataset, groups in comparisons.items():
        lines += [f"## {dataset}", ""]
        for group in groups:
            lines += section(report.rows, group)
    text = atomic_write_text(out / TEXT, "\n".join(lines) + "\n")
    figure = plot(report.rows, comparisons, out / FIGURE)
    names = "; ".join(f"{dataset}: " + ", ".join(network_title(report.rows, g) for g in groups)
                      for dataset, groups in comparisons.items())
    report.sections.append("\n".join([
        "## Networks", "", f"This study compares networks ({names}); [{TEXT}]({TEXT}) has one section per network "
        "(its blocks, the blocks and the share of parameters each k trains).", "", f"![{FIGURE}]({FIGURE})"]))
    return {TEXT: text, FIGURE: figure}
