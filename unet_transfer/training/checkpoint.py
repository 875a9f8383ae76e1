"""Weights in and out: what pretraining writes is exactly what fine-tuning's `pretrained=` reads.

Loading is strict (every key and shape must match, the first difference is named) and safe
(`weights_only`: no pickled code is ever executed).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from unet_transfer.errors import ConfigError
from unet_transfer.files import atomic_path
from unet_transfer.training.validate import missing_checkpoint

FORMAT = "unet-transfer/weights-v1"


def save_weights(model: nn.Module, path: Path | str, model_config: dict | None = None, meta: dict | None = None) -> Path:
    """Write a checkpoint that `pretrained=PATH` accepts; atomic, so a crash leaves no stub."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "state_dict": state, "model": model_config or {}, "meta": meta or {}}, tmp)
    return path


def weights_digest(path: Path | str) -> str:
    """A short content hash of a checkpoint file: results record which weights they started
    from, so a remade checkpoint is never mistaken for the old one."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            sha.update(chunk)
    return sha.hexdigest()[:16]


def read_state_dict(path: Path | str) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors of a checkpoint (ours, a Lightning .ckpt or a bare state dict) and its model settings."""
    path = Path(path)
    if not path.is_file():
        raise missing_checkpoint(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise ConfigError(f"pretrained={str(path)!r} cannot be read: permission denied. Give your user read access "
                          f"(chmod u+r '{path}') or copy the checkpoint somewhere readable.") from None
    except Exception as error:  # unpickling refusals and corrupt files alike
        raise ConfigError(
            f"pretrained={str(path)!r} cannot be loaded as weights only ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}). Save a plain state dict (torch.save(model.state_dict(), path)) "
            f"or use a checkpoint written by this project (save_weights=PATH)."
        ) from None
    if not isinstance(obj, dict):
        raise ConfigError(f"pretrained={str(path)!r} holds a {type(obj).__name__}, not a state dict.")
    state = obj.get("state_dict", obj)
    if state and all(k.startswith("model.") for k in state):  # a LightningModule's checkpoint
        state = {k[len("model."):]: v for k, v in state.items()}
    return state, dict(obj.get("model", {}))


def load_pretrained(model: nn.Module, path: Path | str) -> dict:
    """Load `path` into `model` strictly; returns the model settings stored with the weights."""
    state, saved_config = read_state_dict(path)
    expected = model.state_dict()
    hint = f" The checkpoint was made with model settings {saved_config}." if saved_config else ""
    for key, tensor in expected.items():
        if key not in state:
            raise ConfigError(f"pretrained={str(path)!r} has no tensor {key!r}: it is not a checkpoint of this model.{hint}")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ConfigError(
                f"pretrained={str(path)!r}: {key!r} has shape {tuple(state[key].shape)}, the model expects "
                f"{tuple(tensor.shape)}. Use the model settings (model.width, model.levels, ...) the "
                f"checkpoint was trained with.{hint}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ConfigError(f"pretrained={str(path)!r} has tensor(s) this model lacks, first {extra[0]!r}.{hint}")
    model.load_state_dict(state, strict=True)
    return saved_config
