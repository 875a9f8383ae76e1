"""BitFit (`finetune=bitfit`; Ben Zaken et al., ACL 2022): only the bias terms of the trainable
blocks train (with `head: true`, the network's output head trains fully too: what the block
protocol calls its head, e.g. the paper's 1-logit head inside dec1, FlexibleUNet's
segmentation_head)."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from unet_transfer.blocks import Blocks
from unet_transfer.finetune.base import Method
from unet_transfer.networks.protocol import head_modules
from unet_transfer.rules import flag


class BitFit(Method):
    name = "bitfit"

    def __init__(self, head: bool = True):
        super().__init__(head=head)
        self.head = head
        self._head: set[int] = set()  # ids of the head's parameters, found in prepare

    @classmethod
    def check_values(cls, values: dict, layout: Blocks, first: tuple[int, ...]) -> None:
        flag(values["head"], "finetune.head")

    def prepare(self, model: nn.Module, trainable: Iterable[int]) -> None:
        self._head = {id(p) for module in head_modules(model) for p in module.parameters()} if self.head else set()
        super().prepare(model, trainable)

    def trains(self, name: str, parameter: nn.Parameter) -> bool:
        return name.endswith(".bias") or id(parameter) in self._head
