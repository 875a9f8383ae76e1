"""The measured loops: FLOPs on the meta device, the activations autograd keeps, a bare PyTorch
training loop (the baseline and the same-settings comparison) and a pass over the real loader."""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext

from unet_transfer.bench.common import autocast_dtype, synchronize


def count_flops(model_cfg, image_size: int, batch: int, trainable=None, train: bool = True) -> int:
    """FLOPs of one training step (forward + backward) or one forward, with these blocks trainable."""
    import torch
    import torch.nn.functional as F
    from hydra.utils import instantiate
    from torch.utils.flop_counter import FlopCounterMode

    from unet_transfer.training.freeze import FreezeSchedule

    with torch.device("meta"):
        model = instantiate(model_cfg)
    if trainable is not None:
        FreezeSchedule.apply(model, trainable)
    shape = (batch, int(model_cfg.get("in_channels", 1)), image_size, image_size)
    images, masks = torch.empty(shape, device="meta"), torch.empty((batch, 1, image_size, image_size), device="meta")
    with FlopCounterMode(display=False) as counter:
        if train:
            F.binary_cross_entropy_with_logits(model(images), masks).backward()
        else:
            with torch.no_grad():
                model(images)
    return int(counter.get_total_flops())


@contextmanager
def saved_tensor_bytes(parameters):
    """Bytes autograd saves for the backward pass (activations), counted once per storage and
    without the parameters themselves; yields a dict storage -> bytes to sum afterwards."""
    import torch

    own = {p.untyped_storage().data_ptr() for p in parameters}
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in own:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield seen


class BareLoop:
    """A plain PyTorch training loop over one fixed batch: Adam, BCE on logits, no framework.
    `optimizer` completes the parameters (the real path's optimiser config for the same-settings
    loops); without it, torch's default Adam (the plain baseline)."""

    def __init__(self, model, device, *, lr: float, channels_last: bool, precision: str,
                 trainable=None, compile: bool = False, optimizer=None, loader=None):
        import torch

        from unet_transfer.training.freeze import FreezeSchedule

        if trainable is not None:
            FreezeSchedule.apply(model, trainable)  # the real path's freezing: protocol.set_frozen_blocks
        self.model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self.model.train()
        self.network = torch.compile(self.model) if compile else self.model
        factory = optimizer or (lambda params: torch.optim.Adam(params, lr=lr))
        self.optimizer = factory([p for p in self.model.parameters() if p.requires_grad])
        self.device, self.channels_last, self.dtype = device, channels_last, autocast_dtype(precision)
        self.loader = loader  # a DataLoader: time steps on its batches, not on the fixed one
        self.times: list[float] = []
        self.saved_bytes: int | None = None
        self.cuda_peak_bytes: int | None = None

    def inputs(self, images, masks):
        import torch

        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, masks

    def step(self, images, masks, probe: bool = False) -> None:
        import torch
        import torch.nn.functional as F

        self.optimizer.zero_grad(set_to_none=True)
        autocast = torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else nullcontext()
        with torch.enable_grad(), autocast:
            if probe:
                with saved_tensor_bytes(self.model.parameters()) as seen:
                    logits = self.network(images)
                self.saved_bytes = sum(seen.values())
            else:
                logits = self.network(images)
            loss = F.binary_cross_entropy_with_logits(logits.float(), masks)
        loss.backward()
        self.optimizer.step()

    def warm_up(self, images, masks, steps: int) -> None:
        images, masks = self.inputs(images, masks)
        for i in range(steps):
            self.step(images, masks, probe=i == 0)
        synchronize(self.device)

    def timed(self, images, masks, steps: int) -> None:
        import torch

        if self.loader is not None:
            return self.timed_from_loader(steps)
        images, masks = self.inputs(images, masks)
        cuda = self.device.type == "cuda"
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            if cuda:  # host-side bookkeeping only: no synchronisation, no effect on the timing
                torch.cuda.reset_peak_memory_stats(self.device)
                before = torch.cuda.memory_allocated(self.device)
            self.step(images, masks)
            if cuda:
                peak = torch.cuda.max_memory_allocated(self.device) - before
                self.cuda_peak_bytes = max(self.cuda_peak_bytes or 0, peak)
        synchronize(self.device)
        self.times.append((time.perf_counter() - start) / steps)

    def timed_from_loader(self, steps: int) -> None:
        """Like an epoch of the real path: a fresh iterator over the real DataLoader, each batch
        moved to the device and laid out as the real path does, then one step."""
        synchronize(self.device)
        start, done = time.perf_counter(), 0
        while done < steps:
            for images, masks, _ in self.loader:
                images = images.to(self.device, non_blocking=True)
                self.step(*self.inputs(images, masks.to(self.device, non_blocking=True)))
                done += 1
                if done == steps:
                    break
        synchronize(self.device)
        self.times.append((time.perf_counter() - start) / steps)


class LoaderPass:
    """Iterates the real train_dataloader (augmentation on line) for at least `minimum` images."""

    def __init__(self, minimum: int, loader=None):
        # One DataLoader, iterated anew each round, as the Trainer does (persistent workers stay up).
        self.loader, self.minimum = loader, minimum
        self.rates: list[float] = []

    def run(self, timed: bool) -> None:
        count, start = 0, time.perf_counter()
        while count < self.minimum:
            for images, _, _ in self.loader:
                count += len(images)
        if timed:
            self.rates.append(count / (time.perf_counter() - start))
