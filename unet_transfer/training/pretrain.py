"""Pretraining on demand: a fine-tuning run whose `pretrained=` checkpoint is missing (or was made
by another recipe) makes it first, by running the experiment named in `pretrain=` once, even
when many runs ask at once. The recipe is kept beside the checkpoint (`*.pt.recipe.json`)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from unet_transfer.config import experiment_file, user_config_dirs
from unet_transfer.errors import ConfigError, run_child
from unet_transfer.files import atomic_write_text, file_lock
from unet_transfer.training.commands import child_environment, train_command, user_command

log = logging.getLogger("unet_transfer")


MODEL_TARGET = "unet_transfer.model.UNet"


def model_group(target: str) -> str | None:
    """The `model=` config of a network's builder, by the adapters' convention (one adapter
    module and one conf/model/<name>.yaml: unet_transfer.networks.flexunet.build -> flexunet);
    None for the paper's U-Net, whose settings need no group: the pretraining experiment's own
    U-Net config takes them all (so the U-Net's pretraining recipes read as before)."""
    if str(target) == MODEL_TARGET:
        return None
    parts = str(target).split(".")
    return parts[-2] if parts[-1] == "build" and len(parts) > 1 else parts[-1]


def pretraining_overrides(cfg: DictConfig) -> list[str]:
    """The fine-tuning run's network (its model= config and every setting) and image size, so the
    checkpoint fits it exactly."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    group = model_group(model.get("_target_", MODEL_TARGET))
    lines = [f"model={group}"] * (group is not None)
    lines += [f"model.{key}={value}" for key, value in model.items() if key != "_target_"]
    lines = [line.replace("'", "") for line in lines]
    lines.append(f"dataset.image_size={cfg.dataset.image_size}")
    lines.append(f"trainer.accelerator={cfg.trainer.accelerator}")
    return lines


def output_overrides(cfg: DictConfig) -> list[str]:
    """The fine-tuning run's way of reporting, for the pretraining it starts: no progress bar when
    it has none or when the output is no terminal (a log file: a bar writes megabytes there), no
    logger when it has none. Not part of the recipe: neither changes the checkpoint."""
    lines = []
    if not cfg.trainer.get("enable_progress_bar", True) or not sys.stdout.isatty():
        lines.append("trainer.enable_progress_bar=false")
    if cfg.get("logger") is None:
        lines.append("logger=none")
    own = {str(line).split("=", 1)[0].lstrip("+~") for line in cfg.get("pretrain_overrides", [])}
    return [line for line in lines if line.split("=", 1)[0] not in own]  # the user's pretrain_overrides win


def pretraining_run_overrides(cfg: DictConfig, path: Path) -> list[str]:
    """The overrides of the run that makes `path` (also what a study checks before it starts)."""
    return [f"experiment={cfg.pretrain}", f"save_weights={path}", f"hydra.run.dir={path.parent / (path.stem + '_run')}",
            "resume=false", "study=pretraining", *pretraining_overrides(cfg), *output_overrides(cfg),
            *map(str, cfg.get("pretrain_overrides", []))]


def without_thread_limits() -> dict[str, str]:
    """This environment minus the per-worker thread limits a parallel launcher sets (e.g. joblib's
    OMP_NUM_THREADS=1): the runs that need the checkpoint wait for it, so it may use every core."""
    limits = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    return {key: value for key, value in os.environ.items() if key not in limits}


def recipe(cfg: DictConfig, extra_dirs=None) -> dict:
    """How `pretrain=` makes the checkpoint: the experiment (its file's content) and the overrides."""
    experiment = experiment_file(str(cfg.pretrain), user_config_dirs() if extra_dirs is None else extra_dirs)
    text = experiment.read_bytes() if experiment is not None else b""
    return {"experiment": str(cfg.pretrain), "experiment_sha256": hashlib.sha256(text).hexdigest()[:16],
            "overrides": [*pretraining_overrides(cfg), *map(str, cfg.get("pretrain_overrides", []))]}


def recipe_path(path: Path) -> Path:
    return path.with_name(path.name + ".recipe.json")


def up_to_date(path: Path, wanted: dict) -> bool:
    """The checkpoint exists and was made by this recipe. A checkpoint without a recipe file was
    put there by hand (or by an older version): it is used as it is."""
    if not path.exists():
        return False
    try:
        return json.loads(recipe_path(path).read_text()) == wanted
    except FileNotFoundError:
        return True
    except ValueError:
        return False


def ensure_pretrained(cfg: DictConfig, extra_dirs=None) -> None:
    """Make `pretrained` with `pretrain` when it is missing or was made by another recipe (the
    experiment file or the overrides changed since), once, however many runs ask at once.
    `extra_dirs`: the user's config folders (default: those of the running Hydra job)."""
    path = Path(cfg.pretrained)
    if not cfg.get("pretrain"):
        return
    extra_dirs = user_config_dirs() if extra_dirs is None else list(extra_dirs)
    wanted = recipe(cfg, extra_dirs)
    if up_to_date(path, wanted):
        if not recipe_path(path).exists():
            log.info("pretrained=%s has no recipe file (made by hand or by an older version): used as it is; "
                     "delete it to have experiment=%s make it again", path, cfg.pretrain)
        return
    with file_lock(path.with_name(path.name + ".lock")):  # the first run pretrains; the others wait, then load
        if up_to_date(path, wanted):
            return
        if path.exists():
            log.warning("pretrained=%s was made by another pretraining recipe than experiment=%s now gives; "
                        "making it again (runs that used the old one are redone when resumed)", path, cfg.pretrain)
            from unet_transfer.checkpoint import safetensors_path

            path.unlink()  # a crash below leaves no checkpoint rather than a stale one
            safetensors_path(path).unlink(missing_ok=True)  # nor a stale twin
        overrides = pretraining_run_overrides(cfg, path)
        command = train_command(overrides, extra_dirs=extra_dirs)
        log.info("pretrained=%s is missing: pretraining it first with experiment=%s", path, cfg.pretrain)
        if run_child(command, env=child_environment(without_thread_limits())) != 0 or not path.exists():
            raise ConfigError(f"Pretraining (experiment={cfg.pretrain}) failed, so {path} was not made; "
                              f"see its log above, or run it alone: {user_command(overrides, extra_dirs=extra_dirs)}")
        atomic_write_text(recipe_path(path), json.dumps(wanted, indent=1) + "\n")
