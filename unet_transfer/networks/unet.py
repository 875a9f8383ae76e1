"""The paper's U-Net (unet_transfer.model.UNet): its blocks are its `blocks` ModuleDict, in the
order and with the tiers of `Blocks(levels)` (dec1 carries the output head)."""

from __future__ import annotations

from torch import nn

from unet_transfer.blocks import BlockSpec
from unet_transfer.model import UNet

build = UNet  # the builder: conf/model/unet.yaml's target, with the paper's settings


def block_modules(model: UNet) -> list[tuple[BlockSpec, tuple[nn.Module, ...]]]:
    return [(spec, (model.blocks[spec.name],)) for spec in model.layout.specs]


def describe(model: UNet) -> str:
    return f"the {model.layout.levels}-level U-Net"


def representation(model: UNet, number: int) -> nn.Module:
    """Block `number`'s features; for dec1, before the 1-logit head."""
    return model.representation(number)


def head_modules(model: UNet) -> list[nn.Module]:
    """dec1's output head (inside block dec1, as the paper counts it)."""
    return [model.blocks[model.layout.names[-1]].head]


def size_rule(model: UNet) -> tuple[int, str]:
    """Each level halves the image."""
    levels = model.layout.levels
    return 2**levels, f"the U-Net halves the image {levels} times (model.levels)"
