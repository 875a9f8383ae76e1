"""BitFit (`finetune=bitfit`; Ben Zaken et al., ACL 2022): only the bias terms of the trainable
blocks train (with `head: true`, the 1-logit output head trains fully too)."""

from __future__ import annotations

from torch import nn

from unet_transfer.blocks import Blocks
from unet_transfer.finetune.base import Method
from unet_transfer.rules import flag


class BitFit(Method):
    name = "bitfit"

    def __init__(self, head: bool = True):
        super().__init__(head=head)
        self.head = head

    @classmethod
    def check_values(cls, values: dict, layout: Blocks, first: tuple[int, ...]) -> None:
        flag(values["head"], "finetune.head")

    def trains(self, name: str, parameter: nn.Parameter) -> bool:
        return name.endswith(".bias") or (self.head and ".head." in name)
