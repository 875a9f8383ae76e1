"""Every setting a run can check without data or the training stack, checked first: a bad value
stops the run in a second with one line that names it and the fix, before any preprocessing or
pretraining. `unet-transfer study` runs the same checks on its sweeps' runs before it pretrains.

The network's blocks (the k range, freeze.blocks, finetune.blocks) and its image-size rule come
from the network itself, built on the meta device (no memory, no weights; unet_transfer.networks):
that imports torch (and MONAI for a MONAI network), so it comes after every check that needs
neither. The fine-tuning method checks its own settings (Method.check in finetune/); that imports
its module (Lightning), so it comes last.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Collection
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from unet_transfer.blocks import Blocks
from unet_transfer.data.augment import MODES as AUGMENT_MODES
from unet_transfer.data.splits import check_fold
from unet_transfer.errors import ConfigError, one_line_exit
from unet_transfer.rules import check_size_multiple, missing_checkpoint, number, whole
from unet_transfer.sources import check_dataset_settings
from unet_transfer.training.schedule import Phase, freeze_settings, resolve_phases


def check_epochs(epochs) -> None:
    if epochs is None or (isinstance(epochs, int) and not isinstance(epochs, bool) and epochs < 0):
        raise ConfigError(f"trainer.max_epochs={epochs!r} would train without end (Lightning reads it as 'no "
                          "limit'); give the number of epochs, e.g. trainer.max_epochs=20 (the paper).")
    whole(epochs, "trainer.max_epochs", 0)


def missing_settings(node: DictConfig, prefix: str = "") -> list[str]:
    """The `???` settings below `node`, without resolving any interpolation (some need a Hydra run)."""
    found = []
    for key in node:
        if OmegaConf.is_missing(node, key):
            found.append(f"{prefix}{key}")
        elif not OmegaConf.is_interpolation(node, key) and isinstance(child := node._get_node(key), DictConfig):
            found += missing_settings(child, f"{prefix}{key}.")
    return found


def check_missing(cfg: DictConfig) -> None:
    """A `???` setting nobody gave (dataset=folder's root): named, with an example."""
    missing = sorted(missing_settings(cfg))
    if "dataset.root" in missing:
        raise ConfigError(f"dataset.root is not set: dataset={cfg.dataset.get('name', 'folder')} reads your images from "
                          "a folder; give it, e.g. dataset.root=path/to/data.")
    if missing:
        raise ConfigError(f"{missing[0]} is not set; give it on the command line, e.g. {missing[0]}=VALUE.")


def check_lr(cfg: DictConfig) -> None:
    number(cfg.optimizer.get("lr"), "optimizer.lr", above=0, what=" (the learning rate, e.g. optimizer.lr=1e-4)")


def check_method(cfg: DictConfig, layout: Blocks, first: Collection[int]) -> None:
    """`finetune=`: the method's own checks (Method.check), with the blocks that train first."""
    from hydra.utils import get_class

    from unet_transfer.finetune.base import Method

    target = cfg.finetune.get("_target_")
    try:
        method = get_class(target)
    except Exception:  # noqa: BLE001 - any import failure is a bad setting here
        method = None
    if not (isinstance(method, type) and issubclass(method, Method)):
        raise ConfigError(f"finetune._target_={target!r} is not a fine-tuning method; use finetune=freeze, layer_lr, "
                          "l2sp, bitfit, auto_rgn or lora (or a Method subclass of your own).")
    settings = {key: value for key, value in OmegaConf.to_container(cfg.finetune, resolve=True).items()
                if not key.startswith("_")}
    method.check(settings, layout, first)


def check_study_name(study) -> None:
    """`study=` names the sweep folder multirun/<study>: every part must fit a folder name."""
    parts = [part for part in str(study).split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ConfigError(f"study={study!r} cannot name a folder below multirun/; give a plain name, e.g. study=mine.")
    for part in parts:
        size = len(part.encode())
        if size > 255:
            raise ConfigError(f"study={part[:40]}... is {size} bytes, longer than a folder name may be (255); "
                              "give a shorter name, e.g. study=mine.")


def check_working_folder(folder=None) -> None:
    """The folder runs write outputs/, multirun/, checkpoints/ and .cache/ in (the current one)."""
    folder = Path.cwd() if folder is None else Path(folder)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise ConfigError(f"The working folder {folder} cannot be written ({reason}): runs write outputs/, multirun/ "
                          f"and checkpoints/ there; cd to a folder you can write (e.g. cd {Path.home()}) and run "
                          "the command again.") from None


def check_output_folder(folder, setting: str) -> None:
    """Hydra can make the run's (or sweep's) folder: its nearest existing parent can be written."""
    target = Path(folder).absolute()
    for part in target.parts:
        if len(part.encode()) > 255:
            raise ConfigError(f"{setting}: its folder {part[:40]}... is {len(part.encode())} bytes, longer than a folder "
                              "name may be (255); give a shorter study= (the sweep folder is multirun/<study>).")
    parent = next((p for p in (target, *target.parents) if p.exists()), Path("/"))
    if parent == Path.cwd():
        check_working_folder(parent)
        return
    try:
        check_working_folder(parent)
    except ConfigError:
        raise ConfigError(f"{setting}={str(folder)!r} cannot be made: {parent} cannot be written; point {setting} "
                          "at a folder you can write.") from None


class OutputFolderCheck(Callback):
    """Before Hydra makes the run's folder (a read-only working folder would end in a traceback
    there): one line naming the folder and the fix, exit code 2."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _check(folder, setting: str) -> None:
        try:
            check_output_folder(folder, setting)
        except ConfigError as error:
            raise SystemExit(one_line_exit(error)) from None


def check_writable(folder, setting: str) -> None:
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(f"{setting}={str(folder)!r} is not a folder this run can write ({error.strerror or error}); "
                          f"point {setting} at a folder you can write (the cache also follows UNET_TRANSFER_CACHE).") from None


def check_pretrained(cfg: DictConfig) -> None:
    path = cfg.get("pretrained")
    if not path or cfg.get("pretrain"):
        return  # none, or made on demand by `pretrain=`
    if Path(path).is_dir():
        raise ConfigError(f"pretrained={str(path)!r} is a folder; give the checkpoint file inside it (*.pt, *.ckpt).")
    if not Path(path).is_file():
        raise missing_checkpoint(path)


_NETWORKS: dict[str, tuple[Blocks, tuple[int, str]]] = {}  # model settings -> blocks and size rule


def network_of(model_settings: DictConfig) -> tuple[Blocks, tuple[int, str]]:
    """The blocks and the image-size rule of the network these settings build, asked of the
    network itself on the meta device (once per settings: a study checks many runs of one)."""
    key = json.dumps(OmegaConf.to_container(model_settings, resolve=True), sort_keys=True, default=str)
    if key not in _NETWORKS:
        from unet_transfer.networks.protocol import blocks_of, meta_model, size_rule

        model = meta_model(model_settings)
        _NETWORKS[key] = blocks_of(model), size_rule(model)
    return _NETWORKS[key]


def check_settings(cfg: DictConfig) -> tuple[Blocks, list[Phase]]:
    """The run's blocks and freeze phases, once every setting has been checked."""
    if "width" in cfg.model:
        whole(cfg.model.width, "model.width", 1, " (filters of block 1; the paper uses 64)")
    folds = whole(cfg.folds, "folds", 2, " (cross-validation needs at least 2 folds)")
    check_fold(cfg.fold, folds)
    whole(cfg.batch_size, "batch_size", 1)
    whole(cfg.seed, "seed", 0)
    whole(cfg.split_seed, "split_seed", 0)
    whole(cfg.dataset.image_size, "dataset.image_size", 1, " (pixels; the paper uses 256)")
    check_epochs(cfg.trainer.get("max_epochs"))
    if cfg.augment.mode not in AUGMENT_MODES:
        raise ConfigError(f"augment.mode={cfg.augment.mode!r}; use one of {list(AUGMENT_MODES)} (augment=online, ...).")
    check_lr(cfg)
    check_missing(cfg)
    check_pretrained(cfg)
    check_writable(cfg.paths.cache_dir, "paths.cache_dir")
    check_dataset_settings(cfg.dataset)
    network, (multiple, why) = network_of(cfg.model)  # imports torch: after the checks that need none
    layout = network.with_depth(cfg.get("depth") or "longest")
    check_size_multiple(cfg.dataset.image_size, multiple, why)
    phases = resolve_phases(layout, **freeze_settings(cfg.freeze))
    check_method(cfg, layout, phases[0].trainable)  # last: it imports the method's module
    return layout, phases
