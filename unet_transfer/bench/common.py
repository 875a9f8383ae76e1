"""What every measurement of the benchmark shares: the sizes and time plans, the targets, the
config of the real path, and device helpers."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from unet_transfer.blocks import PAPER_BLOCKS, Blocks
from unet_transfer.config import compose_config

# Dense bf16 tensor peak (TFLOP/s) by device-name fragment; the first match wins.
BF16_PEAK_TFLOPS = (
    ("H100 PCIE", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("B200", 2250.0),
    ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10", 125.0), ("RTX 4090", 165.0),
)
TARGETS = {"speedup": 1.0, "overhead": 0.05, "deep_to_shallow_k1": 0.5, "shallow_to_deep_k1": 0.8,
           "data_ratio": 5.0, "simulation_share": 0.05, "in_sweep_s": 3.0, "dice_tolerance": 0.05}
FREEZE_VARIANTS = {"none": ("none", None), "deep_to_shallow_k1": ("deep_to_shallow", 1),
                   "shallow_to_deep_k1": ("shallow_to_deep", 1)}
# The paper's study (docs/study.md): 5 folds, 9 k in 2 directions (deep_to_shallow k=9 is the
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
    rounds: int      # timed rounds at most, after one warm-up round (fewer when the time budget ends)
    warmup: int      # warm-up steps per bare variant


def sizes(quick: bool) -> dict[str, Size]:
    if quick:
        return {"paper": Size(8, 128, 4, 10, 5), "demo": Size(4, 32, 4, 20, 3)}
    # 40 training images at both sizes: a timed epoch of the real path is 10 steps on a GPU (few
    # steps per epoch would time Lightning's epoch boundaries and the loader's refill, not training).
    return {"paper": Size(64, 256, 4, 50, 5), "demo": Size(8, 64, 4, 60, 3)}


def plans(quick: bool, cuda: bool) -> dict[str, Plan]:
    if quick:
        return {"paper": Plan(1, 1, 1), "demo": Plan(3, 2, 1)}
    if cuda:
        return {"paper": Plan(10, 5, 3), "demo": Plan(10, 15, 3)}
    return {"paper": Plan(1, 5, 1), "demo": Plan(10, 15, 2)}


def median(values) -> float:
    return float(statistics.median(values))


def compose_cfg(overrides: list[str]):
    return compose_config(overrides)


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



def trainable_of(direction: str, k: int | None, layout: Blocks = PAPER_BLOCKS) -> tuple[int, ...]:
    return layout.trainable(direction, k)
