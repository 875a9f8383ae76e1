"""A checkpoint made ready for inference: the U-Net it describes, its weights loaded strictly,
in eval mode on the chosen device, with the input size and threshold it was trained with.

A checkpoint's model settings may name a class (`_target_`): only this project's U-Net is
built, so a checkpoint from elsewhere can never make this process import or call other code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from unet_transfer.errors import ConfigError
from unet_transfer.inference.preprocessing import read_record
from unet_transfer.model import UNet
from unet_transfer.training.checkpoint import Checkpoint, load_state, read_checkpoint

MODEL_TARGET = "unet_transfer.model.UNet"
SETTING = "checkpoint"  # how error messages name the file


@dataclass
class Network:
    path: Path
    model: UNet
    image_size: int
    threshold: float
    checkpoint: Checkpoint
    device: torch.device

    @torch.no_grad()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) inputs in [0, 1] -> (N, 1, S, S) foreground probabilities (float32, CPU)."""
        return torch.sigmoid(self.model(batch.to(self.device)).float()).cpu()


def model_from_settings(settings: dict, path: Path | str) -> UNet:
    target = settings.get("_target_", MODEL_TARGET)
    if target != MODEL_TARGET:
        raise ConfigError(f"{SETTING}={str(path)!r} describes a {target!r}; only {MODEL_TARGET} checkpoints can be "
                          "used (no other class named by a checkpoint is built).")
    try:
        return UNet(**{key: value for key, value in settings.items() if key != "_target_"})
    except TypeError as error:
        raise ConfigError(f"{SETTING}={str(path)!r} has model settings this version does not know ({error}); "
                          "use the unet-transfer version that wrote it.") from None


def choose_device(name: str = "auto") -> torch.device:
    """auto: the GPU when there is one, else the CPU; cuda without a GPU is an error, not a silent CPU."""
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {name!r}: use auto, cpu or cuda.")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu (or auto).")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def load_network(path: Path | str, device: str = "auto") -> Network:
    """The checkpoint's network in eval mode; ConfigError (one line, with the fix) for any bad checkpoint."""
    checkpoint = read_checkpoint(path, setting=SETTING)
    image_size, threshold = read_record(checkpoint.meta, path)
    model = model_from_settings(checkpoint.model, path)
    load_state(model, checkpoint, path, setting=SETTING)
    where = choose_device(device)
    return Network(Path(path), model.to(where).eval(), image_size, threshold, checkpoint, where)
