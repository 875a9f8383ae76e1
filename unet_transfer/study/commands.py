"""How a study and the on-demand pretraining start their sub-runs: through the package's own
entry point (`python -m unet_transfer train ...`, the same code as the `unet-transfer`
command), never through a file path, so they work installed and from a checkout alike."""

from __future__ import annotations

import os
import sys

from unet_transfer.config import PACKAGE_DIR, searchpath_override


def train_command(overrides: list[str], multirun: bool = False, extra_dirs=()) -> list[str]:
    return [sys.executable, "-m", "unet_transfer", "train", *(["-m"] if multirun else []),
            *searchpath_override(extra_dirs), *overrides]


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this environment) with the running package importable, also when it is
    a checkout that was never installed."""
    env = dict(os.environ if base is None else base)
    root = str(PACKAGE_DIR.parent)
    paths = env.get("PYTHONPATH", "").split(os.pathsep) if env.get("PYTHONPATH") else []
    env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in paths if p != root]])
    return env
