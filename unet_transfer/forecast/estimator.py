"""The interface every estimator follows, and the registry.

An estimator is a module with a class that has a `name`, a one-line `summary` and
`estimate(ctx) -> Estimate`. Zero-training estimators return per-block scores (`block_scores`) and
let `ranking.rank_configurations` turn them into configuration scores; the others return
configuration scores directly. Every estimate carries its cost: the image-steps it trained
(forward and backward through one image = one image-step, as a study's runs count them), the
images it only passed forward, and its wall-clock seconds.
"""

from __future__ import annotations

import importlib
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

# name -> module with `Estimator`; the order of the report's rows.
ESTIMATORS = {
    "gradient": "unet_transfer.forecast.gradient",
    "shift": "unet_transfer.forecast.shift",
    "racing": "unet_transfer.forecast.racing",
}


@dataclass
class Estimate:
    name: str
    summary: str
    scores: dict[str, float] = field(default_factory=dict)         # candidate label -> score (higher: better)
    block_scores: dict[str, float] | None = None                   # block name -> score (zero-training ones)
    rule: str = ""                                                 # how block scores became scores
    image_steps: int = 0                                           # trained images (forward + backward)
    forward_images: int = 0                                        # images passed forward only
    seconds: float = 0.0
    details: dict = field(default_factory=dict)                    # what the estimator wants on record
    error: str | None = None                                       # why it gave no forecast


def estimator(name: str):
    """The estimator called `name` (ESTIMATORS)."""
    return importlib.import_module(ESTIMATORS[name]).Estimator()


@contextmanager
def timed(estimate: Estimate):
    """Adds the block's wall-clock time to `estimate.seconds`."""
    start = time.perf_counter()
    try:
        yield estimate
    finally:
        estimate.seconds += time.perf_counter() - start
