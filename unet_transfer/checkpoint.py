"""Weights in and out: what pretraining writes is exactly what fine-tuning's `pretrained=` reads,
and what `unet-transfer predict` and `export` read.

Two files hold the same tensors: the torch file (PATH) and PATH with the suffix .safetensors
beside it, whose metadata carries the model settings and the writer's record (image size,
preprocessing, threshold) as JSON strings, so tools outside PyTorch can read the weights.
Loading is strict (every key, shape and kind of number must match, the first difference is
named), refuses weights that are not finite, and is safe (`weights_only` for torch files, and
safetensors holds no code at all: nothing is unpickled). A checkpoint is untrusted input: what
it holds is checked before it is used, and every problem is one ConfigError naming the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from unet_transfer.errors import ConfigError
from unet_transfer.files import atomic_path
from unet_transfer.rules import missing_checkpoint

FORMAT = "unet-transfer/weights-v1"
SAFETENSORS = ".safetensors"


@dataclass
class Checkpoint:
    """The tensors of a checkpoint, the model settings they fit and what else its writer recorded."""

    state: dict[str, torch.Tensor]
    model: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


def safetensors_path(path: Path | str) -> Path:
    """The safetensors file written beside a torch checkpoint (PATH itself when it is one)."""
    path = Path(path)
    return path if path.suffix == SAFETENSORS else path.with_suffix(SAFETENSORS)


def save_weights(model: nn.Module, path: Path | str, model_config: dict | None = None, meta: dict | None = None) -> Path:
    """Write a checkpoint that `pretrained=PATH` accepts, and its safetensors twin beside it (a PATH
    ending in .safetensors: that file only); atomic, so a crash leaves no stub."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.suffix != SAFETENSORS:
        with atomic_path(path) as tmp:
            torch.save({"format": FORMAT, "state_dict": state, "model": model_config or {}, "meta": meta or {}}, tmp)
    write_safetensors(state, safetensors_path(path), model_config or {}, meta or {})
    return path


def write_safetensors(state: dict[str, torch.Tensor], path: Path, model_config: dict, meta: dict) -> Path:
    from safetensors.torch import save_file

    metadata = {"format": FORMAT, "model": json.dumps(model_config, sort_keys=True),
                "meta": json.dumps(meta, sort_keys=True, default=str)}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path


def weights_digest(path: Path | str) -> str:
    """A short content hash of a checkpoint file: results record which weights they started
    from, so a remade checkpoint is never mistaken for the old one."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            sha.update(chunk)
    return sha.hexdigest()[:16]


def unreadable(path: Path, setting: str, error: Exception, fix: str, how: str = "weights only") -> ConfigError:
    return ConfigError(f"{setting}={str(path)!r} cannot be loaded as {how} ({type(error).__name__}: "
                       f"{(str(error).splitlines() or [''])[0][:200]}). {fix}")


def read_checkpoint(path: Path | str, setting: str = "pretrained") -> Checkpoint:
    """A checkpoint's tensors and records: ours (torch or safetensors), a Lightning .ckpt or a bare
    state dict. `setting` names the checkpoint in error messages (pretrained=, checkpoint=)."""
    path = Path(path)
    if not path.is_file() and setting == "pretrained":
        raise missing_checkpoint(path)
    if not path.is_file():
        raise ConfigError(f"{setting}={str(path)!r}: no such file. Give the checkpoint a run or `unet-transfer "
                          "recommend` wrote (save_weights=PATH: PATH and its .safetensors twin).")
    try:
        if path.suffix == SAFETENSORS:
            return read_safetensors(path, setting)
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise ConfigError(f"{setting}={str(path)!r} cannot be read: permission denied. Give your user read access "
                          f"(chmod u+r '{path}') or copy the checkpoint somewhere readable.") from None
    except ConfigError:
        raise
    except Exception as error:  # unpickling refusals and corrupt files alike
        raise unreadable(path, setting, error, "Save a plain state dict (torch.save(model.state_dict(), path)) "
                         "or use a checkpoint written by this project (save_weights=PATH).") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{setting}={str(path)!r} holds a {type(obj).__name__}, not a state dict.")
    wrapped = "state_dict" in obj  # ours or Lightning's; else a bare state dict
    state = check_tensors(obj["state_dict"] if wrapped else obj, path, setting)
    if state and all(k.startswith("model.") for k in state):  # a LightningModule's checkpoint
        state = {k[len("model."):]: v for k, v in state.items()}
    records = [check_record(obj.get(name, {}) if wrapped else {}, name, path, setting) for name in ("model", "meta")]
    return Checkpoint(state, *records)


def check_tensors(state, path: Path, setting: str) -> dict[str, torch.Tensor]:
    """`state` if it maps names to tensors; else a ConfigError naming the first thing that is not one."""
    fix = ("Save a plain state dict (torch.save(model.state_dict(), path)) or use a checkpoint written by this "
           "project (save_weights=PATH).")
    if not isinstance(state, dict):
        raise ConfigError(f"{setting}={str(path)!r}: its state_dict is a {type(state).__name__}, not a mapping of "
                          f"tensor names to tensors. {fix}")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ConfigError(f"{setting}={str(path)!r} holds {key!r}: a {type(value).__name__} where a tensor "
                              f"belongs; it is not a state dict. {fix}")
    return state


def check_record(record, name: str, path: Path, setting: str) -> dict:
    """A checkpoint's `model` or `meta` record, which must be a mapping (JSON object)."""
    if not isinstance(record, dict):
        raise ConfigError(f"{setting}={str(path)!r}: its {name!r} record is a {type(record).__name__}, not the "
                          "mapping save_weights writes; write the checkpoint again (save_weights=PATH).")
    return dict(record)


def read_safetensors(path: Path, setting: str) -> Checkpoint:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
        records = [json.loads(metadata.get(name, "{}")) for name in ("model", "meta")]
        if not all(isinstance(record, dict) for record in records):
            raise ValueError("its 'model' and 'meta' metadata are not JSON objects")
    except PermissionError:
        raise
    except Exception as error:  # a damaged header, truncated data or metadata that is not JSON
        raise unreadable(path, setting, error, "Write it again with save_weights=PATH (safetensors metadata "
                         "'model' and 'meta' hold JSON objects).", how="safetensors") from None
    return Checkpoint(state, *records)


def read_state_dict(path: Path | str) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors of a checkpoint (ours, a Lightning .ckpt or a bare state dict) and its model settings."""
    checkpoint = read_checkpoint(path)
    return checkpoint.state, checkpoint.model


def kind(tensor: torch.Tensor) -> str:
    """The kind of number a tensor holds: a checkpoint may store float weights at another precision,
    never as integers (a safetensors header relabelled I32 reads the float bytes as integers)."""
    if tensor.is_floating_point():
        return "floating point"
    if tensor.is_complex():
        return "complex"
    return "boolean" if tensor.dtype == torch.bool else "integer"


def check_state(expected: dict[str, torch.Tensor], checkpoint: Checkpoint, path: Path | str,
                setting: str = "pretrained", hint: str | None = None) -> None:
    """The checkpoint's tensors are exactly `expected`'s keys, shapes and kinds of number; else a
    ConfigError naming the first difference. `expected` may live on the meta device (no memory)."""
    state, saved_config = checkpoint.state, checkpoint.model
    if hint is None:
        hint = f" The checkpoint was made with model settings {saved_config}." if saved_config else ""
    for key, tensor in expected.items():
        if key not in state:
            raise ConfigError(f"{setting}={str(path)!r} has no tensor {key!r}: it is not a checkpoint of this model.{hint}")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ConfigError(
                f"{setting}={str(path)!r}: {key!r} has shape {tuple(state[key].shape)}, the model expects "
                f"{tuple(tensor.shape)}. Use the model settings (model.width, model.levels, ...) the "
                f"checkpoint was trained with.{hint}"
            )
        if kind(state[key]) != kind(tensor):
            raise ConfigError(
                f"{setting}={str(path)!r}: {key!r} holds {str(state[key].dtype).removeprefix('torch.')} values, the "
                f"model expects {kind(tensor)} ({str(tensor.dtype).removeprefix('torch.')}): the file does not hold "
                "the numbers it was written with. Write it again (save_weights=PATH).")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ConfigError(f"{setting}={str(path)!r} has tensor(s) this model lacks, first {extra[0]!r}.{hint}")


def check_finite(checkpoint: Checkpoint, path: Path | str, setting: str = "pretrained") -> None:
    """Weights holding NaN or inf (a diverged training saved anyway) would train or predict nothing
    but NaN: refused, naming the first such tensor."""
    for key, tensor in checkpoint.state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            nan, inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
            what = " and ".join(f"{count} {name}" for count, name in ((nan, "NaN"), (inf, "inf")) if count)
            raise ConfigError(
                f"{setting}={str(path)!r}: tensor {key!r} holds {what} value(s) of {tensor.numel()}; the training "
                "that wrote it diverged. Use a checkpoint with finite weights (an earlier one, or train again, "
                "e.g. with a lower learning rate).")


def load_state(model: nn.Module, checkpoint: Checkpoint, path: Path | str, setting: str = "pretrained") -> None:
    """Load `checkpoint` into `model` strictly: the first missing, extra, misshapen, mistyped or
    non-finite tensor is named."""
    check_state(model.state_dict(), checkpoint, path, setting)
    check_finite(checkpoint, path, setting)
    model.load_state_dict(checkpoint.state, strict=True)


def load_pretrained(model: nn.Module, path: Path | str) -> dict:
    """Load `path` into `model` strictly; returns the model settings stored with the weights."""
    checkpoint = read_checkpoint(path)
    load_state(model, checkpoint, path)
    return checkpoint.model
