"""Cross-validation folds: seeded, stratified by class, written once and reused.

Folds depend only on the sorted sample ids, their classes, the number of folds and the split
seed, never on the training seed, so every run of a study (and every machine) sees the same
held-out sets. A damaged splits.json (unreadable, or readable with the wrong shape: other fold
counts, an id in two folds, folds not covering the ids) is kept aside and its folds are dealt again from the
seed: the same folds, since they are a pure function of those inputs (`KFOLD_VERSION` names
the dealing rule; runs record a digest of their held-out ids and the report checks that every
run of a study used the same folds).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unet_transfer.errors import ConfigError, DatasetError
from unet_transfer.files import atomic_write_text, file_lock

log = logging.getLogger("unet_transfer")
KFOLD_VERSION = 1  # bump if `kfold` ever deals the same inputs differently


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
        stored = read_stored(path)
        entry = stored.get(name)
        if entry is not None and sorted(entry["ids"]) == sorted(ids):
            return entry["held_out"]
        held_out = kfold(ids, folds, seed, labels)
        stored[name] = {"folds": folds, "seed": seed, "ids": sorted(ids), "held_out": held_out,
                        "kfold_version": KFOLD_VERSION}
        atomic_write_text(path, json.dumps(stored, indent=1))
        return held_out


def read_stored(path: Path) -> dict:
    """splits.json's entries; a damaged file is kept aside (its entries are dealt again)."""
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text())
        if not isinstance(stored, dict):
            raise ValueError("not the layout splits.json is written in")
        for name, entry in stored.items():
            problem = entry_problem(name, entry)
            if problem:
                raise ValueError(f"entry {name!r}: {problem}")
        return stored
    except (OSError, ValueError) as error:
        kept = path.with_name(path.name + ".damaged")
        path.replace(kept)
        log.warning("%s is damaged (%s): kept as %s; the folds are dealt again from the split seed, the same "
                    "folds (the report checks every run used the same held-out ids)", path, error, kept.name)
        return {}


def entry_problem(name: str, entry) -> str | None:
    """What makes a splits.json entry unusable, or None. Valid JSON is not enough: a hand-edited or
    foreign entry with fewer folds, an id in two folds or a fold missing ids would silently give
    the runs a wrong cross-validation, so it is checked like a truncated file."""
    if not isinstance(entry, dict) or not {"ids", "held_out", "folds"} <= entry.keys():
        return "not a dict with ids, folds and held_out"
    ids, held_out, folds = entry["ids"], entry["held_out"], entry["folds"]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(set(ids)) != len(ids):
        return "ids is not a list of distinct names"
    if not isinstance(held_out, list) or not all(isinstance(f, list) and all(isinstance(i, str) for i in f)
                                                 for f in held_out):
        return "held_out is not a list of folds, each a list of ids"
    named = re.fullmatch(r"(\d+)-fold seed -?\d+", name)
    if named is None or int(named.group(1)) != folds or len(held_out) != folds:
        return f"{len(held_out)} folds, not the {named.group(1) if named else '?'} its name says"
    flat = [i for fold in held_out for i in fold]
    if len(flat) != len(set(flat)):
        return "an id is held out in more than one fold"
    if set(flat) != set(ids):
        return "the held-out ids are not exactly the entry's ids"
    return None


def check_fold(fold: int, folds: int) -> None:
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise ConfigError(f"fold={fold!r} is out of range: with folds={folds}, fold must be 0..{folds - 1}.")
