"""A checkpoint made ready for inference: the network it describes, its weights loaded strictly,
in eval mode on the chosen device, with the input size and threshold it was trained with.

Any registered network (unet_transfer.networks.protocol.ADAPTERS: the paper's U-Net, MONAI's
FlexibleUNet and BasicUNet) can be a checkpoint's network. Its model settings name a builder
(`_target_`): only the builders of the registered adapters are called, so a checkpoint from
elsewhere can never make this process import or call other code.

Nothing is built from a checkpoint before it is checked: the builder, every model setting (the
U-Net's by the rules of a run's settings, any other network's against its builder's arguments
and their kinds of value), then the tensors (their keys, shapes and kinds of number, compared
with the network the settings describe built on the "meta" device, which allocates nothing),
the recorded image size (a forward pass on the meta device: the size must come out unchanged),
the threshold, and the weights being finite. A header that claims 40 levels, or MONAI features
of a billion channels, is one line, not a 22 GB allocation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from unet_transfer.checkpoint import CHECKPOINT_SETTING as SETTING
from unet_transfer.checkpoint import (
    RULES,
    Checkpoint,
    build_network,
    builders,
    check_settings,
    checked_network,
    read_checkpoint,
)

__all__ = ["RULES", "Network", "build_network", "builders", "check_settings", "choose_device", "load_network"]
from unet_transfer.data.contract import check_grey_to_one_map, read_record, size_rule
from unet_transfer.errors import ConfigError


@dataclass
class Network:
    path: Path
    model: nn.Module
    image_size: int
    threshold: float
    checkpoint: Checkpoint
    device: torch.device

    @torch.no_grad()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) inputs in [0, 1] -> (N, 1, S, S) foreground probabilities (float32, CPU)."""
        return torch.sigmoid(self.model(batch.to(self.device)).float()).cpu()


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
    model, expected = checked_network(checkpoint, path)  # checked before any real allocation
    image_size, threshold = read_record(checkpoint.meta, path, size_rule(expected))
    check_grey_to_one_map(expected, image_size, path)
    where = choose_device(device)
    return Network(Path(path), model.to(where).eval(), image_size, threshold, checkpoint, where)
