"""Per-image segmentation metrics (docs/study.md) and the registry that names them.

`METRICS` is the one place that says which scores a run reports, how they are labelled and
printed, and which way is better; run results, tables, figures and statistics all ask it.

Everything derives from the four pixel counts of each image, so Dice, pixel error and the
adjusted Rand index cost one pass over the pixels. (torchmetrics' per-sample stat scores would
count the same, but squeeze the batch dimension away for a batch of one image.) The
adjusted Rand index is the closed form of scikit-learn's `adjusted_rand_score` for two binary
labelings (a 2x2 contingency table). Tensors come in; torch is not imported here, so the
report can read the registry without loading torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

THRESHOLD = 0.5


class Counts(NamedTuple):
    """Pixel counts per image, each of shape (N,), as float64 so products cannot overflow."""

    tp: object
    fp: object
    fn: object
    tn: object


def confusion_counts(pred, target) -> Counts:
    """Counts per image from boolean masks of shape (N, ...)."""
    import torch

    pred = pred.bool().flatten(1)
    target = target.bool().flatten(1)
    tp = (pred & target).sum(1, dtype=torch.float64)
    fp = (pred & ~target).sum(1, dtype=torch.float64)
    fn = (~pred & target).sum(1, dtype=torch.float64)
    return Counts(tp, fp, fn, pred.shape[1] - tp - fp - fn)


def dice(c: Counts):
    """2TP / (2TP + FP + FN); 1.0 when both masks are empty (a correct "no lesion")."""
    denominator = 2 * c.tp + c.fp + c.fn
    return (2 * c.tp / denominator.clamp_min(1)).where(denominator > 0, 1.0)


def pixel_error(c: Counts):
    """Percentage of pixels labelled wrongly."""
    return 100.0 * (c.fp + c.fn) / (c.tp + c.fp + c.fn + c.tn)


def adjusted_rand(c: Counts):
    """Adjusted Rand index of prediction vs truth, equal to sklearn's adjusted_rand_score."""
    n = c.tp + c.fp + c.fn + c.tn
    rows = (c.tp + c.fn) ** 2 + (c.fp + c.tn) ** 2  # sum of squared truth-class sizes
    cols = (c.tp + c.fp) ** 2 + (c.fn + c.tn) ** 2  # sum of squared predicted-class sizes
    squares = c.tp**2 + c.fp**2 + c.fn**2 + c.tn**2
    pair_tp = squares - n
    pair_fp = cols - squares
    pair_fn = rows - squares
    pair_tn = n**2 - pair_fp - pair_fn - squares
    numerator = 2.0 * (pair_tp * pair_tn - pair_fn * pair_fp)
    denominator = (pair_tp + pair_fn) * (pair_fn + pair_tn) + (pair_tp + pair_fp) * (pair_fp + pair_tn)
    perfect = (pair_fn == 0) & (pair_fp == 0)
    return (numerator / denominator.where(denominator != 0, 1.0)).where(~perfect, 1.0)


@dataclass(frozen=True)
class Metric:
    """A score every run reports per held-out image and as the mean over them."""

    name: str
    label: str  # table header, e.g. "Pixel error (%)"
    axis_label: str  # figure axis
    digits: int  # decimals as the paper prints them
    higher_is_better: bool
    per_image: Callable[[Counts], object]

    def better(self, first: float, second: float) -> bool:
        return first > second if self.higher_is_better else first < second


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("dice", "Dice", "Dice", 2, True, dice),
    Metric("pixel_error", "Pixel error (%)", "Pixel error (%)", 1, False, pixel_error),
    Metric("adjusted_rand", "Adjusted Rand", "Adjusted Rand index", 2, True, adjusted_rand),
)}


def per_image_scores(probabilities, target, threshold: float = THRESHOLD) -> dict:
    """Every registered metric for a batch of probability maps against binary masks."""
    counts = confusion_counts(probabilities > threshold, target > 0.5)
    return {name: metric.per_image(counts) for name, metric in METRICS.items()}
