"""Hydra's joblib launcher, never wider than the sweep: a sweep of fewer runs than `n_jobs`
gets as many workers as runs, so each gets more threads (joblib gives a worker cores / workers),
and a one-run sweep runs in the sweep's own process with every core."""

from __future__ import annotations

import os
from collections.abc import Sequence

from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher


def workers_for(n_jobs: int, runs: int, cores: int) -> int:
    """joblib's n_jobs (-1 = all cores, -2 = all but one, ...) capped at the number of runs."""
    wanted = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
    return max(1, min(wanted, runs))


class Launcher(JoblibLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        n_jobs = int(self.joblib.get("n_jobs") or 1)
        self.joblib = {**self.joblib, "n_jobs": workers_for(n_jobs, len(job_overrides), os.cpu_count() or 1)}
        try:
            return super().launch(job_overrides, initial_job_idx)
        finally:
            self.joblib["n_jobs"] = n_jobs
