"""The Lightning callback that applies a freeze schedule (see training/schedule.py).

Frozen means no gradient, not in the optimiser, and bit-identical to the loaded weights after
training (docs/study.md). A schedule may unfreeze more blocks at later epochs (gradual
unfreezing), each phase with its own learning rate and schedule; phases are data, the callback
only executes them. Within the trainable blocks, the fine-tuning method (finetune/) says which
parameters train and at what rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl

from unet_transfer.blocks import Blocks
from unet_transfer.networks.protocol import blocks_of, set_frozen_blocks
from unet_transfer.training.schedule import Phase, resolve_phases, schedule_factor


class FreezeSchedule(pl.Callback):
    """Applies a freeze setting (and optional later phases) to the network of a LightningModule
    (any network with a block map, unet_transfer.networks).

    Args:
        direction: one of blocks.DIRECTIONS.
        k: number of trained blocks (depth tiers) for the two swept directions.
        blocks: explicit block numbers for direction="blocks".
        phases: later phases, each a mapping with `epoch` and the same keys as above, plus an
            optional `lr` for the blocks it adds and a `schedule`, e.g.
            [{epoch: 5, direction: none, lr: 1.0e-4, schedule: cosine}].
        depth: "longest" or "shortest": what k counts (unet_transfer.blocks).
        lr, schedule: the first phase's (None: the optimiser's lr; constant, cosine or warmup).
    """

    def __init__(
        self,
        direction: str = "none",
        k: int | None = None,
        blocks: Sequence[int] | None = None,
        phases: Sequence[dict] | None = None,
        depth: str = "longest",
        lr: float | None = None,
        schedule: str = "constant",
    ):
        self.direction, self.depth = direction, depth
        self.k = k
        self.blocks = list(blocks) if blocks is not None else None
        self.phase_settings = [dict(p) for p in (phases or [])]
        self.lr, self.schedule = lr, schedule
        self._phases: list[Phase] | None = None
        self._applied: Phase | None = None

    def resolve(self, layout: Blocks) -> list[Phase]:
        """Check every phase against the model's blocks; fails before any training starts."""
        layout = layout.with_depth(self.depth)
        self._phases = resolve_phases(layout, self.direction, self.k, self.blocks, self.phase_settings,
                                      self.lr, self.schedule)
        return self._phases

    def phase_at(self, epoch: int, layout: Blocks) -> Phase:
        phases = self._phases or self.resolve(layout)
        return [p for p in phases if p.epoch <= epoch][-1]

    @staticmethod
    def apply(model, trainable: Sequence[int], method=None) -> None:
        """Every block outside `trainable` frozen (the protocol's one rule), then the method narrows."""
        blocks = blocks_of(model)
        set_frozen_blocks(model, blocks.frozen(trainable))
        if method is not None:
            method.prepare(model, trainable)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Runs before configure_optimizers, so frozen parameters never reach the optimiser.
        if stage == "fit":
            phase = self.phase_at(trainer.current_epoch, blocks_of(pl_module.model))
            self.apply(pl_module.model, phase.trainable, pl_module.method)
            self._applied = phase

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        model, epoch = pl_module.model, trainer.current_epoch
        phase = self.phase_at(epoch, blocks_of(model))
        optimizer = trainer.optimizers[0]
        if phase != self._applied:
            newly = sorted(set(phase.trainable) - set(self._applied.trainable if self._applied else ()))
            self.apply(model, phase.trainable, pl_module.method)
            lr = phase.lr if phase.lr is not None else optimizer.param_groups[0].get("base_lr", optimizer.param_groups[0]["lr"])
            for group in pl_module.method.param_groups(model, newly, lr):
                optimizer.add_param_group(group)
            self._applied = phase
        if phase.schedule != "constant" or any(p.schedule != "constant" for p in self._phases or ()):
            later = [p.epoch for p in self._phases if p.epoch > phase.epoch]
            end = later[0] if later else trainer.max_epochs
            factor = schedule_factor(phase.schedule, epoch - phase.epoch, end - phase.epoch)
            for group in optimizer.param_groups:
                group["scheduled_lr"] = group.get("base_lr", group["lr"]) * factor
                group["lr"] = group["scheduled_lr"]
