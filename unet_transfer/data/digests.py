"""Content digests of dataset files, computed once and reused.

A file's digest is stored with what identifies its current version on disk (size, mtime and
ctime in ns, inode): a file rewritten with its size and mtime restored (`touch -r`, some sync
tools) still gets a new ctime, so it is hashed again; an untouched one costs a `stat`. The
store is one JSON file in the cache folder, shared by every run (updates under a file lock).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from unet_transfer.files import atomic_write_text, file_lock

log = logging.getLogger("unet_transfer")
CHUNK = 1 << 20


def file_digest(path: Path | str) -> str:
    sha = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            sha.update(chunk)
    return sha.hexdigest()


def version_of(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def is_entry(entry) -> bool:
    """A stored entry as `digests` writes it: the file's version (4 integers) and its digest."""
    return (isinstance(entry, list) and len(entry) == 5 and isinstance(entry[4], str)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in entry[:4]))


def read_store(store: Path, warn: bool = True) -> dict[str, list]:
    """The well-formed entries of `store`. A damaged store (unreadable, not a dict, or entries of
    another shape) only costs hashing those files again, and the next save writes it whole."""
    try:
        stored = json.loads(store.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        stored = None
    kept = {name: entry for name, entry in stored.items() if is_entry(entry)} if isinstance(stored, dict) else {}
    if warn and (not isinstance(stored, dict) or len(kept) < len(stored)):
        log.warning("%s is damaged (not the layout it is written in): the files it lacks are hashed again", store)
    return kept


class FileDigests:
    """path -> content digest; `store` (a JSON file) keeps them between runs (None: no store)."""

    def __init__(self, store: Path | str | None = None):
        self.store = Path(store) if store is not None else None
        self.known: dict[str, list] = read_store(self.store) if self.store is not None else {}

    def digests(self, items: Iterable[tuple[Path, os.stat_result]]) -> list[str]:
        """The digest of each (path, its stat), hashing only files new or changed since stored."""
        out, fresh = [], {}
        for path, stat in items:
            name, version = str(Path(path).resolve()), version_of(stat)
            entry = self.known.get(name)
            if entry is None or entry[:4] != version:
                entry = fresh[name] = [*version, file_digest(path)]
            out.append(entry[4])
        if fresh and self.store is not None:
            self.save(fresh)
        return out

    def save(self, fresh: dict) -> None:
        with file_lock(self.store.with_name(self.store.name + ".lock")):
            current = read_store(self.store, warn=False)  # other runs may have added theirs meanwhile
            current.update(fresh)
            atomic_write_text(self.store, json.dumps(current))
        self.known.update(fresh)
