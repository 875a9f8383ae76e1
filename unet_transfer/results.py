"""A run's results on disk: per_image.csv, then metrics.json last, each written atomically.

metrics.json is the completion marker that reports and resumed studies rely on: it exists only
when the whole run finished.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

METRICS = ("dice", "pixel_error", "adjusted_rand")  # what every run reports, per image and averaged
PER_IMAGE_FIELDS = ("id", *METRICS)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_run_results(out_dir: Path | str, metrics: dict, per_image: list[dict]) -> Path:
    out_dir = Path(out_dir)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PER_IMAGE_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(per_image)
    atomic_write_text(out_dir / "per_image.csv", buffer.getvalue())
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return out_dir / "metrics.json"


def read_metrics(out_dir: Path | str) -> dict | None:
    path = Path(out_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None
