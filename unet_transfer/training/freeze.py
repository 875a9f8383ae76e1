"""The Lightning callback that applies a freeze schedule (see training/schedule.py).

Frozen means no gradient, not in the optimiser, and bit-identical to the loaded weights after
training (docs/study.md). A schedule may unfreeze more blocks at later epochs (gradual
unfreezing); phases are data, the callback only executes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl

from unet_transfer.training.schedule import Phase, resolve_phases


class FreezeSchedule(pl.Callback):
    """Applies a freeze setting (and optional later phases) to a UNet-holding LightningModule.

    Args:
        direction: one of blocks.DIRECTIONS.
        k: number of trained blocks for the two swept directions.
        blocks: explicit block numbers for direction="blocks".
        phases: later phases, each a mapping with `epoch` and the same keys as above, e.g.
            [{epoch: 5, direction: none}] unfreezes everything from epoch 5 on.
    """

    def __init__(
        self,
        direction: str = "none",
        k: int | None = None,
        blocks: Sequence[int] | None = None,
        phases: Sequence[dict] | None = None,
    ):
        self.direction = direction
        self.k = k
        self.blocks = list(blocks) if blocks is not None else None
        self.phase_settings = [dict(p) for p in (phases or [])]
        self._phases: list[Phase] | None = None
        self._applied: Phase | None = None

    def resolve(self, layout) -> list[Phase]:
        """Check every phase against the model's blocks; fails before any training starts."""
        self._phases = resolve_phases(layout, self.direction, self.k, self.blocks, self.phase_settings)
        return self._phases

    def phase_at(self, epoch: int, layout) -> Phase:
        phases = self._phases or self.resolve(layout)
        return [p for p in phases if p.epoch <= epoch][-1]

    @staticmethod
    def apply(model, trainable: Sequence[int]) -> None:
        model.set_frozen_blocks(model.layout.frozen(trainable))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Runs before configure_optimizers, so frozen parameters never reach the optimiser.
        if stage == "fit":
            phase = self.phase_at(trainer.current_epoch, pl_module.model.layout)
            self.apply(pl_module.model, phase.trainable)
            self._applied = phase

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        model = pl_module.model
        phase = self.phase_at(trainer.current_epoch, model.layout)
        if phase == self._applied:
            return
        newly = sorted(set(phase.trainable) - set(self._applied.trainable if self._applied else ()))
        self.apply(model, phase.trainable)
        params = [p for b in newly for p in model.block(b).parameters()]
        optimizer = trainer.optimizers[0]
        optimizer.add_param_group({"params": params, "lr": optimizer.param_groups[0]["lr"]})
        self._applied = phase
