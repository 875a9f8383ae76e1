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
import importlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from unet_transfer.errors import ConfigError
from unet_transfer.files import atomic_path
from unet_transfer.rules import missing_checkpoint, whole

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


# --- The network a checkpoint describes (predict, export, Fig. 5) ------------------------------
# Any registered network (unet_transfer.networks.protocol.ADAPTERS); only the registered adapters'
# builders are ever called, and only after the settings are checked and the network they describe,
# built on the meta device (no memory), has exactly the checkpoint's tensors.

MODEL_TARGET = "unet_transfer.model.UNet"  # the paper's U-Net; checkpoints of older versions name no target
CHECKPOINT_SETTING = "checkpoint"  # how error messages name the file
NORMS = ("none", "batch")  # what UNet's `norm` accepts
NOT_REBUILT = ("pretrained",)  # a builder's ImageNet weights: the checkpoint holds every tensor already


def check_dropout(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"model.dropout={value!r}: must be a rate from 0 to 1 (the paper uses 0.5).")


def check_dropout_at(value) -> None:
    from unet_transfer.model import DROPOUT_SITES

    if not isinstance(value, (list, tuple)) or not all(isinstance(site, str) for site in value) \
            or set(value) - set(DROPOUT_SITES):
        raise ConfigError(f"model.dropout_at={value!r}: must be a list of sites from {list(DROPOUT_SITES)}.")


def check_choice(name: str, value, allowed: tuple) -> None:
    if isinstance(value, bool) != isinstance(allowed[0], bool) or value not in allowed:
        raise ConfigError(f"model.{name}={value!r}: must be one of {list(allowed)}.")


# The rules of every setting of the paper's U-Net (a test keeps this in step with UNet's arguments).
RULES = {
    "width": lambda value: whole(value, "model.width", 1),
    "levels": lambda value: whole(value, "model.levels", 1),
    "in_channels": lambda value: whole(value, "model.in_channels", 1),
    "dropout": check_dropout,
    "dropout_at": check_dropout_at,
    "extra_conv": lambda value: check_choice("extra_conv", value, (False, True)),
    "norm": lambda value: check_choice("norm", value, NORMS),
}


def builders() -> dict[str, Callable[..., nn.Module]]:
    """`_target_` -> builder, for the registered adapters only: each adapter's `build`, named by
    the adapter (unet_transfer.networks.flexunet.build) or by its own import path (the U-Net's
    class, unet_transfer.model.UNet, as conf/model/unet.yaml names it)."""
    from unet_transfer.networks.protocol import ADAPTERS

    found = {}
    for adapter_path in dict.fromkeys(ADAPTERS.values()):
        build = importlib.import_module(adapter_path).build
        found[f"{adapter_path}.build"] = build
        found[f"{build.__module__}.{build.__qualname__}"] = build
    return found


def settings_words(settings: dict) -> str:
    """{'levels': 40, 'width': 4} -> 'model.levels=40, model.width=4' (as a run's command line says them)."""
    return ", ".join(f"model.{key}={value!r}" if isinstance(value, str) else f"model.{key}={value}"
                     for key, value in sorted(settings.items(), key=lambda item: str(item[0])))


def damaged(path: Path | str, what: str) -> ConfigError:
    return ConfigError(f"{CHECKPOINT_SETTING}={str(path)!r} {what}. Write the checkpoint again (save_weights=PATH); this one "
                       "is damaged or edited.")


def kind_fits(value, default) -> bool:
    """A value of the kind the builder's default has (a bool for a bool, a number for a number,
    a string, a list for a tuple or list); anything goes where the default is None."""
    if default is None or default is inspect.Parameter.empty:
        return isinstance(value, (bool, int, float, str, list, tuple, dict)) or value is None
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and (
            isinstance(value, int) or not isinstance(default, int))
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple, str))  # MONAI's (name, options) or a plain name
    return isinstance(value, type(default))


def check_arguments(build: Callable, arguments: dict, target: str, path: Path | str) -> None:
    """Another network's settings: each one an argument of its builder, of the kind its default is."""
    parameters = inspect.signature(build).parameters
    accepted = {name: p.default for name, p in parameters.items()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(arguments) - set(accepted), key=str)
    if unknown:
        raise ConfigError(f"{CHECKPOINT_SETTING}={str(path)!r} has model setting(s) {unknown} that {target} does not take "
                          f"(it takes {sorted(accepted)}); use the unet-transfer version that wrote it.")
    for name, value in arguments.items():
        if name not in NOT_REBUILT and not kind_fits(value, accepted[name]):
            raise damaged(path, f"records the model setting model.{name}={value!r}, not of the kind {target} "
                                f"takes (like its default {accepted[name]!r})")


def check_settings(settings, path: Path | str) -> tuple[Callable[..., nn.Module], dict]:
    """The builder a checkpoint's model settings name (a registered network's only) and its
    checked arguments; a ConfigError naming the file and the first bad one."""
    target = settings.get("_target_", MODEL_TARGET)
    known = builders()
    if target not in known:
        raise ConfigError(f"{CHECKPOINT_SETTING}={str(path)!r} describes a {target!r}; only the registered networks "
                          f"({', '.join(sorted(known))}) can be used: no other class named by a checkpoint is "
                          "built. Add an adapter (unet_transfer/networks/) to use another network.")
    build = known[target]
    arguments = {key: value for key, value in settings.items() if key != "_target_"}
    if f"{build.__module__}.{build.__qualname__}" == MODEL_TARGET:
        check_unet(arguments, path)
    else:
        check_arguments(build, arguments, target, path)
    return build, arguments


def check_unet(arguments: dict, path: Path | str) -> None:
    """The paper's U-Net's settings, each by the rules of a run's settings."""
    unknown = sorted(set(arguments) - set(RULES), key=str)
    if unknown:
        raise ConfigError(f"{CHECKPOINT_SETTING}={str(path)!r} has model setting(s) this version does not know ({unknown}); "
                          "use the unet-transfer version that wrote it.")
    for key, value in arguments.items():
        try:
            RULES[key](value)
        except ConfigError as error:
            raise ConfigError(f"{CHECKPOINT_SETTING}={str(path)!r} records the model setting {error} Write the checkpoint "
                              "again (save_weights=PATH); this one is damaged or edited.") from None


def build_network(build: Callable[..., nn.Module], arguments: dict) -> nn.Module:
    """The network, without a builder's ImageNet weights (the checkpoint holds every tensor)."""
    parameters = inspect.signature(build).parameters
    return build(**{**arguments, **{name: False for name in NOT_REBUILT if name in parameters}})


def on_meta(build: Callable[..., nn.Module], arguments: dict, checkpoint: Checkpoint, path: Path | str) -> nn.Module:
    """The network the settings describe, on the meta device (shapes and dtypes only, no memory)."""
    words = settings_words(arguments)
    try:
        with torch.device("meta"):
            return build_network(build, arguments).eval()
    except RuntimeError as error:  # sizes that overflow: no tensor of the file can have them
        raise damaged(path, f"records model settings ({words}) that describe tensors too large to exist "
                            f"({str(error).splitlines()[0][:120]})") from None
    except ConfigError as error:
        raise damaged(path, f"records model settings the network refuses: {str(error).rstrip('.')}") from None
    except Exception as error:  # a builder's own refusal (ValueError, TypeError, AssertionError, ...)
        raise damaged(path, f"records model settings ({words}) that build no network ({type(error).__name__}: "
                            f"{(str(error).splitlines() or [''])[0][:120]})") from None


def check_tensors_fit(expected: nn.Module, arguments: dict, checkpoint: Checkpoint, path: Path | str) -> None:
    """The checkpoint's tensors against those of the network its settings describe (built on meta)."""
    hint = f" Its model settings ({settings_words(arguments)}) do not describe its tensors: the file is damaged or edited."
    check_state(expected.state_dict(), checkpoint, path, CHECKPOINT_SETTING, hint=hint)



def checked_network(checkpoint: Checkpoint, path: Path | str) -> tuple[nn.Module, nn.Module]:
    """(the network with the checkpoint's weights, in eval mode; the same network on the meta
    device): every check first, the real network only once its size is that of the tensors read."""
    build, arguments = check_settings(checkpoint.model, path)
    expected = on_meta(build, arguments, checkpoint, path)
    check_tensors_fit(expected, arguments, checkpoint, path)
    check_finite(checkpoint, path, CHECKPOINT_SETTING)
    model = build_network(build, arguments)
    model.load_state_dict(checkpoint.state, strict=True)
    return model.eval(), expected
