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

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from unet_transfer.checkpoint import Checkpoint, check_finite, check_state, read_checkpoint
from unet_transfer.data.contract import read_record, size_rule
from unet_transfer.errors import ConfigError
from unet_transfer.model import DROPOUT_SITES
from unet_transfer.networks.protocol import ADAPTERS
from unet_transfer.rules import whole

MODEL_TARGET = "unet_transfer.model.UNet"  # the paper's U-Net; checkpoints of older versions name no target
SETTING = "checkpoint"  # how error messages name the file
NORMS = ("none", "batch")  # what UNet's `norm` accepts
NOT_REBUILT = ("pretrained",)  # a builder's ImageNet weights: the checkpoint holds every tensor already


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
    return ConfigError(f"{SETTING}={str(path)!r} {what}. Write the checkpoint again (save_weights=PATH); this one "
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
        raise ConfigError(f"{SETTING}={str(path)!r} has model setting(s) {unknown} that {target} does not take "
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
        raise ConfigError(f"{SETTING}={str(path)!r} describes a {target!r}; only the registered networks "
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
        raise ConfigError(f"{SETTING}={str(path)!r} has model setting(s) this version does not know ({unknown}); "
                          "use the unet-transfer version that wrote it.")
    for key, value in arguments.items():
        try:
            RULES[key](value)
        except ConfigError as error:
            raise ConfigError(f"{SETTING}={str(path)!r} records the model setting {error} Write the checkpoint "
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
    check_state(expected.state_dict(), checkpoint, path, SETTING, hint=hint)


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
    build, arguments = check_settings(checkpoint.model, path)
    expected = on_meta(build, arguments, checkpoint, path)
    check_tensors_fit(expected, arguments, checkpoint, path)
    image_size, threshold = read_record(checkpoint.meta, path, size_rule(expected))
    check_finite(checkpoint, path, SETTING)
    model = build_network(build, arguments)  # only now, checked: its size is that of the tensors already read
    model.load_state_dict(checkpoint.state, strict=True)
    where = choose_device(device)
    return Network(Path(path), model.to(where).eval(), image_size, threshold, checkpoint, where)
