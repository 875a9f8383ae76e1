"""How far fine-tuning moved each block: ||w - w0|| / ||w0|| over all of the block's tensors.

A frozen block gives exactly 0 (its tensors are bit-identical to the loaded ones)."""

from __future__ import annotations

import math

from unet_transfer.networks.protocol import block_map


def block_change(model, initial: dict) -> dict[int, float]:
    """Relative change per block number, from the state dict `initial` (the loaded weights)."""
    moved, size = {}, {}
    block_of = block_map(model).block_of_name(model)
    for name, now in model.state_dict().items():
        if not now.is_floating_point():
            continue
        block = block_of[name]
        before = initial[name].to(now.device, now.dtype)
        moved[block] = moved.get(block, 0.0) + float((now - before).double().pow(2).sum())
        size[block] = size.get(block, 0.0) + float(before.double().pow(2).sum())
    return {b: math.sqrt(moved[b]) / math.sqrt(size[b]) if size[b] > 0 else math.nan for b in sorted(moved)}
