"""The up-sampling U-Net of the paper, built as an ordered list of named blocks.

The blocks (unet_transfer.blocks) are the vocabulary of the whole project: freezing, analysis
and reports speak of block 1 (enc1, shallowest) to block 9 (dec1, deepest). The layout follows
the Keras U-Net that papers of that time used (docs/study.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from unet_transfer.blocks import Blocks
from unet_transfer.errors import ConfigError

DROPOUT_SITES = ("bottleneck", "deepest_encoder")


def _conv3x3(in_channels: int, out_channels: int, norm: str) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=norm == "none")]
    if norm == "batch":
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return layers


def _double_conv(in_channels: int, out_channels: int, norm: str) -> list[nn.Module]:
    return [*_conv3x3(in_channels, out_channels, norm), *_conv3x3(out_channels, out_channels, norm)]


class EncoderBlock(nn.Sequential):
    """(maxpool 2,) conv3x3+ReLU twice, (dropout): one step down the contracting path."""

    def __init__(self, in_channels: int, out_channels: int, *, pool: bool, dropout: float, norm: str):
        layers: list[nn.Module] = [nn.MaxPool2d(2)] if pool else []
        layers += _double_conv(in_channels, out_channels, norm)
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class KerasSameUpConv(nn.Module):
    """Nearest up-sampling x2, then a 2x2 conv padded like Keras "same" (extra row/column at
    the bottom/right), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: str):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 2, bias=norm == "none")
        self.norm = nn.BatchNorm2d(out_channels) if norm == "batch" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return F.relu(self.norm(self.conv(F.pad(x, (0, 1, 0, 1)))), inplace=True)


class DecoderBlock(nn.Module):
    """Up-conv, concatenate the skip (skip first, as Keras did), conv3x3+ReLU twice."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, norm: str):
        super().__init__()
        self.up = KerasSameUpConv(in_channels, out_channels, norm)
        self.convs = nn.Sequential(*_double_conv(skip_channels + out_channels, out_channels, norm))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([skip, self.up(x)], dim=1))


class OutputBlock(DecoderBlock):
    """The deepest block: the last decoder step plus the segmentation head (one logit map).

    The head belongs to block 9 so that "train the deepest block" includes it, as in the paper.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, norm: str, extra_conv: bool):
        super().__init__(in_channels, skip_channels, out_channels, norm)
        head: list[nn.Module] = []
        if extra_conv:
            head += _conv3x3(out_channels, 2, norm)
        head.append(nn.Conv2d(2 if extra_conv else out_channels, 1, 1))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.head(super().forward(x, skip))


class UNet(nn.Module):
    """U-Net returning logits; apply a sigmoid for probabilities.

    Args:
        width: filters of block 1 (64 in the paper); each level down doubles it.
        levels: pooling steps (4 in the paper, giving 9 blocks).
        in_channels: 1 for grey images.
        dropout: rate of the dropout layers (0.5 in the paper).
        dropout_at: where dropout sits: "bottleneck" (the paper's text) and/or
            "deepest_encoder" (the Keras model, whose skip carries the dropped tensor).
        extra_conv: the Keras model's conv3x3 with 2 filters before the 1x1 output.
        norm: "none" (the paper) or "batch".
    """

    def __init__(
        self,
        width: int = 64,
        levels: int = 4,
        in_channels: int = 1,
        dropout: float = 0.5,
        dropout_at: Sequence[str] = ("bottleneck",),
        extra_conv: bool = False,
        norm: str = "none",
    ):
        super().__init__()
        unknown = sorted(set(dropout_at) - set(DROPOUT_SITES))
        if unknown:
            raise ConfigError(f"model.dropout_at has unknown site(s) {unknown}; allowed: {list(DROPOUT_SITES)}")
        if norm not in ("none", "batch"):
            raise ConfigError(f"model.norm={norm!r} is not known; use 'none' (the paper) or 'batch'")
        if levels < 1 or width < 1:
            raise ConfigError(f"model.levels={levels} and model.width={width} must both be >= 1")
        self.levels = levels
        self.layout = Blocks(levels)
        channels = [width * 2**i for i in range(levels)]  # per level; the bottleneck doubles the deepest
        bottom = 2 * channels[-1]
        blocks: dict[str, nn.Module] = {}
        for i in range(levels):
            blocks[f"enc{i + 1}"] = EncoderBlock(
                in_channels if i == 0 else channels[i - 1],
                channels[i],
                pool=i > 0,
                dropout=dropout if (i == levels - 1 and "deepest_encoder" in dropout_at) else 0.0,
                norm=norm,
            )
        blocks["bottleneck"] = EncoderBlock(
            channels[-1], bottom, pool=True, dropout=dropout if "bottleneck" in dropout_at else 0.0, norm=norm,
        )
        for i in range(levels - 1, -1, -1):
            below = bottom if i == levels - 1 else channels[i + 1]
            if i == 0:
                blocks["dec1"] = OutputBlock(below, channels[0], channels[0], norm, extra_conv)
            else:
                blocks[f"dec{i + 1}"] = DecoderBlock(below, channels[i], channels[i], norm)
        self.blocks = nn.ModuleDict({name: blocks[name] for name in self.layout.names})
        self.reset_parameters()

    @property
    def block_names(self) -> tuple[str, ...]:
        return self.layout.names

    @property
    def n_blocks(self) -> int:
        return self.layout.n

    def block(self, number: int) -> nn.Module:
        """Block by its 1-based depth number."""
        return self.blocks[self.block_names[number - 1]]

    def representation(self, number: int) -> nn.Module:
        """The module whose output is block `number`'s features (for the deepest block, the
        decoder's features before the 1-logit head)."""
        block = self.block(number)
        return block.convs if isinstance(block, OutputBlock) else block

    def convolutions(self) -> list[tuple[int, nn.Conv2d]]:
        """(block number, conv) of every convolution of the network's body in depth order (the
        output head left out): the paper's Fig. 5 shows units of the 4th and of the last."""
        head = set(self.blocks["dec1"].head.modules())
        return [(number, module) for number in self.layout.numbers for module in self.block(number).modules()
                if isinstance(module, nn.Conv2d) and module not in head]

    def reset_parameters(self) -> None:
        """He-normal (fan-in) weights and zero biases, as the Keras model."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i in range(self.levels):
            x = self.blocks[f"enc{i + 1}"](x)
            skips.append(x)
        x = self.blocks["bottleneck"](x)
        for i in range(self.levels, 0, -1):
            x = self.blocks[f"dec{i}"](x, skips[i - 1])
        return x
