"""The rules a setting's value must follow, wherever it is read: a run's config, a fine-tuning
method's settings, a checkpoint's record. Each names the setting and the fix in one line."""

from __future__ import annotations

import math
from collections.abc import Collection

from unet_transfer.blocks import Blocks
from unet_transfer.errors import ConfigError


def whole(value, name: str, minimum: int, what: str = "") -> int:
    """`value` if it is an integer >= minimum, else a ConfigError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}={value!r}: must be a whole number >= {minimum}{what}.")
    return value


def number(value, name: str, above: float | None = None, at_least: float | None = None,
           at_most: float | None = None, what: str = "") -> float:
    """`value` if it is a finite number within the bounds, else a ConfigError naming `name`."""
    real = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if (not real or (above is not None and value <= above) or (at_least is not None and value < at_least)
            or (at_most is not None and value > at_most)):
        bounds = [f"> {above:g}" if above is not None else "", f">= {at_least:g}" if at_least is not None else "",
                  f"<= {at_most:g}" if at_most is not None else ""]
        raise ConfigError(f"{name}={value!r}: must be a finite number {' and '.join(b for b in bounds if b)}{what}.")
    return value


def flag(value, name: str) -> bool:
    """`value` if it is true or false, else a ConfigError naming `name`."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r}: must be true or false.")
    return value


def block_list(value, name: str, layout: Blocks) -> list[int]:
    """A list of block numbers of this network, else a ConfigError naming `name`."""
    numbers = list(value) if isinstance(value, Collection) and not isinstance(value, str) else None
    if not numbers or any(isinstance(b, bool) or not isinstance(b, int) or b not in layout.numbers for b in numbers):
        raise ConfigError(f"{name}={value!r}: give a list of block numbers of this network, "
                          f"{layout.numbers[0]}..{layout.numbers[-1]} (e.g. {name}=[{layout.numbers[-1]}]).")
    return numbers


def check_size_multiple(size, step: int, why: str) -> None:
    """dataset.image_size is a multiple of `step`, the network's own rule (`why` says it in
    words: "the U-Net halves the image 4 times (model.levels)")."""
    whole(size, "dataset.image_size", step, " (pixels; the paper uses 256)")
    if size % step:
        lower, upper = size - size % step, size - size % step + step
        raise ConfigError(
            f"dataset.image_size={size}: {why}, so "
            f"the size must be a multiple of {step}; the nearest valid sizes are {lower} and {upper}.")


def missing_checkpoint(path) -> ConfigError:
    return ConfigError(
        f"pretrained={str(path)!r}: no such file. Make it first (`make pretrain`, i.e. `unet-transfer train "
        f"experiment=pretrain_natural`, writes checkpoints/natural_w64_256.pt), let the run make it on demand "
        f"(pretrain=pretrain_natural), point pretrained= at an existing checkpoint, or set pretrained=null to "
        f"train from scratch."
    )
