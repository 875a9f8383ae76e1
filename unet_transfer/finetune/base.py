"""The fine-tuning method interface, and the paper's own: hard freezing only.

The freeze schedule (training/freeze.py) decides which blocks train; a method decides how:
which of their parameters train (`trains`), with what learning rate (`param_groups`), with
what extra loss (`penalty`), and what happens each step or at the end (Lightning hooks). Every
parameter outside its groups keeps requires_grad=False, so frozen stays bit-identical.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Iterable, Mapping

import pytorch_lightning as pl
import torch
from torch import nn

from unet_transfer.blocks import Blocks
from unet_transfer.errors import ConfigError
from unet_transfer.networks.protocol import block_map


def block_numbers(model: nn.Module) -> dict[str, int]:
    """Each parameter (and buffer) name of the network -> its block number (the protocol's map,
    also for modules a method added inside a block, such as LoRA's adapters)."""
    return block_map(model).block_of_name(model)


class Method(pl.Callback):
    """`finetune=freeze`: every parameter of a trainable block, at the optimiser's learning rate."""

    name = "freeze"

    def __init__(self, **settings):
        self.settings = settings
        self._trained: dict[int, int] = {}  # id -> size of every parameter that had a learning rate

    # --- its settings, checked before anything loads -------------------------------------------

    @classmethod
    def defaults(cls) -> dict:
        """The method's settings (the arguments of __init__) and their default values."""
        parameters = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in parameters if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                                                          p.KEYWORD_ONLY)}

    @classmethod
    def check(cls, settings: Mapping, layout: Blocks, first: Collection[int]) -> None:
        """Every `finetune.*` setting, checked before any data or training loads (a ConfigError
        naming it): names here, values in check_values. `first`: the blocks that train first."""
        known = cls.defaults()
        for name in settings:
            if name not in known:
                offer = f"its settings are {', '.join(known)}" if known else "it has no settings"
                raise ConfigError(f"finetune.{name}: not a setting of finetune={cls.name}; {offer}.")
        cls.check_values({**known, **settings}, layout, tuple(first))

    @classmethod
    def check_values(cls, values: dict, layout: Blocks, first: tuple[int, ...]) -> None:
        """A method's own checks of its values (defaults filled in); the paper's way has none."""

    # --- what trains, and how fast ---------------------------------------------------------

    def trains(self, name: str, parameter: nn.Parameter) -> bool:
        """Whether a parameter of a trainable block trains (BitFit: only biases)."""
        return True

    def prepare(self, model: nn.Module, trainable: Iterable[int]) -> None:
        """After the freeze schedule set requires_grad per block: narrow it to what trains."""
        trainable, block_of = set(trainable), block_numbers(model)
        for name, parameter in model.named_parameters():
            if block_of[name] in trainable and not self.trains(name, parameter):
                parameter.requires_grad_(False)

    def param_groups(self, model: nn.Module, blocks: Iterable[int], lr: float) -> list[dict]:
        """Optimiser groups for the trainable parameters of `blocks` (one group, at `lr`)."""
        blocks, block_of = set(blocks), block_numbers(model)
        params = [p for n, p in model.named_parameters() if p.requires_grad and block_of[n] in blocks]
        return [{"params": params, "lr": lr, "base_lr": lr}] if params else []

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """An extra term of the training loss (none)."""
        return None

    # --- what it reports -------------------------------------------------------------------

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.record(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.record(trainer)

    def record(self, trainer) -> None:
        """Remember every parameter that has had a non-zero learning rate."""
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                if group.get("base_lr", group["lr"]) > 0:
                    self._trained.update({id(p): p.numel() for p in group["params"]})

    @property
    def trainable_params(self) -> int:
        """Parameters that trained at some point (adapters included, also once merged)."""
        return sum(self._trained.values())

    def summary(self) -> dict:
        """What metrics.json records of the method beyond its name and settings."""
        return {}
