"""Preprocess once, read many times: a folder per dataset version, written atomically.

A sweep runs the same dataset dozens of times; decoding and resizing it once and memory-mapping
the result afterwards makes every later run start in milliseconds. The folder name carries a
hash of everything the content depends on, so a changed file or setting makes a new entry
instead of a stale read. Entries appear by an atomic rename: concurrent runs never see (or
leave) a half-written one. An entry damaged later (a truncated file, a full disk) is found
when it is read and rebuilt, with a log line saying so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from unet_transfer.data.arrays import SegmentationSet
from unet_transfer.files import file_lock, plain_mode

log = logging.getLogger(__name__)


class DamagedEntry(Exception):
    """A cache entry that cannot be read back as it was written."""


def digest(key: dict) -> str:
    """Stable short hash of a JSON-able description."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_folder(cache_dir: Path | str, name: str, key: dict) -> Path:
    return Path(cache_dir) / f"{name}-{digest(key)}"


def save_set(folder: Path, data: SegmentationSet, key: dict) -> None:
    """Write `data` as folder/{images.npy, masks.npy, index.json}, atomically as a whole."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        os.chmod(staging, plain_mode(folder, folder=True))  # mkdtemp's 0700 would hide it from other users
        np.save(staging / "images.npy", data.images)
        np.save(staging / "masks.npy", np.packbits(data.masks, axis=-1))
        index = {"ids": list(data.ids), "labels": None if data.labels is None else list(data.labels),
                 "shape": list(data.images.shape), "key": key, "warnings": list(data.warnings),
                 "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        (staging / "index.json").write_text(json.dumps(index, indent=1, default=str))
        try:
            os.rename(staging, folder)
        except OSError:
            if not (folder / "index.json").exists():  # not a concurrent writer's finished entry
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_set(folder: Path) -> SegmentationSet:
    """The entry's data; DamagedEntry when any of its files is unreadable or inconsistent."""
    try:
        index = json.loads((folder / "index.json").read_text())
        shape = tuple(index["shape"])
        images = np.load(folder / "images.npy", mmap_mode="r")
        masks = np.unpackbits(np.load(folder / "masks.npy"), axis=-1, count=shape[-1]).astype(bool)
        if images.shape != shape or masks.shape != shape or len(index["ids"]) != shape[0]:
            raise ValueError(f"arrays of shape {images.shape} and {masks.shape}, index says {shape}")
        labels = None if index["labels"] is None else tuple(index["labels"])
        return SegmentationSet(np.asarray(images), masks, tuple(index["ids"]), labels,
                               tuple(index.get("warnings", ())))
    except (OSError, ValueError, KeyError, TypeError, EOFError) as error:
        raise DamagedEntry(f"{type(error).__name__}: {str(error).splitlines()[0][:200]}") from None


def build_entry(folder: Path, name: str, key: dict, build: Callable[[], SegmentationSet]) -> SegmentationSet:
    start = time.perf_counter()
    log.info("Dataset %s: preprocessing into cache %s", name, folder)
    data = build()
    save_set(folder, data, key)
    log.info("Dataset %s: cached %d images in %.1f s; later runs read the cache", name, len(data), time.perf_counter() - start)
    return data


def rebuild_entry(folder: Path, name: str, key: dict, build: Callable[[], SegmentationSet],
                  reason: str) -> SegmentationSet:
    """Replace a damaged entry (one process rebuilds; the others wait and read its result)."""
    with file_lock(folder.with_name(f".{folder.name}.lock")):
        try:
            return load_set(folder)  # another process repaired it while this one waited
        except DamagedEntry:
            pass
        log.warning("Dataset %s: cache entry %s is damaged (%s); rebuilding it", name, folder, reason)
        shutil.rmtree(folder, ignore_errors=True)
        return build_entry(folder, name, key, build)


def ensure_cached(cache_dir: Path | str, name: str, key: dict, build: Callable[[], SegmentationSet]) -> Path:
    """The cache folder for `key`, built (and stored) if it is not there yet; nothing is read."""
    folder = cache_folder(cache_dir, name, key)
    if (folder / "index.json").exists():
        return folder
    if folder.is_dir():
        rebuild_entry(folder, name, key, build, "index.json is missing")
    else:
        build_entry(folder, name, key, build)
    return folder


def cached_set(
    cache_dir: Path | str, name: str, key: dict, build: Callable[[], SegmentationSet]
) -> tuple[SegmentationSet, Path]:
    """The cached SegmentationSet for `key`, built (and stored) on first use, rebuilt if damaged."""
    folder = cache_folder(cache_dir, name, key)
    if not (folder / "index.json").exists() and not folder.is_dir():
        return build_entry(folder, name, key, build), folder
    start = time.perf_counter()
    try:
        data = load_set(folder)
    except DamagedEntry as damage:
        return rebuild_entry(folder, name, key, build, str(damage)), folder
    log.info("Dataset %s: read %d images from cache %s (%.2f s)", name, len(data), folder, time.perf_counter() - start)
    return data, folder
