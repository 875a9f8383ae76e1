"""A forecast checked against the study: the study's table of configurations and the scores.

Definitions (over the k x direction grid, one entry per distinct set of trained blocks):

- `tau`: Kendall's tau-b (scipy.stats.kendalltau) between the forecast's scores and the study's
  mean Dice over folds, over the configurations both have; None where either side is constant.
- `direction_right`: the study's direction is the path that wins its contracting-vs-expanding
  comparison (the mean Dice of the contracting path, shallow_to_deep k=5 in the paper's U-Net,
  against the expanding path's); the forecast's is the path it scores higher (a tie picks none).
  Where no k step trains exactly one path (depth=shortest), the direction with the higher mean
  over k of (S→D - D→S) is used on both sides.
- `k_compared`: the k (both directions train different blocks) where the study's two directions
  differ in mean Dice by more than their fold spread (the larger of the two sample standard
  deviations over folds, ddof=1); `k_right`: at how many of those the forecast scores the
  study's better direction higher (a tie is not right).
- `regret` (equal budget): at each k where both directions were run and differ, the study's
  better direction's mean Dice minus the mean Dice of the direction the forecast picks (a tie:
  the mean of the two, a coin flip's expected pick); the mean over those k. This is the loss of
  choosing "which k blocks" by the forecast when k (the trainable budget) is fixed.
- `regret_pick`: the study's best mean Dice over the grid minus the study's mean Dice of the
  configuration the forecast ranks first.
- `cost_share`: the estimator's seconds / the study's seconds (the sum of its runs'
  `duration_s`, else `train_time_s`; a run that copied a twin's result counts 0); without a study,
  / the study's image-steps times this machine's seconds per image-step (measured by the
  forecast's own training), marked as estimated. `steps_share`: image-steps / the study's.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev

from unet_transfer.blocks import SWEPT_DIRECTIONS, Blocks
from unet_transfer.forecast.candidates import Candidate, at_k, path_pair


@dataclass
class StudyTable:
    """The study's mean Dice per configuration (candidate label) and what it cost."""

    dice: dict[str, list[float]] = field(default_factory=dict)  # label -> per-fold Dice
    seconds: float = 0.0
    image_steps: int = 0
    runs: int = 0
    warnings: list[str] = field(default_factory=list)

    def mean(self, label: str) -> float | None:
        values = self.dice.get(label)
        return mean(values) if values else None

    def spread(self, label: str) -> float:
        values = self.dice.get(label) or []
        return stdev(values) if len(values) > 1 else 0.0


def run_seconds(run: dict) -> float:
    """A run's cost in seconds: 0 for one that copied its twin's result."""
    if run.get("same_as"):
        return 0.0
    value = run.get("duration_s", run.get("train_time_s"))
    return float(value) if isinstance(value, int | float) else 0.0


def run_image_steps(run: dict) -> int:
    if run.get("same_as"):
        return 0
    return int(run.get("epochs") or 0) * int(run.get("n_train") or 0)


def study_table(folder: Path, candidates: list[Candidate], network: dict | None = None) -> StudyTable | None:
    """The study's finished runs below `folder` of the forecast's network (`model.*` settings;
    None: every run), by the report's collector (the forecast's own folder holds no run): None
    where there are none of the grid's."""
    from unet_transfer.forecast.context import same_network
    from unet_transfer.report.collect import deduplicate, find_runs

    if not Path(folder).is_dir():
        return None
    found = find_runs(folder)
    runs, duplicates = deduplicate(found.runs)
    table = StudyTable(warnings=[*found.problems, *duplicates])
    by_blocks = {c.blocks: c.label for c in candidates}
    folds: dict[str, dict] = defaultdict(dict)
    mine = [run for run in runs if network is None or same_network(run.get("settings") or {}, network)]
    if len(mine) < len(runs):
        table.warnings.append(f"{len(runs) - len(mine)} runs of other networks left out (the forecast is of the "
                              "main sweep's network)")
    for run in mine:
        table.runs += 1
        table.seconds += run_seconds(run)
        table.image_steps += run_image_steps(run)
        key = run["key"]
        if key.role not in SWEPT_DIRECTIONS or not run["has_pretrained"] or key.method != "freeze":
            continue
        label = by_blocks.get(tuple(sorted(run.get("trainable_blocks") or ())))
        if label is not None:
            folds[label].setdefault((key.variant, run["seed"], run["fold"]), float(run["dice"]))
    variants = {variant for per in folds.values() for variant, _, _ in per}
    if len(variants) > 1:
        table.warnings.append(f"the study's grid has {len(variants)} variants (other settings); all are pooled")
    table.dice = {label: list(per.values()) for label, per in folds.items()}
    return table if table.dice else None


def kendall_tau(forecast: dict[str, float], study: dict[str, float]) -> float | None:
    """Kendall's tau-b over the labels both have (None: fewer than 2, or a constant side)."""
    from scipy.stats import kendalltau

    labels = [label for label in forecast if label in study]
    if len(labels) < 2:
        return None
    tau = kendalltau([forecast[label] for label in labels], [study[label] for label in labels]).statistic
    return None if tau is None or math.isnan(tau) else float(tau)


def direction_pick(scores: dict[str, float], pair: dict[str, Candidate]) -> str | None:
    """The key of `pair` with the higher score, None on a tie or a missing score."""
    (a, first), (b, second) = pair.items()
    x, y = scores.get(first.label), scores.get(second.label)
    if x is None or y is None or x == y:
        return None
    return a if x > y else b


def paths_direction(scores: dict[str, float], candidates: list[Candidate], layout: Blocks) -> str | None:
    """contracting / expanding by the scores (see the module docstring)."""
    pair = path_pair(candidates, layout)
    if pair is not None:
        return direction_pick(scores, pair)
    differences = [scores[p["shallow_to_deep"].label] - scores[p["deep_to_shallow"].label]
                   for k in layout.k_range if (p := at_k(candidates, layout, k))
                   and all(c.label in scores for c in p.values())]
    if not differences or mean(differences) == 0:
        return None
    return "contracting" if mean(differences) > 0 else "expanding"


@dataclass
class Score:
    tau: float | None = None
    direction: str | None = None          # the forecast's: contracting / expanding / None
    direction_right: bool | None = None
    k_right: int | None = None
    k_compared: int | None = None
    regret: float | None = None           # mean over k at equal budget
    regret_pick: float | None = None
    pick: str | None = None               # the forecast's top configuration
    cost_share: float | None = None
    steps_share: float | None = None

    def record(self) -> dict:
        return dict(self.__dict__)


def score(scores: dict[str, float], candidates: list[Candidate], layout: Blocks, table: StudyTable | None) -> Score:
    """Everything in the module docstring but the cost, for one forecast."""
    result = Score(direction=paths_direction(scores, candidates, layout))
    ranked = [c.label for c in sorted(candidates, key=lambda c: -scores.get(c.label, -math.inf)) if c.label in scores]
    result.pick = ranked[0] if ranked else None
    if table is None or not scores:
        return result
    means = {label: table.mean(label) for label in table.dice}
    result.tau = kendall_tau(scores, means)
    found = paths_direction(means, candidates, layout)
    result.direction_right = None if found is None else result.direction == found
    result.k_compared, result.k_right, regrets = 0, 0, []
    for k in layout.k_range:
        pair = at_k(candidates, layout, k)
        if pair is None or any(c.label not in means for c in pair.values()):
            continue
        study_dice = {d: means[c.label] for d, c in pair.items()}
        best = max(study_dice.values())
        picked = direction_pick(scores, pair)
        regrets.append(best - (study_dice[picked] if picked else mean(study_dice.values())))
        s2d, d2s = (pair[d].label for d in SWEPT_DIRECTIONS)
        if abs(means[s2d] - means[d2s]) > max(table.spread(s2d), table.spread(d2s)):
            result.k_compared += 1
            result.k_right += picked == max(study_dice, key=study_dice.get)
    result.regret = mean(regrets) if regrets else None
    measured = [label for label in ranked if label in means]
    if measured:
        result.regret_pick = max(means.values()) - means[measured[0]]
    return result


def cost_shares(result: Score, seconds: float, image_steps: int, study_seconds: float | None,
                study_steps: int | None) -> Score:
    """Fills cost_share and steps_share (None where the study's side is unknown or zero)."""
    result.cost_share = seconds / study_seconds if study_seconds else None
    result.steps_share = image_steps / study_steps if study_steps else None
    return result
