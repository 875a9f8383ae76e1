"""Linear CKA (Kornblith et al., ICML 2019) between two networks' features of one block.

Features of a conv block are treated with every image position as one example and the
channels as the features, so the statistics that linear CKA needs are channel-by-channel
moments, summed batch by batch: memory is a few C x C matrices, whatever the number of images.

    CKA(X, Y) = ||Cxy||_F^2 / (||Cxx||_F ||Cyy||_F),  C.. the centred cross-covariances.

It is 1 for identical features and invariant to orthogonal transforms and isotropic scaling of
either side (tests/test_analysis.py).
"""

from __future__ import annotations

import math


class CKAStats:
    """Running sums for the linear CKA of two feature maps of the same positions."""

    def __init__(self):
        self.n = 0
        self.sx = self.sy = self.xx = self.yy = self.xy = None

    def add(self, x, y) -> None:
        """x: (N, C, H, W) features of one network, y: (N, D, H, W) of the other, same N, H, W."""
        x = x.detach().double().movedim(1, -1).reshape(-1, x.shape[1])
        y = y.detach().double().movedim(1, -1).reshape(-1, y.shape[1])
        moments = (x.sum(0), y.sum(0), x.T @ x, y.T @ y, x.T @ y)
        if self.sx is None:
            self.sx, self.sy, self.xx, self.yy, self.xy = moments
        else:
            for name, value in zip(("sx", "sy", "xx", "yy", "xy"), moments, strict=True):
                setattr(self, name, getattr(self, name) + value)
        self.n += x.shape[0]

    def value(self) -> float:
        if not self.n:
            return math.nan
        mx, my = self.sx / self.n, self.sy / self.n
        cxx = self.xx / self.n - mx[:, None] * mx[None, :]
        cyy = self.yy / self.n - my[:, None] * my[None, :]
        cxy = self.xy / self.n - mx[:, None] * my[None, :]
        denominator = float(cxx.norm() * cyy.norm())
        return float(cxy.norm() ** 2) / denominator if denominator > 0 else math.nan


def linear_cka(x, y) -> float:
    """CKA of two feature maps in one go (what the accumulator gives for one batch)."""
    stats = CKAStats()
    stats.add(x, y)
    return stats.value()
