"""Writing and locking files safely: the one atomic writer and the one lock every file goes through.

`atomic_path` writes to a hidden temporary file beside the target and renames it into place
only when writing succeeded: a crash or a kill never leaves a half-written file under the
real name, and readers never see one. `file_lock` serialises processes on a lock file
(filelock: works on every OS and is released when its process dies).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yields a temporary path to write; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path | str, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def file_lock(path: Path | str, timeout: float = -1):
    """An exclusive inter-process lock on `path` (a context manager); timeout=0 tries once."""
    from filelock import FileLock

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path), timeout=timeout)
