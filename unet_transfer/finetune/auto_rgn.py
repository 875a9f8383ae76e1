"""Auto-RGN (`finetune=auto_rgn`; Lee et al., "Surgical fine-tuning improves adaptation to
distribution shifts", ICLR 2023): every step, each tensor's learning rate is the optimiser's
times its relative gradient norm RGN = ||g|| / ||w||, divided by the largest RGN of the step.
The tensors with the largest relative gradients train at full speed, the others slower, so
the method picks its layers itself; the mean scale per block is logged (`rgn_scale/<block>`)
and recorded in metrics.json (`rgn_scale`), to show which blocks it chose."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from unet_transfer.finetune.base import Method, block_numbers
from unet_transfer.networks.protocol import blocks_of


def rgn_scales(weights: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    """RGN of each tensor over the largest: 1 for the tensor with the largest relative gradient."""
    rgn = torch.stack(torch._foreach_norm(grads)) / torch.stack(torch._foreach_norm(weights)).clamp_min(1e-12)
    return rgn / rgn.max().clamp_min(1e-30)


class AutoRGN(Method):
    name = "auto_rgn"

    def __init__(self):
        super().__init__()
        self.epoch_scales: list[dict[int, float]] = []

    def param_groups(self, model: nn.Module, blocks: Iterable[int], lr: float) -> list[dict]:
        blocks, block_of = set(blocks), block_numbers(model)
        return [{"params": [p], "lr": lr, "base_lr": lr, "block": block_of[n]}
                for n, p in model.named_parameters() if p.requires_grad and block_of[n] in blocks]

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._sum: dict[int, list[float]] = {}
        self._steps = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        groups = [g for g in optimizer.param_groups if g["params"][0].grad is not None]
        if not groups:
            return
        scales = rgn_scales([g["params"][0].detach() for g in groups], [g["params"][0].grad for g in groups]).tolist()
        for group, scale in zip(groups, scales, strict=True):
            group["lr"] = group.get("scheduled_lr", group["base_lr"]) * scale
            self._sum.setdefault(group["block"], []).append(scale)
        self._steps += 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._steps:
            return
        means = {b: sum(v) / len(v) for b, v in sorted(self._sum.items())}
        self.epoch_scales.append(means)
        blocks = blocks_of(pl_module.model)
        for block, value in means.items():
            pl_module.log(f"rgn_scale/{blocks.name(block)}", value)

    def summary(self) -> dict:
        """Each block's mean learning-rate scale over training (`rgn_scale`)."""
        blocks = sorted({b for epoch in self.epoch_scales for b in epoch})
        return {"rgn_scale": {str(b): sum(e.get(b, 0.0) for e in self.epoch_scales) / len(self.epoch_scales)
                              for b in blocks}}
