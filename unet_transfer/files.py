"""Writing and locking files safely: the one atomic writer and the one lock every file goes through.

`atomic_path` writes to a hidden temporary file beside the target and renames it into place
only when writing succeeded: a crash or a kill never leaves a half-written file under the
real name, and readers never see one. The file gets the mode a plain open() would give it (that
of the file it replaces, else 0666 less the umask), whatever mode its writer created it with.
`file_lock` serialises processes on a lock file
(filelock: works on every OS and is released when its process dies).
"""

from __future__ import annotations

import os
import secrets
import stat
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
        os.chmod(tmp, plain_mode(path))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def umask() -> int:
    """The process's umask, read without changing it where Linux tells it (os.umask can only set it)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def plain_mode(path: Path, folder: bool = False) -> int:
    """The mode open() (mkdir for a folder) would give `path`: an existing file keeps its mode, a new
    one gets 0666 (0777) less the umask. Temporary files (mkstemp, mkdtemp, some writers) are 0600/0700,
    so each renamed file gets this instead: every artefact readable alike."""
    if not folder and path.is_file():
        return stat.S_IMODE(path.stat().st_mode)
    return (0o777 if folder else 0o666) & ~umask()


def atomic_write_text(path: Path | str, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def file_lock(path: Path | str, timeout: float = -1):
    """An exclusive inter-process lock on `path` (a context manager); timeout=0 tries once."""
    from filelock import FileLock

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path), timeout=timeout)
