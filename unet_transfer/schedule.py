"""Which blocks train under a freeze setting: pure functions, no training stack needed.

Kept apart from the Lightning callback (unet_transfer.freeze) so settings are checked in a
fraction of a second, before anything heavy is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from unet_transfer.errors import ConfigError

DIRECTIONS = ("none", "shallow_to_deep", "deep_to_shallow", "contracting", "expanding", "blocks")


def trainable_blocks(
    direction: str, k: int | None = None, blocks: Sequence[int] | None = None, n_blocks: int = 9
) -> tuple[int, ...]:
    """The 1-based numbers of the blocks that train under one freeze setting."""
    levels = (n_blocks - 1) // 2
    if direction == "none":
        return tuple(range(1, n_blocks + 1))
    if direction == "contracting":
        return trainable_blocks("shallow_to_deep", levels + 1, n_blocks=n_blocks)
    if direction == "expanding":
        return trainable_blocks("deep_to_shallow", levels, n_blocks=n_blocks)
    if direction in ("shallow_to_deep", "deep_to_shallow"):
        if k is None or isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_blocks:
            raise ConfigError(
                f"k={k!r} is outside the allowed range: freeze={direction} trains k of the "
                f"model's {n_blocks} blocks, so k must be an integer in 1..{n_blocks}."
            )
        if direction == "shallow_to_deep":
            return tuple(range(1, k + 1))
        return tuple(range(n_blocks + 1 - k, n_blocks + 1))
    if direction == "blocks":
        chosen = list(blocks or [])
        bad = [b for b in chosen if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= n_blocks]
        if not chosen or bad:
            raise ConfigError(
                f"freeze.blocks={chosen!r} has unknown block(s) {bad or '(none given)'}: "
                f"give block numbers in 1..{n_blocks} (1 = enc1, shallowest; {n_blocks} = dec1, deepest)."
            )
        return tuple(sorted(set(chosen)))
    raise ConfigError(f"freeze direction {direction!r} is not known; use one of {list(DIRECTIONS)}.")


def canonical_direction(direction: str) -> str:
    """contracting/expanding are shorthands of the two directions; reports group by the latter."""
    return {"contracting": "shallow_to_deep", "expanding": "deep_to_shallow"}.get(direction, direction)


@dataclass(frozen=True)
class Phase:
    """From `epoch` on, exactly these blocks train."""

    epoch: int
    trainable: tuple[int, ...]


def resolve_phases(direction: str = "none", k: int | None = None, blocks: Sequence[int] | None = None,
                   phases: Sequence[dict] | None = None, n_blocks: int = 9) -> list[Phase]:
    """Every phase of a schedule, checked against the model size; phases may only unfreeze."""
    resolved = [Phase(0, trainable_blocks(direction, k, blocks, n_blocks))]
    for setting in phases or []:
        setting = dict(setting)
        epoch = setting.pop("epoch", None)
        if not isinstance(epoch, int) or epoch <= resolved[-1].epoch:
            raise ConfigError(
                f"freeze.phases: epoch={epoch!r} must be an integer after the previous phase's "
                f"epoch {resolved[-1].epoch}; list phases in increasing epoch order."
            )
        unknown = set(setting) - {"direction", "k", "blocks"}
        if unknown:
            raise ConfigError(f"freeze.phases: unknown key(s) {sorted(unknown)}; allowed: epoch, direction, k, blocks")
        trainable = trainable_blocks(setting.get("direction", "blocks"), setting.get("k"), setting.get("blocks"), n_blocks)
        if not set(resolved[-1].trainable) <= set(trainable):
            raise ConfigError(
                f"freeze.phases: the phase at epoch {epoch} trains {list(trainable)}, which would "
                f"re-freeze block(s) {sorted(set(resolved[-1].trainable) - set(trainable))}; phases may only unfreeze."
            )
        resolved.append(Phase(epoch, trainable))
    return resolved
