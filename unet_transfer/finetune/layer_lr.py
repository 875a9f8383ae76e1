"""Per-block learning rates (`finetune=layer_lr`): discriminative fine-tuning (ULMFiT, Howard &
Ruder 2018; timm's layer decay), in either direction.

lr of block b = lr * decay ** d(b), d(b) the number of depth tiers between b and the fastest
end (`faster=deep`: the deepest block at lr, as ULMFiT; `faster=shallow`: the shallowest,
the paper's hypothesis made continuous), or lr * factors[b - 1] with an explicit list. A factor
of 0 is hard freezing in the limit: the block never moves (a test checks it equals freeze=).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn

from unet_transfer.blocks import Blocks
from unet_transfer.errors import ConfigError
from unet_transfer.finetune.base import Method, block_numbers
from unet_transfer.networks.protocol import blocks_of
from unet_transfer.rules import number


class LayerLR(Method):
    name = "layer_lr"

    def __init__(self, decay: float = 0.5, faster: str = "deep", factors: Sequence[float] | None = None,
                 depth: str = "longest"):
        super().__init__(decay=decay, faster=faster, factors=list(factors) if factors else None, depth=depth)
        self.decay, self.faster, self.factors, self.depth = decay, faster, self.settings["factors"], depth

    @classmethod
    def check_values(cls, values: dict, layout: Blocks, first: tuple[int, ...]) -> None:
        if values["faster"] not in ("deep", "shallow"):
            raise ConfigError(f"finetune.faster={values['faster']!r}: use deep (ULMFiT) or shallow.")
        number(values["decay"], "finetune.decay", at_least=0, at_most=1, what=" (a factor per depth tier)")
        layout.with_depth(values["depth"])  # names a bad depth
        factors = values["factors"]
        if factors is not None:
            if isinstance(factors, str) or not isinstance(factors, Sequence) or len(factors) != layout.n:
                raise ConfigError(f"finetune.factors={factors!r}: give one factor per block, {layout.n} values "
                                  f"(e.g. [{', '.join(['1'] * layout.n)}]).")
            for factor in factors:
                number(factor, "finetune.factors", at_least=0, what=" each (a share of the learning rate)")

    def factor(self, layout: Blocks, block: int) -> float:
        if self.factors is not None:
            return float(self.factors[block - 1])
        tiers = layout.with_depth(self.depth).tiers
        tier = next(i for i, members in enumerate(tiers) if block in members)
        distance = len(tiers) - 1 - tier if self.faster == "deep" else tier
        return self.decay**distance

    def param_groups(self, model: nn.Module, blocks: Iterable[int], lr: float) -> list[dict]:
        groups, block_of, layout = [], block_numbers(model), blocks_of(model)
        for block in sorted(set(blocks)):
            params = [p for n, p in model.named_parameters() if p.requires_grad and block_of[n] == block]
            if params:
                block_lr = lr * self.factor(layout, block)
                groups.append({"params": params, "lr": block_lr, "base_lr": block_lr, "block": block})
        return groups
