"""Where the learning signal goes: each block's gradient norm, averaged over an epoch's steps
and logged as `grad_norm/<block name>` (CSV, W&B); frozen blocks log 0. metrics.json records
the mean over epochs (`block_grad_norm`).

The norms stay on the device until the epoch ends (one sync per epoch, not per step), and the
block index of the parameters with gradients lives there too: copying it from host memory each
step would make CUDA wait for the queued work every step (a pageable copy syncs the stream)."""

from __future__ import annotations

from unet_transfer.analysis.registry import Measure, Shown, measure


@measure
class GradientFlow(Measure):
    shows = (Shown("block_grad_norm", "Gradient norm during training (mean over epochs)", "0 = no learning signal",
                   "Gradient norm"),)
    order = 10

    def __init__(self, model=None):
        self.epoch_means: list[dict[int, float]] = []  # per epoch: block number -> mean gradient norm

    def on_fit_start(self, trainer, pl_module) -> None:
        self._track(pl_module.model)

    def _track(self, model) -> None:
        """The network's parameters and their blocks (again when a method added some: LoRA's
        adapters for the blocks a later phase of gradual unfreezing trains)."""
        import torch

        from unet_transfer.networks.protocol import block_map

        blocks = block_map(model)
        block_of = blocks.block_of_name(model)
        self._names = blocks.blocks.names
        self._params = [p for _, p in model.named_parameters()]
        self._blocks = torch.tensor([block_of[n] - 1 for n, _ in model.named_parameters()])
        self._index: dict = {}  # parameters with gradients (a tuple) -> their blocks, on the device

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._sum, self._steps = None, 0
        if [id(p) for p in pl_module.model.parameters()] != [id(p) for p in self._params]:
            self._track(pl_module.model)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        import torch

        present = [i for i, p in enumerate(self._params) if p.grad is not None]
        if not present:
            return
        norms = torch.stack(torch._foreach_norm([self._params[i].grad for i in present])).double()
        squares = torch.zeros(len(self._names), dtype=torch.float64, device=norms.device)
        key = tuple(present)  # the same set every step of a phase: copied to the device once
        if key not in self._index:
            self._index[key] = self._blocks[present].to(norms.device)
        squares.index_add_(0, self._index[key], norms.square())
        self._sum = squares.sqrt() if self._sum is None else self._sum + squares.sqrt()
        self._steps += 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._steps:
            return
        means = (self._sum / self._steps).tolist()
        self.epoch_means.append({b + 1: value for b, value in enumerate(means)})
        for name, value in zip(self._names, means, strict=True):
            pl_module.log(f"grad_norm/{name}", value)

    def mean_over_training(self) -> dict[int, float]:
        """Each block's gradient norm averaged over the epochs."""
        if not self.epoch_means:
            return {}
        return {b: sum(epoch[b] for epoch in self.epoch_means) / len(self.epoch_means) for b in self.epoch_means[0]}

    def summary(self) -> dict[str, dict[int, float]]:
        return {"block_grad_norm": self.mean_over_training()}
