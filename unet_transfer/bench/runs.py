"""Whole runs: the fixed cost of a run (in a sweep and cold) and the fp32 vs fast-path agreement."""

from __future__ import annotations

import statistics
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from unet_transfer.bench.common import TARGETS, Size, compose_cfg, median, size_overrides
from unet_transfer.training.commands import child_environment, train_command


def run_cfg(common: list[str], size: Size, out: Path, *extra: str):
    return compose_cfg([*common, *size_overrides(size), f"output_dir={out}", "resume=false", *extra])


def measure_fixed_cost(common: list[str], size: Size, work: Path, repeats: int, cold_repeats: int,
                       threads: int | None) -> dict:
    """The cost of a run that trains no epoch: run(cfg) in-process after a warm-up; a cold
    `unet-transfer train`; and the cost per job of a real Hydra sweep (basic launcher), from the wall
    times of a 1-job and a 4-job sweep of such runs (Hydra's per-job work included)."""
    from unet_transfer.training.run import run

    in_sweep = []
    for i in range(repeats + 1):  # the first one warms up (imports, first-call costs)
        cfg = run_cfg(common, size, work / "fixed" / str(i) / "run", "trainer.max_epochs=0")
        start = time.perf_counter()
        run(cfg)
        if i:
            in_sweep.append(time.perf_counter() - start)
    env = child_environment()
    env.pop("UNET_TRANSFER_RUN_TOKEN", None)

    def wall(*overrides: str, multirun: bool = False) -> float:
        command = train_command([*common, *size_overrides(size), "trainer.max_epochs=0", "resume=false", *overrides],
                                multirun=multirun)
        start = time.perf_counter()
        result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"failed: {' '.join(command)}\n{result.stderr[-2000:]}")
        return time.perf_counter() - start

    cold = [wall(f"hydra.run.dir={work / 'cold' / str(i)}") for i in range(cold_repeats)]
    one = wall("study=sweep1", "freeze=shallow_to_deep", "k=1", "fold=0", "hydra/launcher=basic", multirun=True)
    four = wall("study=sweep4", "freeze=shallow_to_deep", "k=1,2", "fold=0,1", "hydra/launcher=basic", multirun=True)
    return {"in_sweep_s": median(in_sweep), "in_sweep_samples_s": in_sweep, "cold_start_s": median(cold),
            "cold_start_samples_s": cold, "sweep_1_job_s": one, "sweep_4_jobs_s": four,
            "sweep_job_s": (four - one) / 3, "threads": threads,
            "what": "a run with trainer.max_epochs=0 (data from cache, folds, model, pretrained weights, Trainer, "
                    "held-out scoring, results): run(cfg) in-process after a warm-up; cold `python train.py`; "
                    "sweep_job_s = (wall of a 4-job sweep - wall of a 1-job sweep) / 3"}


def stand_in_checkpoint(common: list[str], size: Size, work: Path) -> None:
    """Untrained weights at the demo's `pretrained` path, when missing (--quick only)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from unet_transfer.checkpoint import save_weights

    cfg = run_cfg(common, size, work / "stand_in")
    if not Path(cfg.pretrained).exists():
        model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
        save_weights(instantiate(cfg.model), cfg.pretrained, {k: v for k, v in model_cfg.items() if k != "_target_"})


@contextmanager
def timed(into: dict, name: str):
    start = time.perf_counter()
    yield
    into[name] = time.perf_counter() - start


def measure_agreement(common: list[str], size: Size, work: Path, epochs: int) -> dict:
    """The same short fine-tunings (same seed, every fold) in fp32 NCHW and in the fast path:
    held-out Dice averaged over the folds. The same in fp32 NCHW with another seed gives the
    scale of run-to-run variation the difference should be judged against."""
    from unet_transfer.training.run import run

    plain = ["fast.channels_last=false", "fast.compile=false", "trainer.precision=32-true"]
    base = [f"trainer.max_epochs={epochs}", "logger=none", "save_predictions=false"]
    folds = int(run_cfg(common, size, work).folds)
    variants = {"fp32_nchw": plain, "fast": [], "fp32_nchw_other_seed": [*plain, "seed=1"]}
    dice: dict[str, list[float]] = {name: [] for name in variants}
    fast: dict = {}
    for fold in range(folds):
        for name, extra in variants.items():
            out = work / "agree" / f"{name}_{fold}" / "run"
            metrics = run(run_cfg(common, size, out, *base, *extra, f"fold={fold}"))
            dice[name].append(metrics["dice"])
            fast = metrics["fast"] if name == "fast" else fast
    fast_cfg = run_cfg(common, size, work)
    mean = {name: statistics.fmean(values) for name, values in dice.items()}
    difference = mean["fast"] - mean["fp32_nchw"]
    return {"dice_fp32_nchw": mean["fp32_nchw"], "dice_fast": mean["fast"], "difference": difference,
            "dice_fp32_nchw_other_seed": mean["fp32_nchw_other_seed"],
            "seed_difference": mean["fp32_nchw_other_seed"] - mean["fp32_nchw"], "per_fold": dice,
            "tolerance": TARGETS["dice_tolerance"], "within_tolerance": abs(difference) <= TARGETS["dice_tolerance"],
            "epochs": epochs, "folds": folds, "fast_precision": fast.get("precision"),
            "fast_channels_last": fast.get("channels_last"),
            "pretrained": str(fast_cfg.pretrained) if fast_cfg.pretrained else None}
