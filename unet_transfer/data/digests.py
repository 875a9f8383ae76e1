"""Content digests of dataset files, computed once and reused.

A file's digest is stored with what identifies its current version on disk (size, mtime and
ctime in ns, inode): a file rewritten with its size and mtime restored (`touch -r`, some sync
tools) still gets a new ctime, so it is hashed again; an untouched one costs a `stat`. The
store is one JSON file in the cache folder, shared by every run (updates under a file lock).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from unet_transfer.files import atomic_write_text, file_lock

CHUNK = 1 << 20


def file_digest(path: Path | str) -> str:
    sha = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            sha.update(chunk)
    return sha.hexdigest()


def version_of(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


class FileDigests:
    """path -> content digest; `store` (a JSON file) keeps them between runs (None: no store)."""

    def __init__(self, store: Path | str | None = None):
        self.store = Path(store) if store is not None else None
        self.known: dict[str, list] = {}
        if self.store is not None and self.store.exists():
            try:
                self.known = json.loads(self.store.read_text())
            except (OSError, ValueError):
                self.known = {}  # a damaged store only costs hashing again

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
            current = FileDigests(self.store).known  # other runs may have added theirs meanwhile
            current.update(fresh)
            atomic_write_text(self.store, json.dumps(current))
        self.known.update(fresh)
