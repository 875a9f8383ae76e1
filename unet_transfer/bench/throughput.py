"""Training throughput, freezing cost and data loading at one size: the real path (built by
training/build.py, exactly as a run builds it) against bare loops, in alternating rounds."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict
from pathlib import Path

from unet_transfer.bench.common import (
    FREEZE_VARIANTS,
    Plan,
    Size,
    bf16_peak,
    compose_cfg,
    size_overrides,
    synchronize,
    trainable_of,
)
from unet_transfer.bench.loops import BareLoop, LoaderPass, count_flops
from unet_transfer.hardware import cpu_peak_flops


def rounds_callback(variants: dict, loader: LoaderPass, plan: Plan, device, deadline: float):
    """Times the real path's epochs and runs one round of the other variants after each."""
    import pytorch_lightning as pl

    class Rounds(pl.Callback):
        def __init__(self):
            self.batch = None  # the fixed batch of the bare loops, set before training starts
            self.epoch_times: list[float] = []
            self.epoch_images: list[int] = []
            self._start, self._images = 0.0, 0
            self._deadline = deadline

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
                    variants[name].warm_up(*self.batch, plan.warmup)
                else:
                    variants[name].timed(*self.batch, plan.steps)
            if epoch > 0:
                per_step = self.epoch_times[-1] / max(1, math.ceil(self._images / len(self.batch[0])))
                print(f"  round {epoch}/{plan.rounds}: real path {per_step:.3f} s/step, "
                      + ", ".join(f"{n} {v.times[-1]:.3f}" for n, v in variants.items()), flush=True)
                round_s = (time.perf_counter() - self._start)
                if time.perf_counter() + round_s > self._deadline and epoch < plan.rounds:
                    print(f"  time budget spent: {epoch} timed round(s)", flush=True)
                    trainer.should_stop = True

    return Rounds()


def best_and_spread(times: list[float]) -> tuple[float, list[float]]:
    """The fastest round (the least disturbed by other work on the machine) and the range."""
    return min(times), [min(times), max(times)]


def measure_size(label: str, size: Size, plan: Plan, common: list[str], work: Path, deadline: float) -> dict:
    """Throughput, freezing and data loading at one size, all variants in alternating rounds."""
    import torch
    from hydra.utils import instantiate

    from unet_transfer.networks.protocol import blocks_of
    from unet_transfer.training.build import build

    cfg = compose_cfg([*common, *size_overrides(size), "pretrained=null", "logger=none",
                       f"output_dir={work / label}"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    variants: dict = {}  # filled below, once the real path's model exists: the callback runs them
    loader = LoaderPass(minimum=max(64, 4 * size.batch_size))
    rounds = rounds_callback(variants, loader, plan, device, deadline)
    # The real path, built exactly as a run builds it (training/build.py).
    built = build(cfg, callbacks=[rounds], logger=False, enable_progress_bar=False, enable_checkpointing=False,
                  enable_model_summary=False, max_epochs=plan.rounds + 1, limit_train_batches=plan.steps,
                  limit_val_batches=0, num_sanity_val_steps=0)
    datamodule, template, layout = built.datamodule, copy.deepcopy(built.model), blocks_of(built.model)
    fast = built.fast  # the settings the real path chose (fast.auto): the same-settings loops use them
    precision, channels_last, compiled = fast["precision"], fast["channels_last"], fast["compile"]
    data = datamodule.data
    rows = datamodule.train_rows[: size.batch_size]
    images = torch.from_numpy(data.images[rows]).unsqueeze(1).float().div_(255.0).to(device)
    masks = torch.from_numpy(data.masks[rows]).unsqueeze(1).float().to(device)
    rounds.batch = (images, masks)
    loader.loader = datamodule.train_dataloader()
    lr = float(cfg.optimizer.lr)
    variants["bare_fp32_nchw"] = BareLoop(copy.deepcopy(template), device, lr=lr, channels_last=False,
                                          precision="32-true")
    for name, (direction, k) in FREEZE_VARIANTS.items():
        variants[name] = BareLoop(copy.deepcopy(template), device, lr=lr, channels_last=channels_last,
                                  precision=precision, compile=compiled, optimizer=instantiate(cfg.optimizer),
                                  trainable=trainable_of(direction, k, layout))
    variants["bare_same_loader"] = BareLoop(
        copy.deepcopy(template), device, lr=lr, channels_last=channels_last, precision=precision,
        compile=compiled, optimizer=instantiate(cfg.optimizer), loader=datamodule.train_dataloader())
    built.trainer.fit(built.module, datamodule)

    plan_done = {**asdict(plan), "rounds_done": len(rounds.epoch_times) - 1}
    per_image_real, spread_real = best_and_spread(
        [t / n for t, n in zip(rounds.epoch_times[1:], rounds.epoch_images[1:], strict=True)])
    steps_real = [t / math.ceil(n / size.batch_size) for t, n in zip(rounds.epoch_times[1:], rounds.epoch_images[1:],
                                                                        strict=True)]
    step = {name: min(v.times) for name, v in variants.items()}
    spread = {"real": [1.0 / spread_real[1], 1.0 / spread_real[0]],  # images/s of the slowest and fastest round
              **{name: [size.batch_size / max(v.times), size.batch_size / min(v.times)] for name, v in variants.items()}}
    rate = {"real": 1.0 / per_image_real, **{name: size.batch_size / s for name, s in step.items()}}
    flops = {name: count_flops(cfg.model, size.image_size, size.batch_size,
                               trainable_of(direction, k, layout))
             for name, (direction, k) in FREEZE_VARIANTS.items()}
    forward_flops = count_flops(cfg.model, size.image_size, size.batch_size, train=False)
    flops_per_image = flops["none"] / size.batch_size
    peak = bf16_peak(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    cpu_peak = None if device.type == "cuda" else cpu_peak_flops(torch.get_num_threads())
    achieved = {"real": flops_per_image * rate["real"], "bare_fp32_nchw": flops_per_image * rate["bare_fp32_nchw"]}
    n_train = len(datamodule.train_rows)
    throughput = {
        "size": asdict(size), "plan": plan_done, "precision": precision,
        "channels_last": bool(channels_last), "compile": bool(compiled), "fast": fast,
        "images_per_s": {"real": rate["real"], "bare_fp32_nchw": rate["bare_fp32_nchw"], "bare_same": rate["none"],
                         "bare_same_loader": rate["bare_same_loader"]},
        "images_per_s_rounds": {"real": spread["real"], "bare_fp32_nchw": spread["bare_fp32_nchw"]},
        "step_s": {"real": min(steps_real), "bare_fp32_nchw": step["bare_fp32_nchw"], "bare_same": step["none"],
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
        "cpu_fp32_peak": cpu_peak,
        "fraction_of_fp32_peak": None if not (cpu_peak and cpu_peak["flops_per_s"]) else
        achieved["real"] / cpu_peak["flops_per_s"],
    }
    memory_kind = "cuda max_memory_allocated per step" if device.type == "cuda" else None
    freeze = {"memory": "autograd saved-tensor bytes of one forward (activations kept for backward)"
                        + (f"; and {memory_kind} above the memory held before it" if memory_kind else ""),
              "epoch_images": n_train, "settings": {}}
    for name, (direction, k) in FREEZE_VARIANTS.items():
        v = variants[name]
        freeze["settings"][name] = {
            "direction": direction, "k": k, "trainable_blocks": list(trainable_of(direction, k, layout)),
            "step_s": step[name], "epoch_s": step[name] * math.ceil(n_train / size.batch_size),
            "time_ratio": step[name] / step["none"],
            "flops_per_step": flops[name], "flop_ratio": flops[name] / flops["none"],
            "saved_tensor_bytes": v.saved_bytes,
            "saved_tensor_ratio": v.saved_bytes / variants["none"].saved_bytes,
            "cuda_peak_bytes": v.cuda_peak_bytes,
        }
    loading = {"images_per_s": max(loader.rates), "train_images_per_s": rate["real"],
               "ratio": max(loader.rates) / rate["real"], "augment": str(cfg.augment.mode),
               "num_workers": int(cfg.loader.num_workers)}
    return {"throughput": throughput, "freeze": freeze, "data": loading}
