"""What a network tells the framework: its blocks, the modules each block owns, and how a
frozen block is held still.

A network adapter (one module per network family in this package) provides
- a builder, the `_target_` of its `conf/model/*.yaml` (returns an `nn.Module`), and
- `block_modules(model) -> list[(BlockSpec, tuple[nn.Module, ...])]`: the blocks from input to
  output, each with the modules it owns (so its parameters and buffers); together they must
  cover every parameter and buffer of the model exactly once (`check_block_map`).
It registers its model class in `ADAPTERS` below (by the class's import path, so that MONAI is
imported only when a MONAI network is used).

Everything else speaks only through here: `block_map(model)` (the blocks and their modules),
`blocks_of(model, depth)` (the vocabulary, unet_transfer.blocks.Blocks) and
`set_frozen_blocks(model, frozen)` (no gradient, normalisation held in eval mode).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from unet_transfer.blocks import Blocks, BlockSpec
from unet_transfer.errors import ConfigError

# Model class (module path + qualified name, as `type(model)` reports it) -> the adapter module
# whose `block_modules` maps it. A new network is one adapter file plus one line here.
ADAPTERS = {
    "unet_transfer.model.UNet": "unet_transfer.networks.unet",
    "monai.networks.nets.flexible_unet.FlexibleUNet": "unet_transfer.networks.flexunet",
    "monai.networks.nets.basic_unet.BasicUNet": "unet_transfer.networks.basicunet",
}


class BlockMapError(ConfigError):
    """An adapter's block map that does not cover the model's tensors exactly once."""


@dataclass(frozen=True)
class BlockMap:
    """A model's blocks (numbered 1..n from input to output) and the modules each one owns."""

    blocks: Blocks
    modules: tuple[tuple[nn.Module, ...], ...]

    def of(self, number: int) -> tuple[nn.Module, ...]:
        """The modules of block `number` (1-based)."""
        return self.modules[number - 1]

    def parameters(self, number: int) -> Iterator[nn.Parameter]:
        for module in self.of(number):
            yield from module.parameters()

    def buffers(self, number: int) -> Iterator[torch.Tensor]:
        for module in self.of(number):
            yield from module.buffers()

    def block_of_tensor(self) -> dict[int, int]:
        """id(parameter or buffer) -> its block number."""
        return {id(t): number for number in self.blocks.numbers
                for t in [*self.parameters(number), *self.buffers(number)]}

    def block_of_name(self, model: nn.Module) -> dict[str, int]:
        """Every state-dict / parameter name of `model` -> its block number."""
        owner = self.block_of_tensor()
        named = [*model.named_parameters(), *model.named_buffers()]
        return {name: owner[id(tensor)] for name, tensor in named if id(tensor) in owner}


def unwrapped(model: nn.Module) -> nn.Module:
    """The network itself, also under torch.compile (which wraps it as `_orig_mod`)."""
    return getattr(model, "_orig_mod", model)


def adapter_of(model: nn.Module):
    """The adapter module of this model's class (or of a class it derives from)."""
    for cls in type(unwrapped(model)).__mro__:
        path = ADAPTERS.get(f"{cls.__module__}.{cls.__qualname__}")
        if path:
            return importlib.import_module(path)
    raise ConfigError(
        f"{type(model).__module__}.{type(model).__qualname__} has no block map: the framework knows "
        f"{sorted(ADAPTERS)}; add an adapter under unet_transfer/networks/ and list its class in "
        "unet_transfer.networks.protocol.ADAPTERS.")


def block_map(model: nn.Module, depth: str | None = None, check: bool = True) -> BlockMap:
    """The model's blocks and modules from its adapter (checked to cover each tensor once)."""
    network = unwrapped(model)
    adapter = adapter_of(network)
    entries = adapter.block_modules(network)
    if check:
        check_block_map(network, entries)
    blocks = Blocks.listed((spec for spec, _ in entries), depth, getattr(adapter, "describe", lambda m: "")(network))
    return BlockMap(blocks, tuple(tuple(modules) for _, modules in entries))


def meta_model(model_settings) -> nn.Module:
    """The network these settings build (`conf/model/*.yaml`: a `_target_` and its arguments),
    on the meta device: its blocks and shapes, no memory, nothing loaded (a `pretrained`
    setting, weights a builder would load, is off). What a settings check asks before any
    heavy work; a setting the builder refuses is one ConfigError."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    off = {"pretrained": False} if "pretrained" in model_settings else {}
    try:
        with torch.device("meta"):
            return instantiate(model_settings, **off)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        reason = str(cause or error).strip().splitlines()
        raise ConfigError(f"model._target_={model_settings.get('_target_')!r}: these model settings do not build "
                          f"the network ({type(cause or error).__name__}: {reason[-1] if reason else ''}); "
                          "check the model.* settings.") from None


def blocks_of(model: nn.Module, depth: str | None = None) -> Blocks:
    """The model's block vocabulary (names, roles, tiers) under `depth`."""
    return block_map(model, depth, check=False).blocks


def check_block_map(model: nn.Module, entries: list[tuple[BlockSpec, tuple[nn.Module, ...]]]) -> None:
    """Every parameter and buffer of `model` belongs to exactly one block, and every block's
    tensors are the model's: otherwise one line names the first tensor that breaks it (a tensor
    in no block would never be frozen; one in two blocks would be counted twice)."""
    owners: dict[int, list[str]] = {}
    for spec, modules in entries:
        seen: set[int] = set()
        for module in modules:
            for tensor in [*module.parameters(), *module.buffers()]:
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    owners.setdefault(id(tensor), []).append(spec.name)
    names = {id(t): name for name, t in [*model.named_parameters(), *model.named_buffers()]}
    network = type(model).__name__
    for key, name in names.items():
        blocks = owners.get(key, [])
        if not blocks:
            raise BlockMapError(f"{network}: {name} belongs to no block of its block map; assign its module to "
                                "one block (or remove it from the model if forward never uses it).")
        if len(blocks) > 1:
            raise BlockMapError(f"{network}: {name} belongs to blocks {blocks}; each tensor must belong to "
                                "exactly one block.")
    stray = [spec.name for spec, modules in entries for m in modules
             for t in [*m.parameters(), *m.buffers()] if id(t) not in names]
    if stray:
        raise BlockMapError(f"{network}: block {stray[0]} owns tensors that are not the model's.")


def representation(model: nn.Module, number: int, blocks: BlockMap | None = None) -> nn.Module:
    """The module whose output is block `number`'s features (CKA, activation maps): the adapter's
    `representation(model, number)` if it has one, else the block's last module."""
    network, adapter = unwrapped(model), adapter_of(model)
    if hasattr(adapter, "representation"):
        return adapter.representation(network, number)
    return (blocks or block_map(network, check=False)).of(number)[-1]


def head_modules(model: nn.Module, blocks: BlockMap | None = None) -> list[nn.Module]:
    """The output head: the adapter's `head_modules(model)` (the paper's U-Net: inside dec1),
    else the modules of the blocks whose role is "head"."""
    network, adapter = unwrapped(model), adapter_of(model)
    if hasattr(adapter, "head_modules"):
        return list(adapter.head_modules(network))
    blocks = blocks or block_map(network, check=False)
    return [m for b, role in zip(blocks.blocks.numbers, blocks.blocks.roles, strict=True) if role == "head"
            for m in blocks.of(b)]


def size_rule(model: nn.Module) -> tuple[int, str]:
    """(multiple, why): image sides must be a multiple of it. The adapter's `size_rule(model)`,
    else one halving per contracting block after the first (a U-Net's rule)."""
    network, adapter = unwrapped(model), adapter_of(model)
    if hasattr(adapter, "size_rule"):
        return adapter.size_rule(network)
    blocks = blocks_of(network)
    halvings = len(blocks.contracting) - 1
    return 2**halvings, f"{blocks.described} halves the image {halvings} times"


def convolutions(model: nn.Module, blocks: BlockMap | None = None) -> list[tuple[int, nn.Module]]:
    """(block number, convolution) of the network's body in depth order, the output head left
    out (`head_modules`)."""
    network = unwrapped(model)
    blocks = blocks or block_map(network, check=False)
    excluded = {id(m) for head in head_modules(network, blocks) for m in head.modules()}
    return [(number, module) for number in blocks.blocks.numbers for root in blocks.of(number)
            for module in root.modules() if isinstance(module, nn.modules.conv._ConvNd) and id(module) not in excluded]


# --- Normalisation is part of freezing ---------------------------------------------------------

def _is_held_norm(module: nn.Module) -> bool:
    """Normalisation whose running statistics change in train mode (BatchNorm, and InstanceNorm
    with track_running_stats)."""
    return isinstance(module, nn.modules.batchnorm._NormBase)


class _StayInEval:
    """Stands in for a frozen norm layer's `train`: `model.train()` reaches every submodule
    through `train`, so the layer stays in eval mode (its running statistics are part of the
    pretrained weights and must not drift). A plain class, not a closure, so the model still
    pickles and deep-copies."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, mode: bool = True) -> nn.Module:
        return nn.Module.train(self.module, False)


def _eval_before_forward(module: nn.Module, args) -> None:
    """Second guard: whoever set `.training` directly, a held layer runs in eval mode."""
    if module.training:
        nn.Module.train(module, False)


_HOOK = "_unet_transfer_norm_hook"


def hold_norms(modules: Iterable[nn.Module]) -> None:
    """Keep every norm layer with running statistics inside `modules` in eval mode, through any
    later `model.train()`, until `release_norms`."""
    for root in modules:
        for module in root.modules():
            if _is_held_norm(module) and not hasattr(module, _HOOK):
                module.train = _StayInEval(module)
                setattr(module, _HOOK, module.register_forward_pre_hook(_eval_before_forward))
                nn.Module.train(module, False)


def release_norms(modules: Iterable[nn.Module], training: bool) -> None:
    """Undo `hold_norms` (a block unfrozen by gradual unfreezing), back to the model's mode."""
    for root in modules:
        for module in root.modules():
            if hasattr(module, _HOOK):
                getattr(module, _HOOK).remove()
                delattr(module, _HOOK)
                del module.train
                nn.Module.train(module, training)


def norms_held(module: nn.Module) -> bool:
    """Whether `hold_norms` holds this norm layer."""
    return hasattr(module, _HOOK)


def set_frozen_blocks(model: nn.Module, frozen: Iterable[int], blocks: BlockMap | None = None) -> BlockMap:
    """Freeze these blocks (1-based) of any network and unfreeze the others: no gradient for
    their parameters, and their normalisation held in eval mode (buffers untouched). The one
    implementation of freezing; returns the block map used."""
    blocks = blocks or block_map(model)
    frozen = frozenset(frozen)
    unknown = sorted(frozen - set(blocks.blocks.numbers))
    if unknown:
        raise ConfigError(f"blocks {unknown} do not exist: the network has blocks 1..{blocks.blocks.n}.")
    training = unwrapped(model).training
    for number in blocks.blocks.numbers:
        for parameter in blocks.parameters(number):
            parameter.requires_grad_(number not in frozen)
        if number in frozen:
            hold_norms(blocks.of(number))
        else:
            release_norms(blocks.of(number), training)
    return blocks
