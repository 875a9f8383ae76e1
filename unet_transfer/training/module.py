"""The LightningModule: binary cross-entropy on logits for training, the paper's per-image
metrics on the held-out fold with the final weights.

A diverged run is never a result: a training loss that becomes nan or inf, or weights that end
non-finite, stop the run with DivergedError (one line, no metrics.json). The loss is watched on
the device (a flag per step, read once per epoch), so a GPU never waits for it step by step.
"""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from unet_transfer.errors import DivergedError
from unet_transfer.finetune.base import Method
from unet_transfer.metrics import METRICS, THRESHOLD, per_image_scores
from unet_transfer.networks.protocol import block_map


class SegmentationModule(pl.LightningModule):
    """Args:
        model: the network, any with a block map (its frozen blocks are set by the FreezeSchedule
            callback).
        optimizer: a partial optimiser (e.g. Adam lr 1e-4) completed with the trainable
            parameters only, so frozen weights are never in the optimiser.
        method: the fine-tuning method (finetune/): which of the trainable blocks' parameters
            train, in which groups and at which rates, and any loss penalty.
        channels_last: run convolutions in NHWC layout (faster on CPUs and tensor cores).
        compile: run the forward pass through torch.compile (state dict and blocks unchanged).
        keep_predictions: also keep the held-out probability maps (for figures).
    """

    def __init__(self, model: torch.nn.Module, optimizer: Callable[..., torch.optim.Optimizer], channels_last: bool = False,
                 threshold: float = THRESHOLD, keep_predictions: bool = False, compile: bool = False, method=None):
        super().__init__()
        self.model, self.optimizer_factory = model, optimizer
        self.method = method if method is not None else Method()
        self.channels_last, self.threshold, self.keep_predictions = channels_last, threshold, keep_predictions
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        # Not registered as a submodule: the compiled wrapper shares the model's parameters.
        object.__setattr__(self, "_network", torch.compile(self.model) if compile else self.model)
        self.test_records: list[dict] = []
        self.test_predictions: dict[int, torch.Tensor] = {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self._network(images)

    def _loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        images, masks, _ = batch
        logits = self(images)
        return F.binary_cross_entropy_with_logits(logits.float(), masks), logits

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_images = torch.zeros((), device=self.device), 0
        self._first_bad = torch.full((), -1, dtype=torch.long, device=self.device)  # step, -1: none

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss(batch)
        penalty = self.method.penalty(self.model)
        if penalty is not None:
            loss = loss + penalty
        n = len(batch[0])
        # self.log costs ~0.7 ms, 5% of a demo-size step: the epoch mean is summed here instead,
        # and the step loss is logged only on the steps the loggers write (log_every_n_steps).
        self._loss_sum += loss.detach() * n
        self._note_non_finite(loss.detach())
        self._loss_images += n
        if (self.global_step + 1) % max(1, self.trainer.log_every_n_steps) == 0:
            self.log("train/loss_step", loss, prog_bar=True, batch_size=n)
        return loss

    def _note_non_finite(self, loss: torch.Tensor) -> None:
        """Remember the first step whose loss is nan or inf, on the device: no sync per step."""
        first = (~torch.isfinite(loss)) & (self._first_bad < 0)
        self._first_bad = torch.where(first, self.global_step, self._first_bad)

    def _stop_if_diverged(self) -> None:
        """One read of the flag (once per epoch); the weights too once training is over."""
        step = int(self._first_bad) if hasattr(self, "_first_bad") else -1
        if step >= 0:
            loss = "nan" if torch.isnan(self._loss_sum) else "inf"
            raise DivergedError(f"Run diverged: the training loss became {loss} at epoch {self.current_epoch + 1}, "
                                f"step {step + 1}{self._lr_hint()}; no result written.")

    def _lr_hint(self) -> str:
        lr = getattr(self.optimizer_factory, "keywords", {}).get("lr")
        return "" if lr is None else f" (optimizer.lr={lr:g} is probably too high)"

    def on_train_epoch_end(self) -> None:
        self._stop_if_diverged()
        if self._loss_images:
            self.log("train/loss_epoch", self._loss_sum / self._loss_images, prog_bar=True)

    def on_train_end(self) -> None:
        self._stop_if_diverged()  # also when training stopped within an epoch (max_steps)
        if not self.global_step:  # nothing trained: the weights are the start's (checked when loaded)
            return
        if not torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all():
            raise DivergedError("Run diverged: the weights hold nan or inf after training, though every training "
                                f"loss was finite{self._lr_hint()}; no result written.")

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, logits = self._loss(batch)
        scores = per_image_scores(torch.sigmoid(logits.float()), batch[1], self.threshold)
        n = len(batch[0])
        self.log("val/loss", loss, prog_bar=True, batch_size=n)
        self.log("val/dice", scores["dice"].mean().float(), prog_bar=True, batch_size=n)

    def on_test_epoch_start(self) -> None:
        self.test_records, self.test_predictions = [], {}

    def test_step(self, batch, batch_idx: int) -> None:
        images, masks, rows = batch
        probabilities = torch.sigmoid(self(images).float())
        scores = per_image_scores(probabilities, masks, self.threshold)
        for i, row in enumerate(rows.tolist()):
            self.test_records.append({"row": row, **{m: float(scores[m][i]) for m in METRICS}})
            if self.keep_predictions:
                self.test_predictions[row] = probabilities[i, 0].detach().cpu().half()
        for m in METRICS:
            self.log(f"test/{m}", scores[m].mean().float(), batch_size=len(images))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        model = self.model
        block_of = block_map(model).block_of_name(model)
        trainable = sorted({block_of[n] for n, p in model.named_parameters() if p.requires_grad})
        lr = getattr(self.optimizer_factory, "keywords", {}).get("lr")
        return self.optimizer_factory(self.method.param_groups(model, trainable, lr))
