"""MONAI's FlexibleUNet (a pretrained-style encoder, ResNet or EfficientNet, with a U-Net
decoder), 2-D, as blocks.

Blocks from input to output, named after MONAI's modules:
- `stem`: the encoder's first convolution and its norm (ResNet conv1+bn1; EfficientNet
  _conv_stem+_bn0);
- the encoder stages: ResNet `layer1`..`layer4`; EfficientNet `_blocks` grouped by output
  resolution (`blocks0`, `blocks1`, `blocks2`, `blocks3_4`, `blocks5_6`); the deepest stage is
  the bottleneck;
- `decoder0`..`decoder4` (decoder.blocks[i], deepest first) and `head` (segmentation_head).
Tiers (depth=shortest): the encoder blocks count 1, 2, ... from the stem; a decoder block is as
shallow as the encoder block whose skip it joins; a decoder block without a skip (the last, at
full resolution) and the head are as shallow as the decoder block before them.

ImageNet weights (`pretrained`): `true` loads MONAI's EfficientNet weights (downloaded into
torch's hub cache, or found there offline); MONAI has no 2-D ResNet weights (its ResNet
weights are MedicalNet's, 3-D), so a ResNet needs a path. A path is an encoder state dict with
MONAI's keys (or EfficientNet-PyTorch's, as MONAI's download), loaded strictly; a 3-channel
stem is summed to the model's one channel.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from unet_transfer.blocks import BlockSpec
from unet_transfer.errors import ConfigError

# The encoder's classification head: EfficientNet's features stop after `_blocks`, so FlexibleUNet
# never runs these. Kept, they would count as weights in the trainable share and never move.
DEAD_MODULES = ("_conv_head", "_bn1", "_fc")
STEMS = {"resnet": ("conv1", "bn1", "act", "maxpool"), "efficientnet": ("_conv_stem", "_conv_stem_padding", "_bn0")}


def build(backbone: str = "resnet18", pretrained: bool | str | None = False, in_channels: int = 1,
          out_channels: int = 1, decoder_channels=(256, 128, 64, 32, 16), norm=("batch", {"eps": 1e-3, "momentum": 0.1}),
          dropout: float = 0.0, upsample: str = "nontrainable", interp_mode: str = "nearest"):
    """A 2-D FlexibleUNet on `backbone` (any of MONAI's registered backbones), its dead encoder
    head removed, with ImageNet weights when `pretrained` says so."""
    from monai.networks.nets import FlexibleUNet
    from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE

    if backbone not in FLEXUNET_BACKBONE.register_dict:
        raise ConfigError(f"model.backbone={backbone!r} is not one of MONAI's FlexibleUNet backbones: "
                          f"{sorted(FLEXUNET_BACKBONE.register_dict)}.")
    model = FlexibleUNet(in_channels, out_channels, backbone, pretrained=False, decoder_channels=tuple(decoder_channels),
                         spatial_dims=2, norm=_plain(norm), dropout=dropout, upsample=upsample, interp_mode=interp_mode)
    for name in DEAD_MODULES:
        if isinstance(getattr(model.encoder, name, None), nn.Module):
            setattr(model.encoder, name, nn.Identity())
    if pretrained:
        load_encoder(model, backbone, pretrained)
    return model


def _plain(value):
    """Hydra gives lists and DictConfigs; MONAI's factories want a str or a (name, dict) tuple."""
    try:
        from omegaconf import OmegaConf

        value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    except ImportError:  # pragma: no cover
        pass
    return tuple(value) if isinstance(value, list) else value


def family(model) -> str:
    return "efficientnet" if model.backbone.startswith("efficientnet") else "resnet"


def _stages(model) -> list[tuple[str, tuple[nn.Module, ...], bool]]:
    """The encoder's blocks after the stem: (name, modules, makes a skip feature)."""
    encoder = model.encoder
    if family(model) == "resnet":
        return [(f"layer{i}", (getattr(encoder, f"layer{i}"),), True) for i in range(1, 5)]
    stages, start = [], 0
    for end in encoder.extract_stacks:
        if end > start:  # _blocks[start:end] end at one resolution, whose output is a feature
            name = f"blocks{start}" if end - start == 1 else f"blocks{start}_{end - 1}"
            stages.append((name, tuple(encoder._blocks[i] for i in range(start, end)), True))
        start = end
    return stages


def block_modules(model) -> list[tuple[BlockSpec, tuple[nn.Module, ...]]]:
    encoder = model.encoder
    stem_makes_feature = family(model) == "resnet" or 0 in encoder.extract_stacks
    stem = ("stem", tuple(getattr(encoder, n) for n in STEMS[family(model)]), stem_makes_feature)
    encoders = [stem, *_stages(model)]
    tier_of_feature = [tier for tier, (_, _, feature) in enumerate(encoders, 1) if feature]
    skips = tier_of_feature[:-1][::-1]  # decoder block i joins the i-th deepest skip (MONAI's UNetDecoder)
    entries = [(BlockSpec(name, "encoder" if tier < len(encoders) else "bottleneck", tier), modules)
               for tier, (name, modules, _) in enumerate(encoders, 1)]
    tier = skips[0]
    for i, block in enumerate(model.decoder.blocks):
        joins = i < min(model.skip_connect, len(skips))
        tier = skips[i] if joins else tier
        entries.append((BlockSpec(f"decoder{i}", "decoder", tier), (block,)))
    entries.append((BlockSpec("head", "head", tier), (model.segmentation_head,)))
    return entries


def describe(model) -> str:
    return f"FlexibleUNet ({model.backbone})"


def size_rule(model) -> tuple[int, str]:
    """ResNet and EfficientNet encoders halve the image 5 times (stem, then the strided stages)."""
    return 32, f"{describe(model)} halves the image 5 times (its encoder's strided stages)"


# --- ImageNet weights -------------------------------------------------------------------------

def load_encoder(model, backbone: str, pretrained: bool | str) -> None:
    """The encoder's ImageNet weights, strictly: every encoder tensor from the file."""
    state = _weights_file(backbone) if pretrained is True or str(pretrained).lower() == "true" else _user_file(pretrained)
    own = model.encoder.state_dict()
    renamed = {re.sub(r"(.+)\.\d+(\.\d+\..+)", r"\1\2", key): key for key in own}  # MONAI's own download mapping
    loaded, missing = {}, []
    for source, key in renamed.items():
        tensor = state.get(key, state.get(source))
        if tensor is None:
            missing.append(key)
            continue
        if tensor.shape != own[key].shape and key in ("conv1.weight", "_conv_stem.weight") \
                and tensor.shape[1] == 3 and own[key].shape[1] == 1:
            tensor = tensor.sum(dim=1, keepdim=True)  # RGB stem on grey images: the summed filter sees grey x 3
        if tensor.shape != own[key].shape:
            missing.append(f"{key} (shape {tuple(tensor.shape)}, wanted {tuple(own[key].shape)})")
            continue
        loaded[key] = tensor
    dead = tuple(f"{name}." for name in (*DEAD_MODULES, "fc"))
    unexpected = sorted(k for k in state if k not in own and k not in renamed and not k.startswith(dead))
    if missing or unexpected:
        raise ConfigError(f"model.pretrained={pretrained}: the weights do not fit the {backbone} encoder strictly: "
                          f"missing or mismatched {missing[:3]}{' ...' if len(missing) > 3 else ''}, unexpected "
                          f"{unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}.")
    model.encoder.load_state_dict(loaded, strict=True)


def _user_file(path) -> dict:
    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise ConfigError(f"model.pretrained={path}: no such file; give an encoder state dict (.pth) or true.")
    state = torch.load(file, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _weights_file(backbone: str) -> dict:
    """MONAI's ImageNet weights for `backbone`: from torch's hub cache, downloaded if missing."""
    if not backbone.startswith("efficientnet"):
        raise ConfigError(f"model.pretrained=true: MONAI has no 2-D ImageNet weights for {backbone} (its ResNet "
                          "weights are MedicalNet's, 3-D); give model.pretrained=/path/to/encoder_state_dict.pth.")
    from monai.networks.nets.efficientnet import url_map

    url = url_map.get(backbone)
    if url is None:
        raise ConfigError(f"model.pretrained=true: MONAI has no ImageNet weights for {backbone}; "
                          f"use one of {sorted(k for k in url_map if k.startswith('efficientnet'))} or a path.")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    try:
        return torch.hub.load_state_dict_from_url(url, progress=False, map_location="cpu", weights_only=True)
    except Exception as error:  # offline: URLError, socket errors, HTTP errors
        raise ConfigError(f"model.pretrained=true: the ImageNet weights of {backbone} are not at {cached} and could "
                          f"not be downloaded from {url} ({type(error).__name__}); copy that file there or give "
                          "model.pretrained=/path/to/it.") from error
