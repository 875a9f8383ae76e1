"""A checkpoint made ready for inference: the U-Net it describes, its weights loaded strictly,
in eval mode on the chosen device, with the input size and threshold it was trained with.

A checkpoint's model settings may name a class (`_target_`): only this project's U-Net is
built, so a checkpoint from elsewhere can never make this process import or call other code.
Nothing is built from a checkpoint before it is checked: every model setting against the rules
of a run's settings and against the tensors (their keys, shapes and kinds of number, compared
with the network the settings describe built on the "meta" device, which allocates nothing),
the recorded image size and threshold, and the weights being finite. A header that claims
40 levels is one line, not a 22 GB allocation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from unet_transfer.checkpoint import Checkpoint, check_finite, check_state, read_checkpoint
from unet_transfer.data.contract import read_record
from unet_transfer.errors import ConfigError
from unet_transfer.model import DROPOUT_SITES, UNet
from unet_transfer.rules import whole

MODEL_TARGET = "unet_transfer.model.UNet"
SETTING = "checkpoint"  # how error messages name the file
NORMS = ("none", "batch")  # what UNet's `norm` accepts


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


def check_dropout(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"model.dropout={value!r}: must be a rate from 0 to 1 (the paper uses 0.5).")


def check_dropout_at(value) -> None:
    if not isinstance(value, (list, tuple)) or not all(isinstance(site, str) for site in value) \
            or set(value) - set(DROPOUT_SITES):
        raise ConfigError(f"model.dropout_at={value!r}: must be a list of sites from {list(DROPOUT_SITES)}.")


def check_choice(name: str, value, allowed: tuple) -> None:
    if isinstance(value, bool) != isinstance(allowed[0], bool) or value not in allowed:
        raise ConfigError(f"model.{name}={value!r}: must be one of {list(allowed)}.")


# The rules of every UNet setting (a test keeps this in step with UNet's arguments).
RULES = {
    "width": lambda value: whole(value, "model.width", 1),
    "levels": lambda value: whole(value, "model.levels", 1),
    "in_channels": lambda value: whole(value, "model.in_channels", 1),
    "dropout": check_dropout,
    "dropout_at": check_dropout_at,
    "extra_conv": lambda value: check_choice("extra_conv", value, (False, True)),
    "norm": lambda value: check_choice("norm", value, NORMS),
}


def check_settings(settings, path: Path | str) -> dict:
    """The UNet arguments of a checkpoint's model settings, each checked by the rules of a run's
    settings; a ConfigError naming the file and the first bad one."""
    target = settings.get("_target_", MODEL_TARGET)
    if target != MODEL_TARGET:
        raise ConfigError(f"{SETTING}={str(path)!r} describes a {target!r}; only {MODEL_TARGET} checkpoints can be "
                          "used (no other class named by a checkpoint is built).")
    arguments = {key: value for key, value in settings.items() if key != "_target_"}
    unknown = sorted(set(arguments) - set(RULES), key=str)
    if unknown:
        raise ConfigError(f"{SETTING}={str(path)!r} has model setting(s) this version does not know ({unknown}); "
                          "use the unet-transfer version that wrote it.")
    for key, value in arguments.items():
        try:
            RULES[key](value)
        except ConfigError as error:
            raise ConfigError(f"{SETTING}={str(path)!r} records the model setting {error} Write the checkpoint "
                              "again (save_weights=PATH); this one is damaged or edited.") from None
    return arguments


def model_from_settings(settings: dict, path: Path | str) -> UNet:
    return UNet(**check_settings(settings, path))


def check_levels(arguments: dict, checkpoint: Checkpoint, path: Path | str) -> None:
    """The settings' levels against the blocks its tensors name, before anything is built: a U-Net's
    size grows as 2**levels, so no network is made for levels no tensor supports."""
    levels = arguments.get("levels", 4)
    encoders = {int(match[1]) for key in checkpoint.state if (match := re.match(r"blocks\.enc(\d+)\.", key))}
    if not encoders:
        raise ConfigError(f"{SETTING}={str(path)!r} holds no tensor of a U-Net encoder (blocks.enc1...): it is "
                          f"not a checkpoint of {MODEL_TARGET}.")
    if levels != len(encoders):
        raise ConfigError(f"{SETTING}={str(path)!r} records model.levels={levels}, but its tensors are those of a "
                          f"U-Net with {len(encoders)} level(s) (encoder blocks {sorted(encoders)[:8]}). Write the "
                          "checkpoint again (save_weights=PATH); this one is damaged or edited.")


def check_tensors_fit(arguments: dict, checkpoint: Checkpoint, path: Path | str) -> None:
    """The checkpoint's tensors against those of the network its settings describe, built on the
    meta device (shapes and dtypes only, no memory)."""
    hint = f" Its model settings {checkpoint.model} do not describe its tensors: the file is damaged or edited."
    try:
        with torch.device("meta"):
            expected = UNet(**arguments).state_dict()
    except RuntimeError as error:  # sizes that overflow: no tensor of the file can have them
        raise ConfigError(f"{SETTING}={str(path)!r}: its model settings {checkpoint.model} describe tensors too "
                          f"large to exist ({str(error).splitlines()[0][:120]}); the file is damaged or edited.") from None
    check_state(expected, checkpoint, path, SETTING, hint=hint)
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
    arguments = check_settings(checkpoint.model, path)
    check_levels(arguments, checkpoint, path)
    image_size, threshold = read_record(checkpoint.meta, path, arguments.get("levels", 4))
    check_tensors_fit(arguments, checkpoint, path)
    check_finite(checkpoint, path, SETTING)
    model = UNet(**arguments)  # only now, checked: its size is that of the tensors already read
    model.load_state_dict(checkpoint.state, strict=True)
    where = choose_device(device)
    return Network(Path(path), model.to(where).eval(), image_size, threshold, checkpoint, where)
