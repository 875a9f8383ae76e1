"""The U-Net's blocks: the one vocabulary that freezing, analysis and reports speak.

Blocks are numbered by depth, the longest path from the input (docs/study.md): for 4 levels,
1 = enc1 (shallowest) ... 4 = enc4, 5 = bottleneck, 6 = dec4 ... 9 = dec1 with the output
head (deepest). Every count, range and name of blocks anywhere in the project comes from
here; a test fails if block arithmetic appears in another module.

Depth has two definitions (`depth=`). "longest" (the paper's) orders the 9 blocks one by
one along the longest path. "shortest" measures the shortest path from the input, through
the skip connections, so dec_i is as shallow as enc_i: the blocks form 5 tiers, {enc1, dec1},
{enc2, dec2}, ..., {bottleneck}, and the k sweep adds a tier at a time (k = 1..5).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from unet_transfer.errors import ConfigError

DIRECTIONS = ("none", "shallow_to_deep", "deep_to_shallow", "contracting", "expanding", "blocks")
DEPTHS = ("longest", "shortest")
SWEPT_DIRECTIONS = ("shallow_to_deep", "deep_to_shallow")  # the two directions of the k sweep
DIRECTION_TITLES = {"shallow_to_deep": "Shallow to deep", "deep_to_shallow": "Deep to shallow"}
DIRECTION_SHORT = {"shallow_to_deep": "S→D", "deep_to_shallow": "D→S"}
PATHS = ("contracting", "expanding")


@dataclass(frozen=True)
class Blocks:
    """The blocks of a U-Net with `levels` pooling steps (4 in the paper: 9 blocks), and the
    depth order the k sweep follows."""

    levels: int = 4
    depth: str = "longest"

    def __post_init__(self):
        if self.depth not in DEPTHS:
            raise ConfigError(f"depth={self.depth!r} is not known; use one of {list(DEPTHS)}.")

    @classmethod
    def of(cls, model_settings, depth: str | None = None) -> Blocks:
        """From the model's settings (a config node or dict with an optional `levels`)."""
        return cls(int(model_settings.get("levels", 4)), depth or "longest")

    @classmethod
    def counted(cls, n_blocks: int, depth: str | None = None) -> Blocks:
        """From a block count as recorded in results (an odd number: encoders, bottleneck, decoders)."""
        return cls((int(n_blocks) - 1) // 2, depth or "longest")

    @property
    def n(self) -> int:
        return 2 * self.levels + 1

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(range(1, self.n + 1))

    @property
    def names(self) -> tuple[str, ...]:
        """enc1..encL, bottleneck, decL..dec1, in depth order."""
        encoders = tuple(f"enc{i}" for i in range(1, self.levels + 1))
        decoders = tuple(f"dec{i}" for i in range(self.levels, 0, -1))
        return (*encoders, "bottleneck", *decoders)

    def name(self, number: int) -> str:
        return self.names[number - 1]

    @property
    def contracting(self) -> tuple[int, ...]:
        """The encoders and the bottleneck: the paper's "contracting path"."""
        return self.numbers[: self.levels + 1]

    @property
    def expanding(self) -> tuple[int, ...]:
        """The decoders (the deepest with the output head): the paper's "expanding path"."""
        return self.numbers[self.levels + 1:]

    @property
    def tiers(self) -> tuple[tuple[int, ...], ...]:
        """The blocks from the shallowest to the deepest, grouped by equal depth."""
        if self.depth == "longest":
            return tuple((b,) for b in self.numbers)
        return (*((b, self.n + 1 - b) for b in self.numbers[: self.levels]), (self.levels + 1,))

    @property
    def k_range(self) -> tuple[int, ...]:
        """The values k takes in the sweep: one per tier (1..9 longest, 1..5 shortest)."""
        return tuple(range(1, len(self.tiers) + 1))

    def path_k(self, path: str) -> tuple[str, int] | None:
        """The (direction, k) that trains exactly one path (contracting = shallow_to_deep k=5),
        or None when no step of this depth's sweep does (the shortest path's tiers mix both)."""
        blocks = set(getattr(self, path))
        return next(((d, k) for d in SWEPT_DIRECTIONS for k in self.k_range if set(self.swept(d, k)) == blocks), None)

    def path_of(self, direction: str, k: int) -> str | None:
        """'contracting' / 'expanding' when (direction, k) trains exactly that path."""
        return next((path for path in PATHS if self.path_k(path) == (direction, k)), None)

    def swept(self, direction: str, k: int) -> tuple[int, ...]:
        """Blocks trained by one step of the k sweep: the k shallowest tiers or the k deepest."""
        chosen = self.tiers[:k] if direction == "shallow_to_deep" else self.tiers[len(self.tiers) - k:]
        return tuple(sorted(b for tier in chosen for b in tier))

    def trainable(self, direction: str, k: int | None = None, blocks: Sequence[int] | None = None) -> tuple[int, ...]:
        """The numbers of the blocks that train under one freeze setting."""
        if direction == "none":
            return self.numbers
        if direction in PATHS:
            return getattr(self, direction)
        if direction in SWEPT_DIRECTIONS:
            if k is None or isinstance(k, bool) or not isinstance(k, int) or k not in self.k_range:
                raise ConfigError(
                    f"k={k!r} is outside the allowed range: freeze={direction} trains k of the model's "
                    f"{len(self.tiers)} {'blocks' if self.depth == 'longest' else 'depth tiers (depth=shortest)'}, "
                    f"so k must be an integer in 1..{len(self.tiers)}."
                )
            return self.swept(direction, k)
        if direction == "blocks":
            chosen = list(blocks or [])
            bad = [b for b in chosen if isinstance(b, bool) or not isinstance(b, int) or b not in self.numbers]
            if not chosen or bad:
                raise ConfigError(
                    f"freeze.blocks={chosen!r} has unknown block(s) {bad or '(none given)'}: give block "
                    f"numbers in 1..{self.n} (1 = {self.names[0]}, shallowest; {self.n} = {self.names[-1]}, deepest)."
                )
            return tuple(sorted(set(chosen)))
        raise ConfigError(f"freeze direction {direction!r} is not known; use one of {list(DIRECTIONS)}.")

    def frozen(self, trainable: Iterable[int]) -> frozenset[int]:
        return frozenset(self.numbers) - frozenset(trainable)

    @property
    def k_words(self) -> str:
        """What k counts, for axis labels and table titles."""
        return "blocks" if self.depth == "longest" else "depth tiers (shortest path)"

    def legend(self) -> str:
        """One sentence for reports: how blocks are numbered and what the paths are."""
        text = (f"Blocks are numbered 1 ({self.names[0]}, shallowest) to {self.n} ({self.names[-1]}, deepest); "
                f"contracting path = blocks {span(self.contracting)}, expanding path = blocks {span(self.expanding)} "
                f"(for the {self.levels}-level U-Net).")
        if self.depth == "shortest":
            text += (" With depth=shortest, k counts depth tiers by the shortest path from the input: "
                     + ", ".join(f"{k}: blocks {span(t)}" for k, t in zip(self.k_range, self.tiers, strict=True)) + ".")
        return text


PAPER_BLOCKS = Blocks(4)  # the paper's U-Net: 4 levels, 9 blocks


def canonical_direction(direction: str) -> str:
    """contracting/expanding are shorthands of the two swept directions; reports group by the latter."""
    return {"contracting": "shallow_to_deep", "expanding": "deep_to_shallow"}.get(direction, direction)


def span(blocks: Iterable[int]) -> str:
    """(1, 2, 3, 5) -> '1–3, 5'; an empty set -> '–'."""
    numbers = sorted(int(b) for b in blocks or ())
    if not numbers:
        return "–"
    parts, start, previous = [], numbers[0], numbers[0]
    for number in [*numbers[1:], None]:
        if number is not None and number == previous + 1:
            previous = number
            continue
        parts.append(str(start) if start == previous else f"{start}–{previous}")
        if number is not None:
            start = previous = number
    return ", ".join(parts)
