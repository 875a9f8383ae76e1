"""What a run leaves in its folder: per_image.csv, then metrics.json last (the completion
marker reports and resumed studies rely on: it exists only when the whole run finished), and
optionally the held-out probability maps for the report's figures."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from unet_transfer.files import atomic_path, atomic_write_text
from unet_transfer.metrics import METRICS

PER_IMAGE_FIELDS = ("id", *METRICS)
KEPT_WEIGHTS = "weights.pt"  # the final weights a run keeps when `keep_weights` chooses it


def write_run_results(out_dir: Path | str, metrics: dict, per_image: list[dict]) -> dict:
    """Write per_image.csv, then metrics.json; returns the metrics exactly as a later read gives
    them back (JSON has lists, not tuples), so a fresh run and a resumed one return equal dicts."""
    out_dir = Path(out_dir)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PER_IMAGE_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(per_image)
    atomic_write_text(out_dir / "per_image.csv", buffer.getvalue())
    text = json.dumps(metrics, indent=2) + "\n"
    atomic_write_text(out_dir / "metrics.json", text)
    return json.loads(text)


RESULT_FILES = ("metrics.json", "per_image.csv", "predictions.npz")


def set_aside(out_dir: Path | str, tag: str) -> Path | None:
    """Rename a run folder's result files to <name>.<tag>.<ext> (metrics.json first: from that
    moment the folder holds no result); returns where metrics.json went, if there was one."""
    out_dir, kept = Path(out_dir), None
    for name in RESULT_FILES:
        path = out_dir / name
        if path.exists():
            target = path.with_name(f"{path.stem}.{tag}{path.suffix}")
            path.replace(target)
            kept = kept or target
    return kept


def read_per_image(out_dir: Path | str) -> list[dict]:
    with open(Path(out_dir) / "per_image.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def save_predictions(out_dir: Path | str, ids, probabilities) -> Path:
    """Held-out probability maps (float16) for the example figures of the report."""
    import numpy as np

    path = Path(out_dir) / "predictions.npz"
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, ids=np.array(list(ids)), probabilities=probabilities)
    return path
