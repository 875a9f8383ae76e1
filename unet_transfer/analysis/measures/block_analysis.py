"""The per-block analysis of every run, gathered while it is scored: how far each block's
weights moved from the loaded ones (`block_change`, analysis/change.py) and how similar its
features on the held-out images stayed to the loaded network's (`block_cka`, analysis/cka.py).

The loaded weights are copied once (on the CPU) when the run is built; no trained model needs
to be kept for this."""

from __future__ import annotations

from unet_transfer.analysis.registry import Measure, Shown, measure


@measure
class BlockAnalysis(Measure):
    shows = (
        Shown("block_change", "Relative weight change ||w − w0|| / ||w0||", "0 = the block kept its loaded weights",
              "Relative weight change", colormap="viridis", low=0.0),
        Shown("block_cka", "Linear CKA of the block's features, loaded vs fine-tuned", "1 = the same representation",
              "Linear CKA", colormap="magma", low=None, high=1.0),
    )
    order = 20

    def __init__(self, model):
        self.initial = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self.change: dict[int, float] = {}
        self.cka: dict[int, float] = {}

    def on_test_start(self, trainer, pl_module) -> None:
        import copy

        from unet_transfer.analysis.cka import CKAStats
        from unet_transfer.networks.protocol import block_map, representation

        model = pl_module.model
        self._reference = copy.deepcopy(model).eval()
        self._reference.load_state_dict(self.initial)
        numbers = block_map(model, check=False).blocks.numbers
        self._stats = {b: CKAStats() for b in numbers}
        self._features: dict[str, dict] = {"tuned": {}, "loaded": {}}
        self._hooks = [representation(net, b).register_forward_hook(self._keep(side, b))
                       for side, net in (("tuned", model), ("loaded", self._reference)) for b in numbers]

    def _keep(self, side: str, number: int):
        def hook(module, inputs, output):
            self._features[side][number] = output.detach()
        return hook

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        import torch

        images = batch[0]
        if pl_module.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            with trainer.precision_plugin.forward_context():
                pl_module.model(images)  # eager, also when training ran a compiled copy
                self._reference(images)
            for number, stats in self._stats.items():  # in float64, outside any autocast
                stats.add(self._features["tuned"].pop(number), self._features["loaded"].pop(number))

    def on_test_end(self, trainer, pl_module) -> None:
        from unet_transfer.analysis.change import block_change

        for hook in self._hooks:
            hook.remove()
        self.cka = {b: stats.value() for b, stats in self._stats.items()}
        self.change = block_change(pl_module.model, self.initial)
        del self._reference, self._stats

    def summary(self) -> dict[str, dict[int, float]]:
        return {"block_change": self.change, "block_cka": self.cka}
