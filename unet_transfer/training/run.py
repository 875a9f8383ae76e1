"""One run: fine-tune (or pretrain) a U-Net on one fold with one freeze setting, score the
held-out fold, write metrics.json and per_image.csv.

The cheap part comes first (`plan_run`: settings, the dataset's file list, the run's identity),
so bad input fails in a second and a finished run is skipped before the training stack loads.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from unet_transfer.blocks import Blocks, canonical_direction
from unet_transfer.data import splits
from unet_transfer.errors import UserError
from unet_transfer.metrics import METRICS
from unet_transfer.study.pretrain import ensure_pretrained
from unet_transfer.training.artifacts import (
    read_metrics,
    read_per_image,
    save_predictions,
    write_run_results,
)
from unet_transfer.training.identity import code_version, run_key, run_settings
from unet_transfer.training.schedule import Phase, freeze_settings, resolve_phases

log = logging.getLogger("unet_transfer")


@dataclass
class RunPlan:
    """What a run is, known before anything trains."""

    layout: Blocks
    phases: list[Phase]
    source: object
    cache_folder: Path
    weights: str | None  # content digest of the pretrained checkpoint
    settings: dict
    key: str

    @property
    def trainable(self) -> tuple[int, ...]:
        return self.phases[-1].trainable


def check_settings(cfg: DictConfig) -> tuple[Blocks, list[Phase]]:
    """Every setting checkable without data or the training stack."""
    layout = Blocks.of(cfg.model)
    phases = resolve_phases(layout, **freeze_settings(cfg.freeze))
    splits.check_fold(cfg.fold, cfg.folds)
    return layout, phases


def plan_run(cfg: DictConfig) -> RunPlan:
    layout, phases = check_settings(cfg)
    source = instantiate(cfg.dataset)
    cache_folder = source.cache_folder(cfg.paths.cache_dir)  # lists the files: a missing folder fails here
    if cfg.pretrained:
        ensure_pretrained(cfg)
    weights = pretrained_digest(cfg)  # hashed once: a paper-size checkpoint is 124 MB
    settings = run_settings(cfg)
    key = run_key(settings, fold=cfg.fold, seed=cfg.seed, phases=phases, data=cache_folder.name, weights=weights)
    return RunPlan(layout, phases, source, cache_folder, weights, settings, key)


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
    plan = plan_run(cfg)
    twin = find_twin(out_dir, plan.key)
    if twin is not None:
        return reuse_twin(cfg, out_dir, twin)

    from unet_transfer.study.gpu_slots import gpu_slot, gpus_to_choose_from
    from unet_transfer.training.build import build
    from unet_transfer.training.checkpoint import save_weights

    quiet_lightning()
    with gpu_slot(gpus_to_choose_from(cfg.trainer), int(cfg.get("runs_per_gpu") or 1)) as gpu:
        built = build(cfg, source=plan.source, **({} if gpu is None else {"devices": [gpu]}))
        if built.logger:
            from omegaconf import OmegaConf

            built.logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        log.info("Run %s: %s %s trains blocks %s, fold %d/%d%s", out_dir, plan.source.name, cfg.freeze.direction,
                 list(plan.trainable), cfg.fold, cfg.folds, "" if gpu is None else f", GPU {gpu}")
        built.trainer.fit(built.module, built.datamodule)
        built.trainer.test(built.module, built.datamodule, verbose=False)

    data, module = built.datamodule.data, built.module
    per_image = [{"id": data.ids[r["row"]], **{k: v for k, v in r.items() if k != "row"}} for r in module.test_records]
    metrics = summarise(cfg, plan, per_image, built, time.perf_counter() - start)
    if cfg.save_weights:
        from omegaconf import OmegaConf

        save_weights(built.model, cfg.save_weights, OmegaConf.to_container(cfg.model, resolve=True),
                     {"dataset": plan.source.name, "epochs": metrics["epochs"], "seed": cfg.seed})
    if cfg.save_predictions:
        import torch

        rows = sorted(module.test_predictions)
        save_predictions(out_dir, [data.ids[r] for r in rows], torch.stack([module.test_predictions[r] for r in rows]).numpy())
    write_run_results(out_dir, metrics, per_image)
    if built.logger:
        built.logger.log_metrics({f"final/{name}": metrics[name] for name in METRICS})
        built.logger.finalize("success")
    log.info("Result %s: dice %.4f, pixel error %.2f%%, adjusted Rand %.4f (%d images, %.1f s)", out_dir,
             metrics["dice"], metrics["pixel_error"], metrics["adjusted_rand"], metrics["n_images"], metrics["duration_s"])
    return metrics


def summarise(cfg: DictConfig, plan: RunPlan, per_image: list[dict], built, duration: float) -> dict:
    import torch

    source, trainable = plan.source, plan.trainable
    return {
        "dataset": source.name,
        "dataset_settings": dict(getattr(source, "settings", {})),
        "direction": canonical_direction(cfg.freeze.direction),
        "freeze": cfg.freeze.direction,
        "k": len(trainable),
        "fold": cfg.fold,
        "folds": cfg.folds,
        "trainable_blocks": list(trainable),
        "n_blocks": plan.layout.n,
        **{name: statistics.fmean(r[name] for r in per_image) for name in METRICS},
        "n_images": len(per_image),
        "n_train": len(built.datamodule.train_rows),
        "epochs": built.trainer.current_epoch,
        "seed": cfg.seed,
        "split_seed": cfg.split_seed,
        "pretrained": str(cfg.pretrained) if cfg.pretrained else None,
        "pretrained_sha256": plan.weights,
        "image_size": source.image_size,
        "width": cfg.model.width,
        "batch_size": cfg.batch_size,
        "augment": cfg.augment.mode,
        "precision": str(cfg.trainer.get("precision", "32-true")),
        "threads": torch.get_num_threads(),
        "cache": str(built.datamodule.cache_folder),
        "settings": plan.settings,
        **code_version(),
        "run_key": plan.key,
        "duration_s": round(duration, 3),
    }


def pretrained_digest(cfg: DictConfig) -> str | None:
    from unet_transfer.training.checkpoint import weights_digest

    return weights_digest(cfg.pretrained) if cfg.pretrained and Path(cfg.pretrained).is_file() else None


def started_from_other_weights(cfg: DictConfig, finished: dict) -> bool:
    """A finished run whose pretrained checkpoint has since been remade (its results are stale)."""
    recorded = finished.get("pretrained_sha256")
    current = pretrained_digest(cfg)
    return recorded is not None and current is not None and recorded != current


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
    metrics = {**read_metrics(twin), "direction": canonical_direction(cfg.freeze.direction),
               "freeze": cfg.freeze.direction, "same_as": twin.name, "duration_s": 0.0}
    write_run_results(out_dir, metrics, read_per_image(twin))
    log.info("Result %s: same training as %s, results copied (dice %.4f)", out_dir, twin.name, metrics["dice"])
    return metrics


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
