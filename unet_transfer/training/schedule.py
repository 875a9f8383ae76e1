"""Which blocks train in which epochs under a freeze setting: pure functions, no training stack.

Kept apart from the Lightning callback (training/freeze.py) so settings are checked in a
fraction of a second, before anything heavy is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from unet_transfer.blocks import Blocks
from unet_transfer.errors import ConfigError

PHASE_KEYS = ("epoch", "direction", "k", "blocks")


@dataclass(frozen=True)
class Phase:
    """From `epoch` on, exactly these blocks train."""

    epoch: int
    trainable: tuple[int, ...]


def resolve_phases(layout: Blocks, direction: str = "none", k: int | None = None, blocks: Sequence[int] | None = None,
                   phases: Sequence[dict] | None = None) -> list[Phase]:
    """Every phase of a schedule, checked against the model's blocks; phases may only unfreeze."""
    resolved = [Phase(0, layout.trainable(direction, k, blocks))]
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
        if not set(resolved[-1].trainable) <= set(trainable):
            raise ConfigError(
                f"freeze.phases: the phase at epoch {epoch} trains {list(trainable)}, which would "
                f"re-freeze block(s) {sorted(set(resolved[-1].trainable) - set(trainable))}; phases may only unfreeze."
            )
        resolved.append(Phase(epoch, trainable))
    return resolved


def freeze_settings(freeze_cfg) -> dict:
    """The freeze config group as plain keyword arguments (direction, k, blocks, phases)."""
    from omegaconf import OmegaConf

    settings = OmegaConf.to_container(freeze_cfg, resolve=True) if not isinstance(freeze_cfg, dict) else dict(freeze_cfg)
    settings.pop("_target_", None)
    return settings
