"""Cross-validation folds: seeded, stratified by class, written once and reused.

Folds depend only on the sorted sample ids, their classes, the number of folds and the split
seed, never on the training seed, so every run of a study (and every machine) sees the same
held-out sets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unet_transfer.errors import ConfigError, DatasetError
from unet_transfer.files import atomic_write_text, file_lock


def kfold(ids: Sequence[str], folds: int, seed: int, labels: Sequence[str] | None = None) -> list[list[str]]:
    """Held-out ids of each fold; classes are dealt round-robin so each fold keeps their ratio."""
    if not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds={folds!r}: cross-validation needs an integer number of folds >= 2.")
    if len(ids) < folds:
        raise DatasetError(f"The dataset has {len(ids)} images, fewer than folds={folds}: lower `folds` or add data.")
    rng = np.random.Generator(np.random.PCG64(seed))
    by_class: dict[str, list[str]] = {}
    for sample_id, label in sorted(zip(ids, labels if labels is not None else [""] * len(ids), strict=True)):
        by_class.setdefault(label, []).append(sample_id)
    held_out: list[list[str]] = [[] for _ in range(folds)]
    offset = 0
    for label in sorted(by_class):
        members = by_class[label]
        for position, index in enumerate(rng.permutation(len(members))):
            held_out[(offset + position) % folds].append(members[index])
        offset += len(members)
    return [sorted(fold) for fold in held_out]


def load_or_create(path: Path, ids: Sequence[str], folds: int, seed: int, labels: Sequence[str] | None = None) -> list[list[str]]:
    """Folds from `path` (a splits.json shared by all runs on this dataset), created on first use."""
    name = f"{folds}-fold seed {seed}"
    with file_lock(path.with_suffix(".lock")):
        stored = json.loads(path.read_text()) if path.exists() else {}
        entry = stored.get(name)
        if entry is not None and sorted(entry["ids"]) == sorted(ids):
            return entry["held_out"]
        held_out = kfold(ids, folds, seed, labels)
        stored[name] = {"folds": folds, "seed": seed, "ids": sorted(ids), "held_out": held_out}
        atomic_write_text(path, json.dumps(stored, indent=1))
        return held_out


def check_fold(fold: int, folds: int) -> None:
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise ConfigError(f"fold={fold!r} is out of range: with folds={folds}, fold must be 0..{folds - 1}.")
