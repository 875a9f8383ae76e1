"""Sweep progress for Hydra multiruns: run i of N, elapsed, estimated time left, each result.

Progress is counted in a small state file in the sweep folder, under a file lock, so it stays
right when runs execute in other processes (joblib, submitit, local or on a cluster with a
shared file system). Runs skipped on resume count too; they take no time. The sweeper
(hydra_plugins/unet_transfer/sweeper.py) starts the count and removes the file at the end.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from unet_transfer.config import process_token
from unet_transfer.files import atomic_write_text, file_lock

log = logging.getLogger("unet_transfer.sweep")


def state_path(folder: Path | str) -> Path:
    """One state file per sweep process (its workers inherit the token)."""
    return Path(folder) / f".sweep_progress_{process_token()}.json"


def start_progress(folder: Path, total: int) -> None:
    already = sum(1 for _ in Path(folder).glob("*/metrics.json"))
    atomic_write_text(state_path(folder), json.dumps({"total": total, "start": time.time(), "ended": 0}))
    log.info("Sweep of %d runs in %s%s", total, folder,
             f" (the folder holds {already} finished runs; runs among them are skipped)" if already else "")


def end_progress(folder: Path) -> None:
    path = state_path(folder)
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".lock").unlink(missing_ok=True)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class SweepProgress(Callback):
    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        path = state_path(config.hydra.sweep.dir)
        if not path.exists():
            return
        with file_lock(path.with_name(path.name + ".lock")):
            state = json.loads(path.read_text())
            state["ended"] += 1
            atomic_write_text(path, json.dumps(state))
        done, elapsed = state["ended"], time.time() - state["start"]
        left = max(state["total"] - done, 0)
        eta = duration(elapsed / done * left)
        result = job_return.return_value if job_return.status == JobStatus.COMPLETED else None
        outcome = f"dice {result:.4f}" if isinstance(result, float) and not math.isnan(result) else "failed"
        log.info("[%d/%d] %s: %s | elapsed %s, ~%s left", done, state["total"], config.hydra.sweep.subdir,
                 outcome, duration(elapsed), eta)
