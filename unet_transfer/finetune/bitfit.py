"""BitFit (`finetune=bitfit`; Ben Zaken et al., ACL 2022): only the bias terms of the trainable
blocks train (with `head: true`, the 1-logit output head trains fully too)."""

from __future__ import annotations

from torch import nn

from unet_transfer.finetune.base import Method


class BitFit(Method):
    name = "bitfit"

    def __init__(self, head: bool = True):
        super().__init__(head=head)
        self.head = head

    def trains(self, name: str, parameter: nn.Parameter) -> bool:
        return name.endswith(".bias") or (self.head and ".head." in name)
