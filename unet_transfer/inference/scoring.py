"""Predictions scored against reference masks with the project's metrics (the METRICS registry),
at each image's own size, and the files that report them: per_image.csv, summary.json and
summary.md, as a run reports its held-out fold."""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from unet_transfer.files import atomic_write_text
from unet_transfer.metrics import METRICS, per_image_scores

PER_IMAGE_FIELDS = ("id", "image", "height", "width", *METRICS)


@dataclass
class Outcome:
    """What one predict call did."""

    checkpoint: str
    out: Path
    image_size: int
    threshold: float
    rows: list[dict] = field(default_factory=list)  # one per predicted image; metrics when it was scored
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    unscored: list[str] = field(default_factory=list)  # predicted, but no mask was given
    warnings: list[str] = field(default_factory=list)  # e.g. the scored images are those it trained on
    seen_in_training: list[str] = field(default_factory=list)  # images whose input its card lists

    @property
    def scored(self) -> list[dict]:
        return [row for row in self.rows if "dice" in row]


def score(probability: np.ndarray, truth: np.ndarray, threshold: float) -> dict[str, float]:
    """Every registered metric of one (H, W) probability map against its (H, W) reference mask."""
    scores = per_image_scores(torch.from_numpy(probability)[None, None],
                              torch.from_numpy(truth.astype(np.float32))[None, None], threshold)
    return {name: float(values[0]) for name, values in scores.items()}


def statistics_of(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summary(outcome: Outcome) -> dict:
    scored = outcome.scored
    return {
        "checkpoint": outcome.checkpoint,
        "threshold": outcome.threshold,
        "network_input": f"{outcome.image_size}x{outcome.image_size}",
        "masks": "at each image's size: probabilities resized (bilinear), then thresholded",
        "n_predicted": len(outcome.rows),
        "n_scored": len(scored),
        "n_failed": len(outcome.failures),
        "metrics": {name: statistics_of([row[name] for row in scored]) for name in METRICS} if scored else {},
        "failures": [{"file": file, "error": why} for file, why in outcome.failures],
        "unscored": outcome.unscored,
        "warnings": outcome.warnings,
    }


def markdown(found: dict) -> str:
    lines = [f"# Predictions of {found['checkpoint']}", "",
             f"{found['n_predicted']} image(s) predicted, {found['n_scored']} scored against a mask, "
             f"{found['n_failed']} failed. Masks are {found['masks']} at {found['threshold']:g}; the network sees "
             f"{found['network_input']}.", ""]
    lines += [*(f"**Warning:** {warning}" for warning in found["warnings"]), *([""] if found["warnings"] else [])]
    if found["metrics"]:
        lines += ["| metric | mean ± std | median | min | max | images |", "|---|---|---|---|---|---|"]
        for name, s in found["metrics"].items():
            digits = METRICS[name].digits + 2
            spread = "–" if s["std"] is None else f"{s['std']:.{digits}f}"
            lines.append(f"| {METRICS[name].label} | {s['mean']:.{digits}f} ± {spread} | "
                         f"{s['median']:.{digits}f} | {s['min']:.{digits}f} | {s['max']:.{digits}f} | {s['n']} |")
        lines.append("")
    if found["failures"]:
        lines += ["## Failed", "", *(f"- `{f['file']}`: {f['error']}" for f in found["failures"]), ""]
    if found["unscored"]:
        lines += [f"Not scored (no mask found): {', '.join(found['unscored'])}", ""]
    return "\n".join(lines)


def write_summary(outcome: Outcome) -> dict[str, Path]:
    """summary.json and summary.md always; per_image.csv when some image was scored."""
    found = summary(outcome)
    written = {"summary.json": atomic_write_text(outcome.out / "summary.json", json.dumps(found, indent=2) + "\n"),
               "summary.md": atomic_write_text(outcome.out / "summary.md", markdown(found))}
    if outcome.scored:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=PER_IMAGE_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(outcome.scored)
        written["per_image.csv"] = atomic_write_text(outcome.out / "per_image.csv", buffer.getvalue())
    return written
