"""How a study and the on-demand pretraining start their sub-runs: through the package's own
entry point (`python -m unet_transfer train ...`, the same code as the `unet-transfer`
command), never through a file path, so they work installed and from a checkout alike."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from unet_transfer.config import PACKAGE_DIR, searchpath_override


def train_command(overrides: list[str], multirun: bool = False, extra_dirs=()) -> list[str]:
    return [sys.executable, "-m", "unet_transfer", "train", *(["-m"] if multirun else []),
            *searchpath_override(extra_dirs), *overrides]


def user_command(overrides: list[str], multirun: bool = False, extra_dirs=()) -> str:
    """The same run as a line a user can paste into a shell, with their config folders (Hydra's
    --config-dir takes one folder; several go in as hydra.searchpath)."""
    dirs = [str(Path(d).resolve()) for d in extra_dirs or ()]
    where = ["--config-dir", dirs[0]] if len(dirs) == 1 else searchpath_override(dirs)
    words = ["unet-transfer", "train", *(["-m"] if multirun else []), *where, *map(str, overrides)]
    return " ".join(shlex.quote(word) for word in words)


def user_study_command(experiment: str, overrides=(), extra_dirs=()) -> str:
    """`unet-transfer study EXPERIMENT` as a pastable line, with the user's config folders (the
    study takes --config-dir once per folder) and overrides."""
    where = [word for d in extra_dirs or () for word in ("--config-dir", str(Path(d).resolve()))]
    words = ["unet-transfer", "study", experiment, *where, *map(str, overrides)]
    return " ".join(shlex.quote(word) for word in words)


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this environment) with the running package importable, also when it is
    a checkout that was never installed."""
    env = dict(os.environ if base is None else base)
    root = str(PACKAGE_DIR.parent)
    paths = env.get("PYTHONPATH", "").split(os.pathsep) if env.get("PYTHONPATH") else []
    env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in paths if p != root]])
    return env
