"""Paired comparisons: is a difference between two configurations real?

Two levels, both paired: the configurations' fold scores paired by fold (few pairs, the unit
of the paper's ± values), and the held-out images paired by image id within the same fold
(each image is held out exactly once, so many independent pairs). Both use the Wilcoxon
signed-rank test (scipy.stats.wilcoxon, two-sided, zero differences dropped) with the
matched-pairs rank-biserial correlation as effect size.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats as sps

from unet_transfer.blocks import DIRECTION_SHORT
from unet_transfer.files import atomic_write_text
from unet_transfer.metrics import METRICS
from unet_transfer.report.aggregate import (
    find_row,
    group_layout,
    group_words,
    path_rows,
    study_groups,
)
from unet_transfer.report.registry import Report, entry
from unet_transfer.report.tables import markdown_table

ZERO_METHOD = "wilcox"  # drop zero differences (their number is reported)
TIE = 1e-12  # |difference| below this counts as zero
MIN_PAIRS = 2  # below this (after dropping zeros) no test is run: "too few pairs"


def format_p(p: float | None) -> str:
    """p-values as printed in stats.md (3 significant digits)."""
    if p is None or math.isnan(p):
        return "–"
    return f"{p:.3g}"


def rank_biserial(differences) -> float:
    """Matched-pairs rank-biserial correlation: (R+ − R−) / (R+ + R−) over non-zero differences.

    +1: the first is higher in every pair, −1: the second is, 0: balanced.
    """
    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return math.nan
    ranks = sps.rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def paired_test(first, second) -> dict:
    """Wilcoxon signed-rank on first − second, with everything a reader needs beside the p-value.

    Keys: n (pairs), n_zero (pairs with no difference, left out of the test), mean, median,
    positive (pairs where first > second), statistic, p, r (rank-biserial), note ('' or why no
    test was run).
    """
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    d = a[keep] - b[keep]
    d[np.abs(d) < TIE] = 0.0  # rounding noise of equal scores is a tie, not a difference
    result = {
        "n": int(d.size),
        "n_zero": int((d == 0).sum()),
        "positive": int((d > 0).sum()),
        "mean": float(d.mean()) if d.size else math.nan,
        "median": float(np.median(d)) if d.size else math.nan,
        "statistic": math.nan,
        "p": math.nan,
        "r": rank_biserial(d),
        "note": "",
    }
    nonzero = d.size - result["n_zero"]
    if d.size and nonzero == 0:
        result["note"] = "no difference (all pairs tied)"
    elif nonzero < MIN_PAIRS:
        result["note"] = "too few pairs"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            test = sps.wilcoxon(d, zero_method=ZERO_METHOD, alternative="two-sided")
        result["statistic"], result["p"] = float(test.statistic), float(test.pvalue)
    return result


def holm(pvalues: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (NaN stays NaN and does not count)."""
    present = [(p, i) for i, p in enumerate(pvalues) if not math.isnan(p)]
    adjusted = [math.nan] * len(pvalues)
    running, m = 0.0, len(present)
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def fold_pairs(first: dict, second: dict, metric: str) -> tuple[list[float], list[float]]:
    """Fold scores of two summary rows on their common folds (each averaged over seeds)."""
    common = sorted(set(first["per_fold"]) & set(second["per_fold"]))
    return (
        [first["per_fold"][f][metric] for f in common],
        [second["per_fold"][f][metric] for f in common],
    )


def image_scores(row: dict, metric: str) -> dict[tuple[int, str], float]:
    """(fold, image id) -> the image's score, averaged over the seeds that have it."""
    values: dict[tuple[int, str], list[float]] = defaultdict(list)
    for run in row["runs"]:
        for item in run.get("per_image") or ():
            values[(run["fold"], item["id"])].append(item[metric])
    return {key: statistics.fmean(v) for key, v in values.items()}


def image_pairs(first: dict, second: dict, metric: str) -> tuple[list[float], list[float]]:
    a, b = image_scores(first, metric), image_scores(second, metric)
    common = sorted(set(a) & set(b))
    return [a[c] for c in common], [b[c] for c in common]


def compare(first: dict, second: dict, metric: str) -> dict:
    """{'folds': paired_test over folds, 'images': paired_test over held-out images}."""
    return {
        "folds": paired_test(*fold_pairs(first, second, metric)),
        "images": paired_test(*image_pairs(first, second, metric)),
    }


def _p_cell(result: dict) -> str:
    return result["note"] if result["note"] else format_p(result["p"])


def _num(value: float, digits: int = 3) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:+.{digits}f}"


def _favours(result: dict, metric: str, first: str, second: str) -> str:
    if result["n"] == 0 or math.isnan(result["mean"]) or result["mean"] == 0:
        return "–"
    first_better = (result["mean"] > 0) == METRICS[metric].higher_is_better
    return first if first_better else second


INTRO = """# Paired comparisons

Is a difference between two configurations real, or within the noise of the folds?

- Δ = first − second. For Dice and adjusted Rand a positive Δ favours the first, for pixel
  error a negative one does ("Favours" says which, from the mean Δ).
- **Fold level**: the two configurations' fold scores, paired by fold; Wilcoxon signed-rank
  test (two-sided). With n folds the smallest possible two-sided p is 2/2^n: **0.0625 with 5
  folds**, so with 5 folds this test can never reach p < 0.05, even when every fold agrees.
  Read the mean Δ and how many folds favour one side.
- **Image level**: held-out images paired by image id within the same fold (each image is
  held out once); Wilcoxon signed-rank on the per-image scores, with the median Δ and the
  matched-pairs rank-biserial correlation r (−1..1; +1 = the first is higher on every image).
  Images are more numerous but come from the same few trained models per fold, so a small p
  here says the difference is consistent over images, not over retrainings.
- Zero differences are left out of the tests (zero_method="wilcox"; "tied" gives how many);
  "too few pairs" means fewer than 2 non-zero differences. p (Holm) is adjusted over the k
  values of one table.
"""


def stats_markdown(rows: list[dict]) -> str:
    lines = [INTRO]
    found_any = False
    for dataset in sorted({r["dataset"] for r in rows}):
        for group in study_groups(rows, dataset):
            section = _group_section(rows, group)
            if section:
                found_any = True
                lines += [f"## {dataset} ({group_words(group)})", "", *section]
    if not found_any:
        lines += [
            "No comparisons: no configuration has runs of both directions "
            "(shallow to deep and deep to shallow) for the same dataset, k and epochs.",
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


@entry("stats.md", order=30, describes={"stats.md": "paired Wilcoxon comparisons"})
def write_stats(report: Report, out: Path) -> dict[str, Path]:
    return {"stats.md": atomic_write_text(out / "stats.md", stats_markdown(report.rows))}


def _group_section(rows, group) -> list[str]:
    out: list[str] = []
    layout = group_layout(rows, group)
    paths = path_rows(rows, group)
    contracting, expanding = paths["contracting"], paths["expanding"]
    if contracting and expanding:
        out += [
            f"### Contracting path (shallow to deep, k={contracting['k']}) vs expanding path "
            f"(deep to shallow, k={expanding['k']})",
            "",
        ]
        table = []
        for metric in METRICS:
            result = compare(contracting, expanding, metric)
            folds, images = result["folds"], result["images"]
            table.append(
                [
                    METRICS[metric].label,
                    str(folds["n"]),
                    _num(folds["mean"], 4),
                    f"{_favours(folds, metric, 'contracting', 'expanding')}",
                    f"{_wins(folds, metric)}",
                    _p_cell(folds),
                    _images(images),
                    _num(images["median"], 4),
                    _num(images["mean"], 4),
                    _p_cell(images),
                    _num(images["r"], 2),
                ]
            )
        out += markdown_table(
            [
                "Metric",
                "Folds",
                "Mean Δ (folds)",
                "Favours",
                "Folds favouring contracting",
                "p (folds)",
                "Images (tied)",
                "Median Δ (images)",
                "Mean Δ (images)",
                "p (images)",
                "r",
            ],
            table,
        )
        out.append("")
    table, image_p = [], []
    first_name, second_name = DIRECTION_SHORT["shallow_to_deep"], DIRECTION_SHORT["deep_to_shallow"]
    for k in layout.k_range:
        first = find_row(rows, group, "shallow_to_deep", k)
        second = find_row(rows, group, "deep_to_shallow", k)
        if not (first and second):
            continue
        result = compare(first, second, "dice")
        folds, images = result["folds"], result["images"]
        image_p.append(images["p"])
        table.append(
            [
                str(k),
                str(folds["n"]),
                _num(folds["mean"], 4),
                _favours(folds, "dice", first_name, second_name),
                _wins(folds, "dice"),
                _p_cell(folds),
                _images(images),
                _num(images["median"], 4),
                _p_cell(images),
                None,
                _num(images["r"], 2),
            ]
        )
    if table:
        for line, adjusted in zip(table, holm(image_p), strict=True):
            line[9] = format_p(adjusted)
        out += ["### Shallow to deep (S→D) vs deep to shallow (D→S) at each k: Dice", ""]
        out += markdown_table(
            [
                "k",
                "Folds",
                "Mean Δ Dice (folds)",
                "Favours",
                "Folds favouring S→D",
                "p (folds)",
                "Images (tied)",
                "Median Δ Dice (images)",
                "p (images)",
                "p (Holm)",
                "r",
            ],
            table,
        )
        out.append("")
    return out


def _wins(result: dict, metric: str) -> str:
    """How many pairs favour the first, as 'w/n'."""
    if result["n"] == 0:
        return "–"
    wins = (
        result["positive"]
        if METRICS[metric].higher_is_better
        else result["n"] - result["positive"] - result["n_zero"]
    )
    tied = f" ({result['n_zero']} tied)" if result["n_zero"] else ""
    return f"{wins}/{result['n']}{tied}"


def _images(result: dict) -> str:
    if result["n"] == 0:
        return "0 (no per-image scores)"
    return f"{result['n']} ({result['n_zero']})" if result["n_zero"] else str(result["n"])
