"""Representation shift: per block, how far the pretrained network's features on the target
images are from its features on the source images it was pretrained on (where the shift lives;
Lee et al., ICLR 2023: tune the blocks where the distribution shift is).

Linear CKA needs the same images on both sides; here the images differ (target vs source), so the
distance compares feature statistics instead: per channel c of the block's output (every image
position an example), mean mu and standard deviation sigma on each side, and

    shift_b = sum_c [(mu_t - mu_s)^2 + (sigma_t - sigma_s)^2] / sum_c sigma_s^2,

the squared 2-Wasserstein distance between per-channel Gaussians, relative to the source's own
spread (0: the block sees the target as it saw its source; scale-free, so blocks compare). The
same number of images from each side (at most IMAGES), the network in eval mode (its normalisation
uses the pretraining's statistics), no gradient: forward passes only.
"""

from __future__ import annotations

from unet_transfer.forecast.estimator import Estimate, timed
from unet_transfer.forecast.ranking import RULE, rank_configurations

IMAGES = 32


def channel_moments(features) -> tuple:
    """(mean, std) per channel of (N, C, H, W) features, every position an example."""
    flat = features.detach().double().movedim(1, -1).reshape(-1, features.shape[1])
    return flat.mean(0), flat.std(0, unbiased=False)


def statistics_distance(target, source) -> float:
    """The module docstring's shift between two (N, C, H, W) feature maps of one block."""
    (mu_t, sd_t), (mu_s, sd_s) = channel_moments(target), channel_moments(source)
    spread = float(sd_s.pow(2).sum())
    return float(((mu_t - mu_s).pow(2) + (sd_t - sd_s).pow(2)).sum()) / spread if spread > 0 else 0.0


def block_features(model, images, blocks, batch_size: int = 16) -> dict[int, object]:
    """Block number -> its output features on `images` (eval mode, no gradient)."""
    import torch

    from unet_transfer.networks.protocol import representation

    captured: dict[int, list] = {n: [] for n in blocks.blocks.numbers}
    hooks = [representation(model, n, blocks).register_forward_hook(
        lambda _m, _i, output, n=n: captured[n].append(output.detach())) for n in blocks.blocks.numbers]
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                model(images[start:start + batch_size])
    finally:
        for hook in hooks:
            hook.remove()
    return {n: torch.cat(parts) for n, parts in captured.items()}


class Estimator:
    name = "shift"
    summary = "feature-statistics distance per block, target vs source images (pretrained network)"

    def estimate(self, ctx) -> Estimate:
        from unet_transfer.forecast.context import target_images
        from unet_transfer.networks.protocol import block_map

        result = Estimate(self.name, self.summary, rule=RULE)
        with timed(result):
            datamodule = ctx.datamodule()
            count = min(IMAGES, len(datamodule.train_rows))
            source = ctx.source_images(count)
            count = min(count, len(source))
            target = target_images(datamodule, count)
            model = ctx.fresh_model()
            blocks = block_map(model, ctx.cfg.get("depth"))
            on_target, on_source = block_features(model, target, blocks), block_features(model, source[:count], blocks)
            shift = {n: statistics_distance(on_target[n], on_source[n]) for n in blocks.blocks.numbers}
            result.forward_images = 2 * count
        result.block_scores = {ctx.layout.name(n): value for n, value in shift.items()}
        result.scores = rank_configurations(shift, ctx.candidates)
        result.details = {"images_each_side": count}
        return result
