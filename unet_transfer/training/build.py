"""The one place a resolved config becomes the objects of a training: model, LightningModule,
DataModule, callbacks (the freeze schedule, the configured ones, and the per-block analysis
every run records), logger and Trainer. A run and the benchmark both build through here, so
the benchmark measures exactly what users run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf


@dataclass
class Built:
    model: Any
    module: Any
    datamodule: Any
    callbacks: list
    logger: Any
    trainer: Any
    fast: dict  # the speed settings used and why (training/fast.py)
    measures: list  # the per-run analysis measures' callbacks (analysis/registry.py)


def build_datamodule(cfg: DictConfig, source=None, hold_out: bool = True):
    """The run's fold of its dataset (cached and split on setup, as Lightning's contract says);
    with hold_out=False every image trains (a recommended configuration's final network)."""
    from unet_transfer.data.datamodule import FoldDataModule

    return FoldDataModule(source if source is not None else instantiate(cfg.dataset), cfg.paths.cache_dir,
                          fold=cfg.fold, folds=cfg.folds, split_seed=cfg.split_seed, hold_out=hold_out,
                          validation_split=float(cfg.get("validation_split") or 0.0), batch_size=cfg.batch_size,
                          augment=OmegaConf.to_container(cfg.augment, resolve=True), seed=cfg.seed, **cfg.loader)


def configured_callbacks(cfg: DictConfig) -> list:
    """The FreezeSchedule (what trains when) first, then the `callbacks=` group's callbacks."""
    extra = cfg.get("callbacks") or {}
    return [instantiate(cfg.freeze), *(instantiate(node) for node in extra.values() if node is not None)]


def build(cfg: DictConfig, *, source=None, callbacks: list = (), logger: bool = True, hold_out: bool = True,
          **trainer_overrides) -> Built:
    """Everything a training needs, seeded; `callbacks` are added after the configured ones and
    `trainer_overrides` win over `trainer.*` (the benchmark's round limits, a chosen GPU);
    `hold_out=False` trains on every image (see FoldDataModule)."""
    import pytorch_lightning as pl
    import torch

    from unet_transfer.analysis.registry import as_callback, measures
    from unet_transfer.checkpoint import load_pretrained
    from unet_transfer.training.fast import choose
    from unet_transfer.training.module import SegmentationModule

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    model = instantiate(cfg.model)
    if cfg.pretrained:
        load_pretrained(model, cfg.pretrained)
    method = instantiate(cfg.finetune)
    datamodule = build_datamodule(cfg, source, hold_out)
    datamodule.prepare_data()  # Lightning calls both again in fit(): no-ops then
    datamodule.setup("fit")
    fast, fast_record = choose(cfg, model, instantiate(cfg.optimizer), len(datamodule.train_rows))
    module = SegmentationModule(model, instantiate(cfg.optimizer), channels_last=fast.channels_last,
                                keep_predictions=cfg.save_predictions, compile=fast.compile, method=method)
    observers = [as_callback(measure, model) for measure in measures()]  # of the loaded weights
    freeze, *configured = configured_callbacks(cfg)
    all_callbacks = [freeze, method, *configured, *observers, *callbacks]
    run_logger = instantiate(cfg.logger) if logger and cfg.get("logger") else False
    no_validation = {} if cfg.validate else {"limit_val_batches": 0}
    trainer = instantiate(cfg.trainer, callbacks=all_callbacks, logger=run_logger, default_root_dir=str(cfg.output_dir),
                          **{"precision": fast.precision, **no_validation, **trainer_overrides})
    return Built(model, module, datamodule, all_callbacks, run_logger, trainer, fast_record, observers)
