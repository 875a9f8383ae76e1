"""Pretraining on demand: a fine-tuning run whose `pretrained=` checkpoint is missing makes it
first, by running the experiment named in `pretrain=` once, even when many runs ask at once."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from unet_transfer.config import CONF_DIR
from unet_transfer.errors import ConfigError

log = logging.getLogger("unet_transfer")
TRAIN_PY = Path(CONF_DIR).parent / "train.py"


def pretraining_overrides(cfg: DictConfig) -> list[str]:
    """The fine-tuning run's model and image size, so the checkpoint fits it exactly."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    lines = [f"model.{key}={value}" for key, value in model.items() if key != "_target_"]
    lines = [line.replace("'", "") for line in lines]
    lines.append(f"dataset.image_size={cfg.dataset.image_size}")
    lines.append(f"trainer.accelerator={cfg.trainer.accelerator}")
    return lines


def without_thread_limits() -> dict[str, str]:
    """This environment minus the per-worker thread limits a parallel launcher sets (e.g. joblib's
    OMP_NUM_THREADS=1): the runs that need the checkpoint wait for it, so it may use every core."""
    limits = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    return {key: value for key, value in os.environ.items() if key not in limits}


def ensure_pretrained(cfg: DictConfig) -> None:
    path = Path(cfg.pretrained)
    if path.exists() or not cfg.get("pretrain"):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first run pretrains; the others wait, then load
        if path.exists():
            return
        command = [sys.executable, str(TRAIN_PY), f"experiment={cfg.pretrain}", f"save_weights={path}",
                   f"hydra.run.dir={path.parent / (path.stem + '_run')}", "resume=false", "study=pretraining",
                   *pretraining_overrides(cfg), *cfg.get("pretrain_overrides", [])]
        log.info("pretrained=%s is missing: pretraining it first with experiment=%s", path, cfg.pretrain)
        if subprocess.run(command, env=without_thread_limits()).returncode != 0 or not path.exists():
            raise ConfigError(f"Pretraining (experiment={cfg.pretrain}) failed, so {path} was not made; "
                              f"see its log above, or run it alone: {' '.join(command[1:])}")
