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
