"""Hydra's joblib launcher, never wider than the sweep: a sweep of fewer runs than `n_jobs`
gets as many workers as runs, so each gets more threads (joblib gives a worker cores / workers),
and a one-run sweep runs in the sweep's own process with every core.

Ctrl-C belongs to the sweep's own process: the workers ignore it (else each would stop its run
its own way, Lightning's `sys.exit(1)` among them), and the sweep kills them on its way out."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher


def workers_for(n_jobs: int, runs: int, cores: int) -> int:
    """joblib's n_jobs (-1 = all cores, -2 = all but one, ...) capped at the number of runs."""
    wanted = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
    return max(1, min(wanted, runs))


class IgnoreCtrlC:
    """loky's worker initializer: Ctrl-C reaches the whole process group, workers included."""

    def __call__(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def __repr__(self) -> str:  # as Hydra's "Joblib.Parallel(...)" line shows it
        return "ignore_ctrl_c"


IGNORE_CTRL_C = IgnoreCtrlC()  # one object: loky reuses its executor only for equal settings


def stop_workers() -> None:
    """Kill the sweep's workers now (SIGKILL, through loky) with Ctrl-C held back meanwhile: a
    worker left behind would train on, holding its run's log open. joblib aborts its workers on
    an interrupt too, but a second Ctrl-C can cut that short."""
    from joblib.externals.loky import reusable_executor

    executor = reusable_executor._executor
    if executor is None:
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        executor.shutdown(wait=True, kill_workers=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


class Launcher(JoblibLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        n_jobs = int(self.joblib.get("n_jobs") or 1)
        self.joblib = {**self.joblib, "n_jobs": workers_for(n_jobs, len(job_overrides), os.cpu_count() or 1),
                       "initializer": IGNORE_CTRL_C}
        try:
            return super().launch(job_overrides, initial_job_idx)
        except BaseException:  # Ctrl-C (KeyboardInterrupt), or the process told to exit
            stop_workers()
            raise
        finally:
            self.joblib["n_jobs"] = n_jobs
