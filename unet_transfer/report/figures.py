"""The report's figures: score against the number of fine-tuned blocks (the paper's Fig. 4) and
example segmentations (Fig. 3). Uses matplotlib's object API (no pyplot state, no display).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from unet_transfer.report.collect import DIRECTIONAL
from unet_transfer.report.tables import (
    find_row,
    primary_group,
    references_for,
    study_groups,
)

DPI = 150
COLOURS = {"shallow_to_deep": "#1f77b4", "deep_to_shallow": "#d62728"}
MARKERS = {"shallow_to_deep": "o", "deep_to_shallow": "s"}
LABELS = {"shallow_to_deep": "Shallow to deep", "deep_to_shallow": "Deep to shallow"}
REFERENCE_STYLE = {"all_blocks": ("#555555", "--"), "scratch": ("#000000", ":")}
AXIS_LABELS = {
    "dice": "Dice",
    "pixel_error": "Pixel error (%)",
    "adjusted_rand": "Adjusted Rand index",
}


def plot_metric_vs_blocks(rows: list[dict], metric: str, path: Path) -> Path | None:
    """Mean ± std over folds of `metric` against k, both directions, one panel per dataset.

    Reference rows (all blocks fine-tuned, trained from scratch) are horizontal lines labelled
    with their value; hollow markers flag configurations with fewer folds than expected.
    Returns None (and draws nothing) when no dataset has shallow/deep sweeps.
    """
    datasets = [d for d in sorted({r["dataset"] for r in rows}) if primary_group(rows, d)]
    if not datasets:
        return None
    columns = min(3, len(datasets))
    lines_of_panels = math.ceil(len(datasets) / columns)
    fig = Figure(
        figsize=(5.0 * columns + 0.6, 3.9 * lines_of_panels + 1.0), dpi=DPI, layout="constrained"
    )
    axes = fig.subplots(lines_of_panels, columns, squeeze=False).ravel()
    legend: dict[str, object] = {}
    for ax, dataset in zip(axes, datasets, strict=False):
        legend.update(_panel(ax, rows, dataset, metric))
    for ax in axes[len(datasets) :]:
        ax.set_visible(False)
    gap = "\n" if columns == 1 else " "  # one panel is too narrow for the title on one line
    fig.suptitle(
        f"{AXIS_LABELS[metric]} vs number of fine-tuned blocks{gap}(mean ± std over folds)",
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


def _panel(ax, rows, dataset, metric) -> dict[str, object]:
    """Draw one dataset; returns the legend entries {label: handle} it used."""
    primary = primary_group(rows, dataset)
    groups = [g for g in study_groups(rows, dataset) if g[0] == primary[0]]
    n_blocks = next(r["n_blocks"] for r in rows if r["dataset"] == dataset)
    legend: dict[str, object] = {}
    for has_pretrained, epochs in sorted(groups, key=lambda g: g != primary):
        is_primary = (has_pretrained, epochs) == primary
        for i, direction in enumerate(DIRECTIONAL):
            points = [
                find_row(rows, dataset, direction, k, has_pretrained, epochs)
                for k in range(1, n_blocks + 1)
            ]
            points = [p for p in points if p is not None]
            if not points:
                continue
            offset = (-0.07 if i == 0 else 0.07) * (1 if is_primary else 1.8)
            ks = np.array([p["k"] for p in points], dtype=float) + offset
            means = np.array([p["mean"][metric] for p in points])
            stds = np.nan_to_num(np.array([p["std"][metric] for p in points]))
            label = LABELS[direction] + ("" if is_primary else f", {epochs} epochs")
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
    for ref in references_for(rows, dataset, primary[1]):
        if ref["role"] not in REFERENCE_STYLE:
            continue
        colour, style = REFERENCE_STYLE[ref["role"]]
        value = ref["mean"][metric]
        more = "" if ref["epochs"] == primary[1] else f", {ref['epochs']} ep."
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
        legend.setdefault(
            ref["label"], Line2D([], [], color=colour, linestyle=style, linewidth=1.3)
        )
    start = "pretrained" if primary[0] else "from scratch"
    ax.set_title(f"{dataset} ({start}, {primary[1]} epochs)", fontsize=11)
    ax.set_xlabel("Number of blocks fine-tuned, k")
    ax.set_ylabel(AXIS_LABELS[metric])
    ax.set_xticks(range(1, n_blocks + 1))
    ax.set_xlim(0.5, n_blocks + 0.5)
    low, high = ax.get_ylim()
    if metric in ("dice", "adjusted_rand") and high > 1.0:
        ax.set_ylim(low, 1.005)
    if metric == "pixel_error" and low < 0:
        ax.set_ylim(0, high)
    ax.grid(True, axis="y", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return legend


# ---------------------------------------------------------------- examples (Fig. 3)


def choose_examples(
    candidates: list[dict], n_extreme: int = 2, n_random: int = 2, seed: int = 0
) -> list[dict]:
    """Reproducible picks among candidates {'fold', 'id', 'difference', ...}.

    First the n_extreme with the largest |difference| (ties by fold, id), then n_random drawn
    with a fixed seed from the rest in (fold, id) order. Each pick gets 'why'.
    """
    ordered = sorted(candidates, key=lambda c: (c["fold"], c["id"]))
    extreme = sorted(ordered, key=lambda c: -abs(c["difference"]))[:n_extreme]
    chosen = {(c["fold"], c["id"]) for c in extreme}
    rest = [c for c in ordered if (c["fold"], c["id"]) not in chosen]
    picks = (
        np.random.default_rng(seed).choice(len(rest), size=min(n_random, len(rest)), replace=False)
        if rest
        else []
    )
    drawn = [rest[i] for i in sorted(int(i) for i in picks)]
    return [{**c, "why": "largest difference"} for c in extreme] + [
        {**c, "why": f"random (seed {seed})"} for c in drawn
    ]


def _load_predictions(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        ids = [str(i) for i in archive["ids"]]
        probabilities = archive["probabilities"]
        return {i: probabilities[n] for n, i in enumerate(ids)}


def _cache_folder(runs: list[dict]) -> Path | None:
    for run in runs:
        cache = run.get("cache")
        if not cache:
            continue
        for candidate in (Path(cache), run["path"] / cache):
            if (candidate / "index.json").exists():
                return candidate
    return None


def _dice(probability: np.ndarray, mask: np.ndarray) -> float:
    pred = probability >= 0.5
    both = np.logical_and(pred, mask).sum()
    total = pred.sum() + mask.sum()
    return 1.0 if total == 0 else float(2 * both / total)


def _pick_run(row: dict | None, fold: int) -> dict | None:
    """The run of `row` in `fold` that kept predictions (lowest seed first)."""
    if row is None:
        return None
    found = [r for r in row["runs"] if r["fold"] == fold and r["predictions"] is not None]
    return min(found, key=lambda r: str(r["seed"])) if found else None


def example_panels(
    rows: list[dict], dataset: str, n_extreme: int = 2, n_random: int = 2, seed: int = 0
) -> tuple[list[dict], str | None]:
    """The example rows of one dataset, or [] and the reason there are none."""
    from unet_transfer.data.cache import load_set

    group = primary_group(rows, dataset)
    if group is None:
        return [], f"{dataset}: no shallow/deep sweep to draw examples from"
    n_blocks = next(r["n_blocks"] for r in rows if r["dataset"] == dataset)
    levels = (n_blocks - 1) // 2
    contracting = find_row(rows, dataset, "shallow_to_deep", levels + 1, *group)
    expanding = find_row(rows, dataset, "deep_to_shallow", levels, *group)
    if contracting is None or expanding is None:
        return [], f"{dataset}: no runs of both the contracting and the expanding path"
    pretrained = find_row(rows, dataset, "pretrained_only", 0, True, 0)
    folds = [
        f
        for f in sorted(set(contracting["per_fold"]) & set(expanding["per_fold"]))
        if _pick_run(contracting, f) and _pick_run(expanding, f)
    ]
    if not folds:
        return [], (
            f"{dataset}: no predictions.npz of the contracting and expanding runs of one fold "
            "(run with save_predictions=true)"
        )
    runs = [r for row in (contracting, expanding, pretrained) if row for r in row["runs"]]
    cache = _cache_folder(runs)
    if cache is None:
        return [], f"{dataset}: the dataset cache named in metrics.json ('cache') is missing"
    try:
        data = load_set(cache)
    except (OSError, ValueError, KeyError) as error:
        return [], f"{dataset}: cannot read the dataset cache {cache} ({error})"
    position = {image_id: n for n, image_id in enumerate(data.ids)}
    loaded: dict[
        tuple[str, int], dict[str, np.ndarray]
    ] = {}  # (column, fold) -> id -> probabilities
    scores: dict[
        tuple[str, int], dict[str, float]
    ] = {}  # (column, fold) -> id -> Dice (per_image.csv)
    sources = (("contracting", contracting), ("expanding", expanding), ("pretrained", pretrained))
    for fold in folds:
        for name, row in sources:
            run = _pick_run(row, fold)
            if run is None:
                continue
            try:
                loaded[(name, fold)] = _load_predictions(run["predictions"])
            except (OSError, ValueError, KeyError) as error:
                if name == "pretrained":  # that column then says "no prediction saved"
                    continue
                return [], f"{dataset}: cannot read {run['predictions']} ({error})"
            scores[(name, fold)] = {i["id"]: i["dice"] for i in run.get("per_image") or ()}
            shapes = {p.shape for p in loaded[(name, fold)].values()}
            if shapes - {data.images.shape[1:]}:
                return [], (
                    f"{dataset}: {run['predictions']} holds maps of shape {sorted(shapes)} but "
                    f"the cached images are {data.images.shape[1:]}; cache and runs do not match"
                )

    def dice_of(name: str, fold: int, image_id: str) -> float | None:
        probabilities = loaded.get((name, fold), {}).get(image_id)
        if probabilities is None:
            return None
        known = scores.get((name, fold), {}).get(image_id)
        return known if known is not None else _dice(probabilities, data.masks[position[image_id]])

    candidates = []
    for fold in folds:
        common = (
            set(loaded[("contracting", fold)]) & set(loaded[("expanding", fold)]) & set(position)
        )
        for image_id in sorted(common):
            dice = {name: dice_of(name, fold, image_id) for name, _ in sources}
            candidates.append(
                {
                    "fold": fold,
                    "id": image_id,
                    "dice": dice,
                    "difference": dice["contracting"] - dice["expanding"],
                }
            )
    if not candidates:
        return [], f"{dataset}: no held-out image has predictions of both paths and a cache entry"
    chosen = choose_examples(candidates, n_extreme, n_random, seed)
    for item in chosen:
        n = position[item["id"]]
        item["dataset"] = dataset
        item["image"] = np.asarray(data.images[n])
        item["mask"] = np.asarray(data.masks[n])
        item["predictions"] = {
            name: loaded[(name, item["fold"])][item["id"]].astype(np.float32)
            for name in ("pretrained", "expanding", "contracting")
            if item["id"] in loaded.get((name, item["fold"]), {})
        }
    return chosen, None


COLUMNS = (
    ("image", "Image"),
    ("mask", "Ground truth"),
    ("pretrained", "Pretrained only"),
    ("expanding", "Expanding path tuned"),
    ("contracting", "Contracting path tuned"),
)


def plot_examples(examples: list[dict], path: Path) -> Path:
    """Image, ground truth and the three predictions (thresholded at 0.5) per example row."""
    n = len(examples)
    fig = Figure(figsize=(2.3 * len(COLUMNS) + 0.6, 2.45 * n + 0.5), dpi=DPI, layout="constrained")
    axes = fig.subplots(n, len(COLUMNS), squeeze=False)
    for r, item in enumerate(examples):
        for c, (name, header) in enumerate(COLUMNS):
            ax = axes[r, c]
            title = header if r == 0 else ""  # column names once, each prediction's Dice per row
            ax.set_xticks([])
            ax.set_yticks([])
            if name == "image":
                ax.imshow(item["image"], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
                ax.set_ylabel(
                    f"{item['dataset']}\n{item['id']}\nfold {item['fold']}, {item['why']}",
                    fontsize=7.5,
                )
            elif name == "mask":
                ax.imshow(item["mask"], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                probability = item["predictions"].get(name)
                if probability is None:
                    ax.text(
                        0.5,
                        0.5,
                        "no prediction\nsaved",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="#666666",
                        transform=ax.transAxes,
                    )
                    ax.set_facecolor("#f2f2f2")
                else:
                    ax.imshow(
                        probability >= 0.5, cmap="gray", vmin=0, vmax=1, interpolation="nearest"
                    )
                    if item["mask"].any():
                        ax.contour(item["mask"], levels=[0.5], colors=["#ff3b30"], linewidths=0.8)
                    title = f"{title}\nDice {item['dice'][name]:.3f}".strip()
            ax.set_title(title, fontsize=8.5)
    fig.suptitle(
        "Held-out examples (red outline: ground truth; predictions thresholded at 0.5)", fontsize=10
    )
    fig.savefig(path, dpi=DPI)
    return path


def write_examples(
    rows: list[dict], path: Path, n_extreme: int = 2, n_random: int = 2, seed: int = 0
) -> tuple[Path | None, list[str]]:
    """examples.png for every dataset that can show them, and notes on those that cannot.

    Never raises for missing or bad predictions/cache: they become notes.
    """
    examples, notes = [], []
    for dataset in sorted({r["dataset"] for r in rows if r["role"] in DIRECTIONAL}):
        try:
            found, note = example_panels(rows, dataset, n_extreme, n_random, seed)
        except Exception as error:  # a figure must never stop the report
            found, note = [], f"{dataset}: examples failed ({type(error).__name__}: {error})"
        examples += found
        if note:
            notes.append(note)
    if not examples:
        return None, notes
    return plot_examples(examples, path), notes
