"""Which configuration of a study to train for use.

By default the best by mean held-out score over folds, exactly as the study's report
aggregates it (report.collect.find_runs, deduplicate, report.aggregate.summarise), among the
configurations with all their folds; a tie (the same mean, as equivalent configurations have)
goes to the one that trains fewer parameters. Or the one the user names: by its label in the
report (or a unique part of it) or by one of its run folders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from unet_transfer.errors import ConfigError
from unet_transfer.metrics import METRICS
from unet_transfer.report.aggregate import summarise
from unet_transfer.report.collect import deduplicate, find_runs


@dataclass
class Candidate:
    row: dict  # a configuration as report.aggregate.summarise gives it
    parameters: int  # trainable parameters

    @property
    def label(self) -> str:
        return self.row["label"]


@dataclass
class Choice:
    chosen: Candidate
    ranking: list[Candidate]  # best first
    metric: str
    how: str  # why this configuration, in words
    warnings: list[str] = field(default_factory=list)


def study_rows(study: Path) -> tuple[list[dict], list[str]]:
    """The study's configurations (the report's rows) and the report's warnings about them."""
    if not study.is_dir():
        raise ConfigError(f"STUDY_DIR={str(study)!r}: no such folder. Give a study's folder, e.g. multirun/demo.")
    found = find_runs(study)
    if not found.runs:
        raise ConfigError(f"STUDY_DIR={str(study)!r} holds no finished run (metrics.json): run the study first "
                          "(unet-transfer study EXPERIMENT) or point at its folder (multirun/<study>).")
    runs, duplicates = deduplicate(found.runs)
    rows, warnings = summarise(runs)
    return rows, [*found.problems, *duplicates, *warnings]


@cache
def block_parameters(model_settings: tuple) -> dict[int, int]:
    """Parameters of each block of the U-Net with these settings (built once per model)."""
    from unet_transfer.inference.network import model_from_settings

    model = model_from_settings(dict(model_settings), "the study's model")
    return {number: sum(p.numel() for p in model.block(number).parameters()) for number in model.layout.numbers}


def trainable_parameters(row: dict) -> int:
    """As recorded by the runs (`trainable_params`), else counted over the blocks the configuration
    trains; a configuration without training (0 epochs) trains none."""
    run = row["runs"][0]
    if run.get("trainable_params") is not None:
        return int(run["trainable_params"])
    if row["epochs"] == 0:
        return 0
    settings = {key[len("model."):]: value for key, value in (run.get("settings") or {}).items()
                if key.startswith("model.")}
    if not settings:  # runs of versions that recorded no settings: the run's own config
        from unet_transfer.inference.final import run_config

        settings = dict(run_config(run["path"]).model)
    frozen = tuple(sorted((key, tuple(v) if isinstance(v, list) else v) for key, v in settings.items()))
    counts = block_parameters(frozen)
    return sum(counts[number] for number in row["blocks"])


def rank(rows: list[dict], metric: str) -> list[Candidate]:
    better = METRICS[metric].higher_is_better
    scored = [row for row in rows if not math.isnan(row["mean"][metric])]
    candidates = [Candidate(row, trainable_parameters(row)) for row in scored]
    return sorted(candidates, key=lambda c: ((-1 if better else 1) * c.row["mean"][metric], c.parameters, c.label))


def named(ranking: list[Candidate], pick: str) -> Candidate:
    """The configuration a user named: one of its run folders, its label, or a unique part of it."""
    folder = Path(pick)
    if folder.is_dir():
        for candidate in ranking:
            if any(Path(run["path"]).resolve() == folder.resolve() for run in candidate.row["runs"]):
                return candidate
        raise ConfigError(f"--choose {pick!r} is a folder but not a finished run of this study's configurations.")
    exact = [c for c in ranking if c.label == pick]
    partial = [c for c in ranking if pick.lower() in c.label.lower()]
    if exact or len(partial) == 1:
        return (exact or partial)[0]
    labels = "; ".join(c.label for c in (partial or ranking))
    what = "matches several configurations" if partial else "matches no configuration"
    raise ConfigError(f"--choose {pick!r} {what}: {labels}. Give a label (or a unique part of it) or a run folder.")


def choose(rows: list[dict], metric: str = "dice", dataset: str | None = None, pick: str | None = None) -> Choice:
    if metric not in METRICS:
        raise ConfigError(f"--metric {metric!r}: choose one of {list(METRICS)}.")
    datasets = sorted({row["dataset"] for row in rows})
    if dataset is None and len(datasets) > 1:
        raise ConfigError(f"The study holds runs on several datasets ({', '.join(datasets)}): choose one with --dataset.")
    dataset = dataset or datasets[0]
    ranking = rank([row for row in rows if row["dataset"] == dataset], metric)
    if not ranking:
        raise ConfigError(f"--dataset {dataset!r}: the study has no scored configuration on it (it has: "
                          f"{', '.join(datasets)}).")
    label = METRICS[metric].label
    if pick is not None:
        return Choice(named(ranking, pick), ranking, metric, f"named by the user (--choose {pick!r})")
    complete = [c for c in ranking if c.row["complete"]]
    chosen = (complete or ranking)[0]
    how = (f"the best mean held-out {label} over folds of {len(complete or ranking)} configurations "
           "(ties: fewer trainable parameters)")
    warnings = []
    skipped = ranking[:ranking.index(chosen)]
    if skipped:
        warnings.append(f"{len(skipped)} configuration(s) with missing folds scored higher and were passed over "
                        f"(first: {skipped[0].label}, {skipped[0].row['flag']})")
    if not complete:
        warnings.append("no configuration has all its folds; the best of the incomplete ones was taken")
    return Choice(chosen, ranking, metric, how, warnings)
