"""The Methods section of summary.md and pareto.png: every way of fine-tuning a study ran
(finetune= methods, the paper's contracting and expanding paths, gradual unfreezing, full
fine-tuning) side by side on the same folds: scores, trainable parameters, training time, paired
statistics against full fine-tuning and against the best freeze, and Dice against trainable
parameters with the Pareto front.

With a learning-rate grid (`lr_grid=true`: runs that differ only in optimizer.lr and kept a
validation split of their training folds), each method's lr is chosen per fold on that split,
never on the held-out fold, and the method's row reports the held-out scores of the chosen runs.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure

from unet_transfer.blocks import DIRECTION_SHORT, span
from unet_transfer.metrics import METRICS
from unet_transfer.report.collect import variant_words
from unet_transfer.report.registry import Report, entry
from unet_transfer.report.stats import compare, format_p
from unet_transfer.report.tables import fmt, folds_cell, markdown_table

FIGURE = "pareto.png"
TRAINED_ROLES = ("shallow_to_deep", "deep_to_shallow", "blocks", "gradual", "all_blocks")


def candidates(rows: list[dict], dataset: str) -> list[dict]:
    """The configurations compared: pretrained, trained, and either a method other than freeze
    or one of the paper's strategies (the paths, gradual, full fine-tuning, chosen blocks)."""
    return [r for r in rows if r["dataset"] == dataset and r["has_pretrained"] and r["epochs"] > 0
            and r["role"] in TRAINED_ROLES
            and (r["key"].method != "freeze" or r["role"] in ("gradual", "all_blocks", "blocks") or r["path_role"])]


def lr_of(row: dict):
    return dict(row["key"].variant).get("optimizer.lr")


def choose_lr(found: list[dict]) -> list[dict]:
    """Rows that differ only in optimizer.lr and scored a validation split become one row whose
    runs are, per fold, the run with the best validation Dice (ties: the smaller lr)."""
    families: dict[tuple, list[dict]] = defaultdict(list)
    for row in found:
        if lr_of(row) is not None and all(run.get("validation") for run in row["runs"]):
            rest = tuple((k, v) for k, v in row["key"].variant if k != "optimizer.lr")
            families[(row["key"]._replace(variant=rest))].append(row)
    out = [r for r in found if not any(r in family for family in families.values() if len(family) > 1)]
    for key, family in families.items():
        if len(family) < 2:
            continue
        chosen, choice = [], {}
        for fold in sorted({run["fold"] for row in family for run in row["runs"]}):
            runs = [(row, run) for row in family for run in row["runs"] if run["fold"] == fold]
            row, run = max(runs, key=lambda item: (item[1]["validation"]["dice"], -float(lr_of(item[0]))))
            chosen.append(run)
            choice[fold] = lr_of(row)
        base = family[0]
        label = base["label"].split(" · ")[0] + " · " + (variant_words(key.variant, key.method) or "freeze")
        out.append({**base, "key": key, "runs": chosen, "label": f"{label} (lr chosen per fold)", "lr_choice": choice,
                    **summary_of(chosen)})
    return out


def summary_of(runs: list[dict]) -> dict:
    """Mean, std over folds, per-fold scores and costs of a list of runs (one per fold)."""
    mean = {m: statistics.fmean(float(r[m]) for r in runs) for m in METRICS}
    std = {m: statistics.stdev([float(r[m]) for r in runs]) if len(runs) > 1 else math.nan for m in METRICS}
    costs = {name: statistics.fmean(float(r[name]) for r in runs) for name in ("trainable_params", "trainable_share",
                                                                              "train_time_s") if all(r.get(name) is not None for r in runs)}
    return {"mean": mean, "std": std, "per_fold": {r["fold"]: {m: float(r[m]) for m in METRICS} for r in runs},
            "costs": costs, "n_folds": len(runs), "seeds": sorted({str(r["seed"]) for r in runs})}


def full_and_best_freeze(found: list[dict]) -> tuple[dict | None, dict | None]:
    """Full fine-tuning (all blocks, plain) and the best partial freeze (highest mean Dice)."""
    plain = [r for r in found if r["key"].method == "freeze"]
    full = next((r for r in plain if r["role"] == "all_blocks"), None) or next(
        (r for r in plain if r["role"] in ("shallow_to_deep", "deep_to_shallow") and r["k"] == r["layout"].k_range[-1]),
        None)
    partial = [r for r in plain if r is not full and set(r["blocks"]) != set(r["layout"].numbers)]
    return full, max(partial, key=lambda r: r["mean"]["dice"], default=None)


def comparison(row: dict, reference: dict | None) -> str:
    """'+0.012 (3/3 folds; p 0.25, images p 0.03)' for Dice, row minus reference."""
    if reference is None or reference is row:
        return "–"
    result = compare(row, reference, "dice")
    folds, images = result["folds"], result["images"]
    if not folds["n"]:
        return "no common folds"
    wins = folds["positive"]
    return (f"{folds['mean']:+.3f} ({wins}/{folds['n']} folds; p {p_text(folds)}, images p {p_text(images)})")


def p_text(result: dict) -> str:
    return {"": format_p(result["p"]), "too few pairs": "–"}.get(result["note"], "tied")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats with fewer or equal parameters and higher Dice."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def short_label(row: dict) -> str:
    """A label short enough to sit beside a point."""
    method = row["key"].method
    if row["role"] == "gradual":
        what = "gradual " + "→".join(span(p[1]) for p in row["key"].blocks)
    elif row["role"] == "all_blocks" or set(row["blocks"]) == set(row["layout"].numbers):
        what = "full" if method == "freeze" else ""
    else:
        what = row["path_role"] or f"{DIRECTION_SHORT.get(row['role'], row['role'])} k={row['k']}"
    words = [w for w in (method if method != "freeze" else "", what) if w]
    return " ".join(words) + (" (lr per fold)" if "lr_choice" in row else "")


def plot_pareto(found: list[dict], path: Path, title: str) -> Path:
    points = [(row["costs"].get("trainable_params", math.nan), row["mean"]["dice"]) for row in found]
    fig = Figure(figsize=(8.5, 5.2), dpi=150, layout="constrained")
    ax = fig.subplots()
    front = pareto_front(points)
    xs, ys = [points[i][0] for i in front], [points[i][1] for i in front]
    ax.step(xs, ys, where="post", color="#2ca02c", linewidth=1.5, zorder=2, label="Pareto front")
    placed: list[tuple[float, float]] = []  # label anchors so far, in (log10 x, y)
    span_y = max(y for _, y in points) - min(y for _, y in points) or 1.0
    for i in sorted(range(len(found)), key=lambda i: (points[i][0], -points[i][1])):
        row, (x, y) = found[i], points[i]
        ax.errorbar([x], [y], yerr=[0 if math.isnan(row["std"]["dice"]) else row["std"]["dice"]], fmt="o",
                    color="#2ca02c" if i in front else "#555555", markersize=6 if i in front else 4, capsize=3, zorder=3)
        nudge = 0.0  # move a label down while it would sit on one placed nearby
        while any(abs(math.log10(x) - px) < 0.6 and abs(y + nudge - py) < 0.035 * span_y for px, py in placed):
            nudge -= 0.035 * span_y
        placed.append((math.log10(x), y + nudge))
        ax.annotate(short_label(row), (x, y), xytext=(x * 1.08, y + nudge), fontsize=7,
                    arrowprops={"arrowstyle": "-", "color": "#bbbbbb", "linewidth": 0.6} if nudge else None)
    ax.set_xscale("log")
    ax.set_xlim(right=max(x for x, _ in points) * 6)
    ax.set_xlabel("Trainable parameters (log scale)")
    ax.set_ylabel("Dice (mean ± std over folds)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", color="#eeeeee")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    fig.savefig(path, dpi=150)
    return path


def section(found: list[dict], dataset: str, figure: str | None) -> list[str]:
    full, best = full_and_best_freeze(found)
    ranked = sorted(found, key=lambda r: -r["mean"]["dice"])
    lines = [f"### {dataset}", ""]
    if any("lr_choice" in r for r in found):
        lines += ["Rows marked *lr chosen per fold*: each fold's learning rate was chosen on the validation split of "
                  "that fold's training images (never on the held-out fold); the row reports the held-out scores of "
                  "the chosen runs.", ""]
    table = []
    for row in ranked:
        cost = row["costs"]
        share = cost.get("trainable_share")
        table.append([row["label"], *(fmt(row["mean"][m], row["std"][m], METRICS[m].digits) for m in METRICS),
                      "–" if share is None else f"{100 * share:.3g}%",
                      "–" if cost.get("train_time_s") is None else f"{cost['train_time_s']:.1f}",
                      folds_cell(row) if "flag" in row and "lr_choice" not in row else str(row["n_folds"]),
                      comparison(row, full), comparison(row, best)])
    lines += markdown_table(["Configuration", *(m.label for m in METRICS.values()), "Trainable params", "Train time (s)",
                             "Folds", f"Δ Dice vs full fine-tuning ({full['label'] if full else '–'})",
                             f"Δ Dice vs best freeze ({best['label'] if best else '–'})"], table)
    lines += ["", "Δ = this row minus the reference, mean over folds; folds favouring this row; paired Wilcoxon p over "
              "folds and over held-out images (see stats.md for how to read them: with 3 or 5 folds the fold-level "
              "test cannot reach p < 0.05)."]
    for row in ranked:
        if "lr_choice" in row:
            lines.append(f"- {row['label']}: " + ", ".join(f"fold {f}: lr {lr}" for f, lr in sorted(row["lr_choice"].items())))
    if figure:
        lines += ["", f"![{Path(figure).stem}]({figure})"]
    return lines + [""]


@entry(FIGURE, order=45, describes={FIGURE: "Dice against trainable parameters per method, Pareto front marked"})
def write_methods(report: Report, out: Path) -> dict[str, Path]:
    written: dict[str, Path] = {}
    datasets = sorted({r["dataset"] for r in report.rows})
    blocks = []
    for dataset in datasets:
        found = candidates(report.rows, dataset)
        if not any(r["key"].method != "freeze" or r["role"] == "gradual" for r in found):
            continue  # a study of the paper's freezing only: its tables say it all
        found = choose_lr(found)
        name = FIGURE if len(datasets) == 1 else f"pareto_{dataset}.png"
        if len(found) > 1 and all(r["costs"].get("trainable_params") for r in found):
            written[name] = plot_pareto(found, out / name, f"{dataset}: Dice against trainable parameters")
        blocks += section(found, dataset, name if name in written else None)
    if blocks:
        report.sections.append("\n".join(["## Methods", "",
                                          "Every way of fine-tuning the study ran, on the same folds, best mean Dice "
                                          "first; trainable parameters as a share of the U-Net's.", "", *blocks]))
    return written

