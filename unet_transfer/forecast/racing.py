"""Short-budget racing: every configuration of the grid fine-tunes from the pretrained weights on
one fold's training images for a small share of the study's image-steps, by successive halving
(halving.py) to the finalists, ranked by Dice on a part of the training folds kept aside
(VALIDATION; never the study's held-out fold, so the forecast does not see the test images).

The training is the runs' own recipe in a light in-process loop (no Lightning, no run folders,
nothing written): the experiment's network, pretrained weights, freezing
(`networks.protocol.set_frozen_blocks`), optimiser, batch size, augmentation and loss (binary
cross-entropy on the logits), in float32. A candidate that survives a rung trains on from where
it stopped. Its score: the rung it reached plus its last validation Dice (scaled below 1), so
the order is the race's order.
"""

from __future__ import annotations

import math

from unet_transfer.forecast.estimator import Estimate, timed
from unet_transfer.forecast.halving import successive_halving

VALIDATION = 0.25  # share of the fold's training images kept aside to score the race on
SHARE = 0.06       # of the study's planned image-steps (its float32 loop is slower per step than the runs; all fits in 1/10)


class Contestant:
    """One configuration in training: its network, optimiser and stream of batches."""

    def __init__(self, ctx, candidate, datamodule):
        from hydra.utils import instantiate

        from unet_transfer.networks.protocol import set_frozen_blocks

        self.model = ctx.fresh_model()
        self.model.train()
        set_frozen_blocks(self.model, ctx.layout.frozen(candidate.blocks))
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = instantiate(ctx.cfg.optimizer)(trainable)
        self.loader, self.batches, self.images = datamodule.train_dataloader(), None, 0

    def next_batch(self):
        if self.batches is not None:
            batch = next(self.batches, None)
            if batch is not None:
                return batch
        self.batches = iter(self.loader)  # a new epoch: the loader's generator goes on shuffling
        return next(self.batches)

    def advance(self, steps: int) -> None:
        import torch.nn.functional as F

        self.model.train()
        for _ in range(steps):
            images, masks, _ = self.next_batch()
            loss = F.binary_cross_entropy_with_logits(self.model(images).float(), masks)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.images += len(images)


def validation_dice(model, loader) -> float:
    """Mean per-image Dice on the kept-aside images (the runs' threshold and metric)."""
    import torch

    from unet_transfer.metrics import per_image_scores

    model.eval()
    scores = []
    with torch.no_grad():
        for images, masks, _ in loader:
            scores.extend(float(v) for v in per_image_scores(torch.sigmoid(model(images).float()), masks)["dice"])
    finite = [s for s in scores if math.isfinite(s)]
    return sum(finite) / len(finite) if finite else 0.0


class Estimator:
    name = "racing"
    summary = "every configuration trained briefly on one fold, successive halving, inner-validation Dice"

    def __init__(self, share: float = SHARE):
        self.share = share

    def estimate(self, ctx) -> Estimate:
        result = Estimate(self.name, self.summary, rule="rung reached + validation Dice at that rung")
        with timed(result):
            datamodule = ctx.datamodule(VALIDATION)
            batch = int(ctx.cfg.batch_size)
            steps_per_epoch = math.ceil(len(datamodule.train_rows) / batch)
            budget = int(self.share * ctx.study_image_steps / batch)
            cap = int(ctx.cfg.trainer.max_epochs) * steps_per_epoch  # one study run's steps
            by_label = {c.label: c for c in ctx.candidates}
            contestants: dict[str, Contestant] = {}

            def contestant(label):
                if label not in contestants:
                    contestants[label] = Contestant(ctx, by_label[label], datamodule)
                return contestants[label]

            validation = datamodule.validation_split_dataloader()
            evaluated = [0]

            def evaluate(label):
                evaluated[0] += len(datamodule.validation_rows)
                return validation_dice(contestant(label).model, validation)

            race = successive_halving(list(by_label), lambda label, steps: contestant(label).advance(steps),
                                      evaluate, budget, cap=cap)
            result.image_steps = sum(c.images for c in contestants.values())
            result.forward_images = evaluated[0]
        result.scores = {label: race.reached[label] + 0.999 * race.last_score[label] for label in race.order}
        result.details = {"share_planned": self.share, "budget_steps": budget, "cap_steps": cap,
                          "train_images": len(datamodule.train_rows),
                          "validation_images": len(datamodule.validation_rows),
                          "rungs": [{"steps": rung["steps"], "dice": {k: round(v, 4) for k, v in rung["scores"].items()}}
                                    for rung in race.history],
                          "note": "optuna is not installed: successive halving by unet_transfer/forecast/halving.py"}
        return result
