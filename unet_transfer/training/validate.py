"""Every setting a run can check without data or the training stack, checked first: a bad value
stops the run in a second with one line that names it and the fix, before any preprocessing,
pretraining or Lightning import."""

from __future__ import annotations

import tempfile
from pathlib import Path

from omegaconf import DictConfig

from unet_transfer.blocks import Blocks
from unet_transfer.data.augment import MODES as AUGMENT_MODES
from unet_transfer.data.splits import check_fold
from unet_transfer.errors import ConfigError
from unet_transfer.training.schedule import Phase, freeze_settings, resolve_phases


def whole(value, name: str, minimum: int, what: str = "") -> int:
    """`value` if it is an integer >= minimum, else a ConfigError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}={value!r}: must be a whole number >= {minimum}{what}.")
    return value


def check_image_size(size, layout: Blocks) -> None:
    step = 2**layout.levels
    whole(size, "dataset.image_size", step, " (pixels; the paper uses 256)")
    if size % step:
        lower, upper = size - size % step, size - size % step + step
        raise ConfigError(
            f"dataset.image_size={size}: the U-Net halves the image {layout.levels} times (model.levels), so "
            f"the size must be a multiple of {step}; the nearest valid sizes are {lower} and {upper}.")


def check_epochs(epochs) -> None:
    if epochs is None or (isinstance(epochs, int) and not isinstance(epochs, bool) and epochs < 0):
        raise ConfigError(f"trainer.max_epochs={epochs!r} would train without end (Lightning reads it as 'no "
                          "limit'); give the number of epochs, e.g. trainer.max_epochs=20 (the paper).")
    whole(epochs, "trainer.max_epochs", 0)


def check_writable(folder, setting: str) -> None:
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(f"{setting}={str(folder)!r} is not a folder this run can write ({error.strerror or error}); "
                          f"point {setting} at a folder you can write (the cache also follows UNET_TRANSFER_CACHE).") from None


def missing_checkpoint(path) -> ConfigError:
    return ConfigError(
        f"pretrained={str(path)!r}: no such file. Make it first (`make pretrain`, i.e. `unet-transfer train "
        f"experiment=pretrain_natural`, writes checkpoints/natural_w64_256.pt), let the run make it on demand "
        f"(pretrain=pretrain_natural), point pretrained= at an existing checkpoint, or set pretrained=null to "
        f"train from scratch."
    )


def check_pretrained(cfg: DictConfig) -> None:
    path = cfg.get("pretrained")
    if not path or cfg.get("pretrain"):
        return  # none, or made on demand by `pretrain=`
    if Path(path).is_dir():
        raise ConfigError(f"pretrained={str(path)!r} is a folder; give the checkpoint file inside it (*.pt, *.ckpt).")
    if not Path(path).is_file():
        raise missing_checkpoint(path)


def check_settings(cfg: DictConfig) -> tuple[Blocks, list[Phase]]:
    """The run's blocks and freeze phases, once every setting has been checked."""
    levels = whole(cfg.model.get("levels", 4), "model.levels", 1)
    whole(cfg.model.width, "model.width", 1, " (filters of block 1; the paper uses 64)")
    layout = Blocks(levels, cfg.get("depth") or "longest")
    folds = whole(cfg.folds, "folds", 2, " (cross-validation needs at least 2 folds)")
    check_fold(cfg.fold, folds)
    whole(cfg.batch_size, "batch_size", 1)
    whole(cfg.seed, "seed", 0)
    whole(cfg.split_seed, "split_seed", 0)
    check_image_size(cfg.dataset.image_size, layout)
    check_epochs(cfg.trainer.get("max_epochs"))
    if cfg.augment.mode not in AUGMENT_MODES:
        raise ConfigError(f"augment.mode={cfg.augment.mode!r}; use one of {list(AUGMENT_MODES)} (augment=online, ...).")
    check_pretrained(cfg)
    check_writable(cfg.paths.cache_dir, "paths.cache_dir")
    return layout, resolve_phases(layout, **freeze_settings(cfg.freeze))
