"""Speed and memory benchmark of the training stack on this machine (make bench).

    python -m unet_transfer.bench [--out bench.json] [--quick] [--threads N]

On whatever device is present (CUDA if available, else the CPU) it measures, and writes to
bench.json plus a readable table on stdout:

- training throughput of the real path (Lightning Trainer + SegmentationModule +
  SegmentationDataModule reading the cache, default fast settings) against a bare fp32 NCHW
  PyTorch loop with torch's default Adam (speedup), against a bare loop with the same precision,
  layout and optimiser fed by the same DataLoader (framework overhead), and against that loop on
  one fixed in-memory batch (what loading adds), at the paper's size and at the demo's size;
- step/epoch time, FLOPs and memory when only the deepest or only the shallowest block trains,
  against all blocks (the freezing of the real path: FreezeSchedule -> UNet.set_frozen_blocks);
- data loading throughput (the real train_dataloader, on-line augmentation);
- the fixed cost of one run of a sweep (in-process, as a Hydra sweep job pays it) and of a cold
  `python train.py` start;
- achieved FLOP/s (torch.utils.flop_counter) and, on a GPU of known peak, the fraction of it;
- the wall time of the demo study and of the full paper study on this device, estimated from
  the measured rates;
- a short fp32-NCHW vs fast-path agreement check (held-out Dice of the same training).

Variants are measured in alternating rounds (the bare loops run between the real path's
epochs, in a rotating order) after a warm-up round, and medians are reported, so the ratios hold
even when other work shares the machine. `--quick` shrinks everything to about a minute.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

from unet_transfer.config import CONF_DIR, fast_precision, native_bf16, register_resolvers

ROOT = Path(CONF_DIR).parent

# Dense bf16 tensor peak (TFLOP/s) by device-name fragment; the first match wins.
BF16_PEAK_TFLOPS = (
    ("H100 PCIE", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("B200", 2250.0),
    ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10", 125.0), ("RTX 4090", 165.0),
)
TARGETS = {"speedup": 2.5, "overhead": 0.05, "deep_to_shallow_k1": 0.5, "shallow_to_deep_k1": 0.8,
           "data_ratio": 5.0, "in_sweep_s": 3.0, "dice_tolerance": 0.05}
FREEZE_VARIANTS = {"none": ("none", None), "deep_to_shallow_k1": ("deep_to_shallow", 1),
                   "shallow_to_deep_k1": ("shallow_to_deep", 1)}
# The paper's study (DESIGN section 1): 5 folds, 9 k in 2 directions (deep_to_shallow k=9 is the
# same training as shallow_to_deep k=9 and is copied), plus trained-from-scratch and
# pretrained-only reference rows; two modalities; pretraining on 9,000 of 10,000 natural images.
PAPER = {"datasets": {"ultrasound": 163, "xray": 240}, "pretrain_images": 10_000}


@dataclass(frozen=True)
class Size:
    width: int
    image_size: int
    batch_size: int
    n_images: int
    folds: int


@dataclass(frozen=True)
class Plan:
    steps: int       # training steps per round and variant (the real path's limit_train_batches)
    rounds: int      # timed rounds at most, after one warm-up round
    warmup: int      # warm-up steps per bare variant
    budget_s: float  # no new round starts after this (at least one timed round runs)


def sizes(quick: bool) -> dict[str, Size]:
    if quick:
        return {"paper": Size(8, 128, 4, 10, 5), "demo": Size(4, 32, 4, 20, 3)}
    return {"paper": Size(64, 256, 4, 10, 5), "demo": Size(8, 64, 4, 60, 3)}


def plans(quick: bool, cuda: bool) -> dict[str, Plan]:
    if quick:
        return {"paper": Plan(1, 1, 1, 30), "demo": Plan(3, 2, 1, 30)}
    if cuda:
        return {"paper": Plan(10, 5, 3, 120), "demo": Plan(10, 15, 3, 120)}
    return {"paper": Plan(2, 5, 1, 240), "demo": Plan(10, 15, 2, 90)}


def median(values) -> float:
    return float(statistics.median(values))


def compose_cfg(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def size_overrides(size: Size) -> list[str]:
    return [f"model.width={size.width}", f"dataset.image_size={size.image_size}", f"batch_size={size.batch_size}",
            f"dataset.n_images={size.n_images}", f"folds={size.folds}"]


def bf16_peak(device_name: str) -> float | None:
    """Dense bf16 peak in FLOP/s of a known GPU, else None."""
    name = device_name.upper()
    return next((tflops * 1e12 for fragment, tflops in BF16_PEAK_TFLOPS if fragment in name), None)


def autocast_dtype(precision: str):
    """The autocast dtype Lightning uses for a Trainer precision, None for full precision."""
    import torch

    precision = str(precision)
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return None


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- FLOPs (counted on the meta device: no memory, no compute) -------------------------------

def count_flops(model_cfg, image_size: int, batch: int, trainable=None, train: bool = True) -> int:
    """FLOPs of one training step (forward + backward) or one forward, with these blocks trainable."""
    import torch
    import torch.nn.functional as F
    from hydra.utils import instantiate
    from torch.utils.flop_counter import FlopCounterMode

    from unet_transfer.freeze import FreezeSchedule

    with torch.device("meta"):
        model = instantiate(model_cfg)
    if trainable is not None:
        FreezeSchedule.apply(model, trainable)
    shape = (batch, int(model_cfg.get("in_channels", 1)), image_size, image_size)
    images, masks = torch.empty(shape, device="meta"), torch.empty((batch, 1, image_size, image_size), device="meta")
    with FlopCounterMode(display=False) as counter:
        if train:
            F.binary_cross_entropy_with_logits(model(images), masks).backward()
        else:
            with torch.no_grad():
                model(images)
    return int(counter.get_total_flops())


def trainable_of(direction: str, k: int | None, n_blocks: int = 9) -> tuple[int, ...]:
    from unet_transfer.schedule import trainable_blocks

    return trainable_blocks(direction, k, n_blocks=n_blocks)


# --- memory ---------------------------------------------------------------------------------

@contextmanager
def saved_tensor_bytes(parameters):
    """Bytes autograd saves for the backward pass (activations), counted once per storage and
    without the parameters themselves; yields a dict storage -> bytes to sum afterwards."""
    import torch

    own = {p.untyped_storage().data_ptr() for p in parameters}
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in own:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield seen


# --- the measured variants ------------------------------------------------------------------

class BareLoop:
    """A plain PyTorch training loop over one fixed batch: Adam, BCE on logits, no framework.
    `optimizer` completes the parameters (the real path's optimiser config for the same-settings
    loops); without it, torch's default Adam (the plain baseline)."""

    def __init__(self, model, device, *, lr: float, channels_last: bool, precision: str,
                 trainable=None, compile: bool = False, optimizer=None, loader=None):
        import torch

        from unet_transfer.freeze import FreezeSchedule

        if trainable is not None:
            FreezeSchedule.apply(model, trainable)  # the real path's freezing: UNet.set_frozen_blocks
        self.model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self.model.train()
        self.network = torch.compile(self.model) if compile else self.model
        factory = optimizer or (lambda params: torch.optim.Adam(params, lr=lr))
        self.optimizer = factory([p for p in self.model.parameters() if p.requires_grad])
        self.device, self.channels_last, self.dtype = device, channels_last, autocast_dtype(precision)
        self.loader = loader  # a DataLoader: time steps on its batches, not on the fixed one
        self.times: list[float] = []
        self.saved_bytes: int | None = None
        self.cuda_peak_bytes: int | None = None

    def inputs(self, images, masks):
        import torch

        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, masks

    def step(self, images, masks, probe: bool = False) -> None:
        import torch
        import torch.nn.functional as F

        self.optimizer.zero_grad(set_to_none=True)
        autocast = torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else nullcontext()
        with torch.enable_grad(), autocast:
            if probe:
                with saved_tensor_bytes(self.model.parameters()) as seen:
                    logits = self.network(images)
                self.saved_bytes = sum(seen.values())
            else:
                logits = self.network(images)
            loss = F.binary_cross_entropy_with_logits(logits.float(), masks)
        loss.backward()
        self.optimizer.step()

    def warm_up(self, images, masks, steps: int) -> None:
        images, masks = self.inputs(images, masks)
        for i in range(steps):
            self.step(images, masks, probe=i == 0)
        synchronize(self.device)

    def timed(self, images, masks, steps: int) -> None:
        import torch

        if self.loader is not None:
            return self.timed_from_loader(steps)
        images, masks = self.inputs(images, masks)
        cuda = self.device.type == "cuda"
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            if cuda:  # host-side bookkeeping only: no synchronisation, no effect on the timing
                torch.cuda.reset_peak_memory_stats(self.device)
                before = torch.cuda.memory_allocated(self.device)
            self.step(images, masks)
            if cuda:
                peak = torch.cuda.max_memory_allocated(self.device) - before
                self.cuda_peak_bytes = max(self.cuda_peak_bytes or 0, peak)
        synchronize(self.device)
        self.times.append((time.perf_counter() - start) / steps)

    def timed_from_loader(self, steps: int) -> None:
        """Like an epoch of the real path: a fresh iterator over the real DataLoader, each batch
        moved to the device and laid out as the real path does, then one step."""
        synchronize(self.device)
        start, done = time.perf_counter(), 0
        while done < steps:
            for images, masks, _ in self.loader:
                images = images.to(self.device, non_blocking=True)
                self.step(*self.inputs(images, masks.to(self.device, non_blocking=True)))
                done += 1
                if done == steps:
                    break
        synchronize(self.device)
        self.times.append((time.perf_counter() - start) / steps)


class LoaderPass:
    """Iterates the real train_dataloader (augmentation on line) for at least `minimum` images."""

    def __init__(self, datamodule, minimum: int):
        # One DataLoader, iterated anew each round, as the Trainer does (persistent workers stay up).
        self.loader, self.minimum = datamodule.train_dataloader(), minimum
        self.rates: list[float] = []

    def run(self, timed: bool) -> None:
        count, start = 0, time.perf_counter()
        while count < self.minimum:
            for images, _, _ in self.loader:
                count += len(images)
        if timed:
            self.rates.append(count / (time.perf_counter() - start))


def rounds_callback(variants: dict, loader: LoaderPass, batch, plan: Plan, device):
    """Times the real path's epochs and runs one round of the other variants after each."""
    import pytorch_lightning as pl

    class Rounds(pl.Callback):
        def __init__(self):
            self.epoch_times: list[float] = []
            self.epoch_images: list[int] = []
            self._start, self._images = 0.0, 0
            self._deadline = time.perf_counter() + plan.budget_s

        def on_train_epoch_start(self, trainer, pl_module):
            synchronize(device)
            self._images, self._start = 0, time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch_, batch_idx):
            self._images += len(batch_[0])

        def on_train_epoch_end(self, trainer, pl_module):
            synchronize(device)
            self.epoch_times.append(time.perf_counter() - self._start)
            self.epoch_images.append(self._images)
            epoch = trainer.current_epoch
            names = list(variants) + ["data"]
            shift = epoch % len(names)  # rotate the order: no variant always runs first
            for name in names[shift:] + names[:shift]:
                if name == "data":
                    loader.run(timed=epoch > 0)
                elif epoch == 0:
                    variants[name].warm_up(*batch, plan.warmup)
                else:
                    variants[name].timed(*batch, plan.steps)
            if epoch > 0:
                per_step = self.epoch_times[-1] / max(1, math.ceil(self._images / len(batch[0])))
                print(f"  round {epoch}/{plan.rounds}: real path {per_step:.3f} s/step, "
                      + ", ".join(f"{n} {v.times[-1]:.3f}" for n, v in variants.items()), flush=True)
                if time.perf_counter() > self._deadline and epoch < plan.rounds:
                    print(f"  time budget of {plan.budget_s:.0f} s spent: {epoch} timed rounds", flush=True)
                    trainer.should_stop = True

    return Rounds()


def measure_size(label: str, size: Size, plan: Plan, common: list[str], work: Path) -> dict:
    """Throughput, freezing and data loading at one size, all variants in alternating rounds."""
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from unet_transfer.data.datamodule import SegmentationDataModule
    from unet_transfer.freeze import FreezeSchedule
    from unet_transfer.module import SegmentationModule
    from unet_transfer.run import freeze_settings, prepare

    cfg = compose_cfg([*common, *size_overrides(size), "pretrained=null", "logger=none",
                       f"output_dir={work / label}"])
    _, data, cache_folder, held_out, _ = prepare(cfg)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = str(cfg.trainer.precision)
    pl.seed_everything(cfg.seed, verbose=False)
    model = instantiate(cfg.model)
    template = copy.deepcopy(model)
    # The real path, built as run.py builds it.
    module = SegmentationModule(model, instantiate(cfg.optimizer), channels_last=cfg.fast.channels_last,
                                compile=cfg.fast.compile)
    datamodule = SegmentationDataModule(
        data, held_out, batch_size=cfg.batch_size, augment=OmegaConf.to_container(cfg.augment, resolve=True),
        seed=cfg.seed, offline_cache=cache_folder, **cfg.loader)
    rows = datamodule.train_rows[: size.batch_size]
    images = torch.from_numpy(data.images[rows]).unsqueeze(1).float().div_(255.0).to(device)
    masks = torch.from_numpy(data.masks[rows]).unsqueeze(1).float().to(device)
    lr = float(cfg.optimizer.lr)
    variants = {"bare_fp32_nchw": BareLoop(copy.deepcopy(template), device, lr=lr, channels_last=False,
                                           precision="32-true")}
    for name, (direction, k) in FREEZE_VARIANTS.items():
        variants[name] = BareLoop(copy.deepcopy(template), device, lr=lr, channels_last=cfg.fast.channels_last,
                                  precision=precision, compile=cfg.fast.compile, optimizer=instantiate(cfg.optimizer),
                                  trainable=trainable_of(direction, k, template.n_blocks))
    variants["bare_same_loader"] = BareLoop(
        copy.deepcopy(template), device, lr=lr, channels_last=cfg.fast.channels_last, precision=precision,
        compile=cfg.fast.compile, optimizer=instantiate(cfg.optimizer), loader=datamodule.train_dataloader())
    loader = LoaderPass(datamodule, minimum=max(64, 4 * size.batch_size))
    rounds = rounds_callback(variants, loader, (images, masks), plan, device)
    trainer = instantiate(cfg.trainer, callbacks=[FreezeSchedule(**freeze_settings(cfg)), rounds], logger=False,
                          enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                          max_epochs=plan.rounds + 1, limit_train_batches=plan.steps, limit_val_batches=0,
                          num_sanity_val_steps=0, default_root_dir=str(work / label))
    trainer.fit(module, datamodule)

    plan_done = {**asdict(plan), "rounds_done": len(rounds.epoch_times) - 1}
    per_image_real = median(t / n for t, n in zip(rounds.epoch_times[1:], rounds.epoch_images[1:], strict=True))
    steps_real = [t / math.ceil(n / size.batch_size) for t, n in zip(rounds.epoch_times[1:], rounds.epoch_images[1:],
                                                                        strict=True)]
    step = {name: median(v.times) for name, v in variants.items()}
    rate = {"real": 1.0 / per_image_real, **{name: size.batch_size / s for name, s in step.items()}}
    flops = {name: count_flops(cfg.model, size.image_size, size.batch_size,
                               trainable_of(direction, k, template.n_blocks))
             for name, (direction, k) in FREEZE_VARIANTS.items()}
    forward_flops = count_flops(cfg.model, size.image_size, size.batch_size, train=False)
    flops_per_image = flops["none"] / size.batch_size
    peak = bf16_peak(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    achieved = {"real": flops_per_image * rate["real"], "bare_fp32_nchw": flops_per_image * rate["bare_fp32_nchw"]}
    n_train = len(datamodule.train_rows)
    throughput = {
        "size": asdict(size), "plan": plan_done, "precision": precision,
        "channels_last": bool(cfg.fast.channels_last), "compile": bool(cfg.fast.compile),
        "images_per_s": {"real": rate["real"], "bare_fp32_nchw": rate["bare_fp32_nchw"], "bare_same": rate["none"],
                         "bare_same_loader": rate["bare_same_loader"]},
        "step_s": {"real": median(steps_real), "bare_fp32_nchw": step["bare_fp32_nchw"], "bare_same": step["none"],
                   "bare_same_loader": step["bare_same_loader"]},
        "speedup": rate["real"] / rate["bare_fp32_nchw"],
        # Lightning + the module over the same loop fed by the same DataLoader (the target), and
        # over the same loop on one fixed in-memory batch (what data loading adds on top).
        "overhead": rate["bare_same_loader"] / rate["real"] - 1.0,
        "overhead_vs_fixed_batch": rate["none"] / rate["real"] - 1.0,
        "flops_per_step": flops["none"], "forward_flops_per_step": forward_flops,
        "achieved_flops_per_s": achieved,
        "bf16_peak_flops_per_s": peak,
        "fraction_of_bf16_peak": None if peak is None else achieved["real"] / peak,
    }
    memory_kind = "cuda max_memory_allocated per step" if device.type == "cuda" else None
    freeze = {"memory": "autograd saved-tensor bytes of one forward (activations kept for backward)"
                        + (f"; and {memory_kind} above the memory held before it" if memory_kind else ""),
              "epoch_images": n_train, "settings": {}}
    for name, (direction, k) in FREEZE_VARIANTS.items():
        v = variants[name]
        freeze["settings"][name] = {
            "direction": direction, "k": k, "trainable_blocks": list(trainable_of(direction, k, template.n_blocks)),
            "step_s": step[name], "epoch_s": step[name] * math.ceil(n_train / size.batch_size),
            "time_ratio": step[name] / step["none"],
            "flops_per_step": flops[name], "flop_ratio": flops[name] / flops["none"],
            "saved_tensor_bytes": v.saved_bytes,
            "saved_tensor_ratio": v.saved_bytes / variants["none"].saved_bytes,
            "cuda_peak_bytes": v.cuda_peak_bytes,
        }
    loading = {"images_per_s": median(loader.rates), "train_images_per_s": rate["real"],
               "ratio": median(loader.rates) / rate["real"], "augment": str(cfg.augment.mode),
               "num_workers": int(cfg.loader.num_workers)}
    return {"throughput": throughput, "freeze": freeze, "data": loading}


# --- fixed cost of a run, agreement ---------------------------------------------------------

def run_cfg(common: list[str], size: Size, out: Path, *extra: str):
    return compose_cfg([*common, *size_overrides(size), f"output_dir={out}", "resume=false", *extra])


def measure_fixed_cost(common: list[str], size: Size, work: Path, repeats: int, cold_repeats: int,
                       threads: int | None) -> dict:
    """The cost of a run that trains no epoch: run(cfg) in-process after a warm-up; a cold
    `python train.py`; and the cost per job of a real Hydra sweep (basic launcher), from the wall
    times of a 1-job and a 4-job sweep of such runs (Hydra's per-job work included)."""
    from unet_transfer.run import run

    in_sweep = []
    for i in range(repeats + 1):  # the first one warms up (imports, first-call costs)
        cfg = run_cfg(common, size, work / "fixed" / str(i) / "run", "trainer.max_epochs=0")
        start = time.perf_counter()
        run(cfg)
        if i:
            in_sweep.append(time.perf_counter() - start)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("UNET_TRANSFER_RUN_TOKEN", None)

    def wall(*overrides: str, multirun: bool = False) -> float:
        command = [sys.executable, str(ROOT / "train.py"), *(["-m"] if multirun else []), *common,
                   *size_overrides(size), "trainer.max_epochs=0", "resume=false", *overrides]
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
    from unet_transfer.run import run

    plain = ["fast.channels_last=false", "fast.compile=false", "trainer.precision=32-true"]
    base = [f"trainer.max_epochs={epochs}", "logger=none", "save_predictions=false"]
    folds = int(run_cfg(common, size, work).folds)
    variants = {"fp32_nchw": plain, "fast": [], "fp32_nchw_other_seed": [*plain, "seed=1"]}
    dice: dict[str, list[float]] = {name: [] for name in variants}
    for fold in range(folds):
        for name, extra in variants.items():
            out = work / "agree" / f"{name}_{fold}" / "run"
            dice[name].append(run(run_cfg(common, size, out, *base, *extra, f"fold={fold}"))["dice"])
    fast_cfg = run_cfg(common, size, work)
    mean = {name: statistics.fmean(values) for name, values in dice.items()}
    difference = mean["fast"] - mean["fp32_nchw"]
    return {"dice_fp32_nchw": mean["fp32_nchw"], "dice_fast": mean["fast"], "difference": difference,
            "dice_fp32_nchw_other_seed": mean["fp32_nchw_other_seed"],
            "seed_difference": mean["fp32_nchw_other_seed"] - mean["fp32_nchw"], "per_fold": dice,
            "tolerance": TARGETS["dice_tolerance"], "within_tolerance": abs(difference) <= TARGETS["dice_tolerance"],
            "epochs": epochs, "folds": folds, "fast_precision": str(fast_cfg.trainer.precision),
            "fast_channels_last": bool(fast_cfg.fast.channels_last),
            "pretrained": str(fast_cfg.pretrained) if fast_cfg.pretrained else None}


# --- study estimates ------------------------------------------------------------------------

def interpolate(points: list[tuple[float, float]], x: float) -> float:
    """Piecewise-linear through `points` (sorted by x), held constant outside them."""
    points = sorted(points)
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1
    return points[-1][1]


def study_settings(n_blocks: int = 9) -> list[tuple[str, int | None]]:
    """Trainings of one fold: both directions k = 1..9 (deep_to_shallow k=9 = shallow_to_deep k=9,
    copied, not trained) and the from-scratch reference (all blocks)."""
    return ([("shallow_to_deep", k) for k in range(1, n_blocks + 1)]
            + [("deep_to_shallow", k) for k in range(1, n_blocks)] + [("none", None)])


def study_hours(*, seconds_per_image: float, flop_ratio: dict, time_of_flop_ratio, forward_fraction: float,
                folds: int, epochs: int, train_images: int, held_out: int, runs_per_fold: int,
                fixed_s: float, cold_s: float, sweeps: int, augment_s: float) -> dict:
    trainings = study_settings()
    train = folds * epochs * train_images * seconds_per_image * sum(
        time_of_flop_ratio(flop_ratio[s]) for s in trainings)
    # every run but the copied twin scores its held-out fold (the pretrained-only row too)
    evaluate = folds * (runs_per_fold - 1) * held_out * seconds_per_image * forward_fraction
    fixed = folds * runs_per_fold * fixed_s + sweeps * cold_s
    total = train + evaluate + fixed + augment_s
    return {"hours": total / 3600, "train_h": train / 3600, "evaluate_h": evaluate / 3600,
            "fixed_h": fixed / 3600, "runs": folds * runs_per_fold, "trainings": folds * len(trainings)}


def pretrain_hours(*, seconds_per_image: float, forward_fraction: float, epochs: int, images: int, folds: int,
                   cold_s: float) -> float:
    validation = images // folds
    return (epochs * ((images - validation) * seconds_per_image
                      + validation * seconds_per_image * forward_fraction) + cold_s) / 3600


def estimates(results: dict) -> dict:
    """Wall time of the demo study and of the paper's study on this device, from measured rates.

    Training time per image = the real path's measured time (all blocks) x the freeze setting's
    time ratio, interpolated from the measured ratios over the settings' FLOP ratios; scaled by
    FLOPs from the measured size to the study's size (a factor 1 in the full bench)."""
    from omegaconf import OmegaConf

    from unet_transfer.run import model_blocks

    costs = results["fixed_cost"]
    fixed, cold = max(costs["in_sweep_s"], costs["sweep_job_s"]), costs["cold_start_s"]
    out = {}
    for label, experiment, pretrain in (("demo", "demo", "demo_pretrain"), ("paper", "paper_busi", "pretrain_natural")):
        measured = results["throughput"][label]
        study_cfg = compose_cfg([f"experiment={experiment}", "output_dir=."])
        pretrain_cfg = compose_cfg([f"experiment={pretrain}", "output_dir=."])
        image_size, batch = int(study_cfg.dataset.image_size), measured["size"]["batch_size"]
        full = count_flops(study_cfg.model, image_size, batch)
        scale = full / measured["flops_per_step"]
        seconds_per_image = scale / measured["images_per_s"]["real"]
        forward_fraction = count_flops(study_cfg.model, image_size, batch, train=False) / full
        points = [(s["flop_ratio"], s["time_ratio"]) for s in results["freeze"][label]["settings"].values()]
        n_blocks = model_blocks(study_cfg)
        flop_ratio = {(d, k): count_flops(study_cfg.model, image_size, batch, trainable_of(d, k, n_blocks)) / full
                      for d, k in study_settings(n_blocks)}
        folds, epochs = int(study_cfg.folds), int(study_cfg.trainer.max_epochs)
        common = {"seconds_per_image": seconds_per_image, "flop_ratio": flop_ratio, "forward_fraction": forward_fraction,
                  "time_of_flop_ratio": lambda r, points=points: interpolate(points, r), "folds": folds,
                  "epochs": epochs, "runs_per_fold": 2 * n_blocks + len(study_cfg.study_sweeps), "fixed_s": fixed,
                  "cold_s": cold, "sweeps": 1 + len(study_cfg.study_sweeps)}
        data_rate = results["data"][label]["images_per_s"] * scale
        if label == "demo":
            n = int(study_cfg.dataset.n_images)
            study = study_hours(**common, train_images=n - n // folds, held_out=n // folds, augment_s=0.0)
            pre = pretrain_hours(seconds_per_image=seconds_per_image, forward_fraction=forward_fraction,
                                 epochs=int(pretrain_cfg.trainer.max_epochs), images=int(pretrain_cfg.dataset.n_images),
                                 folds=int(pretrain_cfg.folds), cold_s=cold)
            out[label] = {"study_h": study["hours"], "pretraining_h": pre, "total_h": study["hours"] + pre,
                          "detail": study}
        else:
            total_images = int(study_cfg.augment.total)
            per_dataset = {name: study_hours(**common, train_images=total_images, held_out=n // folds,
                                             augment_s=folds * total_images / data_rate)
                           for name, n in PAPER["datasets"].items()}
            pre = pretrain_hours(seconds_per_image=seconds_per_image, forward_fraction=forward_fraction,
                                 epochs=int(pretrain_cfg.trainer.max_epochs), images=PAPER["pretrain_images"],
                                 folds=int(pretrain_cfg.folds), cold_s=cold)
            out[label] = {"pretraining_h": pre, **{f"{name}_h": d["hours"] for name, d in per_dataset.items()},
                          "total_h": pre + sum(d["hours"] for d in per_dataset.values()), "detail": per_dataset}
        out[label].update({
            "flop_scale_from_measured": scale, "seconds_per_image_all_blocks": seconds_per_image,
            "settings_time_ratio": {f"{d}_k{k}" if k else "scratch": interpolate(points, r)
                                    for (d, k), r in flop_ratio.items()},
            "config": {"experiment": experiment, "pretrain": pretrain, "folds": folds, "epochs": epochs,
                       "model": OmegaConf.to_container(study_cfg.model, resolve=True), "image_size": image_size,
                       "batch_size_measured": batch, "batch_size_configured": int(study_cfg.batch_size)},
        })
    return out


# --- report ---------------------------------------------------------------------------------

def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_flops(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} FLOP/s"


def check(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return f"{'meets' if ok else 'misses'} {'>=' if higher_is_better else '<='} {target:g}"


def table(results: dict) -> str:
    device = results["device"]
    load = device.get("load_average_start")
    lines = [f"# unet-transfer bench on {device['name']} ({device['type']}, {device['threads']} threads, "
             f"precision {device['precision']}, channels_last {device['channels_last']}, "
             f"native bf16 {device['native_bf16']}){' [QUICK]' if results['quick'] else ''}", ""]
    if device.get("busy"):
        lines += [f"Other work was running (load {load[0]:.1f} on {device['cpu_count']} cores): absolute timings "
                  "are pessimistic; ratios come from alternating rounds.", ""]
    lines += ["## Training throughput (images/s; medians of alternating rounds)", "",
              "| size | real path | bare fp32 NCHW | bare, same settings, real DataLoader | bare, same settings, "
              "fixed batch | speedup vs fp32 | framework overhead (vs same loop, same loader) | overhead vs fixed batch "
              "| achieved FLOP/s | of bf16 peak |", "|---|---|---|---|---|---|---|---|---|---|"]
    for label, t in results["throughput"].items():
        s, r = t["size"], t["images_per_s"]
        peak = "-" if t["fraction_of_bf16_peak"] is None else f"{100 * t['fraction_of_bf16_peak']:.1f}%"
        lines.append(f"| {label} (w{s['width']}, {s['image_size']}px, batch {s['batch_size']}) | {r['real']:.2f} | "
                     f"{r['bare_fp32_nchw']:.2f} | {r['bare_same_loader']:.2f} | {r['bare_same']:.2f} | "
                     f"{t['speedup']:.2f}x ({check(t['speedup'], TARGETS['speedup'], True)}) | "
                     f"{100 * t['overhead']:+.1f}% ({check(t['overhead'], TARGETS['overhead'], False)}) | "
                     f"{100 * t['overhead_vs_fixed_batch']:+.1f}% | "
                     f"{fmt_flops(t['achieved_flops_per_s']['real'])} | {peak} |")
    lines += ["", "## Freezing: step/epoch time and memory vs all blocks trained", "",
              "| size | setting | trained blocks | step s | epoch s | time ratio | FLOP ratio | "
              "saved activations | memory ratio | CUDA peak/step |", "|---|---|---|---|---|---|---|---|---|---|"]
    for label, f in results["freeze"].items():
        for name, s in f["settings"].items():
            target = TARGETS.get(name)
            ratio = f"{s['time_ratio']:.2f}" + (f" ({check(s['time_ratio'], target, False)})" if target else "")
            lines.append(f"| {label} | {name} | {s['trainable_blocks']} | {s['step_s']:.3f} | {s['epoch_s']:.2f} | "
                         f"{ratio} | {s['flop_ratio']:.2f} | {fmt_bytes(s['saved_tensor_bytes'])} | "
                         f"{s['saved_tensor_ratio']:.2f} | {fmt_bytes(s['cuda_peak_bytes'])} |")
    first = next(iter(results["freeze"].values()))
    lines += ["", f"Epoch = the size's training fold ({first['epoch_images']} images at the first size) at the "
                  "measured step time. Memory: " + first["memory"] + ".", ""]
    lines += ["## Data loading (real train_dataloader, on-line augmentation, in the training process)", "",
              "| size | loader images/s | training images/s | ratio |", "|---|---|---|---|"]
    for label, d in results["data"].items():
        lines.append(f"| {label} | {d['images_per_s']:.0f} | {d['train_images_per_s']:.2f} | {d['ratio']:.0f}x "
                     f"({check(d['ratio'], TARGETS['data_ratio'], True)}) |")
    fc = results["fixed_cost"]
    lines += ["", "## Fixed cost of one run", "",
              f"- in a sweep (run(cfg), max_epochs=0, in-process after a warm-up): {fc['in_sweep_s']:.2f} s "
              f"({check(fc['in_sweep_s'], TARGETS['in_sweep_s'], False)} s)",
              f"- per job of a real sweep (basic launcher, Hydra's work included): {fc['sweep_job_s']:.2f} s",
              f"- cold `python train.py ... trainer.max_epochs=0`: {fc['cold_start_s']:.2f} s", ""]
    a = results["agreement"]
    lines += ["## fp32 NCHW vs fast path (same seed, held-out Dice, mean over folds)", "",
              f"- {a['epochs']} epochs from {a['pretrained'] or 'scratch'}, {a['folds']} folds: fp32 NCHW "
              f"{a['dice_fp32_nchw']:.4f}, fast ({a['fast_precision']}, channels_last {a['fast_channels_last']}) "
              f"{a['dice_fast']:.4f}: difference {a['difference']:+.4f} ({'within' if a['within_tolerance'] else 'OUTSIDE'} "
              f"+-{a['tolerance']}); for scale, fp32 NCHW with another seed differs by {a['seed_difference']:+.4f}", ""]
    e = results["estimate"]
    paper = e["paper"]
    lines += ["## Estimated wall time on this device (from the measured rates)", "",
              f"- demo study (`make demo`): {60 * e['demo']['total_h']:.1f} min "
              f"(pretraining {60 * e['demo']['pretraining_h']:.1f} min, {e['demo']['detail']['runs']} runs "
              f"{60 * e['demo']['study_h']:.1f} min)",
              f"- paper study: {paper['total_h']:.1f} h = pretraining {paper['pretraining_h']:.1f} h + "
              + " + ".join(f"{name} {paper[f'{name}_h']:.1f} h" for name in PAPER["datasets"])
              + f" (each: {paper['detail']['ultrasound']['runs']} runs, "
              f"{paper['detail']['ultrasound']['trainings']} trainings of {paper['config']['epochs']} epochs x 600 "
              f"images at {paper['config']['image_size']}px, width {paper['config']['model']['width']})",
              "", f"Bench wall time: {results['wall_s']:.0f} s"]
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------

def quiet() -> None:
    import warnings

    import pytorch_lightning  # noqa: F401  (it sets its loggers to INFO on import; lower them after)

    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric", "unet_transfer"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")


def device_info(threads: int | None) -> dict:
    import pytorch_lightning as pl
    import torch

    cuda = torch.cuda.is_available()
    if threads:
        torch.set_num_threads(threads)
    name = torch.cuda.get_device_name() if cuda else (platform.processor() or platform.machine())
    if not cuda:
        try:
            with open("/proc/cpuinfo") as handle:
                name = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), name)
        except OSError:
            pass
    cfg = compose_cfg(["output_dir=."])
    return {"type": "cuda" if cuda else "cpu", "name": name, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "native_bf16": native_bf16(), "precision": fast_precision(),
            "configured_precision": str(cfg.trainer.precision), "channels_last": bool(cfg.fast.channels_last),
            "compile": bool(cfg.fast.compile), "torch": torch.__version__, "lightning": pl.__version__,
            "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_transfer.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench.json", help="where to write the results (JSON)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps (~1 minute; for tests)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 with --quick, which is then "
                             "insensitive to other work on the machine)")
    parser.add_argument("--cache-dir", default=None, help="dataset cache (default: the config's paths.cache_dir)")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="where the demo's pretrained checkpoint is, or is made on demand for the agreement "
                             "check (default: the config's paths.checkpoint_dir)")
    args = parser.parse_args(argv)
    if args.quick and args.threads is None:
        args.threads = 1
    start = time.perf_counter()
    quiet()
    info = device_info(args.threads)
    cuda = info["type"] == "cuda"
    load = info["load_average_start"]
    info["busy"] = bool(load and not cuda and load[0] > 0.5 * (info["cpu_count"] or 1))
    if info["busy"]:
        print(f"bench: note: other work is running (load {load[0]:.1f} on {info['cpu_count']} cores). Absolute "
              f"timings with {info['threads']} threads will be slower than on an idle machine (threads wait for "
              "each other's turn on a core); the alternating rounds keep the ratios comparable. "
              "`--threads 1` suffers least.", flush=True)
    results: dict = {"version": 1, "quick": args.quick, "device": info, "targets": TARGETS,
                     "throughput": {}, "freeze": {}, "data": {}}
    with tempfile.TemporaryDirectory(prefix="unet-transfer-bench-") as tmp:
        work = Path(tmp)
        cache_dir = Path(args.cache_dir or compose_cfg(["output_dir=."]).paths.cache_dir).resolve()
        checkpoint_dir = Path(args.checkpoint_dir or "checkpoints").resolve()
        common = ["experiment=demo", f"paths.cache_dir={cache_dir}", f"paths.checkpoint_dir={checkpoint_dir}",
                  "trainer.enable_progress_bar=false"]
        if args.threads:
            common.append(f"threads={args.threads}")
        size, plan = sizes(args.quick), plans(args.quick, cuda)
        if args.quick:  # an untrained stand-in for the demo's pretrained checkpoint: no pretraining
            stand_in_checkpoint(common, size["demo"], work)
        phases = results["phase_s"] = {}
        for label in ("demo", "paper"):
            print(f"bench: {label} size {asdict(size[label])}, {plan[label].rounds} rounds of "
                  f"{plan[label].steps} steps per variant", flush=True)
            with timed(phases, label):
                measured = measure_size(label, size[label], plan[label], common, work)
            gc.collect()  # the models and Trainer of this size form reference cycles: free them now
            for key in ("throughput", "freeze", "data"):
                results[key][label] = measured[key]
        print("bench: agreement check (fp32 NCHW vs fast path; may pretrain the demo checkpoint first)",
              flush=True)
        with timed(phases, "agreement"):
            results["agreement"] = measure_agreement(common, size["demo"], work, epochs=2 if args.quick else 8)
        print("bench: fixed cost of a run", flush=True)
        with timed(phases, "fixed_cost"):
            results["fixed_cost"] = measure_fixed_cost(common, size["demo"], work, repeats=2 if args.quick else 3,
                                                       cold_repeats=1 if args.quick else 3, threads=args.threads)
        results["estimate"] = estimates(results)
    results["wall_s"] = time.perf_counter() - start
    results["device"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(table(results))
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
