"""submitit's local executor, throttled: on its own it starts every job of a sweep at once (the
demo's 54 runs would be 54 torch processes on 2 cores: ~25 GB and ~20x thread oversubscription).
This launcher gives each job `cpus_per_task` cores (its torch threads) and submits
cores // cpus_per_task jobs at a time, in waves. Cluster arrays throttle themselves
(`array_parallelism`), so the SLURM launcher is the plugin's own."""

from __future__ import annotations

import os
from collections.abc import Sequence

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
    Base = submitit_launcher.LocalLauncher
except ImportError:  # without the `slurm` extra, hydra/launcher=submitit_local is not available
    Base = object


class LocalLauncher(Base):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        cpus = max(1, int(self.params.get("cpus_per_task") or 1))
        at_once = max(1, (os.cpu_count() or 1) // cpus)
        inherited = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = inherited or str(cpus)  # the job processes inherit it
        try:
            results = []
            for start in range(0, len(job_overrides), at_once):
                results.extend(super().launch(job_overrides[start: start + at_once], initial_job_idx + start))
            return results
        finally:
            if inherited is None:
                os.environ.pop("OMP_NUM_THREADS")
