"""Sweep progress for Hydra multiruns: run i of N, elapsed, estimated time left, each result.

Progress is read from the sweep folder (finished runs are the metrics.json files in it), so it
stays right when runs execute in other processes (joblib, submitit) or when a killed sweep is
resumed and its finished runs are skipped.
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

log = logging.getLogger("unet_transfer.sweep")
STATE = ".sweep_progress.json"


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


def finished_runs(sweep_dir: Path) -> int:
    return sum(1 for _ in sweep_dir.glob("*/metrics.json"))


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class SweepProgress(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        total = count_jobs(config.hydra.overrides.task, config.hydra.sweeper.get("params"))
        already = finished_runs(sweep_dir)
        (sweep_dir / STATE).write_text(json.dumps({"total": total, "start": time.time(), "already": already}))
        log.info("Sweep of %d runs in %s%s", total, sweep_dir,
                 f" ({already} already finished, they are skipped)" if already else "")

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            state = json.loads((sweep_dir / STATE).read_text())
        except (OSError, ValueError):
            return
        done = finished_runs(sweep_dir)
        elapsed = time.time() - state["start"]
        new = done - state["already"]
        left = state["total"] - done
        eta = duration(elapsed / new * left) if new > 0 and left > 0 else ("0m00s" if left <= 0 else "?")
        result = job_return.return_value if job_return.status == JobStatus.COMPLETED else None
        outcome = f"dice {result:.4f}" if isinstance(result, float) and not math.isnan(result) else "failed"
        log.info("[%d/%d] %s: %s | elapsed %s, ~%s left", min(done, state["total"]), state["total"],
                 config.hydra.job.override_dirname or "run", outcome, duration(elapsed), eta)
