"""Successive halving (Jamieson & Talwalkar 2016), small and deterministic. Not Optuna's
SuccessiveHalvingPruner: that one is asynchronous (ASHA), judging each trial as it reports
against the trials before it, so with candidates trained one after another whether one is
pruned depends on its place in the order. The race here compares every candidate of a rung
together, and is a few dozen lines.

All candidates train `r0` steps; the better half (by `evaluate`, higher is better) goes on to
twice as many steps in all, and so on until two remain and have raced their last rung. Steps
are capped at `cap` (no finalist trains longer than one study run). `r0` is the largest number of
steps for which the whole race fits in `budget` steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field


def rungs(n: int, eta: int = 2) -> list[int]:
    """Survivors per rung: n, ceil(n/eta), ... down to 2 (or n when n <= 2)."""
    counts = [n]
    while counts[-1] > 2:
        counts.append(max(2, math.ceil(counts[-1] / eta)))
    return counts


def cost(r0: int, survivors: Sequence[int], eta: int = 2, cap: int | None = None) -> int:
    """Steps of a race whose rung i trains survivors[i] candidates up to min(r0 eta^i, cap) steps."""
    total, done = 0, 0
    for i, count in enumerate(survivors):
        target = r0 * eta ** i if cap is None else min(r0 * eta ** i, cap)
        total += count * (target - done)
        done = target
    return total


def first_rung(n: int, budget: int, eta: int = 2, cap: int | None = None) -> int:
    """The largest r0 (>= 1) whose race fits in `budget` steps (1 where none does)."""
    survivors = rungs(n, eta)
    r0 = 1
    while cost(r0 + 1, survivors, eta, cap) <= budget and (cap is None or r0 + 1 <= cap):
        r0 += 1
    return r0


@dataclass
class Race:
    order: list[Hashable]                                   # best first
    reached: dict[Hashable, int] = field(default_factory=dict)   # candidate -> last rung it raced (0-based)
    last_score: dict[Hashable, float] = field(default_factory=dict)
    steps: dict[Hashable, int] = field(default_factory=dict)     # steps each candidate trained
    history: list[dict] = field(default_factory=list)            # per rung: steps, {candidate: score}

    @property
    def total_steps(self) -> int:
        return sum(self.steps.values())


def successive_halving(candidates: Sequence[Hashable], advance: Callable[[Hashable, int], None],
                       evaluate: Callable[[Hashable], float], budget: int, eta: int = 2,
                       cap: int | None = None) -> Race:
    """Race `candidates`: advance(c, steps) trains c for that many more steps, evaluate(c) scores
    it. The order: by the last rung reached, then by the score there (ties: the given order)."""
    survivors = rungs(len(candidates), eta)
    r0 = first_rung(len(candidates), budget, eta, cap)
    race = Race(order=[], steps={c: 0 for c in candidates})
    alive = list(candidates)
    for i, count in enumerate(survivors):
        target = r0 * eta ** i if cap is None else min(r0 * eta ** i, cap)
        alive = alive[:count]
        scores = {}
        for candidate in alive:
            if target > race.steps[candidate]:
                advance(candidate, target - race.steps[candidate])
                race.steps[candidate] = target
            scores[candidate] = float(evaluate(candidate))
            race.reached[candidate], race.last_score[candidate] = i, scores[candidate]
        race.history.append({"steps": target, "scores": scores})
        alive = sorted(alive, key=lambda c: -scores[c])
    position = {c: i for i, c in enumerate(candidates)}
    race.order = sorted(candidates, key=lambda c: (-race.reached[c], -race.last_score[c], position[c]))
    return race
