"""Hydra's basic sweeper, with folders a person can find: each run's folder is named by the
settings that vary within the sweep (`fold=3,freeze=shallow_to_deep,k=2`, in key order), and
the settings fixed for the whole sweep name one folder above the runs (`multirun/<study>/
<fixed settings>/<run>`), recorded with the sweep's `multirun.yaml`. Settings that cannot change
a result (paths, logging, speed; unet_transfer.training.identity) name nothing, except where the
data is read from (`dataset.root`, `paths.data_dir`): runs on other data are other runs, so the
folder names it, as its last part and a hash of the absolute path (`dataset.root=busi-1a2b3c4d`).
Two sweeps that differ only in a fixed data folder thus never share (or set aside) run folders.

It also starts the sweep's progress count (unet_transfer.study.progress) and removes it when
the sweep ends, and checks a sweep's overrides by composing a few of its jobs, not all: one
job per value of every swept setting finds every typo (the basic sweeper composes all of
them, one after another, before the first starts: 19 s of the demo's 54-run grid).
"""

from __future__ import annotations

import logging
import sys
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import open_dict

log = logging.getLogger("unet_transfer.sweep")
NEVER_NAMES = ("experiment", "study")  # they name the study folder itself


DATA_PATHS = ("dataset.root", "paths.data_dir")  # not settings (the content is), yet other data


def names_folders(key: str) -> bool:
    from unet_transfer.training.identity import is_setting

    return key in DATA_PATHS or (key not in NEVER_NAMES and is_setting(key))


def data_folder_words(path: str) -> str:
    """/data/studies/busi -> 'busi-1a2b3c4d': short, and two folders of one name stay apart."""
    import hashlib
    import os

    absolute = os.path.abspath(os.path.expanduser(str(path)))
    return f"{os.path.basename(absolute.rstrip(os.sep)) or 'root'}-{hashlib.sha256(absolute.encode()).hexdigest()[:8]}"


FOLDER_LIMIT = 200  # characters of one folder name (filesystems allow 255 bytes)


def folder_name(pairs: Sequence[tuple[str, str]], empty: str, limit: int = FOLDER_LIMIT) -> str:
    """`key=value` words joined by commas, each word whole: a name over `limit` keeps the words
    that fit and ends in `+` and a hash of the whole (two such names still differ), so a folder
    never reads `model=_87808e41a5d2` (a word cut and hashed)."""
    import hashlib

    from unet_transfer.config import path_safe

    if not pairs:
        return empty
    words = [path_safe(f"{key}={data_folder_words(value) if key in DATA_PATHS else value}", limit)
             for key, value in sorted(pairs)]
    whole = ",".join(words)
    if len(whole) <= limit:
        return whole
    tail = "+" + hashlib.sha256(whole.encode()).hexdigest()[:12]
    kept = []
    for word in words:
        if len(",".join([*kept, word])) + 1 + len(tail) > limit:
            break
        kept.append(word)
    return ",".join([*kept, tail])


def quoted(key: str, value: str) -> str:
    """An override whose value may hold any character (`,`, `=`, `/`)."""
    return f"{key}='" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def covering_jobs(batch: Sequence[Sequence[str]]) -> list[Sequence[str]]:
    """A few jobs of `batch` that together hold every override of the batch at least once."""
    chosen, seen = [], set()
    for job in batch:
        settings = {line for line in job if not line.startswith("hydra.")}  # our folder names differ per job
        if not settings <= seen:
            chosen.append(job)
            seen |= settings
    return chosen


class Sweeper(BasicSweeper):
    def setup(self, *, hydra_context, task_function, config) -> None:
        self._task_function = task_function
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]):
        from unet_transfer.study.progress import end_progress, start_progress

        self._parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        parsed = self._parser.parse_overrides([*self._parse_config(), *arguments])
        final: OrderedDict = OrderedDict()
        for override in parsed:
            final[override.key_or_group] = override  # the command line wins over the sweeper's params
        self._swept = {key for key, o in final.items() if o.is_sweep_override()}
        fixed = [(key, o.get_value_element_as_str()) for key, o in final.items()
                 if not o.is_sweep_override() and names_folders(key)]
        folder = Path(self.config.hydra.sweep.dir)
        if fixed:
            folder = folder / folder_name(fixed, "")
        with open_dict(self.config):
            self.config.hydra.sweep.dir = str(folder)
        self._folder = folder
        # The launcher read the sweep folder when it was made (submitit's job folder): make it again.
        from hydra.core.plugins import Plugins

        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=self.hydra_context, task_function=self._task_function, config=self.config)
        start_progress(folder, total=len(self.split_arguments(parsed, None)[0]))
        try:
            returns = super().sweep(arguments)
        finally:
            end_progress(folder)
        stop_if_diverged(returns)
        return returns

    def run_name(self, job: Sequence[str]) -> str:
        pairs = []
        for override in self._parser.parse_overrides(list(job)):
            if override.key_or_group in self._swept:
                pairs.append((override.key_or_group, override.get_value_element_as_str()))
        return folder_name(pairs, "run")

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        super().validate_batch_is_legal(covering_jobs(batch))

    def get_job_batch(self) -> Sequence[Sequence[str]]:
        return [[*job, quoted("hydra.sweep.dir", self._folder), quoted("hydra.sweep.subdir", self.run_name(job))]
                for job in super().get_job_batch()]


def stop_if_diverged(returns) -> None:
    """After every run of the sweep: the runs that diverged (they wrote no result) end the sweep
    with one line and exit code 2, as one diverged run alone does."""
    from hydra.core.utils import JobStatus

    from unet_transfer.training.run import DIVERGED

    diverged = [job.working_dir or "?" for batch in returns or [] for job in batch
                if job.status == JobStatus.COMPLETED and getattr(job, "_return_value", None) == DIVERGED]
    if diverged:
        print(f"Error: {len(diverged)} run(s) of this sweep diverged and wrote no result ({', '.join(diverged[:3])}"
              f"{' ...' if len(diverged) > 3 else ''}); the others finished. Lower optimizer.lr (or fix what made the "
              "loss non-finite, see each run's log) and run the same command again: finished runs are kept.",
              file=sys.stderr, flush=True)
        raise SystemExit(2)
