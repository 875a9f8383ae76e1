"""Which configuration of a study to train for use.

By default the best by mean held-out score over folds, exactly as the study's report
aggregates it (report.collect.find_runs, deduplicate, report.aggregate.summarise), among the
configurations with all their folds; a tie (the same mean, as equivalent configurations have)
goes to the one that trains fewer parameters. Or the one the user names: by its label in the
report (or a unique part of it) or by one of its run folders (--choose overrides every rule).

Not by noise: a configuration is *within the study's noise* of the best when the best's lead
over it, paired by fold (the mean of best − it over their common folds, at least 2), is no
larger than the standard error of those fold differences (their sample std / √folds): a
one-standard-error rule on the paired differences. Among the best and the configurations
within its noise, the one that trains the fewest parameters is chosen (equal counts: the
better mean), and the choice says so with the difference, the standard error and the paired
Wilcoxon p over folds (report.stats.paired_test, as stats.md gives it). The p-value is told,
not used: with 5 folds it can never fall below 0.0625, so "not significant" would hold for
every pair.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from unet_transfer.errors import ConfigError
from unet_transfer.metrics import METRICS
from unet_transfer.report.aggregate import summarise
from unet_transfer.report.collect import deduplicate, find_runs
from unet_transfer.report.stats import TIE, fold_pairs, format_p, paired_test


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
    noise: dict | None = None  # when others were within the study's noise of the best: see noise_rule


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
def block_parameters(model_settings: str) -> dict[int, int]:
    """Parameters of each block of the network these settings (JSON) describe, by its block
    map (unet_transfer.networks.protocol): built once per model, on the meta device (counts only)."""
    import torch

    from unet_transfer.checkpoint import build_network, check_settings
    from unet_transfer.networks.protocol import block_map

    build, arguments = check_settings(json.loads(model_settings), "the study's model")
    with torch.device("meta"):
        blocks = block_map(build_network(build, arguments))
    return {number: sum(p.numel() for p in blocks.parameters(number)) for number in blocks.blocks.numbers}


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
        from omegaconf import OmegaConf

        from unet_transfer.inference.final import run_config

        settings = OmegaConf.to_container(run_config(run["path"]).model, resolve=True)
    counts = block_parameters(json.dumps(settings, sort_keys=True))
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


def lead(best: Candidate, other: Candidate, metric: str) -> tuple[float, float, int] | None:
    """The best's lead over `other` paired by fold (positive: the best is better) and the standard
    error of the fold differences; None with fewer than 2 common folds (no noise to measure)."""
    first, second = fold_pairs(best.row, other.row, metric)
    sign = 1 if METRICS[metric].higher_is_better else -1
    differences = [sign * (a - b) for a, b in zip(first, second, strict=True) if not (math.isnan(a) or math.isnan(b))]
    if len(differences) < 2:
        return None
    return statistics.fmean(differences), statistics.stdev(differences) / math.sqrt(len(differences)), len(differences)


def noise_rule(pool: list[Candidate], metric: str) -> tuple[Candidate, dict | None]:
    """The cheapest of the best and the configurations within its noise (pool: best first), and
    what the card tells about it (None when no other configuration was within the noise)."""
    best = pool[0]
    within = [(other, measured) for other in pool[1:]
              if (measured := lead(best, other, metric)) is not None and measured[0] <= measured[1] + TIE]
    if not within:
        return best, None
    group = [best, *(other for other, _ in within)]
    chosen = group[min(range(len(group)), key=lambda i: (group[i].parameters, i))]
    far, (difference, error, folds) = next(((c, m) for c, m in within if c is chosen), None) or \
        max(within, key=lambda item: item[1][0])  # the chosen one, or (the best chosen) the farthest
    p = paired_test(*fold_pairs(best.row, far.row, metric))["p"]
    top = all(a is b for a, b in zip(group, pool, strict=False))
    who = f"the top {len(group)}" if top else f"{len(group)} configurations, the best among them,"
    told = (f"{who} were within the study's noise (difference {difference:.4f}, "
            f"paired p={format_p(p)} over {folds} folds; standard error of the fold differences {error:.4f})")
    if chosen is best:
        note = f"{told}: the best also trains the fewest parameters of them"
    else:
        note = (f"{told}: chose the cheapest, {chosen.label}, which trains {chosen.parameters:,} parameters "
                f"against {best.parameters:,}")
    return chosen, {"within": [c.label for c in group], "best": best.label, "compared_with": far.label,
                    "difference": difference, "standard_error": error, "p": p, "folds": folds, "note": note}


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
    pool = complete or ranking
    chosen, noise = noise_rule(pool, metric)
    how = (f"the best mean held-out {label} over folds of {len(pool)} configurations "
           "(ties and differences within the study's noise: fewer trainable parameters)")
    if noise is not None:
        how += f"; {noise['note']}"
    warnings = []
    skipped = ranking[:ranking.index(pool[0])]
    if skipped:
        warnings.append(f"{len(skipped)} configuration(s) with missing folds scored higher and were passed over "
                        f"(first: {skipped[0].label}, {skipped[0].row['flag']})")
    if not complete:
        warnings.append("no configuration has all its folds; the best of the incomplete ones was taken")
    return Choice(chosen, ranking, metric, how, warnings, noise)
