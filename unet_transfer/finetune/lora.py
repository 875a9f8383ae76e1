"""LoRA for convolutions (`finetune=lora`; Hu et al., ICLR 2022): each convolution of the
chosen trainable blocks gets a low-rank update, W + (alpha/r) B A, where A is a conv with the
layer's kernel and r output channels and B a 1x1 conv back to the layer's channels (zero at
the start, so training starts at the pretrained network). The base weights stay frozen and
bit-identical; when training ends the update is merged into plain weights, so the checkpoint,
the test and every later tool see the ordinary network.

Any network: the convolutions are found in the modules of the chosen blocks (the block
protocol), whatever their nesting, also a block that is itself one convolution (BasicUNet's
final_conv). Plain 2-D convolutions only: transposed convolutions (up-sampling) and grouped
or depthwise ones (EfficientNet's) get no adapter, so under LoRA their weights stay as loaded.

Why not peft: it pulls transformers, accelerate and the Hugging Face hub as dependencies, and
its convolution adapters rename the model's parameters while injected; this is 60 lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from unet_transfer.blocks import Blocks
from unet_transfer.errors import ConfigError
from unet_transfer.finetune.base import Method, block_numbers
from unet_transfer.networks.protocol import block_map
from unet_transfer.rules import block_list, number, whole


class LoRAConv2d(nn.Module):
    """A frozen convolution plus its trainable low-rank update."""

    def __init__(self, base: nn.Conv2d, rank: int, alpha: float):
        super().__init__()
        self.base, self.scale = base, alpha / rank
        self.lora_a = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding, base.dilation,
                                bias=False, padding_mode=base.padding_mode).to(base.weight.device, base.weight.dtype)
        self.lora_b = nn.Conv2d(rank, base.out_channels, 1, bias=False).to(base.weight.device, base.weight.dtype)
        nn.init.kaiming_uniform_(self.lora_a.weight, a=5**0.5)
        nn.init.zeros_(self.lora_b.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.lora_b(self.lora_a(x))

    def merged(self) -> nn.Conv2d:
        """The base convolution with the update folded into its weights (same output)."""
        with torch.no_grad():
            delta = torch.einsum("or,rikl->oikl", self.lora_b.weight[:, :, 0, 0], self.lora_a.weight)
            self.base.weight.add_(self.scale * delta.to(self.base.weight.dtype))
        return self.base


def adaptable(module: nn.Module) -> bool:
    """A plain 2-D convolution (not transposed, not grouped): what an adapter can wrap."""
    return isinstance(module, nn.Conv2d) and module.groups == 1


def adapted(model: nn.Module) -> list[tuple[nn.Module, str, LoRAConv2d]]:
    """(parent, attribute, adapter) of every adapter in the model."""
    return [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
            if isinstance(child, LoRAConv2d)]


class LoRA(Method):
    name = "lora"

    def __init__(self, rank: int = 4, alpha: float = 8.0, blocks: Sequence[int] | None = None):
        super().__init__(rank=rank, alpha=alpha, blocks=list(blocks) if blocks else None)
        self.rank, self.alpha, self.blocks = rank, alpha, self.settings["blocks"]

    @classmethod
    def check_values(cls, values: dict, layout: Blocks, first: tuple[int, ...]) -> None:
        whole(values["rank"], "finetune.rank", 1, " (the adapters' inner channels, e.g. 4)")
        number(values["alpha"], "finetune.alpha", above=0, what=" (the update is scaled by alpha/rank, e.g. 8)")
        if values["blocks"] is not None:
            blocks = block_list(values["blocks"], "finetune.blocks", layout)
            if first and not set(blocks) & set(first):
                raise ConfigError(f"finetune.blocks={blocks}: none of them trains (the freeze setting trains blocks "
                                  f"{list(first)} first), so nothing would; choose among those, or finetune.blocks=null.")

    def trains(self, name: str, parameter: nn.Parameter) -> bool:
        return ".lora_" in name

    def prepare(self, model: nn.Module, trainable: Iterable[int]) -> None:
        trainable = set(trainable)
        chosen = trainable if self.blocks is None else trainable & set(self.blocks)
        blocks = block_map(model)
        owner = {id(child): (parent, name) for parent in model.modules() for name, child in parent.named_children()}
        for block_number in sorted(chosen):
            for root in blocks.of(block_number):
                if adaptable(root):  # the block's module is itself a convolution: wrapped where it sits
                    parent, name = owner[id(root)]
                    if not isinstance(parent, LoRAConv2d):
                        setattr(parent, name, LoRAConv2d(root, self.rank, self.alpha))
                    continue
                for parent in list(root.modules()):
                    for name, child in list(parent.named_children()):
                        if adaptable(child) and not isinstance(parent, LoRAConv2d):
                            setattr(parent, name, LoRAConv2d(child, self.rank, self.alpha))
        block_of = block_numbers(model)
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(".lora_" in name and block_of[name] in chosen)

    def merge(self, model: nn.Module) -> None:
        for parent, name, adapter in adapted(model):
            setattr(parent, name, adapter.merged())

    def on_fit_end(self, trainer, pl_module) -> None:
        self.record(trainer)
        self.merge(pl_module.model)
