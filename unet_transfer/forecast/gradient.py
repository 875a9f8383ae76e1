"""Gradient signal: per block, the relative gradient norm ||g_b|| / ||w_b|| at the pretrained
weights, every block trainable (Auto-RGN's quantity, Lee et al., ICLR 2023, per block here).

g_b is the gradient of the training loss (binary cross-entropy on the logits, as the runs train)
averaged over a few batches of the training folds (augmented as the runs are): the gradient of
the mean loss of those batches, so batch noise partly cancels instead of adding to the norm.
Blocks whose weights would move most, relative to their size, in the first steps of tuning are
taken to be where the target needs change. The network is in training mode (normalisation uses
batch statistics, as the first steps of a run do); nothing is stepped or kept.
"""

from __future__ import annotations

from unet_transfer.forecast.estimator import Estimate, timed
from unet_transfer.forecast.ranking import RULE, rank_configurations

BATCHES = 8  # batches of the run's batch size (fewer when the fold has fewer)


def relative_gradient_norms(model, batches, blocks) -> dict[int, float]:
    """Block number -> ||grad of the mean loss over `batches`|| / ||weights|| (blocks: a BlockMap).
    `batches`: (images, masks, ...) tuples."""
    import torch
    import torch.nn.functional as F

    model.train()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    batches = list(batches)
    for images, masks, *_ in batches:
        loss = F.binary_cross_entropy_with_logits(model(images).float(), masks) / len(batches)
        loss.backward()
    norms = {}
    with torch.no_grad():
        for number in blocks.blocks.numbers:
            parameters = list(blocks.parameters(number))
            grad = sum(float(p.grad.double().pow(2).sum()) for p in parameters if p.grad is not None)
            weight = sum(float(p.double().pow(2).sum()) for p in parameters)
            norms[number] = (grad ** 0.5) / (weight ** 0.5) if weight > 0 else 0.0
    model.zero_grad(set_to_none=True)
    return norms


class Estimator:
    name = "gradient"
    summary = "relative gradient norm per block at the pretrained weights (all blocks trainable)"

    def estimate(self, ctx) -> Estimate:
        from itertools import islice

        from unet_transfer.networks.protocol import block_map

        result = Estimate(self.name, self.summary, rule=RULE)
        with timed(result):
            model = ctx.fresh_model()
            blocks = block_map(model, ctx.cfg.get("depth"))
            batches = list(islice(iter(ctx.datamodule().train_dataloader()), BATCHES))
            norms = relative_gradient_norms(model, batches, blocks)
            result.image_steps = sum(len(batch[0]) for batch in batches)
        result.block_scores = {ctx.layout.name(n): value for n, value in norms.items()}
        result.scores = rank_configurations(norms, ctx.candidates)
        result.details = {"batches": len(batches), "images": result.image_steps}
        return result
