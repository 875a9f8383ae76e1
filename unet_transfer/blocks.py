"""The blocks of an encoder-decoder network: the one vocabulary that freezing, analysis and
reports speak.

A network is an ordered list of blocks from the input to the output (`BlockSpec`: a name, a
role and a depth tier); every count, range and name of blocks anywhere in the project comes
from here, and a test fails if block arithmetic appears in another module. The paper's U-Net
with L levels is one such list, built from `levels` alone: for 4 levels, 1 = enc1 (shallowest)
... 4 = enc4, 5 = bottleneck, 6 = dec4 ... 9 = dec1 with the output head (deepest), as in
docs/study.md. Any other network's list comes from its adapter (unet_transfer/networks/): for
example stem, layer1..layer4, decoder0..decoder4, head for MONAI's FlexibleUNet on a ResNet.

Roles: "encoder" and "bottleneck" blocks form the paper's contracting path, "decoder" and
"head" blocks its expanding path; they appear in that order along the list.

Depth has two definitions (`depth=`). "longest" (the paper's) orders the blocks one by one as
listed, along the longest path. "shortest" measures the shortest path from the input through
the skip connections: a decoder block is as shallow as the encoder block whose skip it joins
(each block's `tier`). For the paper's U-Net the 9 blocks form 5 tiers, {enc1, dec1},
{enc2, dec2}, ..., {bottleneck}, and the k sweep adds a tier at a time (k = 1..5).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from unet_transfer.errors import ConfigError

DIRECTIONS = ("none", "shallow_to_deep", "deep_to_shallow", "contracting", "expanding", "blocks")
DEPTHS = ("longest", "shortest")
SWEPT_DIRECTIONS = ("shallow_to_deep", "deep_to_shallow")  # the two directions of the k sweep
DIRECTION_TITLES = {"shallow_to_deep": "Shallow to deep", "deep_to_shallow": "Deep to shallow"}
DIRECTION_SHORT = {"shallow_to_deep": "S→D", "deep_to_shallow": "D→S"}
PATHS = ("contracting", "expanding")
ROLES = ("encoder", "bottleneck", "decoder", "head")  # in the order they appear from input to output
PATH_ROLES = {"contracting": ("encoder", "bottleneck"), "expanding": ("decoder", "head")}


@dataclass(frozen=True)
class BlockSpec:
    """One block of a network: its name (after the network's own modules), its role, and its
    tier: the depth along the shortest path from the input (1 = shallowest), so a decoder block
    has the tier of the encoder block whose skip it joins."""

    name: str
    role: str
    tier: int


def unet_specs(levels: int) -> tuple[BlockSpec, ...]:
    """The paper's U-Net with `levels` pooling steps: enc1..encL, bottleneck, decL..dec1 (dec1
    carries the output head), dec_i as shallow as enc_i."""
    encoders = tuple(BlockSpec(f"enc{i}", "encoder", i) for i in range(1, levels + 1))
    decoders = tuple(BlockSpec(f"dec{i}", "decoder", i) for i in range(levels, 0, -1))
    return (*encoders, BlockSpec("bottleneck", "bottleneck", levels + 1), *decoders)


def check_specs(specs: Sequence[BlockSpec]) -> None:
    """A usable block list: unique names, known roles in input-to-output order (so that each
    path is one run of blocks), tiers 1..T with none missing."""
    names = [spec.name for spec in specs]
    problem = None
    if not specs:
        problem = "it lists no blocks"
    elif len(set(names)) != len(names):
        problem = f"block names repeat: {sorted({n for n in names if names.count(n) > 1})}"
    elif any(spec.role not in ROLES for spec in specs):
        problem = f"unknown role(s) {sorted({s.role for s in specs} - set(ROLES))}; use {list(ROLES)}"
    elif [ROLES.index(s.role) for s in specs] != sorted(ROLES.index(s.role) for s in specs):
        problem = f"roles {[s.role for s in specs]} are not in the order {list(ROLES)} from input to output"
    elif not all(any(s.role in PATH_ROLES[path] for s in specs) for path in PATHS):
        problem = "it needs at least one contracting (encoder/bottleneck) and one expanding (decoder/head) block"
    elif any(isinstance(s.tier, bool) or not isinstance(s.tier, int) for s in specs) or \
            sorted({s.tier for s in specs}) != list(range(1, max(s.tier for s in specs) + 1)):
        problem = f"tiers {[s.tier for s in specs]} are not the integers 1..T with none missing"
    if problem:
        raise ConfigError(f"The network's block list {names} is not usable: {problem}.")


@dataclass(frozen=True)
class Blocks:
    """The blocks of a network, and the depth order the k sweep follows.

    `Blocks(levels)` is the paper's U-Net with `levels` pooling steps (4 in the paper: 9
    blocks); `Blocks.listed(specs)` is any network's own list (`specs` replaces the layout
    derived from `levels`, which then counts the list's encoder blocks). `network` names the
    network in report sentences and takes no part in comparisons.
    """

    levels: int = 4
    depth: str = "longest"
    specs: tuple[BlockSpec, ...] | None = field(default=None, repr=False)
    network: str = field(default="", compare=False, repr=False)

    def __post_init__(self):
        if self.depth not in DEPTHS:
            raise ConfigError(f"depth={self.depth!r} is not known; use one of {list(DEPTHS)}.")
        if self.specs is None:
            object.__setattr__(self, "specs", unet_specs(int(self.levels)))
        else:
            specs = tuple(BlockSpec(str(s.name), str(s.role), s.tier) for s in self.specs)
            check_specs(specs)
            object.__setattr__(self, "specs", specs)
            object.__setattr__(self, "levels", sum(s.role == "encoder" for s in specs))

    @classmethod
    def listed(cls, specs: Iterable[BlockSpec], depth: str | None = None, network: str = "") -> Blocks:
        """A network's own block list, from input to output (what an adapter's block map gives)."""
        return cls(depth=depth or "longest", specs=tuple(specs), network=network)

    @classmethod
    def named(cls, names: Sequence[str], roles: Sequence[str], tiers: Sequence[int], depth: str | None = None,
              network: str = "") -> Blocks:
        """From the block names, roles and tiers a run recorded (`record()`), so a report never
        has to infer a network's blocks."""
        if not len(names) == len(roles) == len(tiers):
            raise ConfigError(f"recorded blocks have {len(names)} names, {len(roles)} roles and {len(tiers)} tiers; "
                              "they must be as many.")
        return cls.listed((BlockSpec(n, r, int(t)) for n, r, t in zip(names, roles, tiers, strict=True)), depth,
                          network)

    @classmethod
    def recorded(cls, record: dict, depth: str | None = None) -> Blocks:
        """The inverse of `record()`."""
        return cls.named(record["names"], record["roles"], record["tiers"], depth, record.get("network", ""))

    def record(self) -> dict:
        """The block list as plain JSON-ready lists (for metrics.json)."""
        return {"network": self.network, "names": list(self.names), "roles": list(self.roles),
                "tiers": [spec.tier for spec in self.specs]}

    def with_depth(self, depth: str | None) -> Blocks:
        """The same blocks under another depth definition."""
        return replace(self, depth=depth or "longest")

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
        return len(self.specs)

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(range(1, self.n + 1))

    @property
    def names(self) -> tuple[str, ...]:
        """From input to output (the paper's U-Net: enc1..encL, bottleneck, decL..dec1)."""
        return tuple(spec.name for spec in self.specs)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(spec.role for spec in self.specs)

    def name(self, number: int) -> str:
        return self.names[number - 1]

    @property
    def contracting(self) -> tuple[int, ...]:
        """The encoder blocks and the bottleneck: the paper's "contracting path"."""
        return tuple(b for b, spec in zip(self.numbers, self.specs, strict=True) if spec.role in PATH_ROLES["contracting"])

    @property
    def expanding(self) -> tuple[int, ...]:
        """The decoder blocks and the head (in the paper's U-Net, the deepest decoder carries
        the output head): the paper's "expanding path"."""
        return tuple(b for b, spec in zip(self.numbers, self.specs, strict=True) if spec.role in PATH_ROLES["expanding"])

    @property
    def tiers(self) -> tuple[tuple[int, ...], ...]:
        """The blocks from the shallowest to the deepest, grouped by equal depth."""
        if self.depth == "longest":
            return tuple((b,) for b in self.numbers)
        return tuple(tuple(b for b, spec in zip(self.numbers, self.specs, strict=True) if spec.tier == tier)
                     for tier in sorted({spec.tier for spec in self.specs}))

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

    def path_trained(self, trained) -> str | None:
        """'contracting' / 'expanding' when the blocks `trained` are exactly that path."""
        return next((path for path in PATHS if set(trained) == set(getattr(self, path))), None)

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

    @property
    def described(self) -> str:
        """The network in words: its name, or the paper's U-Net by its levels."""
        if self.network:
            return self.network
        return f"the {self.levels}-level U-Net" if self.specs == unet_specs(self.levels) else "this network"

    def legend(self) -> str:
        """One sentence for reports: how blocks are numbered and what the paths are."""
        text = (f"Blocks are numbered 1 ({self.names[0]}, shallowest) to {self.n} ({self.names[-1]}, deepest); "
                f"contracting path = blocks {span(self.contracting)}, expanding path = blocks {span(self.expanding)} "
                f"(for {self.described}).")
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
