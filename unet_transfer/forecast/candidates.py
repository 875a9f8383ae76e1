"""The configurations a study compares, as the forecast ranks them: each swept direction's
k = 1..n (the blocks `Blocks.swept` trains). Two steps that train the same blocks (k = n in both
directions: every block) are one configuration, listed under the first."""

from __future__ import annotations

from dataclasses import dataclass

from unet_transfer.blocks import DIRECTION_SHORT, PATHS, SWEPT_DIRECTIONS, Blocks, span


@dataclass(frozen=True)
class Candidate:
    direction: str          # shallow_to_deep / deep_to_shallow
    k: int
    blocks: tuple[int, ...]  # the block numbers it trains

    @property
    def label(self) -> str:
        return f"{DIRECTION_SHORT.get(self.direction, self.direction)} k={self.k}"


def grid(layout: Blocks) -> list[Candidate]:
    """Every step of both swept directions, one per distinct set of trained blocks."""
    seen: dict[tuple[int, ...], Candidate] = {}
    for direction in SWEPT_DIRECTIONS:
        for k in layout.k_range:
            blocks = layout.swept(direction, k)
            seen.setdefault(blocks, Candidate(direction, k, blocks))
    return list(seen.values())


def at_k(candidates: list[Candidate], layout: Blocks, k: int) -> dict[str, Candidate] | None:
    """The two directions' configurations at this k, or None where both train the same blocks."""
    by_blocks = {c.blocks: c for c in candidates}
    pair = {d: by_blocks.get(layout.swept(d, k)) for d in SWEPT_DIRECTIONS}
    if any(c is None for c in pair.values()) or len({c.blocks for c in pair.values()}) < 2:
        return None
    return pair


def path_pair(candidates: list[Candidate], layout: Blocks) -> dict[str, Candidate] | None:
    """The contracting and expanding paths among the candidates (None where no step trains
    exactly one path, as with depth=shortest)."""
    by_blocks = {c.blocks: c for c in candidates}
    pair = {path: by_blocks.get(tuple(sorted(getattr(layout, path)))) for path in PATHS}
    return None if any(c is None for c in pair.values()) else pair


def describe(candidate: Candidate) -> str:
    return f"{candidate.label} (blocks {span(candidate.blocks)})"
