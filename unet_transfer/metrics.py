"""Per-image segmentation metrics (DESIGN section 5) as pure functions on tensors.

Everything derives from the four pixel counts of each image, so Dice, pixel error and the
adjusted Rand index cost one pass over the pixels. The adjusted Rand index is the closed form
of scikit-learn's `adjusted_rand_score` for two binary labelings (a 2x2 contingency table).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

THRESHOLD = 0.5


class Counts(NamedTuple):
    """Pixel counts per image, each of shape (N,), as float64 so products cannot overflow."""

    tp: torch.Tensor
    fp: torch.Tensor
    fn: torch.Tensor
    tn: torch.Tensor


def confusion_counts(pred: torch.Tensor, target: torch.Tensor) -> Counts:
    """Counts per image from boolean masks of shape (N, ...)."""
    pred = pred.bool().flatten(1)
    target = target.bool().flatten(1)
    tp = (pred & target).sum(1, dtype=torch.float64)
    fp = (pred & ~target).sum(1, dtype=torch.float64)
    fn = (~pred & target).sum(1, dtype=torch.float64)
    tn = pred.shape[1] - tp - fp - fn
    return Counts(tp, fp, fn, tn)


def dice(c: Counts) -> torch.Tensor:
    """2TP / (2TP + FP + FN); 1.0 when both masks are empty (a correct "no lesion")."""
    denominator = 2 * c.tp + c.fp + c.fn
    return torch.where(denominator > 0, 2 * c.tp / denominator.clamp_min(1), torch.ones_like(denominator))


def pixel_error(c: Counts) -> torch.Tensor:
    """Percentage of pixels labelled wrongly."""
    return 100.0 * (c.fp + c.fn) / (c.tp + c.fp + c.fn + c.tn)


def adjusted_rand(c: Counts) -> torch.Tensor:
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
    return torch.where(perfect, torch.ones_like(n), numerator / torch.where(denominator == 0, torch.ones_like(n), denominator))


def per_image_scores(probabilities: torch.Tensor, target: torch.Tensor, threshold: float = THRESHOLD) -> dict[str, torch.Tensor]:
    """All metrics of DESIGN section 5 for a batch of probability maps against binary masks."""
    counts = confusion_counts(probabilities > threshold, target > 0.5)
    return {"dice": dice(counts), "pixel_error": pixel_error(counts), "adjusted_rand": adjusted_rand(counts)}
