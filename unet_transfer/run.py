"""One run: fine-tune (or pretrain) a U-Net on one fold with one freeze setting, score the
held-out fold, write metrics.json and per_image.csv."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from unet_transfer.data import sources, splits
from unet_transfer.errors import UserError
from unet_transfer.pretrain import ensure_pretrained
from unet_transfer.results import read_metrics, write_run_results
from unet_transfer.schedule import canonical_direction, resolve_phases

log = logging.getLogger("unet_transfer")


def freeze_settings(cfg: DictConfig) -> dict:
    settings = OmegaConf.to_container(cfg.freeze, resolve=True)
    settings.pop("_target_", None)
    return settings


def model_blocks(cfg: DictConfig) -> int:
    """Blocks of the configured U-Net (encoders, bottleneck, decoders), without building it."""
    return 2 * int(cfg.model.get("levels", 4)) + 1


def prepare(cfg: DictConfig):
    """Everything checkable before the training stack loads: settings, data, folds."""
    trainable = resolve_phases(**freeze_settings(cfg), n_blocks=model_blocks(cfg))[-1].trainable
    splits.check_fold(cfg.fold, cfg.folds)
    source = instantiate(cfg.dataset)
    data, cache_folder = sources.load(source, cfg.paths.cache_dir)
    folds = splits.load_or_create(cache_folder / "splits.json", data.ids, cfg.folds, cfg.split_seed, data.labels)
    return source, data, cache_folder, folds[cfg.fold], trainable


def quiet_lightning() -> None:
    """Drop Lightning's advertising and warnings about its own internals: noise in every run."""
    import warnings

    if getattr(quiet_lightning, "done", False):  # once per process, not once per sweep job
        return
    quiet_lightning.done = True
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(lambda record: "Tip:" not in record.getMessage())
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # Step losses follow log_every_n_steps; the epoch mean is always logged (module.py).
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")


def run(cfg: DictConfig) -> dict:
    out_dir = Path(cfg.output_dir)
    finished = read_metrics(out_dir) if cfg.resume else None
    if finished is not None and not started_from_other_weights(cfg, finished):
        log.info("Skipping %s: metrics.json exists (resume=true)", out_dir)
        return finished
    if finished is not None:
        log.info("Redoing %s: its pretrained checkpoint has changed since it ran", out_dir)
    start = time.perf_counter()
    source, data, cache_folder, held_out, trainable = prepare(cfg)
    if cfg.pretrained:
        ensure_pretrained(cfg)
    weights = pretrained_digest(cfg)  # hashed once: a paper-size checkpoint is 124 MB
    key = run_key(cfg, cache_folder, trainable, weights)
    twin = find_twin(out_dir, key)
    if twin is not None:
        return reuse_twin(cfg, out_dir, twin)

    import pytorch_lightning as pl
    import torch

    from unet_transfer.checkpoint import load_pretrained, save_weights
    from unet_transfer.data.datamodule import SegmentationDataModule
    from unet_transfer.freeze import FreezeSchedule
    from unet_transfer.gpu_slots import gpu_slot, gpus_to_choose_from
    from unet_transfer.module import SegmentationModule

    quiet_lightning()
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    model = instantiate(cfg.model)
    if cfg.pretrained:
        load_pretrained(model, cfg.pretrained)
    module = SegmentationModule(model, instantiate(cfg.optimizer), channels_last=cfg.fast.channels_last,
                                keep_predictions=cfg.save_predictions, compile=cfg.fast.compile)
    datamodule = SegmentationDataModule(
        data, held_out, batch_size=cfg.batch_size, augment=OmegaConf.to_container(cfg.augment, resolve=True),
        seed=cfg.seed, offline_cache=cache_folder, **cfg.loader)
    schedule = FreezeSchedule(**freeze_settings(cfg))
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    no_validation = {} if cfg.validate else {"limit_val_batches": 0}
    with gpu_slot(gpus_to_choose_from(cfg.trainer), int(cfg.get("runs_per_gpu") or 1)) as gpu:
        device = {} if gpu is None else {"devices": [gpu]}
        trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=[schedule], logger=logger,
                                          default_root_dir=str(out_dir), **no_validation, **device)
        if logger:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        log.info("Run %s: %s %s trains blocks %s, fold %d/%d, %d train / %d held-out images%s",
                 out_dir, source.name, cfg.freeze.direction, list(trainable), cfg.fold, cfg.folds,
                 len(datamodule.train_rows), len(datamodule.test_rows), "" if gpu is None else f", GPU {gpu}")
        trainer.fit(module, datamodule)
        trainer.test(module, datamodule, verbose=False)

    per_image = [{"id": data.ids[r["row"]], **{k: v for k, v in r.items() if k != "row"}} for r in module.test_records]
    metrics = summarise(cfg, source, cache_folder, key, weights, trainable, per_image, trainer,
                        len(datamodule.train_rows), time.perf_counter() - start)
    if cfg.save_weights:
        save_weights(model, cfg.save_weights, OmegaConf.to_container(cfg.model, resolve=True),
                     {"dataset": source.name, "epochs": metrics["epochs"], "seed": cfg.seed})
    if cfg.save_predictions:
        save_predictions(out_dir, data, module)
    write_run_results(out_dir, metrics, per_image)
    if logger:
        logger.log_metrics({f"final/{k}": metrics[k] for k in ("dice", "pixel_error", "adjusted_rand")})
        logger.finalize("success")
    log.info("Result %s: dice %.4f, pixel error %.2f%%, adjusted Rand %.4f (%d images, %.1f s)", out_dir,
             metrics["dice"], metrics["pixel_error"], metrics["adjusted_rand"], metrics["n_images"], metrics["duration_s"])
    return metrics


def summarise(cfg, source, source_cache, key: str, weights: str | None, trainable, per_image, trainer, n_train: int,
              duration: float) -> dict:
    import statistics

    def mean(key):
        return statistics.fmean(r[key] for r in per_image)

    return {
        "dataset": source.name,
        "dataset_settings": dict(getattr(source, "settings", {})),
        "direction": canonical_direction(cfg.freeze.direction),
        "freeze": cfg.freeze.direction,
        "k": len(trainable),
        "fold": cfg.fold,
        "folds": cfg.folds,
        "trainable_blocks": list(trainable),
        "n_blocks": model_blocks(cfg),
        "dice": mean("dice"),
        "pixel_error": mean("pixel_error"),
        "adjusted_rand": mean("adjusted_rand"),
        "n_images": len(per_image),
        "n_train": n_train,
        "epochs": trainer.current_epoch,
        "seed": cfg.seed,
        "split_seed": cfg.split_seed,
        "pretrained": str(cfg.pretrained) if cfg.pretrained else None,
        "pretrained_sha256": weights,
        "image_size": source.image_size,
        "width": cfg.model.width,
        "batch_size": cfg.batch_size,
        "augment": cfg.augment.mode,
        "precision": str(cfg.trainer.get("precision", "32-true")),
        "threads": torch_threads(),
        "cache": str(source_cache),
        "run_key": key,
        "duration_s": round(duration, 3),
    }


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def pretrained_digest(cfg: DictConfig) -> str | None:
    from unet_transfer.checkpoint import weights_digest

    return weights_digest(cfg.pretrained) if cfg.pretrained and Path(cfg.pretrained).is_file() else None


def started_from_other_weights(cfg: DictConfig, finished: dict) -> bool:
    """A finished run whose pretrained checkpoint has since been remade (its results are stale)."""
    recorded = finished.get("pretrained_sha256")
    current = pretrained_digest(cfg)
    return recorded is not None and current is not None and recorded != current


def run_key(cfg: DictConfig, cache_folder: Path, trainable, weights: str | None) -> str:
    """What a run's numbers depend on. Two settings that train the same blocks the same way
    (shallow_to_deep k=9, deep_to_shallow k=9 and none) share a key, so a study runs them once."""
    from unet_transfer.data.cache import digest

    def plain(node):
        return OmegaConf.to_container(node, resolve=True) if node is not None else None

    trainer = plain(cfg.trainer)
    for cosmetic in ("enable_progress_bar", "enable_model_summary", "log_every_n_steps", "enable_checkpointing"):
        trainer.pop(cosmetic, None)
    phases = resolve_phases(**freeze_settings(cfg), n_blocks=model_blocks(cfg))
    return digest({"data": Path(cache_folder).name, "phases": [(p.epoch, p.trainable) for p in phases],
                   "fold": cfg.fold, "folds": cfg.folds, "split_seed": cfg.split_seed, "seed": cfg.seed,
                   "pretrained": str(cfg.pretrained) if cfg.pretrained else None,
                   "pretrained_sha256": weights, "model": plain(cfg.model),
                   "optimizer": plain(cfg.optimizer), "augment": plain(cfg.augment), "batch_size": cfg.batch_size,
                   "trainer": trainer, "fast": plain(cfg.fast), "validate": cfg.validate, "trainable": list(trainable)})


def find_twin(out_dir: Path, key: str) -> Path | None:
    """A finished run of the same sweep with the same run key."""
    if not out_dir.parent.is_dir():
        return None
    for candidate in sorted(out_dir.parent.glob("*/metrics.json")):
        if candidate.parent != out_dir and read_metrics(candidate.parent).get("run_key") == key:
            return candidate.parent
    return None


def reuse_twin(cfg: DictConfig, out_dir: Path, twin: Path) -> dict:
    """Copy an equivalent finished run's results instead of training the same thing again."""
    import shutil

    out_dir.mkdir(parents=True, exist_ok=True)
    if (twin / "predictions.npz").exists():
        shutil.copyfile(twin / "predictions.npz", out_dir / "predictions.npz")
    with open(twin / "per_image.csv") as handle:
        per_image = list(csv.DictReader(handle))
    metrics = {**read_metrics(twin), "direction": canonical_direction(cfg.freeze.direction),
               "freeze": cfg.freeze.direction, "same_as": twin.name, "duration_s": 0.0}
    write_run_results(out_dir, metrics, per_image)
    log.info("Result %s: same training as %s, results copied (dice %.4f)", out_dir, twin.name, metrics["dice"])
    return metrics


def save_predictions(out_dir: Path, data, module) -> None:
    """Held-out probability maps (float16) for the example figures of the report."""
    import numpy as np
    import torch

    rows = sorted(module.test_predictions)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".predictions.tmp.npz"
    with open(tmp, "wb") as handle:
        np.savez_compressed(handle, ids=np.array([data.ids[r] for r in rows]),
                            probabilities=torch.stack([module.test_predictions[r] for r in rows]).numpy())
    tmp.replace(out_dir / "predictions.npz")


def user_error_in(error: BaseException) -> UserError | None:
    """The UserError behind `error`, also when Hydra's instantiate wrapped it."""
    while error is not None:
        if isinstance(error, UserError):
            return error
        error = error.__cause__ or error.__context__
    return None


def run_or_exit(cfg: DictConfig) -> float | None:
    """Entry point body: user errors become one clear line and exit code 2, not a traceback."""
    try:
        return run(cfg)["dice"]
    except Exception as error:
        cause = user_error_in(error)
        if cause is None:
            raise
        log.error("Error: %s", cause)
        raise SystemExit(2) from None
