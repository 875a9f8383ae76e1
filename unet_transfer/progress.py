"""Sweep progress for Hydra multiruns: run i of N, elapsed, estimated time left, each result.

Progress is counted in a small state file in the sweep folder, under a file lock, so it stays
right when runs execute in other processes (joblib, submitit, local or on a cluster with a
shared file system). Runs skipped on resume count too; they take no time.
"""

from __future__ import annotations

import fcntl
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

log = logging.getLogger("unet_transfer.sweep")


def state_name() -> str:
    """One state file per sweep process (its workers inherit the token)."""
    return f".sweep_progress_{process_token()}.json"


def count_jobs(task_overrides: list[str], sweeper_params: dict | None) -> int:
    """Number of runs a basic-sweeper multirun will launch (command line wins over params)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    lines = {o.key_or_group: o for o in parser.parse_overrides(list(task_overrides))}
    for key, value in (sweeper_params or {}).items():
        if key not in lines:
            lines[key] = parser.parse_override(f"{key}={value}")
    total = 1
    for override in lines.values():
        if override.is_sweep_override():
            total *= len(list(override.sweep_string_iterator()))
    return total


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class SweepProgress(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        total = count_jobs(config.hydra.overrides.task, config.hydra.sweeper.get("params"))
        already = sum(1 for _ in sweep_dir.glob("*/metrics.json"))
        (sweep_dir / state_name()).write_text(json.dumps({"total": total, "start": time.time(), "ended": 0}))
        log.info("Sweep of %d runs in %s%s", total, sweep_dir,
                 f" (the folder holds {already} finished runs; runs among them are skipped)" if already else "")

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        path = Path(config.hydra.sweep.dir) / state_name()
        if not path.exists():
            return
        with open(path, "r+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            state = json.load(handle)
            state["ended"] += 1
            handle.seek(0)
            handle.truncate()
            json.dump(state, handle)
        done, elapsed = state["ended"], time.time() - state["start"]
        left = max(state["total"] - done, 0)
        eta = duration(elapsed / done * left)
        result = job_return.return_value if job_return.status == JobStatus.COMPLETED else None
        outcome = f"dice {result:.4f}" if isinstance(result, float) and not math.isnan(result) else "failed"
        log.info("[%d/%d] %s: %s | elapsed %s, ~%s left", done, state["total"],
                 config.hydra.job.override_dirname or "run", outcome, duration(elapsed), eta)
