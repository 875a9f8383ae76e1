"""The recommended network: a configuration's recipe trained once more, on every image.

The recipe is the resolved config its runs were trained with (Hydra's `.hydra/config.yaml` in
each run folder), which is the same for every fold but `fold`: checked on the runs' recorded
settings. The network trains through the same build path as a run (training/build.py) with
`hold_out=False`, so nothing is held out and nothing is scored: its expected scores are those
of the recipe under cross-validation (the model card says so). Same epochs, batch size,
augmentation, optimiser, starting checkpoint and seed as the study's runs; an epoch has more
steps, as the training set is the whole dataset rather than k-1 folds of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from unet_transfer.data.contract import input_digest
from unet_transfer.errors import ConfigError

log = logging.getLogger("unet_transfer")

# What the final training sets whatever the study did: where it writes, and no held-out work.
FINAL_SETTINGS = {"study": "recommended", "threads": None, "save_weights": None, "save_predictions": False,
                  "validate": False, "resume": False}


@dataclass
class FinalNetwork:
    model: object  # the trained UNet
    cfg: DictConfig  # the recipe as trained (resolved)
    dataset: str
    image_size: int
    data: str  # the preprocessing cache entry: dataset name and content digest
    n_images: int
    n_train: int  # images trained on: all of them
    ids_sha256: str
    image_digests: list[str]  # what the network saw of each image (data/contract.input_digest)
    epochs: int
    duration_s: float
    device: str
    precision: str  # what it trained in (training/fast.py)


def run_config(run_dir: Path | str) -> DictConfig:
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path} is missing: the recommended network is trained from its runs' own resolved "
                          "config, which Hydra writes there (runs of `unet-transfer train` and `study` have it). "
                          "Run the configuration again with unet-transfer, or choose another (--choose).")
    return OmegaConf.load(path)


def recipe(row: dict, out_dir: Path) -> DictConfig:
    """The config of the configuration's runs (checked to agree), set up to train into `out_dir`."""
    runs = sorted(row["runs"], key=lambda r: (str(r["seed"]), r["fold"]))
    first = runs[0].get("settings") or {}
    for run in runs[1:]:
        other = run.get("settings") or {}
        differ = sorted(key for key in set(first) | set(other) if first.get(key) != other.get(key))
        if differ:
            raise ConfigError(f"The runs of {row['label']!r} were made with different settings ({differ[0]}: "
                              f"{first.get(differ[0])!r} in {runs[0]['relpath']}, {other.get(differ[0])!r} in "
                              f"{run['relpath']}), so they are not one recipe. Rerun them alike, or choose another.")
    cfg = run_config(runs[0]["path"])
    for key, value in {**FINAL_SETTINGS, "output_dir": str(out_dir), **recorded_speed(runs)}.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as error:
        raise ConfigError(f"The config of {runs[0]['relpath']} cannot be resolved here ({error.__class__.__name__}: "
                          f"{str(error).splitlines()[0]}); run recommend from the folder the study ran in.") from None
    return cfg


def recorded_speed(runs: list[dict]) -> dict:
    """The precision, memory layout and compilation the configuration's runs trained with (their
    metrics.json `fast`), as explicit settings: measuring again here could choose otherwise (the
    fastest depends on the thread count: fp32 at 2 threads, bf16 at 1), and bf16 is not fp32's
    numbers. Where the runs differ, what most of them used; none recorded (older runs): {}."""
    from collections import Counter

    used = Counter((fast.get("precision"), fast.get("channels_last"), fast.get("compile"))
                   for fast in (run.get("fast") for run in runs) if isinstance(fast, dict) and fast.get("precision"))
    if not used:
        return {}
    precision, channels_last, compile_ = used.most_common(1)[0][0]
    return {"trainer.precision": precision, "fast.channels_last": bool(channels_last), "fast.compile": bool(compile_)}


def check_start(cfg: DictConfig, row: dict) -> list[str]:
    """The starting checkpoint must be there; it and the data should be what the study used."""
    from unet_transfer.checkpoint import weights_digest

    warnings = []
    if cfg.pretrained:
        if not Path(cfg.pretrained).is_file():
            raise ConfigError(f"pretrained={cfg.pretrained!r}, the checkpoint the study's runs started from, is "
                              "missing: run recommend from the folder the study ran in, or run the study command "
                              "again (it makes the checkpoint again, and redoes runs whose start changed).")
        studied = {r.get("pretrained_sha256") for r in row["runs"]} - {None}
        if studied and weights_digest(cfg.pretrained) not in studied:
            warnings.append(f"pretrained={cfg.pretrained} has changed since the study's runs (their sha256 "
                            f"{', '.join(sorted(studied))}): the study's scores describe the old start")
    return warnings


def epoch_line(epoch: int, epochs: int, loss: float | None, elapsed_s: float) -> str:
    """One line per epoch, so a training of minutes shows it is moving and when it should end."""
    left = elapsed_s / epoch * (epochs - epoch)
    shown = "" if loss is None else f", loss {loss:.4f}"
    return f"epoch {epoch}/{epochs}{shown}, {elapsed_s:.0f} s so far, about {left:.0f} s left"


def epoch_lines():
    """A Lightning callback that logs epoch_line after every training epoch."""
    import pytorch_lightning as pl

    class EpochLines(pl.Callback):
        def on_train_start(self, trainer, module) -> None:
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module) -> None:
            images = float(getattr(module, "_loss_images", 0) or 0)
            loss = float(module._loss_sum) / images if images else None
            log.info("%s", epoch_line(trainer.current_epoch + 1, int(trainer.max_epochs), loss,
                                      time.perf_counter() - self.start))

    return EpochLines()


def train_final(cfg: DictConfig) -> FinalNetwork:
    """Train the recipe on every image of its dataset (logs and the CSV logger's file in output_dir)."""
    import torch

    from unet_transfer.training.build import build
    from unet_transfer.training.run import quiet_lightning
    from unet_transfer.training.validate import check_settings

    check_settings(cfg)
    start = time.perf_counter()
    quiet_lightning()
    source = instantiate(cfg.dataset)
    built = build(cfg, source=source, hold_out=False, callbacks=[epoch_lines()])
    log.info("Recommended network: %s, %d epochs on every image (%s, %s, %s; %d threads), into %s", source.name,
             cfg.trainer.max_epochs, built.fast["precision"], "channels-last" if built.fast.get("channels_last")
             else "NCHW", built.fast.get("why", ""), torch.get_num_threads(), cfg.output_dir)
    built.trainer.fit(built.module, built.datamodule)
    if built.logger:
        built.logger.finalize("success")
    ids = sorted(built.datamodule.data.ids)
    return FinalNetwork(built.model.cpu().eval(), cfg, source.name, int(source.image_size),
                        built.datamodule.cache_folder.name, len(ids), len(built.datamodule.train_rows),
                        hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16],
                        sorted({input_digest(image) for image in built.datamodule.data.images}),
                        int(built.trainer.current_epoch),
                        round(time.perf_counter() - start, 3), str(built.trainer.strategy.root_device),
                        built.fast["precision"])
