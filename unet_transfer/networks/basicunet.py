"""MONAI's BasicUNet, 2-D, as blocks: conv_0, down_1..down_3 (encoders), down_4 (the
bottleneck), upcat_4..upcat_1 (decoders; upcat_i joins the skip of the level-(i-1) encoder, so
it is as shallow as that block), final_conv (the head, as shallow as upcat_1)."""

from __future__ import annotations

from torch import nn

from unet_transfer.blocks import BlockSpec

ENCODERS = ("conv_0", "down_1", "down_2", "down_3")
BOTTLENECK = "down_4"
DECODERS = ("upcat_4", "upcat_3", "upcat_2", "upcat_1")  # upcat_i joins ENCODERS[i - 1]'s output


def build(in_channels: int = 1, out_channels: int = 1, features=(32, 32, 64, 128, 256, 32),
          act=("LeakyReLU", {"negative_slope": 0.1, "inplace": True}), norm=("instance", {"affine": True}),
          bias: bool = True, dropout: float = 0.0, upsample: str = "deconv"):
    """A 2-D BasicUNet (MONAI's defaults; `norm: batch` gives running statistics to freeze)."""
    from monai.networks.nets import BasicUNet

    from unet_transfer.networks.flexunet import _plain

    return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels, features=tuple(features),
                     act=_plain(act), norm=_plain(norm), bias=bias, dropout=dropout, upsample=upsample)


def block_modules(model) -> list[tuple[BlockSpec, tuple[nn.Module, ...]]]:
    entries = [(BlockSpec(name, "encoder", tier), (getattr(model, name),)) for tier, name in enumerate(ENCODERS, 1)]
    entries.append((BlockSpec(BOTTLENECK, "bottleneck", len(ENCODERS) + 1), (getattr(model, BOTTLENECK),)))
    for name in DECODERS:
        joins = int(name.rsplit("_", 1)[1])  # upcat_i takes the skip of ENCODERS[i - 1], tier i
        entries.append((BlockSpec(name, "decoder", joins), (getattr(model, name),)))
    entries.append((BlockSpec("final_conv", "head", 1), (model.final_conv,)))
    return entries


def describe(model) -> str:
    return "BasicUNet"
