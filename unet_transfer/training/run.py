"""One run: fine-tune (or pretrain) a network on one fold with one freeze setting, score the
held-out fold, write metrics.json and per_image.csv.

The cheap part comes first (`plan_run`: settings, the dataset's file list, the run's identity),
so bad input fails in a second and a finished run is skipped before the training stack loads.

A run trains unless its folder already holds its own valid result: same identity (run_key:
settings, code version, data and checkpoint digests). A result of other settings or code is
set aside (metrics.previous.json) and the run trains again; a damaged one is kept aside
(metrics.damaged.json) the same way. Runs that train the same thing within one invocation (a
study's three equivalent k=9 settings) train once and copy; a copy always names the run that
trained. One process at a time trains a run folder (a file lock): a second one waits, then
finds the result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from unet_transfer.blocks import Blocks, canonical_direction
from unet_transfer.config import process_token
from unet_transfer.errors import DivergedError, one_line_exit, user_error_in
from unet_transfer.files import file_lock
from unet_transfer.metrics import METRICS
from unet_transfer.run_files import (
    KEPT_WEIGHTS,
    read_per_image,
    save_predictions,
    set_aside,
    write_run_results,
)
from unet_transfer.training.identity import code_version, phase_record, run_key, run_settings
from unet_transfer.training.pretrain import ensure_pretrained
from unet_transfer.training.schedule import Phase
from unet_transfer.training.validate import check_settings

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


def plan_run(cfg: DictConfig) -> RunPlan:
    """Settings checked, the data listed, the checkpoint made if needed: the run's identity."""
    layout, phases = check_settings(cfg)
    source = instantiate(cfg.dataset)
    cache_folder = source.cache_folder(cfg.paths.cache_dir)  # lists the files: a missing folder fails here
    if cfg.pretrained:
        ensure_pretrained(cfg)
    weights = pretrained_digest(cfg)  # hashed once: a paper-size checkpoint is 124 MB
    settings = run_settings(cfg, data=cache_folder.name)  # the data's content is part of what a run is
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
    # Frozen blocks hold their normalisation in eval mode on purpose (networks/protocol.py).
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of training.*")


def run(cfg: DictConfig) -> dict:
    out_dir = Path(cfg.output_dir)
    plan = plan_run(cfg)
    with run_lock(out_dir):
        if cfg.resume:
            finished = own_result(out_dir, plan)
            if finished is not None:
                log.info("Skipping %s: metrics.json holds this run's result (resume=true)", out_dir)
                return finished
            twin = find_twin(out_dir, plan.key)
            if twin is not None:
                return reuse_twin(cfg, out_dir, twin)
        set_aside(out_dir, "previous")  # a crash below must not leave an old result in place
        return train(cfg, plan, out_dir)


@contextmanager
def run_lock(out_dir: Path):
    """One process trains a run folder at a time; another one waits here, then finds the result."""
    from filelock import Timeout

    lock = file_lock(out_dir / ".run.lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        log.info("%s is being trained by another process: waiting for it", out_dir)
        lock.acquire(timeout=-1)
    try:
        yield
    finally:
        lock.release()


def own_result(out_dir: Path, plan: RunPlan) -> dict | None:
    """The folder's metrics.json if it is this run's valid result; a damaged one is kept aside."""
    path = out_dir / "metrics.json"
    if not path.exists():
        return None
    try:
        finished = json.loads(path.read_text())
        if not isinstance(finished, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        kept = set_aside(out_dir, "damaged")
        log.warning("%s is damaged (%s): kept as %s; running again", path, error, kept)
        return None
    if finished.get("run_key") == plan.key:
        return finished
    log.info("Redoing %s: %s", out_dir, what_changed(finished, plan))
    return None


def what_changed(finished: dict, plan: RunPlan) -> str:
    """Why a finished run's result is not this run's, in words."""
    if "run_key" not in finished:
        return "it was made by a version that recorded no run identity"
    reasons = [code_change(finished)] if any(finished.get(key) != value for key, value in code_version().items()) else []
    if finished.get("pretrained_sha256") != plan.weights:
        reasons.append("its pretrained checkpoint has changed since it ran")
    if Path(str(finished.get("cache", ""))).name != plan.cache_folder.name:
        reasons.append("the data changed")
    before = finished.get("settings") or {}
    changed = sorted(k for k in set(before) | set(plan.settings)
                     if before.get(k) != plan.settings.get(k) and k != "data")  # said above
    if changed:
        reasons.append("settings differ: " + ", ".join(f"{k} {before.get(k)!r} -> {plan.settings.get(k)!r}"
                                                      for k in changed[:4]))
    return "; ".join(reasons) or "its result belongs to other settings"


def code_change(finished: dict) -> str:
    """'the code changed (0.1.0 -> 0.2.0)'; within one version, the code digests say what changed."""
    now = code_version()
    if finished.get("version") != now["version"]:
        return f"the code changed ({finished.get('version')} -> {now['version']})"
    return f"the code changed (code digest {finished.get('code_digest')} -> {now['code_digest']})"


def train(cfg: DictConfig, plan: RunPlan, out_dir: Path) -> dict:
    start = time.perf_counter()
    from unet_transfer.checkpoint import save_weights
    from unet_transfer.training.build import build
    from unet_transfer.training.gpu_slots import gpu_slot, gpus_to_choose_from

    quiet_lightning()
    choose_threads(cfg)
    with gpu_slot(gpus_to_choose_from(cfg.trainer), int(cfg.get("runs_per_gpu") or 1)) as gpu:
        built = build(cfg, source=plan.source, **({} if gpu is None else {"devices": [gpu]}))
        if built.logger:
            built.logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        log.info("Run %s: %s %s trains blocks %s, fold %d/%d%s", out_dir, plan.source.name, cfg.freeze.direction,
                 list(plan.trainable), cfg.fold, cfg.folds, "" if gpu is None else f", GPU {gpu}")
        fit_start = time.perf_counter()
        built.trainer.fit(built.module, built.datamodule)
        train_time = time.perf_counter() - fit_start
        validation = score_validation_split(built)
        built.trainer.test(built.module, built.datamodule, verbose=False)

    data, module = built.datamodule.data, built.module
    per_image = [{"id": data.ids[r["row"]], **{k: v for k, v in r.items() if k != "row"}} for r in module.test_records]
    metrics = metrics_of_run(cfg, plan, per_image, built, time.perf_counter() - start, train_time)
    if validation:
        metrics["validation"] = validation
    from unet_transfer.data.contract import record

    meta = {"dataset": plan.source.name, "epochs": metrics["epochs"], "seed": cfg.seed,
            **record(plan.source.image_size, module.threshold)}
    if cfg.save_weights:
        save_weights(built.model, cfg.save_weights, OmegaConf.to_container(cfg.model, resolve=True), meta)
    if keeps_weights(cfg, plan):
        save_weights(built.model, out_dir / KEPT_WEIGHTS, OmegaConf.to_container(cfg.model, resolve=True), meta)
    if cfg.save_predictions:
        import torch

        rows = sorted(module.test_predictions)
        save_predictions(out_dir, [data.ids[r] for r in rows], torch.stack([module.test_predictions[r] for r in rows]).numpy())
    metrics = write_run_results(out_dir, metrics, per_image)
    if built.logger:
        built.logger.log_metrics({f"final/{name}": metrics[name] for name in METRICS})
        built.logger.finalize("success")
    log.info("Result %s: dice %.4f, pixel error %.2f%%, adjusted Rand %.4f (%d images, %.1f s)", out_dir,
             metrics["dice"], metrics["pixel_error"], metrics["adjusted_rand"], metrics["n_images"], metrics["duration_s"])
    return metrics


def choose_threads(cfg: DictConfig) -> None:
    """A run alone on the machine computes on the cores other work leaves free (all of them on an
    idle machine), and says so; `threads=` (build sets it) or a launcher's OMP_NUM_THREADS (one
    thread per run of a parallel sweep) decide otherwise."""
    import os

    import torch

    from unet_transfer.hardware import threads_for_one_process

    if cfg.get("threads") or os.environ.get("OMP_NUM_THREADS"):
        return
    threads, why = threads_for_one_process()
    log.info("%s", why)
    torch.set_num_threads(threads)  # not the environment: the next run in this process measures again


def keeps_weights(cfg: DictConfig, plan: RunPlan) -> bool:
    """Whether this run keeps its final weights (`keep_weights`: chosen folds of chosen strategies,
    by what they train: contracting, expanding, all), not every run: 124 MB each at w=64."""
    keep = cfg.get("keep_weights") or {}
    trained = plan.trainable
    kind = "all" if set(trained) == set(plan.layout.numbers) else plan.layout.path_trained(trained)
    fine_tunes = bool(cfg.pretrained) and (cfg.trainer.max_epochs or 0) > 0  # else nothing Fig. 5 compares
    return fine_tunes and cfg.fold in (keep.get("folds") or []) and kind in (keep.get("trained") or [])


def score_validation_split(built) -> dict | None:
    """The final weights' scores on the training images kept aside (validation_split), which is
    what settings such as the learning rate are chosen on; None without such a split."""
    datamodule = built.datamodule
    if not len(datamodule.validation_rows):
        return None
    built.trainer.test(built.module, dataloaders=datamodule.validation_split_dataloader(), verbose=False)
    records = built.module.test_records
    return {**{name: statistics.fmean(r[name] for r in records) for name in METRICS}, "n_images": len(records)}


def metrics_of_run(cfg: DictConfig, plan: RunPlan, per_image: list[dict], built, duration: float,
                   train_time: float) -> dict:
    """One run's metrics.json record (report.aggregate.summarise is many runs' summary)."""
    import torch

    from unet_transfer.analysis.registry import summaries

    source, trainable, method = plan.source, plan.trainable, built.module.method
    total = sum(p.numel() for p in built.model.parameters())
    return {
        "dataset": source.name,
        "dataset_settings": dict(getattr(source, "settings", {})),
        "direction": canonical_direction(cfg.freeze.direction),
        "freeze": cfg.freeze.direction,
        "k": len(trainable),
        "fold": cfg.fold,
        "folds": cfg.folds,
        "trainable_blocks": list(trainable),
        "phases": [phase_record(p) for p in plan.phases],
        "method": method.name,
        "trainable_params": method.trainable_params,
        "trainable_share": method.trainable_params / total,
        **method.summary(),
        "network": plan.layout.network,
        "blocks": plan.layout.record(),  # names, roles, tiers: a report never infers a network's blocks
        "n_blocks": plan.layout.n,
        "depth": plan.layout.depth,
        **{name: statistics.fmean(r[name] for r in per_image) for name in METRICS},
        "n_images": len(per_image),
        "n_train": len(built.datamodule.train_rows),
        "epochs": built.trainer.current_epoch,
        "seed": cfg.seed,
        "split_seed": cfg.split_seed,
        "pretrained": str(cfg.pretrained) if cfg.pretrained else None,
        "pretrained_file": str(Path(cfg.pretrained).resolve()) if cfg.pretrained else None,
        "pretrained_sha256": plan.weights,
        "image_size": source.image_size,
        "width": cfg.model.get("width"),  # the paper's U-Net's; None for networks without one
        "batch_size": cfg.batch_size,
        "augment": cfg.augment.mode,
        "precision": built.fast["precision"],
        "fast": built.fast,
        "threads": torch.get_num_threads(),
        "cache": str(built.datamodule.cache_folder),
        "dataset_root": str(Path(source.root).absolute()) if getattr(source, "root", None) else None,  # where `data` was read
        "folds_digest": hashlib.sha256(json.dumps(sorted(built.datamodule.held_out)).encode()).hexdigest()[:16],
        "warnings": list(built.datamodule.data.warnings),
        **summaries(built.measures),  # block_change, block_cka, block_grad_norm and any registered measure
        "settings": plan.settings,
        **code_version(),
        "run_key": plan.key,
        "invocation": process_token(),
        "train_time_s": round(train_time, 3),
        "duration_s": round(duration, 3),
    }


def pretrained_digest(cfg: DictConfig) -> str | None:
    from unet_transfer.checkpoint import weights_digest

    return weights_digest(cfg.pretrained) if cfg.pretrained and Path(cfg.pretrained).is_file() else None


def readable_metrics(folder: Path) -> dict | None:
    try:
        found = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return None  # a sibling's damaged result is that run's business, not this one's
    return found if isinstance(found, dict) else None


def find_twin(out_dir: Path, key: str) -> Path | None:
    """A run of this sweep, trained by this invocation (study), that trained the same thing."""
    if not out_dir.parent.is_dir():
        return None
    for candidate in sorted(out_dir.parent.glob("*/metrics.json")):
        found = readable_metrics(candidate.parent)
        if (candidate.parent != out_dir and found and found.get("run_key") == key and "same_as" not in found
                and found.get("invocation") == process_token()):
            return candidate.parent
    return None


def reuse_twin(cfg: DictConfig, out_dir: Path, twin: Path) -> dict:
    """Copy an equivalent run's results, trained moments ago by this invocation, instead of
    training the same thing again."""
    import shutil

    out_dir.mkdir(parents=True, exist_ok=True)
    set_aside(out_dir, "previous")
    if (twin / "predictions.npz").exists():
        shutil.copyfile(twin / "predictions.npz", out_dir / "predictions.npz")
    metrics = {**readable_metrics(twin), "direction": canonical_direction(cfg.freeze.direction),
               "freeze": cfg.freeze.direction, "same_as": twin.name, "duration_s": 0.0}
    metrics = write_run_results(out_dir, metrics, read_per_image(twin))
    log.info("Result %s: same training as %s, results copied (dice %.4f)", out_dir, twin.name, metrics["dice"])
    return metrics


DIVERGED = "diverged"  # a sweep job's return value for a run that diverged (hydra_plugins sweeper.py)


def run_or_exit(cfg: DictConfig) -> float | str | None:
    """Entry point body: user errors become one clear line and exit code 2, not a traceback. A run
    that diverged in a sweep says its line and lets the sweep go on (the other runs, some already
    training beside it, are no less valid); the sweep ends with exit code 2 naming it."""
    try:
        return run(cfg)["dice"]
    except Exception as error:
        if isinstance(user_error_in(error), DivergedError) and in_sweep():
            log.error("Error: %s (%s)", user_error_in(error), cfg.output_dir)
            return DIVERGED
        raise SystemExit(one_line_exit(error, log.error)) from None


def in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
