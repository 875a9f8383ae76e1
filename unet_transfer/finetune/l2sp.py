"""L2-SP (`finetune=l2sp`; Li, Grandvalet & Davoine, ICML 2018): keep the weights near the
pretrained ones instead of near zero.

    penalty = alpha/2 * sum ||w - w0||^2 (parameters that had loaded values)
            + beta/2  * sum ||w||^2      (parameters new to the network, e.g. adapters)

w0 are the weights when training starts; only trainable parameters count (a frozen one never
moves). The penalty is 0 at the loaded weights and grows with the distance.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from unet_transfer.blocks import Blocks
from unet_transfer.finetune.base import Method
from unet_transfer.rules import number


class L2SP(Method):
    name = "l2sp"

    def __init__(self, alpha: float = 0.01, beta: float = 0.01):
        super().__init__(alpha=alpha, beta=beta)
        self.alpha, self.beta = alpha, beta
        self.anchor: dict[str, torch.Tensor] | None = None

    @classmethod
    def check_values(cls, values: dict, layout: Blocks, first: tuple[int, ...]) -> None:
        number(values["alpha"], "finetune.alpha", at_least=0, what=" (the pull toward the pretrained weights, e.g. 0.01)")
        number(values["beta"], "finetune.beta", at_least=0, what=" (weight decay of new parameters, e.g. 0.01)")

    def prepare(self, model: nn.Module, trainable: Iterable[int]) -> None:
        super().prepare(model, trainable)
        if self.anchor is None:  # the starting point: the loaded weights, before any step
            self.anchor = {name: p.detach().clone() for name, p in model.named_parameters()}

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        near, new = [], []
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                start = (self.anchor or {}).get(name)
                (near if start is not None else new).append((parameter - start) if start is not None else parameter)
        terms = [self.alpha / 2 * sum(d.pow(2).sum() for d in near)] if near else []
        terms += [self.beta / 2 * sum(w.pow(2).sum() for w in new)] if new else []
        return sum(terms) if terms else None
