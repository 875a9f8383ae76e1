"""From per-block scores to a ranking of configurations, and the two baselines.

The rule (`summed`): a configuration's score is the sum of the scores of the blocks it trains.
Why the sum and not the mean, nor the sum per trained parameter: both of our zero-training scores
are already scale-free per block (a gradient norm relative to the weight norm; a feature distance
relative to the source's spread), and training one more block never removes what the others can
fit, so a score that never falls when a block is added matches the one pattern a k sweep shows
throughout (Dice rises with k, in the paper and in our demos). At equal k, both directions train k
blocks and the sum prefers the direction whose blocks carry more of the signal, which is the
forecast's real claim. The mean would rank a single high-scoring block above all of them, and a
division by parameters would favour the shallow blocks (few parameters) whatever the scores say.

Baselines, scored as the estimators are:
- `paper`: "always the paper's answer": more blocks is better, and at equal k shallow-to-deep
  (the contracting side) beats deep-to-shallow.
- `everything`: "always tune everything": the more of the network's parameters a configuration
  trains, the better (its pick is every block).
"""

from __future__ import annotations

from unet_transfer.forecast.candidates import Candidate

RULE = "summed score of the blocks a configuration trains"


def rank_configurations(block_scores: dict[int, float], candidates: list[Candidate]) -> dict[str, float]:
    """Candidate label -> the summed score of its blocks (block numbers -> score)."""
    return {c.label: float(sum(block_scores[b] for b in c.blocks)) for c in candidates}


def paper_baseline(candidates: list[Candidate]) -> dict[str, float]:
    """k, plus a half where the configuration trains the shallow side (shallow_to_deep)."""
    return {c.label: c.k + (0.5 if c.direction == "shallow_to_deep" else 0.0) for c in candidates}


def everything_baseline(candidates: list[Candidate], block_parameters: dict[int, int]) -> dict[str, float]:
    """The share of the network's parameters a configuration trains."""
    total = sum(block_parameters.values()) or 1
    return {c.label: sum(block_parameters[b] for b in c.blocks) / total for c in candidates}


def ordered(scores: dict[str, float]) -> list[str]:
    """Labels from the best score to the worst (ties keep the candidates' order)."""
    return [label for label, _ in sorted(scores.items(), key=lambda item: -item[1])]
