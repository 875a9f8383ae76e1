"""Which blocks train in which epochs under a freeze setting: pure functions, no training stack.

Kept apart from the Lightning callback (training/freeze.py) so settings are checked in a
fraction of a second, before anything heavy is imported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from unet_transfer.blocks import Blocks
from unet_transfer.errors import ConfigError

PHASE_KEYS = ("epoch", "direction", "k", "blocks", "lr", "schedule")
SCHEDULES = ("constant", "cosine", "warmup")


@dataclass(frozen=True)
class Phase:
    """From `epoch` on, exactly these blocks train; the blocks the phase adds start at `lr`
    (None: the optimiser's), and every group follows `schedule` until the next phase."""

    epoch: int
    trainable: tuple[int, ...]
    lr: float | None = None
    schedule: str = "constant"


def schedule_factor(schedule: str, step: int, length: int) -> float:
    """The learning-rate factor at epoch `step` of a phase of `length` epochs."""
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / max(length, 1)))
    if schedule == "warmup":
        return min(1.0, (step + 1) / max(length, 1))
    return 1.0


def check_schedule(schedule: str, lr) -> None:
    if schedule not in SCHEDULES:
        raise ConfigError(f"freeze schedule {schedule!r} is not known; use one of {list(SCHEDULES)}.")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, int | float) or lr < 0):
        raise ConfigError(f"freeze phase lr={lr!r}: give a learning rate >= 0, or leave it out (the optimiser's).")


def resolve_phases(layout: Blocks, direction: str = "none", k: int | None = None, blocks: Sequence[int] | None = None,
                   phases: Sequence[dict] | None = None, lr: float | None = None,
                   schedule: str = "constant") -> list[Phase]:
    """Every phase of a schedule, checked against the model's blocks; phases may only unfreeze."""
    check_schedule(schedule, lr)
    resolved = [Phase(0, layout.trainable(direction, k, blocks), lr, schedule)]
    for setting in phases or []:
        setting = dict(setting)
        epoch = setting.pop("epoch", None)
        if not isinstance(epoch, int) or epoch <= resolved[-1].epoch:
            raise ConfigError(
                f"freeze.phases: epoch={epoch!r} must be an integer after the previous phase's "
                f"epoch {resolved[-1].epoch}; list phases in increasing epoch order."
            )
        unknown = set(setting) - set(PHASE_KEYS)
        if unknown:
            raise ConfigError(f"freeze.phases: unknown key(s) {sorted(unknown)}; allowed: {', '.join(PHASE_KEYS)}")
        trainable = layout.trainable(setting.get("direction", "blocks"), setting.get("k"), setting.get("blocks"))
        check_schedule(setting.get("schedule", "constant"), setting.get("lr"))
        if not set(resolved[-1].trainable) <= set(trainable):
            raise ConfigError(
                f"freeze.phases: the phase at epoch {epoch} trains {list(trainable)}, which would "
                f"re-freeze block(s) {sorted(set(resolved[-1].trainable) - set(trainable))}; phases may only unfreeze."
            )
        resolved.append(Phase(epoch, trainable, setting.get("lr"), setting.get("schedule", "constant")))
    return resolved


def freeze_settings(freeze_cfg) -> dict:
    """The freeze config group as plain keyword arguments (direction, k, blocks, phases)."""
    from omegaconf import OmegaConf

    settings = OmegaConf.to_container(freeze_cfg, resolve=True) if not isinstance(freeze_cfg, dict) else dict(freeze_cfg)
    settings.pop("_target_", None)
    settings.pop("depth", None)  # the layout carries it
    return settings
